"""games.py's SMACv2-style maps (issue 17): SMAX's smacv2_5_units (shapes, masks against the drawn
types' attack ranges, unit types and start positions that vary by episode and repeat by seed, the
state and obs following the drawn types, SMAC's reward scaled by each episode's enemies, win and
time-out rules), StarCraft II's SMACv2 maps through a stand-in `smacv2` package, the one-line errors
for a map one backend lacks, and a smoke run of each script on smacv2_5_units."""
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

import games

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_sc2  # noqa: E402
from test_games import play, random_policy, scripted_policy  # noqa: E402

MAP, N, M, E = "smacv2_5_units", 5, 5, 8


@pytest.fixture(scope="module")
def env5():
    return games.make_starcraft(MAP, num_envs=E, seed=0, backend="smax")


def units(state, n=N, m=M):
    """The state's per-unit block: features [E, n+m, 10] (health, x, y, cooldown, 6 type bits), unit
    types [E, n+m] (-1 where dead), positions in map units [E, n+m, 2]."""
    f = state[:, : 10 * (n + m)].reshape(len(state), n + m, 10)
    types = np.where(f[..., 4:].sum(-1) > 0, f[..., 4:].argmax(-1), -1)
    return f, types, (f[..., 1:3] + 1.0) * 16.0  # the adapter centres and scales by the half width 16


def firsts(env, steps, seed=0):
    """States that start an episode (reset, then every auto-reset) over `steps` random steps."""
    rng = np.random.default_rng(seed)
    obs, state, avail = env.reset()
    out = [state.copy()]
    for _ in range(steps):
        obs, state, avail, reward, done, info = env.step(random_policy(avail, rng))
        out.append(state[done])
    return np.concatenate(out)


# ---------------------------------------------------------------- SMAX: smacv2_*_units
def test_shapes_masks_and_jaxmarls_scenario(env5):
    from jaxmarl.environments.smax import map_name_to_scenario
    ref = map_name_to_scenario(MAP)
    smax = env5._smax
    assert (smax.num_allies, smax.num_enemies) == (ref.num_allies, ref.num_enemies) == (N, M)
    assert smax.smacv2_position_generation and smax.smacv2_unit_type_generation
    assert (env5.n_agents, env5.n_enemies, env5.n_actions, env5.episode_limit) == (N, M, 6 + M, 200)
    assert env5.obs_dim == 13 * (N - 1) + 13 * M + 10 == 127
    assert env5.state_dim == 10 * (N + M) + N * (6 + M) == 155
    obs, state, avail = env5.reset()
    assert obs.shape == (E, N, 127) and state.shape == (E, 155) and avail.shape == (E, N, 11)
    reach = np.asarray(smax.unit_type_attack_ranges)
    rng = np.random.default_rng(3)
    checked = 0
    for t in range(60):
        f, types, pos = units(state)
        alive = f[:, :N, 0] > 0
        assert (avail[..., 0] == ~alive).all() and (avail[..., 1] == alive).all()  # no-op iff dead
        # attack j is available iff both live and j is within the attacker's (drawn) type's range
        d = np.linalg.norm(pos[:, :N, None] - pos[:, None, N:], axis=-1)  # [E, N, M]
        in_range = d < reach[np.maximum(types[:, :N], 0)][..., None]
        expect = in_range & alive[..., None] & (f[:, None, N:, 0] > 0)
        clear = np.abs(d - reach[np.maximum(types[:, :N], 0)][..., None]) > 1e-3  # float32 rounding
        assert (avail[..., 6:][clear] == expect[clear]).all()
        checked += int(expect.sum())
        obs, state, avail, *_ = env5.step(random_policy(avail, rng))
    assert checked > 0  # some attacks were in range, so the check above saw both answers


def test_types_and_start_positions_vary_by_episode_and_repeat_by_seed(env5):
    starts = firsts(env5, 240)
    f, types, pos = units(starts)
    assert len(starts) >= 20 and (types >= 0).all()  # everyone alive at the start
    np.testing.assert_allclose(f[..., 0], 1.0)  # full health of whatever type was drawn
    teams = {tuple(t) for t in types[:, :N]}
    assert len(teams) >= 0.8 * len(starts) and set(types.ravel()) == set(range(6))  # SMAX's 6 types
    np.testing.assert_array_equal(types[:, N:], types[:, :N])  # SMAX's enemy team mirrors the allies'
    # start positions: inside the border by SPAWN_MARGIN, and not SMAC's west-against-east layout
    m = games.SPAWN_MARGIN
    assert (pos >= m - 1e-4).all() and (pos <= 32 - m + 1e-4).all()
    # "reflect" (allies on the west half) and "surround" with either team in the middle
    centre = np.abs(pos.reshape(-1, 2, N, 2).mean(2) - 16).max(-1) < 2.5  # [episodes, team]
    assert (pos[:, :N, 0].mean(1) < 12).any() and centre[:, 0].any() and centre[:, 1].any()
    assert len({tuple(np.round(p, 3).ravel()) for p in pos}) == len(starts)

    again = firsts(games.make_starcraft(MAP, num_envs=E, seed=0, backend="smax"), 240)
    np.testing.assert_array_equal(again, starts)  # same seed, same actions: the same episodes
    other = firsts(games.make_starcraft(MAP, num_envs=E, seed=1, backend="smax"), 0)
    assert not np.array_equal(units(other)[1], types[:E])


def test_state_and_obs_follow_the_drawn_types(env5):
    rng = np.random.default_rng(4)
    obs, state, avail = env5.reset()
    for t in range(40):
        f, types, _ = units(state)
        alive = f[..., 0] > 0
        assert (f[..., 4:].sum(-1) == alive).all()  # one type bit per live unit, none when dead
        assert ((f[..., 0] >= 0) & (f[..., 0] <= 1) & (f[..., 3] >= 0) & (f[..., 3] <= 1)).all()
        own = obs[..., -10:]  # SMAX's own block: health, x, y, cooldown, 6 type bits
        np.testing.assert_array_equal(own[..., 4:], f[:, :N, 4:])
        np.testing.assert_allclose(own[..., 0], f[:, :N, 0], atol=1e-6)
        obs, state, avail, *_ = env5.step(random_policy(avail, rng))


def test_reward_is_smacs_scaled_by_each_episodes_enemies(env5):
    """Between two states of one episode, reward = 20 (HP lost + 10 per kill) / (the episode's enemy
    max HP + 10 M + 200): the scale follows the drawn types, so a fixed scale would fail here."""
    max_hp = np.asarray(env5._smax.unit_type_health)
    rng = np.random.default_rng(5)
    obs, state, avail = env5.reset()
    enemy_types = units(state)[1][:, N:].copy()
    scales, checked = set(), 0
    for t in range(300):
        obs, state2, avail, reward, done, info = env5.step(random_policy(avail, rng))
        f0, f1 = units(state)[0], units(state2)[0]
        hp = max_hp[enemy_types]  # [E, M]
        lost = ((f0[:, N:, 0] - f1[:, N:, 0]) * hp).sum(1)
        kills = ((f0[:, N:, 0] > 0) & (f1[:, N:, 0] == 0)).sum(1)
        expect = 20.0 * (lost + 10.0 * kills) / (hp.sum(1) + 10.0 * M + 200.0)
        np.testing.assert_allclose(reward[~done], expect[~done], rtol=1e-4, atol=1e-5)
        live = ~done & (reward > 0)
        checked += int(live.sum())
        scales |= set(hp.sum(1)[live].tolist())
        enemy_types[done] = units(state2)[1][done, N:]
        state = state2
    assert checked >= 20 and len(scales) >= 3, (checked, scales)


def test_scripted_battles_are_won_for_20_inside_the_limit(env5):
    """The measured battle lengths behind the 200-step limit: a scripted team wins often, every won
    episode pays exactly 20 whatever the drawn enemies, and battles end well before the limit."""
    won, ret, length, timeout = play(env5, scripted_policy, 16)
    assert won.mean() >= 0.3, won.mean()
    np.testing.assert_allclose(ret[won], 20.0, rtol=1e-4)
    assert (ret[~won] < 20.0).all() and not timeout.any()
    assert 0.1 * 200 <= np.median(length) <= 0.75 * 200, np.median(length)


def test_time_outs_at_200_and_losses():
    """A team that only stops: SMAX's heuristic enemy finds some of them (a loss, not a time-out) and
    misses others, whose episodes are cut at exactly 200 steps (a time-out, not won)."""
    env = games.make_starcraft(MAP, num_envs=E, seed=10_001, backend="smax")
    obs, state, avail = env.reset()
    ended = []
    for t in range(1, 201):
        obs, state, avail, reward, done, info = env.step(np.where(avail[..., 1] > 0, 1, 0))
        for e in np.flatnonzero(done):
            ended.append((t, info["episode_length"][e], info["won"][e], info["timeout"][e]))
    assert not any(won for *_, won, _ in ended)
    cut = [x for x in ended if x[3]]
    assert cut and all(t == length == 200 for t, length, *_ in cut)
    assert any(length < 200 and not to for _, length, _, to in ended)


# ---------------------------------------------------------------- errors: a map one backend lacks
def test_smax_scenarios_are_not_starcraft_maps():
    with pytest.raises(ValueError, match=r"map 'smacv2_5_units' is SMAX's own SMACv2-style scenario .*"
                                         r"StarCraft II has no such map: use --backend smax, or one of .*"
                                         r"protoss_5_vs_5, terran_5_vs_5, zerg_5_vs_5") as e:
        games.make_starcraft(MAP, backend="sc2")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("map_name", ["protoss_5_vs_5", "zerg_20_vs_23"])
@pytest.mark.parametrize("backend", ["smax", "auto"])
def test_smacv2_race_maps_need_starcraft(map_name, backend, monkeypatch):
    monkeypatch.setattr(games, "smacv2_available", lambda: False)
    with pytest.raises(ValueError, match=f"map '{map_name}' needs StarCraft II .*smacv2_5_units.*"
                                         "SMAX cannot express it: use --backend sc2") as e:
        games.make_starcraft(map_name, backend=backend)
    assert "\n" not in str(e.value)
    with pytest.raises(RuntimeError, match=r"SMACv2 \(pip install git\+https://github.com/oxwhirl/smacv2.git\)"):
        games.make_starcraft(map_name, backend="sc2")


def test_smacv2_maps_are_listed():
    assert {f"smacv2_{n}_units" for n in (5, 10, 20)} <= set(games.SMAX_MAPS)
    assert not any(m in games.SMAX_MAPS for m in games.SMACV2_SC2_MAPS)
    assert {"protoss_5_vs_5", "terran_5_vs_5", "zerg_5_vs_5", "zerg_10_vs_11", "terran_20_vs_23"} <= set(
        games.SMACV2_SC2_MAPS)
    assert all(games.SMAC_MAPS[m].limit == 200 for m in games.SMACV2_SC2_MAPS + ["smacv2_20_units"])


# ---------------------------------------------------------------- StarCraft II: SMACv2 (stand-in)
@pytest.fixture
def fake_smacv2(tmp_path, monkeypatch):
    """A `smacv2` package whose capability wrapper is fake_sc2.FakeCapabilityEnvWrapper, and an SC2PATH."""
    pkg = tmp_path / "pkg" / "smacv2" / "env" / "starcraft2"
    pkg.mkdir(parents=True)
    for d in (pkg.parents[1], pkg.parent, pkg):
        (d / "__init__.py").write_text("")
    (pkg / "wrapper.py").write_text(
        "from fake_sc2 import FakeCapabilityEnvWrapper as StarCraftCapabilityEnvWrapper\n")
    (tmp_path / "StarCraftII").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))  # the spawned workers get the parent's sys.path
    monkeypatch.setenv("SC2PATH", str(tmp_path / "StarCraftII"))
    yield
    for name in [n for n in sys.modules if n == "smacv2" or n.startswith("smacv2.")]:
        del sys.modules[name]


def test_sc2_smacv2_path_config_and_time_outs(fake_smacv2):
    assert games.smacv2_available() and not games.sc2_available()
    env = games.make_starcraft("protoss_5_vs_5", num_envs=2, seed=7, backend="auto", episode_limit=4)
    try:
        assert env.backend == "sc2" and (env.n_agents, env.n_actions, env.episode_limit) == (5, 11, 4)
        kw = env.env_info["kwargs"]  # what env 0 was built with
        assert kw["map_name"] == "10gen_protoss" and kw["seed"] == 7
        assert {k: kw[k] for k in games.SMACV2_ENV_ARGS} == {
            "conic_fov": False, "use_unit_ranges": True, "min_attack_range": 2, "obs_own_pos": True,
            "fully_observable": False}
        cfg = kw["capability_config"]
        assert (cfg["n_units"], cfg["n_enemies"]) == (5, 5)
        assert cfg["team_gen"] == {"dist_type": "weighted_teams", "unit_types": ["stalker", "zealot", "colossus"],
                                   "weights": [0.45, 0.45, 0.1], "observe": True}
        assert cfg["start_positions"] == {"dist_type": "surrounded_and_reflect", "p": 0.5, "map_x": 32, "map_y": 32}

        obs, state, avail = env.reset()
        battle = 2 + obs[:, :, 0].sum(1).astype(int) % 7  # the stand-in's battle length per env
        t = np.zeros(2, int)
        seen = set()
        for _ in range(40):
            a = np.ones((2, 5), np.int64)
            a[:, 0] = np.arange(2)  # env 0's actions sum to 4 (even), env 1's to 5 (odd)
            obs, state, avail, reward, done, info = env.step(a)
            t += 1
            for e in np.flatnonzero(done):
                if battle[e] <= 4:  # the battle ended: won iff the actions summed to an even number
                    assert not info["timeout"][e] and info["won"][e] == (e == 0) and t[e] == battle[e]
                else:  # cut at the limit: SMACv2 says so only through its time-out counter
                    assert info["timeout"][e] and not info["won"][e] and t[e] == 4
                assert info["episode_length"][e] == t[e]
                seen.add(bool(info["timeout"][e]))
                t[e] = 0
                battle[e] = 2 + int(obs[e, :, 0].sum()) % 7
        assert seen == {True, False}
    finally:
        env.close()
    other = games.make_starcraft("zerg_10_vs_11", num_envs=1, seed=0, backend="sc2")
    try:
        cfg = other.env_info["kwargs"]["capability_config"]
        assert (other.n_agents, other.n_actions, other.episode_limit) == (10, 17, 200)
        assert cfg["team_gen"]["unit_types"] == ["zergling", "baneling", "hydralisk"]
        assert cfg["team_gen"]["exception_unit_types"] == ["baneling"]
        assert (cfg["n_units"], cfg["n_enemies"]) == (10, 11)
    finally:
        other.close()
    assert games.make_starcraft(MAP, num_envs=E, backend="auto").backend == "smax"  # SMAX-only map


def test_sc2_smacv2_draws_repeat_by_seed(fake_smacv2):
    """SMACv2 draws teams and positions with unseeded generators (nested ones too); seeded from the
    env's seed, the sequence of drawn scenarios repeats."""
    def draws(seed):
        env = games.make_starcraft("terran_5_vs_5", num_envs=2, seed=seed, backend="sc2")
        try:
            obs, state, avail = env.reset()
            out = [obs[:, :, :2].copy()]
            for _ in range(25):
                obs, state, avail, reward, done, info = env.step(np.ones((2, 5), np.int64))
                out += [obs[e, :, :2].copy() for e in np.flatnonzero(done)]
            return out
        finally:
            env.close()

    a, b, c = draws(3), draws(3), draws(4)
    assert len(a) > 6 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert len({float(x[..., 1].ravel()[0]) for x in a}) > 3  # the start offset differs between episodes


# ---------------------------------------------------------------- every script runs on smacv2_5_units
# each script's own smoke-test settings (tests/test_<script>.py) with --map smacv2_5_units, fop and fsv
# for 800 env steps (SMACv2 episodes are longer than 3m's: at 400 no update had happened yet); run
# in this process (a subprocess each would pay the torch and jax imports again: ~15 s apiece here)
SMOKE = {
    "mazero": ["--num-envs", "8", "--num-simulations", "4", "--reanalyse-simulations", "2", "--batch-size", "8",
               "--min-replay-size", "40", "--updates-per-env-step", "0.05", "--eval-episodes", "8",
               "--eval-interval", "200", "--checkpoint-interval", "200", "--target-update-interval", "2",
               "--hidden-size", "16", "--total-timesteps", "400"],
    "mag": ["--preset", "cpu", "--num-envs", "8", "--hidden", "16", "--deter", "16", "--n-categoricals", "4",
            "--n-classes", "4", "--attn-heads", "2", "--rm-hidden", "16", "--model-epochs", "2", "--rm-epochs", "2",
            "--model-batch-size", "4", "--seq-length", "6", "--imag-batch-size", "2", "--horizon", "3",
            "--mag-l", "2", "--mag-h", "2", "--ppo-epochs", "1", "--min-buffer-size", "64", "--eval-episodes", "8",
            "--eval-interval", "100000", "--seed", "3", "--total-timesteps", "240"],
    "fop": ["--num-envs", "8", "--batch-size", "4", "--buffer-size", "64", "--learning-starts", "4",
            "--eval-episodes", "8", "--eval-interval", "800", "--checkpoint-interval", "800", "--log-interval", "1",
            "--total-timesteps", "800"],
    "fsv": ["--num-envs", "8", "--eval-episodes", "8", "--learning-starts", "8", "--batch-size", "8",
            "--eval-interval", "800", "--checkpoint-interval", "800", "--total-timesteps", "800"],
}


@pytest.mark.parametrize("script", list(SMOKE))
def test_script_runs_on_smacv2_5_units(script, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--map", MAP, *SMOKE[script]])
    code = 0
    try:
        runpy.run_path(str(ROOT / f"{script}.py"), run_name="__main__")
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    total = int(SMOKE[script][SMOKE[script].index("--total-timesteps") + 1])
    evals = re.findall(r"^eval at step ([\d,]+): win rate ([\d.]+), return ([-\d.]+) \(8 episodes", out.out, re.M)
    assert evals and evals[0][0] == "0", out.out[-3000:]
    assert int(evals[-1][0].replace(",", "")) >= total and 0.0 <= float(evals[-1][1]) <= 1.0
    updates = re.findall(r"^step [\d,]+/[\d,]+ \(100%\) \| .* \| ([\d,]+) updates \|", out.out, re.M)
    assert updates and int(updates[-1].replace(",", "")) >= 1, out.out[-3000:]  # the networks took smacv2's sizes
    assert (tmp_path / "runs").is_dir() and len(list((tmp_path / "runs").iterdir())) == 1
