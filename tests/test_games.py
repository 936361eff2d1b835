"""games.py: toy payoffs, the SMAX backend (shapes, masks, auto-reset, seeding, rewards, episode
limits, every map), the SC2 backend's batching against a stand-in, and the error messages."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import games

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_sc2  # noqa: E402


# ---------------------------------------------------------------- policies used by the tests
def random_policy(avail, rng):
    """Uniform over the available actions of each agent: [E,N,A] -> [E,N]."""
    u = rng.random(avail.shape[:2])[..., None]
    cdf = np.cumsum(avail / avail.sum(-1, keepdims=True), -1)
    return np.minimum((u > cdf).sum(-1), avail.shape[-1] - 1)


def scripted_policy(env, state, avail):
    """Attack the weakest enemy in range, else walk towards the closest (games.SMAXStarCraft)."""
    return env.scripted_actions(state, avail)


def play(env, policy, episodes, rng=None):
    """Run until `episodes` episodes have ended; returns (won, return, length, timeout) arrays."""
    obs, state, avail = env.reset()
    out = []
    while len(out) < episodes:
        a = policy(env, state, avail) if policy is scripted_policy else random_policy(avail, rng)
        obs, state, avail, reward, done, info = env.step(a)
        for e in np.flatnonzero(done):
            out.append((info["won"][e], info["episode_return"][e], info["episode_length"][e],
                        info["timeout"][e]))
    return tuple(np.array(x) for x in zip(*out[:episodes]))


@pytest.fixture(scope="module")
def env3m():
    return games.make_starcraft("3m", num_envs=8, seed=0, backend="smax")


# ---------------------------------------------------------------- toy games
def test_matrix_game_payoff_exact():
    env = games.MatrixGame(num_envs=9)
    obs, state, avail = env.reset()
    assert obs.shape == (9, 2, 1) and state.shape == (9, 1) and avail.shape == (9, 2, 3)
    a = np.array([[i, j] for i in range(3) for j in range(3)])
    *_, reward, done, info = env.step(a)
    np.testing.assert_array_equal(reward, [8, -12, -12, -12, 0, 0, -12, 0, 0])
    assert done.all() and info["won"].tolist() == [True] + [False] * 8


def test_mtq_payoff_exact():
    # the papers' formula, by hand: optimum 10 at (5,5), local optimum 0 at (-5,-5)
    assert games.mtq_reward(5, 5) == 10.0
    assert games.mtq_reward(-5, -5) == 0.0
    a1, a2 = 1.0, -2.0
    f1 = 0.8 * (-((a1 + 5) / 3) ** 2 - ((a2 + 5) / 3) ** 2)
    f2 = -((a1 - 5) ** 2) - (a2 - 5) ** 2 + 10
    assert games.mtq_reward(a1, a2) == max(f1, f2)
    env = games.MaxOfTwoQuadratics(num_envs=3)
    *_, reward, done, info = env.step(np.array([[5.0, 5.0], [-5.0, -5.0], [50.0, 5.0]]))
    np.testing.assert_allclose(reward, [10.0, 0.0, games.mtq_reward(10.0, 5.0)])  # 50 clipped to 10
    assert info["won"].tolist() == [True, False, False]


def test_mtq_clips_to_bounds():
    env = games.MaxOfTwoQuadratics(num_envs=1)
    *_, reward, _, _ = env.step(np.array([[50.0, -50.0]]))
    assert reward[0] == np.float32(games.mtq_reward(10.0, -10.0))


def test_bandit_payoff_exact():
    env = games.Bandit(num_envs=4)
    *_, reward, done, info = env.step(np.array([0, 17, 98, 99]))
    np.testing.assert_array_equal(reward, [0, 17, 98, 99])
    assert info["won"].tolist() == [False, False, False, True]


# ---------------------------------------------------------------- SMAX backend
def test_import_is_numpy_only():
    code = "import sys, games; bad = {'jax', 'jaxmarl', 'torch', 'smac'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.parametrize("map_name,n,m", [("3m", 3, 3), ("2s3z", 5, 5), ("3s_vs_5z", 3, 5)])
def test_shapes_and_dtypes(map_name, n, m):
    env = games.make_starcraft(map_name, num_envs=8, seed=1, backend="smax")  # 8: shares compiles
    assert (env.n_agents, env.n_actions, env.backend) == (n, 6 + m, "smax")
    assert env.episode_limit == games.SMAC_MAPS[map_name].limit
    obs, state, avail = env.reset()
    assert obs.shape == (8, n, env.obs_dim) and obs.dtype == np.float32
    assert state.shape == (8, env.state_dim) and state.dtype == np.float32
    assert avail.shape == (8, n, 6 + m) and avail.dtype == np.float32
    # at the start every agent is alive: no-op unavailable, stop available, nobody in range
    assert (avail[..., 0] == 0).all() and (avail[..., 1] == 1).all() and (avail[..., 6:] == 0).all()
    obs, state, avail, reward, done, info = env.step(np.ones((8, n), np.int64))
    assert reward.shape == (8,) and reward.dtype == np.float32 and done.dtype == bool
    assert set(info) == {"won", "timeout", "episode_return", "episode_length"}
    assert all(v.shape == (8,) for v in info.values())


def test_jax_runs_on_cpu(env3m):
    import jax
    assert jax.devices()[0].platform == "cpu"


def test_unavailable_action_is_rejected(env3m):
    obs, state, avail = env3m.reset()
    a = np.ones((8, 3), np.int64)
    a[5, 2] = 6  # attack enemy 0: out of range at the start
    with pytest.raises(ValueError, match="env 5 agent 2: action 6 is not available"):
        env3m.step(a)
    with pytest.raises(ValueError, match="shape"):
        env3m.step(np.ones((8, 2), np.int64))
    env3m.reset()


def test_random_play_never_needs_unavailable_actions_and_dead_agents_only_noop(env3m):
    rng = np.random.default_rng(0)
    obs, state, avail = env3m.reset()
    saw_dead = False
    for _ in range(200):
        obs, state, avail, reward, done, info = env3m.step(random_policy(avail, rng))
        dead = avail[..., 0] == 1
        saw_dead |= dead.any()
        assert (avail[dead][:, 1:] == 0).all()  # a dead agent's only action is the no-op
        assert (avail.sum(-1) >= 1).all()
        assert (reward >= 0).all()
    assert saw_dead


def test_walls_block_instead_of_kill():
    """An agent that keeps walking west never reaches the border: the move becomes unavailable."""
    env = games.make_starcraft("2m_vs_1z", num_envs=1, seed=0, backend="smax")
    obs, state, avail = env.reset()
    west_masked = False
    for _ in range(30):
        a = np.where(avail[0, :, 5] > 0, 5, np.argmax(avail[0], -1))[None]
        obs, state, avail, reward, done, info = env.step(a)
        x = state[0, 1:20:10][:2]  # the two marines' scaled x
        assert (np.abs(x) < 1.0).all() or done[0]
        west_masked |= bool((avail[0, :, 5] == 0).any() and (avail[0, :, 0] == 0).all())
    assert west_masked


def test_auto_reset_and_episode_info(env3m):
    rng = np.random.default_rng(1)
    obs, state, avail = env3m.reset()
    steps = np.zeros(8, int)
    ret = np.zeros(8)
    ended = 0
    A = env3m.n_actions
    while ended < 20:
        obs, state, avail, reward, done, info = env3m.step(random_policy(avail, rng))
        steps += 1
        ret += reward
        for e in np.flatnonzero(done):
            assert info["episode_length"][e] == steps[e]
            assert info["episode_return"][e] == pytest.approx(ret[e], rel=1e-4, abs=1e-4)
            # the returned obs/state are the first of the next episode: everyone alive, full health,
            # no last actions, start positions on the west (allies) and east (enemies) sides
            units = state[e, :60].reshape(6, 10)
            np.testing.assert_allclose(units[:, 0], 1.0)
            assert (units[:3, 1] < -0.3).all() and (units[3:, 1] > 0.3).all()
            assert (state[e, 60:60 + 3 * A] == 0).all()
            assert (avail[e, :, 0] == 0).all()
            steps[e], ret[e] = 0, 0.0
            ended += 1
        assert (info["episode_length"][~done] == 0).all() and not info["won"][~done].any()


def test_same_seed_same_trajectory():
    def rollout(seed):
        env = games.make_starcraft("3m", num_envs=8, seed=seed, backend="smax")
        rng = np.random.default_rng(123)
        obs, state, avail = env.reset()
        trace = [obs.copy()]
        for _ in range(40):
            obs, state, avail, reward, done, info = env.step(random_policy(avail, rng))
            trace += [obs.copy(), state.copy(), reward.copy(), done.copy()]
        return trace

    a, b, c = rollout(0), rollout(0), rollout(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_scripted_beats_random_and_won_episodes_pay_20(env3m):
    won_s, ret_s, len_s, to_s = play(env3m, scripted_policy, 48)
    won_r, ret_r, len_r, to_r = play(env3m, None, 48, rng=np.random.default_rng(2))
    assert won_s.mean() >= 0.7 and won_r.mean() <= 0.2, (won_s.mean(), won_r.mean())
    # SMAC's scaled reward: killing every enemy and winning pays exactly 20 over the episode
    np.testing.assert_allclose(ret_s[won_s], 20.0, rtol=1e-4)
    assert (ret_r[~won_r] < 20.0).all()


def test_scripted_baseline_writes_per_seed_rows_and_a_summary(tmp_path):
    """benchmarks/scripted_baseline.py: one row per (seed, metric) of the episodes' means, the summary's mean theirs;
    a map SMAX cannot play is one line, exit 2."""
    import csv

    script = ROOT / "benchmarks" / "scripted_baseline.py"
    r = subprocess.run([sys.executable, str(script), "--maps", "3m", "--seeds", "0", "1", "--episodes", "8",
                        "--num-envs", "8", "--out", str(tmp_path / "s")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    keys = {(x["script"], x["map"], x["variant"], x["step"]) for x in rows}
    assert keys == {("scripted", "3m", "attack_weakest", "0")}
    win = {x["seed"]: float(x["value"]) for x in rows if x["metric"] == "eval/win_rate"}
    length = [float(x["value"]) for x in rows if x["metric"] == "eval/episode_length"]
    assert set(win) == {"0", "1"} and all(0 <= w <= 1 and w * 8 == round(w * 8) for w in win.values())
    assert all(5 <= n <= 60 for n in length)  # battles, not time-outs at 3m's limit of 60
    summary = {(x["seed"], x["metric"]): float(x["value"]) for x in csv.DictReader(open(tmp_path / "s_summary.csv"))}
    assert summary[("seeds", "eval/win_rate")] == 2
    assert summary[("mean", "eval/win_rate")] == pytest.approx(np.mean(list(win.values())), abs=1e-5)
    bad = subprocess.run([sys.executable, str(script), "--maps", "MMM2", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


@pytest.mark.parametrize("map_name", ["3m", "2s3z", "3s_vs_3z"])
def test_smac_episode_limit_is_sensible(map_name):
    """SMAX's step is 0.5 s like SMAC's, so SMAC's limit should let a scripted battle end (no
    time-outs, median length at most 3/4 of the limit) without being absurdly long (median at
    least 1/10 of it). Measured medians: 3m 14 of 60 steps, 2s3z 72 of 120, 3s_vs_3z 71 of 150."""
    env = games.make_starcraft(map_name, num_envs=8, seed=0, backend="smax")
    won, ret, length, timeout = play(env, scripted_policy, 16)
    limit = games.SMAC_MAPS[map_name].limit
    assert timeout.mean() <= 0.1, (map_name, timeout.mean())
    assert 0.1 * limit <= np.median(length) <= 0.75 * limit, (map_name, np.median(length))


def test_state_cooldown_stays_in_0_1_while_idle():
    """SMAX counts an idle weapon's cooldown on below zero; the state's fraction is clipped to [0, 1]
    (before, 30 idle steps on 3m gave -12)."""
    env = games.make_starcraft("3m", num_envs=2, seed=0, backend="smax", episode_limit=5)  # replay tests' jit
    obs, state, avail = env.reset()
    for t in range(3):
        obs, state, avail, *_ = env.step(np.ones((2, 3), np.int64))  # everyone stops
    cd = state[:, :60].reshape(2, 6, 10)[..., 3]
    assert (cd == 0).all()  # nobody fired: SMAX's own value is -1.5 s here


def test_episode_limit_override_marks_timeouts():
    env = games.make_starcraft("3m", num_envs=2, seed=0, backend="smax", episode_limit=4)
    assert env.episode_limit == 4
    obs, state, avail = env.reset()
    for t in range(4):
        obs, state, avail, reward, done, info = env.step(np.ones((2, 3), np.int64))  # everyone stops
    assert done.all() and info["timeout"].all() and not info["won"].any()
    assert (info["episode_length"] == 4).all()


@pytest.mark.parametrize("map_name", games.SMAX_MAPS)
def test_every_registered_map_builds_and_resets(map_name):
    """Construction and a reset for every map (the step is the same code for every map; it runs
    on 3m, 2s3z, 3s_vs_5z, 3s_vs_3z and 2m_vs_1z above, which keeps the suite's compile time low)."""
    spec = games.SMAC_MAPS[map_name]
    env = games.make_starcraft(map_name, num_envs=1, seed=0, backend="smax")
    n, m = spec.drawn or (sum(c for c, _ in spec.allies), sum(c for c, _ in spec.enemies))
    assert (env.n_agents, env.n_enemies, env.n_actions) == (n, m, 6 + m)
    assert env.obs_dim == 13 * (n - 1) + 13 * m + 10
    assert env.state_dim == 10 * (n + m) + n * (6 + m)
    obs, state, avail = env.reset()
    assert obs.shape == (1, n, env.obs_dim) and np.isfinite(obs).all() and np.isfinite(state).all()
    assert (avail[0, :, 1] == 1).all()  # everyone alive at the start


def test_paper_maps_are_registered():
    for name in ["3m", "8m", "2s3z", "3s5z", "5m_vs_6m", "8m_vs_9m", "10m_vs_11m", "27m_vs_30m",
                 "3s5z_vs_3s6z", "3s_vs_3z", "3s_vs_4z", "3s_vs_5z", "2m_vs_1z", "corridor", "6h_vs_8z"]:
        assert games.SMAC_MAPS[name].smax, name
    limits = {"3m": 60, "8m": 120, "2s3z": 120, "5m_vs_6m": 70, "3s_vs_5z": 250, "corridor": 400}
    assert {k: games.SMAC_MAPS[k].limit for k in limits} == limits


# ---------------------------------------------------------------- replays
@pytest.fixture(scope="module")
def env3m_limit5():
    return games.make_starcraft("3m", num_envs=2, seed=0, backend="smax", episode_limit=5)


def gif_frames(path):
    """(frame count, summed frame durations in ms, size) of a GIF."""
    from PIL import Image
    with Image.open(path) as im:
        total = 0
        for i in range(im.n_frames):
            im.seek(i)
            total += im.info["duration"]
        return im.n_frames, total, im.size


def test_replay_gif_of_a_five_step_episode(env3m_limit5, tmp_path):
    """Everyone stops: env 0's episode is cut at the 5-step limit. The GIF has the first state plus
    REPLAY_FRAMES_PER_STEP frames per step, each shown REPLAY_FRAME_MS (the last one longer), and
    the recording stops at env 0's done: steps played after it change nothing."""
    env = env3m_limit5
    env.start_recording()
    env.reset()
    for t in range(5):
        *_, done, info = env.step(np.ones((2, 3), np.int64))
    assert done[0] and info["timeout"][0]
    for t in range(3):  # the next episode of env 0 is not recorded
        env.step(np.ones((2, 3), np.int64))
    path = tmp_path / "videos" / "sub" / "step_5.gif"  # parent folders are created
    assert env.save_replay(str(path)) == str(path)
    assert path.stat().st_size > 1000
    k = games.REPLAY_FRAMES_PER_STEP
    n, total_ms, size = gif_frames(path)
    assert n == 1 + 5 * k == 21
    assert total_ms == 20 * games.REPLAY_FRAME_MS + games.REPLAY_LAST_FRAME_MS
    assert size == (320, 320)
    # frames_per_step=1: one frame per step
    env.start_recording()
    env.reset()
    for t in range(5):
        env.step(np.ones((2, 3), np.int64))
    assert gif_frames(env.save_replay(str(tmp_path / "k1.gif"), frames_per_step=1))[0] == 6


def test_replay_shows_the_played_episode_including_its_last_step(env3m, monkeypatch, tmp_path):
    """The ticks re-simulated for the GIF end, step after step, in the states the env returned
    (same key split as the adapter's step), and the final step, whose returned state is already the
    next episode's, ends with every enemy dead in the won battle."""
    seen = {}

    def capture(path, smax, first_state, steps, *args, **kwargs):
        seen.update(first=first_state, steps=steps, kwargs=kwargs)
        return path

    monkeypatch.setattr(games, "render_smax_gif", capture)
    env3m.start_recording()
    obs, state, avail = env3m.reset()
    returned = [state[0]]
    while True:
        obs, state, avail, reward, done, info = env3m.step(scripted_policy(env3m, state, avail))
        returned.append(state[0])
        if done[0]:
            break
    assert info["won"][0]
    env3m.save_replay(str(tmp_path / "x.gif"))
    steps, T = seen["steps"], len(returned) - 1
    assert len(steps) == T and seen["kwargs"]["outcome"] == "won"
    half = env3m._smax.map_width / 2
    for t in range(T):
        units = returned[t].reshape(-1)[:60].reshape(6, 10)
        st = seen["first"] if t == 0 else steps[t - 1]
        pos = np.asarray(st.unit_positions if t == 0 else st.unit_positions[-1])
        hp = np.asarray(st.unit_health if t == 0 else st.unit_health[-1])
        alive = np.asarray(st.unit_alive if t == 0 else st.unit_alive[-1])
        cd = np.asarray(st.unit_weapon_cooldowns if t == 0 else st.unit_weapon_cooldowns[-1])
        max_hp = np.asarray(env3m._smax.unit_type_health)[0]  # all marines
        max_cd = np.asarray(env3m._smax.unit_type_weapon_cooldowns)[0]
        np.testing.assert_allclose(units[:, 1:3], (pos - half) / half * alive[:, None], atol=1e-4)
        np.testing.assert_allclose(units[:, 0], hp / max_hp * alive, atol=1e-4)
        # the weapon cooldowns carry SMAX's per-shot random deviation: a wrong step key shows here
        np.testing.assert_allclose(units[:, 3], np.clip(cd / max_cd, 0, 1) * alive, atol=1e-4)
    last = np.asarray(steps[-1].unit_alive[-1])
    assert not last[3:].any() and last[:3].any()  # the killing blow is in the replay


def test_no_recording_writes_nothing_and_costs_nothing(env3m_limit5, tmp_path):
    env = env3m_limit5
    env.reset()
    for t in range(6):
        env.step(np.ones((2, 3), np.int64))
    assert env._record is None and not env._recording  # nothing copied while not recording
    with pytest.raises(RuntimeError, match=r"nothing was recorded; call start_recording\(\)"):
        env.save_replay(str(tmp_path / "videos" / "step_0.gif"))
    assert list(tmp_path.iterdir()) == []
    env.start_recording()
    with pytest.raises(RuntimeError, match="nothing was recorded"):  # armed, but no step played yet
        env.save_replay(str(tmp_path / "a.gif"))
    env.start_recording()
    env.reset()
    env.step(np.ones((2, 3), np.int64))
    with pytest.raises(ValueError, match="frames_per_step"):
        env.save_replay(str(tmp_path / "a.gif"), frames_per_step=9)
    with pytest.raises(ValueError, match="unknown renderer"):
        env.save_replay(str(tmp_path / "a.gif"), renderer="ffmpeg")
    env.save_replay(str(tmp_path / "a.gif"))
    with pytest.raises(RuntimeError, match="nothing was recorded"):  # a recording is saved once
        env.save_replay(str(tmp_path / "b.gif"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif"]


def test_replay_with_jaxmarls_visualiser(env3m_limit5, tmp_path):
    """renderer="jaxmarl": jaxmarl's SMAXVisualizer draws a pre-step frame and 8 tick frames per
    step at 64 ms, which GIF stores as 60 (pillow may merge identical frames, so the summed duration
    is what is exact).
    One step of an episode still running, as the visualiser takes about 0.5 s a frame."""
    env = env3m_limit5
    env.reset()
    env.step(np.ones((2, 3), np.int64))
    env.start_recording()  # mid-episode: records from the next step
    env.step(np.ones((2, 3), np.int64))
    path = env.save_replay(str(tmp_path / "viz.gif"), renderer="jaxmarl")
    n, total_ms, _ = gif_frames(path)
    assert 1 <= n <= 9 and total_ms == 9 * 60  # 64 ms, stored in GIF centiseconds


# ---------------------------------------------------------------- errors
def test_unknown_map_lists_maps():
    with pytest.raises(ValueError, match=r"unknown map '4m'; maps available: 3m, 8m, .*corridor"):
        games.make_starcraft("4m")


@pytest.mark.parametrize("map_name", ["MMM", "MMM2", "2c_vs_64zg", "so_many_baneling", "2s_vs_1sc",
                                      "protoss_5_vs_5"])
@pytest.mark.parametrize("backend", ["smax", "auto"])
def test_sc2_only_maps_say_they_need_starcraft(map_name, backend):
    with pytest.raises(ValueError, match=f"map '{map_name}' needs StarCraft II") as e:
        games.make_starcraft(map_name, backend=backend)
    assert "\n" not in str(e.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown backend"):
        games.make_starcraft("3m", backend="pysc2")
    with pytest.raises(ValueError, match="num_envs"):
        games.make_starcraft("3m", num_envs=0)
    if not games.sc2_available():
        with pytest.raises(RuntimeError, match="needs StarCraft II"):
            games.make_starcraft("3m", backend="sc2")


def test_pypi_smac3_is_not_mistaken_for_starcraft(monkeypatch, tmp_path):
    """A `smac` package without smac.env.starcraft2 (PyPI's SMAC3) must not select the SC2 backend."""
    (tmp_path / "smac").mkdir()
    (tmp_path / "smac" / "__init__.py").write_text("")
    (tmp_path / "StarCraftII").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SC2PATH", str(tmp_path / "StarCraftII"))
    sys.modules.pop("smac", None)
    assert not games.sc2_available()
    sys.modules.pop("smac", None)


# ---------------------------------------------------------------- SC2 backend (stand-in env)
def test_sc2_backend_batching_and_auto_reset():
    env = games.SC2StarCraft("3m", num_envs=3, seed=10, make_env=fake_sc2.make_fake)
    try:
        assert (env.n_agents, env.n_actions, env.obs_dim, env.state_dim, env.episode_limit) == (3, 5, 4, 2, 6)
        obs, state, avail = env.reset()
        assert obs.shape == (3, 3, 4) and state.shape == (3, 2) and avail.shape == (3, 3, 5)
        np.testing.assert_array_equal(obs[:, 0, 0], [10, 11, 12])  # env i seeded with seed + i
        episodes = {e: 0 for e in range(3)}
        t = np.zeros(3, int)
        rets = np.zeros(3)
        for _ in range(25):
            a = np.argmax(avail, -1)  # the first available action
            obs, state, avail, reward, done, info = env.step(a)
            t += 1
            rets += reward
            np.testing.assert_array_equal(reward, a.sum(1))
            for e in range(3):
                seed = 10 + e
                if done[e]:
                    length = 3 + (seed + episodes[e]) % 4
                    assert t[e] == length == info["episode_length"][e]
                    assert info["episode_return"][e] == rets[e]
                    assert info["won"][e] == (a[e].sum() % 2 == 0)
                    assert info["timeout"][e] == (not info["won"][e] and episodes[e] % 3 == 0)
                    episodes[e] += 1
                    t[e], rets[e] = 0, 0
                    # auto-reset: the returned obs is the first of the next episode
                    np.testing.assert_array_equal(obs[e, :, 1:3], [[episodes[e], 0]] * 3)
                else:
                    assert info["episode_length"][e] == 0
                    np.testing.assert_array_equal(obs[e, :, 2], [t[e]] * 3)
        assert min(episodes.values()) >= 3
        bad = np.argmax(avail, -1)
        bad[1, 0] = np.argmin(avail[1, 0])
        with pytest.raises(ValueError, match="env 1 agent 0"):
            env.step(bad)
    finally:
        env.close()


def test_sc2_timeout_read_from_smacs_counter():
    """Real SMAC (continuing_episode=False) reports a time-out only in its `timeouts` counter."""
    env = games.SC2StarCraft("3m", num_envs=2, seed=10, make_env=fake_sc2.make_fake_counting_timeouts)
    try:
        obs, state, avail = env.reset()
        episodes, timeouts = [0, 0], 0
        for _ in range(30):
            obs, state, avail, reward, done, info = env.step(np.argmax(avail, -1))
            for e in np.flatnonzero(done):
                assert info["timeout"][e] == (not info["won"][e] and episodes[e] % 3 == 0)
                timeouts += int(info["timeout"][e])
                episodes[e] += 1
        assert timeouts >= 1
    finally:
        env.close()


def test_sc2_save_replay_asks_env_0(tmp_path):
    """save_replay() sends env 0's worker a command that calls StarCraft2Env.save_replay() with the
    replay written next to the given path; SMAC returns None, so the file's path is looked up."""
    env = games.SC2StarCraft("3m", num_envs=2, seed=10, make_env=fake_sc2.make_fake)
    try:
        obs, state, avail = env.reset()
        with pytest.raises(RuntimeError, match="nothing was recorded"):
            env.save_replay(str(tmp_path / "videos" / "step_0.gif"))
        env.start_recording()
        for _ in range(4):
            obs, state, avail, *_ = env.step(np.argmax(avail, -1))
        out = env.save_replay(str(tmp_path / "videos" / "step_4.gif"))
        files = list((tmp_path / "videos").iterdir())
        assert len(files) == 1 and out == str(files[0])
        assert files[0].name.startswith("step_4_") and files[0].suffix == ".SC2Replay"
        seed, episodes = files[0].read_text().split()[1:4:2]
        assert seed == "10" and int(episodes) >= 1  # env 0 (seed 10), not env 1 (seed 11)
        with pytest.raises(RuntimeError, match="nothing was recorded"):  # saved once
            env.save_replay(str(tmp_path / "videos" / "step_8.gif"))
    finally:
        env.close()
