"""Every environment the four scripts play, behind one batched interface (README: "games.py").

    obs, state, avail = env.reset()                       # [E,N,obs_dim], [E,state_dim], [E,N,A]
    obs, state, avail, reward, done, info = env.step(actions)   # actions [E,N]; reward, done [E]

All arrays are NumPy float32 (actions int64 for discrete games). Environments auto-reset: where
`done[e]` is True, the obs/state/avail returned are the FIRST of the next episode of env e, and
`info` describes the episode that just ended: `info["won"]`, `info["episode_return"]`,
`info["episode_length"]` and `info["timeout"]` are [E] arrays whose entries are meaningful where
`done` is True (zero elsewhere). `timeout` marks episodes cut by the episode limit rather than
ended by the battle, for algorithms that bootstrap through time-outs.

Games
- `MatrixGame`: the non-monotonic one-step matrix game of QTRAN/FSV/FOP (payoff below).
- `MaxOfTwoQuadratics` (MTQ): the continuous one-step game of Wei et al. (2018), FSV Eq. 19.
- `Bandit`: the 100-armed bandit of the MAZero appendix B.4 (arm a pays a).
- `make_starcraft(map_name, num_envs, seed, backend)`: SMAC maps, played by the real StarCraft II
  (`backend="sc2"`, oxwhirl SMAC's `StarCraft2Env` in worker processes) or by SMAX, the JAX
  re-implementation shipped by `jaxmarl` (`backend="smax"`, the default here). `backend="auto"`
  takes SC2 when the SMAC package imports and StarCraft II is installed. SMACv2-style maps too
  (section below): SMAX's `smacv2_{5,10,20}_units` and, on StarCraft II, SMACv2's own
  `{protoss,terran,zerg}_{5_vs_5,10_vs_10,20_vs_20,10_vs_11,20_vs_23}`.

SMAX versus SMAC (what this adapter changes, and what it cannot)
- Action set: converted to SMAC's layout, A = 6 + n_enemies: 0 no-op (dead agents only), 1 stop,
  2 north, 3 south, 4 east, 5 west, 6+j attack enemy j. (SMAX's own is 0 N, 1 E, 2 S, 3 W, 4 stop,
  5+j attack, with "stop" as the dead agents' action.)
- Moves: SMAC's pathing forbids walking off the map; in SMAX touching the border kills the unit.
  The adapter masks a move whose displacement this step would reach the border, so walls block
  (as in SMAC) instead of kill. SMAX moves a fixed distance per step and an attack order deals
  damage only if the target is in range and the weapon is ready (no walk-to-target as in SC2).
- Attack availability: SMAX's type-specific attack range (marine 5, stalker 6, zealot 2, ...);
  SMAC uses a shooting range of 6 for every unit.
- Reward: SMAC's default (reward_only_positive, scaled so an episode's maximum is 20): enemy HP
  lost + 10 per enemy killed + 200 for a win, times 20 / (enemy max HP + 10 n_enemies + 200).
  SMAX's native reward (damage fraction + 1 on a win, at most 2) is not used. SMAX has no shields:
  protoss HP already includes them, so "HP lost" covers SMAC's health + shield damage.
- Win: all enemies dead with at least one ally alive (a simultaneous wipe-out is a draw, as in
  SMAC). SMAX gives no `battle_won`; the adapter derives it from the unit states.
- Episode limit: SMAC's per-map limit (3m 60, 8m 120, 2s3z 120, ...; `SMAC_MAPS`), not SMAX's
  100-step default. One SMAX step is 8 world ticks of 1/16 s, i.e. 0.5 s, the same duration as
  SMAC's step_mul 8, so SMAC's limits carry over; `tests/test_games.py` checks that scripted
  battles end well inside them.
- Observation: SMAX's unit list: per other ally and per enemy 13 features (health, dx, dy, last
  move x/y, last attack target, weapon cooldown, 6 unit-type bits), then 10 own features (health,
  x, y, cooldown, type bits). SMAC's has move-availability bits, distances and shields instead,
  and no enemy last actions or cooldowns; sizes differ (3m: 75 here, 30 in SMAC).
- State: per unit (allies then enemies) health fraction, position centred and scaled to [-1, 1],
  weapon cooldown as a fraction of the unit's full cooldown clipped to [0, 1] (SMAX lets an idle
  weapon's cooldown run below zero), 6 type bits (zeros when dead), then
  the allies' last actions one-hot (SMAC's `state_last_action`). SMAX's own world state is not
  normalised; this one is. Sizes differ from SMAC's (3m: 87 here, 48 in SMAC).
- The enemy is SMAX's scripted heuristic (attack the closest unit), not SC2's AI at difficulty 7;
  there is no terrain (corridor is an open field), no armour, splash, healing or flying units.
  Maps that need those (MMM, MMM2, 2c_vs_64zg, so_many_baneling, ...) are SC2-only.
- SMAX is deterministic given the seed; SC2 is not reliably reproducible.

SMACv2 (Ellis et al. 2023): unit types and start positions drawn every episode
- SMAX: `smacv2_5_units`, `smacv2_10_units`, `smacv2_20_units` (n allies vs n enemies), jaxmarl's
  scenarios of those names: Scenario(..., smacv2_position_generation=True,
  smacv2_unit_type_generation=True). At every reset SMAX draws each ally's type uniformly from its
  6 types (races mixed: marine, marauder, stalker, zealot, zergling, hydralisk) and the enemy team
  mirrors it unit for unit. Start positions are, with probability 1/2 each, "surround" (one team,
  allies or enemies at random, within +-2 of the centre, the other in 4 groups on the diagonals
  between the centre and the corners, +-2) or "reflect" (allies uniform on the west half, enemies
  at the mirror images). SMAX's draw puts a unit outside the map in about 1 episode in 10 (5 units;
  1 in 5 with 20), where it dies at the first tick; the adapter moves every start position at
  least SPAWN_MARGIN inside the border, as SC2 spawns units on the map.
- Everything else is as on the SMAC maps: action layout, masks, reward, win and time-out rules,
  normalised state. The state's type bits and health and cooldown fractions follow each
  episode's types, and the reward's scale uses the episode's enemies (their max HP + 10 per enemy
  + 200), so a won episode pays exactly 20 whatever was drawn. (SMACv2 fixes its scale from the
  enemies of its first episode, so its maximum varies with the draw.)
- Episode limit 200 for all three sizes: SMACv2's 10gen_* maps use 200 for 5, 10 and 20 units
  alike, and a SMAX step is 0.5 s as SMACv2's step_mul 8. Scripted battles (the tests' attack-the-
  weakest policy) end in a median of 36, 40 and 39 steps on 5, 10 and 20 units (longest 73; no
  time-outs in 48 episodes each); random play's longest were 164, 162 and 200.
- SMAX's heuristic enemy chases only units it sees (sight 8-10); otherwise it walks to the point
  opposite its start through the map centre. A team that stands still can stay unfound until the
  limit (SC2's AI attack-moves onto the allies).
- StarCraft II (`backend="sc2"`): SMACv2's maps through oxwhirl's `smacv2` package,
  `StarCraftCapabilityEnvWrapper` with map `10gen_<race>` and the capability config of its
  `sc2_gen_<race>.yaml` (`smacv2_capability_config`; races' unit types and weights in
  SMACV2_RACES) and that file's env arguments (SMACV2_ENV_ARGS: true sight and attack ranges, own
  position observed). SMACv2 draws with unseeded generators; the adapter seeds them from the env's
  seed, so the sequence of drawn scenarios is reproducible (the battles are not).
- A map one backend lacks says so in one line: `smacv2_*_units` on SC2, SMACv2's race maps on SMAX.

Replays (the scripts' --capture-video)
    env.start_recording()            # records env 0 from its next reset()/step() until that episode ends
    path = env.save_replay(path)     # SMAX: an animated GIF at path; SC2: SMAC's replay file (or None)
- SMAX: while recording, each step copies env 0's pre-step PRNG key and state (nothing is copied
  otherwise). save_replay re-simulates each step's 8 world ticks from them with SMAX's own
  `step_env(get_state_sequence=True)`, as jaxmarl's `SMAXVisualizer.expand_state_seq` does, but
  with the adapter's key split, so the GIF is the episode that was played, final step included
  (the state the env returns at `done` is already the next episode's). The default renderer
  (`render_smax_gif`, matplotlib's Agg canvas + pillow, no ffmpeg) draws in the visualiser's look,
  zoomed on the units, with health bars: 1 + 4 x steps frames (REPLAY_FRAMES_PER_STEP), 60 ms each
  (about 2x real time), the last held 1.5 s; about 15 ms a frame, i.e. 1-2 s for a 20-step 3m
  episode and 4-5 s for a 71-step 2s3z one, on one busy CPU core. `renderer="jaxmarl"` draws the
  same ticks with jaxmarl's `SMAXVisualizer` (9 frames a step; about 0.5 s a frame, mostly
  eager `lax.cond` calls and a second full-figure draw per frame: minutes for one episode).
  The first save_replay in a process also compiles the re-simulation (1-4 s).
- SC2: StarCraft II records its own game; save_replay() has env 0's worker call SMAC's
  `StarCraft2Env.save_replay()` with replay_dir/replay_prefix set so the file lands next to
  `path` as `<stem>_<UTC time>.SC2Replay`. SMAC plays a worker's episodes inside one SC2 game, so
  the replay holds every episode env 0 has played, the recorded one last.

JAX runs on the CPU only (it must never take GPU memory from PyTorch) and keeps a persistent
compilation cache (`$GAMES_JAX_CACHE`, default ~/.cache/marl-papers-jax) so a map compiles once.
This module imports only NumPy; jax/jaxmarl and smac are imported inside the backend that needs them.
"""

import contextlib
import importlib.util
import multiprocessing as mp
import os
import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np


# ----------------------------------------------------------------------------------------------
# Toy games
# ----------------------------------------------------------------------------------------------
def _toy_info(reward: np.ndarray, won: np.ndarray) -> dict:
    n = len(reward)
    return {"won": won, "episode_return": reward.astype(np.float32),
            "episode_length": np.ones(n, np.int64), "timeout": np.zeros(n, bool)}


class MatrixGame:
    """Non-monotonic matrix game (QTRAN; FSV Table 1; FOP Sec. 5.1): 2 agents, 3 actions (A, B, C),
    one step. Rows are agent 1's action, columns agent 2's. The optimum (A, A) = 8 is surrounded by
    -12, so greedy monotonic factorisations settle on B/C. Obs = state = the constant [1.0].
    `info["won"]` marks the optimal joint action."""

    PAYOFF = np.array([[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]], np.float32)
    n_agents, n_actions, obs_dim, state_dim, episode_limit = 2, 3, 1, 1, 1

    def __init__(self, num_envs: int = 1):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs

    def _first(self):
        e = self.num_envs
        return (np.ones((e, 2, 1), np.float32), np.ones((e, 1), np.float32),
                np.ones((e, 2, 3), np.float32))

    def reset(self):
        return self._first()

    def step(self, actions):
        a = np.asarray(actions).reshape(self.num_envs, 2)
        reward = self.PAYOFF[a[:, 0], a[:, 1]]  # [E]
        done = np.ones(self.num_envs, bool)
        return (*self._first(), reward, done, _toy_info(reward, reward == self.PAYOFF.max()))

    def close(self):
        pass


def mtq_reward(a1, a2):
    """Max of Two Quadratics, FSV Eq. 19 (Wei et al. 2018), in the papers' form:
    f1 = 0.8 [-((a1+5)/3)^2 - ((a2+5)/3)^2],  f2 = 1.0 [-(a1-5)^2 - (a2-5)^2] + 10,  r = max(f1, f2).
    Local optimum 0 at (-5, -5) with a wide basin, global optimum 10 at (5, 5) with a narrow one.
    (Some public code divides the square by s instead of squaring (a-x)/s, which narrows f1's
    basin 3x; we follow the papers.)"""
    a1, a2 = np.asarray(a1, np.float64), np.asarray(a2, np.float64)
    f1 = 0.8 * (-((a1 + 5.0) / 3.0) ** 2 - ((a2 + 5.0) / 3.0) ** 2)
    f2 = 1.0 * (-((a1 - 5.0) / 1.0) ** 2 - ((a2 - 5.0) / 1.0) ** 2) + 10.0
    return np.maximum(f1, f2)


class MaxOfTwoQuadratics:
    """MTQ as a batched one-step game: 2 agents, each a 1-D continuous action in [-10, 10]
    (actions outside are clipped to the bounds), reward `mtq_reward`. Obs = state = [1.0].
    `info["won"]` marks a joint action within 0.5 of the global optimum (5, 5)."""

    n_agents, action_dim, obs_dim, state_dim, episode_limit = 2, 1, 1, 1, 1
    action_low, action_high = -10.0, 10.0
    optimum = (5.0, 5.0)

    def __init__(self, num_envs: int = 1):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs

    def _first(self):
        e = self.num_envs
        return np.ones((e, 2, 1), np.float32), np.ones((e, 1), np.float32), None

    def reset(self):
        return self._first()

    def step(self, actions):
        a = np.clip(np.asarray(actions, np.float64).reshape(self.num_envs, 2),
                    self.action_low, self.action_high)
        reward = mtq_reward(a[:, 0], a[:, 1]).astype(np.float32)
        won = np.hypot(a[:, 0] - 5.0, a[:, 1] - 5.0) <= 0.5
        return (*self._first(), reward, np.ones(self.num_envs, bool), _toy_info(reward, won))

    def close(self):
        pass


class Bandit:
    """The 100-armed bandit of MAZero appendix B.4: one agent, arm a pays a (values 0..99),
    one step. Obs = state = [1.0]; `info["won"]` marks the best arm."""

    n_agents, obs_dim, state_dim, episode_limit = 1, 1, 1, 1

    def __init__(self, num_envs: int = 1, n_arms: int = 100):
        if num_envs < 1 or n_arms < 2:
            raise ValueError(f"need num_envs >= 1 and n_arms >= 2, got {num_envs}, {n_arms}")
        self.num_envs, self.n_actions = num_envs, n_arms
        self.values = np.arange(n_arms, dtype=np.float32)

    def _first(self):
        e = self.num_envs
        return (np.ones((e, 1, 1), np.float32), np.ones((e, 1), np.float32),
                np.ones((e, 1, self.n_actions), np.float32))

    def reset(self):
        return self._first()

    def step(self, actions):
        a = np.asarray(actions).reshape(self.num_envs)
        reward = self.values[a]
        return (*self._first(), reward, np.ones(self.num_envs, bool),
                _toy_info(reward, a == self.n_actions - 1))

    def close(self):
        pass


# ----------------------------------------------------------------------------------------------
# StarCraft maps
# ----------------------------------------------------------------------------------------------
# SMAX unit types (index into SMAX's unit tables): marine, marauder, stalker, zealot, zergling, hydralisk
_TYPE = {"m": 0, "M": 1, "s": 2, "z": 3, "zg": 4, "h": 5}


@dataclass(frozen=True)
class MapSpec:
    """A map `make_starcraft` knows: its episode limit and units. SMAC maps (SMAC's `smac_maps.py`):
    the units as (count, type) pairs for allies and enemies; `allies is None` marks a map SMAX
    cannot express. SMAX's SMACv2-style scenarios: `drawn` = (n allies, n enemies) whose unit types
    and start positions are drawn every episode (SMAX only). SMACv2 on StarCraft II: `smacv2` =
    (race, n allies, n enemies), played by oxwhirl's `smacv2` package (StarCraft II only)."""
    limit: int
    allies: Optional[tuple] = None
    enemies: Optional[tuple] = None
    note: str = ""
    drawn: Optional[tuple] = None
    smacv2: Optional[tuple] = None

    @property
    def smax(self) -> bool:
        return self.allies is not None or self.drawn is not None

    @property
    def sc2(self) -> bool:
        return self.drawn is None

    def unit_types(self, side):
        return [_TYPE[t] for count, t in side for _ in range(count)]


# SMACv2 (Ellis et al. 2023; oxwhirl/smacv2): episode limit of its 10gen_* maps, for every team size
SMACV2_LIMIT = 200
# SMACv2's unit types and weights per race (its sc2_gen_<race>.yaml), and the type that may not make
# up a whole team (exception_unit_types)
SMACV2_RACES = {
    "protoss": (("stalker", "zealot", "colossus"), (0.45, 0.45, 0.1), ()),
    "terran": (("marine", "marauder", "medivac"), (0.45, 0.45, 0.1), ("medivac",)),
    "zerg": (("zergling", "baneling", "hydralisk"), (0.45, 0.1, 0.45), ("baneling",)),
}
_SMACV2_SIZES = ((5, 5), (10, 10), (20, 20), (10, 11), (20, 23))
_SMAX_SMACV2 = "SMAX's SMACv2-style scenarios are smacv2_5_units, smacv2_10_units, smacv2_20_units"

SMAC_MAPS = {
    "3m": MapSpec(60, ((3, "m"),), ((3, "m"),)),
    "8m": MapSpec(120, ((8, "m"),), ((8, "m"),)),
    "25m": MapSpec(150, ((25, "m"),), ((25, "m"),)),
    "2m_vs_1z": MapSpec(150, ((2, "m"),), ((1, "z"),)),
    "5m_vs_6m": MapSpec(70, ((5, "m"),), ((6, "m"),)),
    "8m_vs_9m": MapSpec(120, ((8, "m"),), ((9, "m"),)),
    "10m_vs_11m": MapSpec(150, ((10, "m"),), ((11, "m"),)),
    "27m_vs_30m": MapSpec(180, ((27, "m"),), ((30, "m"),)),
    "2s3z": MapSpec(120, ((2, "s"), (3, "z")), ((2, "s"), (3, "z"))),
    "3s5z": MapSpec(150, ((3, "s"), (5, "z")), ((3, "s"), (5, "z"))),
    "3s5z_vs_3s6z": MapSpec(170, ((3, "s"), (5, "z")), ((3, "s"), (6, "z"))),
    "3s_vs_3z": MapSpec(150, ((3, "s"),), ((3, "z"),)),
    "3s_vs_4z": MapSpec(200, ((3, "s"),), ((4, "z"),)),
    "3s_vs_5z": MapSpec(250, ((3, "s"),), ((5, "z"),)),
    "6h_vs_8z": MapSpec(150, ((6, "h"),), ((8, "z"),)),
    "corridor": MapSpec(400, ((6, "z"),), ((24, "zg"),),
                        note="SMAX has no terrain: the corridor is an open field"),
    # Maps whose units or terrain SMAX cannot express: StarCraft II only.
    "MMM": MapSpec(150, note="medivacs (healing, flying)"),
    "MMM2": MapSpec(180, note="medivacs (healing, flying)"),
    "1c3s5z": MapSpec(180, note="a colossus (splash, cliff-walking)"),
    "2c_vs_64zg": MapSpec(400, note="colossi (splash, cliff-walking) and terrain"),
    "so_many_baneling": MapSpec(100, note="banelings (suicide splash)"),
    "bane_vs_bane": MapSpec(200, note="banelings (suicide splash)"),
    "2s_vs_1sc": MapSpec(300, note="a spine crawler (static building)"),
    # SMAX's SMACv2-style scenarios (jaxmarl's smacv2_*_units): SMAX only.
    **{f"smacv2_{n}_units": MapSpec(SMACV2_LIMIT, drawn=(n, n),
                                    note="SMAX's own SMACv2-style scenario (unit types and start "
                                         "positions drawn every episode)")
       for n in (5, 10, 20)},
    # SMACv2 on StarCraft II (oxwhirl's smacv2 package, its capability wrapper): StarCraft II only.
    **{f"{race}_{n}_vs_{m}": MapSpec(SMACV2_LIMIT, smacv2=(race, n, m),
                                     note=f"SMACv2 with {', '.join(SMACV2_RACES[race][0])}, through the "
                                          f"smacv2 package; {_SMAX_SMACV2}")
       for n, m in _SMACV2_SIZES for race in SMACV2_RACES},
}
SMAX_MAPS = sorted(m for m, spec in SMAC_MAPS.items() if spec.smax)
SMACV2_SC2_MAPS = [m for m, spec in SMAC_MAPS.items() if spec.smacv2]


def _sc2_dir_found() -> bool:
    return os.path.isdir(os.environ.get("SC2PATH", os.path.expanduser("~/StarCraftII")))


def _module_found(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def sc2_available() -> bool:
    """True when oxwhirl's SMAC package imports (not PyPI's unrelated `smac`, SMAC3) and a
    StarCraft II installation is found at $SC2PATH or SMAC's default ~/StarCraftII."""
    return _module_found("smac.env.starcraft2.starcraft2") and _sc2_dir_found()


def smacv2_available() -> bool:
    """True when oxwhirl's SMACv2 package (its capability wrapper) imports and StarCraft II is found
    as for `sc2_available`."""
    return _module_found("smacv2.env.starcraft2.wrapper") and _sc2_dir_found()


def make_starcraft(map_name: str, num_envs: int = 1, seed: int = 0, backend: str = "auto",
                   episode_limit: Optional[int] = None):
    """A batched SMAC or SMACv2 map (`SMAC_MAPS`): `backend` "smax" (jaxmarl's SMAX), "sc2"
    (StarCraft II through oxwhirl's SMAC, or its SMACv2 package for the SMACv2 maps) or "auto" (SC2
    when available, else SMAX; a map only one backend plays goes to that one). `episode_limit`
    overrides the map's limit. Returns an env with n_agents, n_actions, obs_dim, state_dim,
    episode_limit, num_envs, backend, reset() and step() as in the module docstring."""
    if map_name not in SMAC_MAPS:
        raise ValueError(f"unknown map {map_name!r}; maps available: {', '.join(SMAC_MAPS)}")
    if backend not in ("auto", "smax", "sc2"):
        raise ValueError(f"unknown backend {backend!r}; choose auto, smax or sc2")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if episode_limit is not None and episode_limit < 1:
        raise ValueError(f"episode_limit must be >= 1, got {episode_limit}")
    spec = SMAC_MAPS[map_name]
    found = smacv2_available if spec.smacv2 else sc2_available
    if backend == "auto":
        backend = "sc2" if spec.sc2 and found() else "smax"
    if backend == "sc2":
        if not spec.sc2:
            raise ValueError(f"map {map_name!r} is {spec.note}; StarCraft II has no such map: use "
                             f"--backend smax, or one of the SMACv2 maps StarCraft II plays: "
                             f"{', '.join(SMACV2_SC2_MAPS)}")
        if not found() and spec.smacv2:
            raise RuntimeError(
                "backend 'sc2' on a SMACv2 map needs StarCraft II (set SC2PATH; SMACv2's "
                "32x32_flat.SC2Map in $SC2PATH/Maps/SMAC_Maps) and oxwhirl's SMACv2 "
                "(pip install git+https://github.com/oxwhirl/smacv2.git)")
        if not found():
            raise RuntimeError(
                "backend 'sc2' needs StarCraft II (set SC2PATH) and oxwhirl's SMAC "
                "(pip install git+https://github.com/oxwhirl/smac.git; PyPI's `smac` is SMAC3, unrelated)")
        return SC2StarCraft(map_name, num_envs, seed, episode_limit)
    if not spec.smax:
        raise ValueError(f"map {map_name!r} needs StarCraft II ({spec.note}); SMAX cannot express it: "
                         f"use --backend sc2, or one of: {', '.join(SMAX_MAPS)}")
    return SMAXStarCraft(map_name, num_envs, seed, episode_limit or spec.limit)


def _check_actions(actions, avail, shape):
    """SMAC asserts that every action is available; so do we (one line, before any env work)."""
    a = np.asarray(actions)
    if a.shape != shape:
        raise ValueError(f"actions must have shape {shape}, got {a.shape}")
    a = a.astype(np.int64)
    if a.min() < 0 or a.max() >= avail.shape[-1]:
        raise ValueError(f"actions must lie in [0, {avail.shape[-1]}), got {a.min()}..{a.max()}")
    ok = np.take_along_axis(avail, a[..., None], axis=-1)[..., 0] > 0
    if not ok.all():
        e, i = np.argwhere(~ok)[0]
        raise ValueError(f"env {e} agent {i}: action {a[e, i]} is not available")
    return a


# ----------------------------------------------------------------------------------------------
# SMAX backend
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_stdout():
    """Silence file descriptor 1 (jaxmarl's import prints bypass sys.stdout redirection)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _import_jax():
    """Import JAX pinned to the CPU with a persistent compilation cache."""
    os.environ["JAX_PLATFORMS"] = "cpu"  # never let JAX take GPU memory that PyTorch needs
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax
    except ImportError as e:
        raise ImportError("the SMAX backend needs jaxmarl: pip install jaxmarl==0.2.0") from e
    cache = os.environ.get("GAMES_JAX_CACHE", os.path.expanduser("~/.cache/marl-papers-jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return jax


# Map units kept between every SMAX unit's start position and the map border (it matters on the
# SMACv2-style scenarios only; SMAXStarCraft's reset_one says why).
SPAWN_MARGIN = 1.0

# Replays (SMAXStarCraft.save_replay): frames drawn per env step (of SMAX's 8 world ticks), and how
# long each frame shows: 4 frames of 1/8 s of game time at 60 ms play about 2x real time.
REPLAY_FRAMES_PER_STEP = 4
REPLAY_FRAME_MS = 60
REPLAY_LAST_FRAME_MS = 1500  # the final frame holds so the outcome can be read before the GIF loops


_SMAX_JITTED = {}  # (map_name, episode_limit) -> (SMAX env, jitted reset, step, resimulate, env-0 gather)


class SMAXStarCraft:
    """`num_envs` SMAX games (HeuristicEnemySMAX) stepped by one jitted, vmapped function on the CPU,
    converted to SMAC's action layout, reward and a normalised state (module docstring)."""

    backend = "smax"

    def __init__(self, map_name: str, num_envs: int, seed: int, episode_limit: int):
        jax = _import_jax()
        import jax.numpy as jnp
        with _quiet_stdout():  # jaxmarl prints two lines while importing its environments
            from jaxmarl.environments.smax import HeuristicEnemySMAX, Scenario

        spec = SMAC_MAPS[map_name]
        if spec.drawn:  # jaxmarl's smacv2_*_units: types and start positions drawn at every reset
            n, m = spec.drawn
            scenario = Scenario(jnp.zeros((n + m,), jnp.uint8), n, m, True, True)
        else:
            ally_types, enemy_types = spec.unit_types(spec.allies), spec.unit_types(spec.enemies)
            n, m = len(ally_types), len(enemy_types)
            scenario = Scenario(jnp.array(ally_types + enemy_types, jnp.uint8), n, m, False, False)
        # SMAX tests its limit before counting the step (max_steps=100 ends after 101 steps), so
        # the adapter enforces the limit itself and keeps SMAX's out of the way.
        env = HeuristicEnemySMAX(scenario=scenario, max_steps=episode_limit + 1)
        self.map_name, self.num_envs, self.episode_limit = map_name, num_envs, episode_limit
        self.n_agents, self.n_enemies, self.n_actions = n, m, 6 + m
        self.obs_dim = env.obs_size
        self.state_dim = 10 * (n + m) + n * self.n_actions
        A = self.n_actions
        width = float(env.map_width)

        # SMAC action index -> SMAX action index (no-op and stop both become SMAX's stop).
        smac_to_smax = jnp.array([4, 4, 0, 2, 1, 3] + [5 + j for j in range(m)], jnp.int32)
        # Displacement of SMAC's N, S, E, W over one step, per unit type (for the wall mask).
        move_dirs = jnp.array([[0, 1], [0, -1], [1, 0], [-1, 0]], jnp.float32)
        step_seconds = env.world_steps_per_env_step * env.time_per_step
        max_hp = env.unit_type_health
        max_cd = env.unit_type_weapon_cooldowns
        agents = env.agents

        # SMAC scales the reward so that an episode pays at most 20: damage + 10/kill + 200/win over
        # the enemies' total max HP + 10 n_enemies + 200. With drawn types the enemies' max HP is the
        # episode's (its unit types), so every won episode pays exactly 20 here as on SMAC maps.
        if spec.drawn:
            def reward_scale(types):
                return 20.0 / (jnp.sum(max_hp[types[n:]]) + 10.0 * m + 200.0)
        else:
            fixed_scale = 20.0 / (float(np.sum(np.asarray(max_hp)[enemy_types])) + 10.0 * m + 200.0)

            def reward_scale(types):
                return fixed_scale

        def observe(s, last_action):
            """Pack obs [N*obs], state [S] and SMAC-layout avail [N*A] of one game."""
            u = s.state
            obs = env.get_obs(s)
            obs = jnp.stack([obs[a] for a in agents])  # [N, obs_dim]
            smax_avail = env.get_avail_actions(s)
            smax_avail = jnp.stack([smax_avail[a] for a in agents]).astype(jnp.float32)
            alive = u.unit_alive[:n].astype(jnp.float32)
            pos = u.unit_positions[:n]  # [N, 2]
            reach = (env.unit_type_velocities[u.unit_types[:n]] * step_seconds)[:, None, None]
            new_pos = pos[:, None, :] + move_dirs[None] * reach  # [N, 4, 2]
            inside = jnp.all((new_pos > 0.5) & (new_pos < width - 0.5), axis=-1)  # walls block
            moves = smax_avail[:, jnp.array([0, 2, 1, 3])] * inside  # SMAX N,E,S,W -> SMAC N,S,E,W
            avail = jnp.concatenate([(1 - alive)[:, None], alive[:, None], moves,
                                     smax_avail[:, 5:]], axis=1)  # [N, A]
            types = u.unit_types
            feats = jnp.concatenate([
                (u.unit_health / max_hp[types])[:, None],
                (u.unit_positions - width / 2) / (width / 2),
                # SMAX counts an idle weapon's cooldown on below zero (-0.5 s per step): clipped, as
                # SMAX's own observation does, or an idle unit's feature would drift to -10 and beyond
                jnp.clip(u.unit_weapon_cooldowns / max_cd[types], 0.0, 1.0)[:, None],
                jax.nn.one_hot(types, 6)], axis=1) * u.unit_alive[:, None]  # [N+M, 10]
            state = jnp.concatenate([feats.reshape(-1), jax.nn.one_hot(last_action, A).reshape(-1)])
            return jnp.concatenate([obs.reshape(-1), state, avail.reshape(-1)])

        def reset_one(key):
            key, k = jax.random.split(key)
            _, s = env.reset(k)
            # SMAX's SMACv2 start positions (corner groups with +-2 noise) put a unit outside the map
            # in about 1 episode in 10, where it dies at the first tick; like SC2 (units spawn on
            # the map) every unit starts at least SPAWN_MARGIN inside the border. A no-op on the
            # SMAC maps, whose units start around (8, 16) and (24, 16).
            s = s.replace(state=s.state.replace(unit_positions=jnp.clip(
                s.state.unit_positions, SPAWN_MARGIN, width - SPAWN_MARGIN)))
            s = jax.tree.map(lambda x: x.astype(x.dtype), s)  # drop weak types: no second compile
            no_action = -jnp.ones((n,), jnp.int32)  # one-hot of -1 is all zeros, as SMAC at reset
            carry = (key, s, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), no_action)
            return carry, observe(s, carry[4])

        def step_one(carry, actions):
            key, s, ep_return, ep_length, _ = carry
            key, k_step, k_reset = jax.random.split(key, 3)
            _, s2, _, _, _ = env.step_env(
                k_step, s, {a: smac_to_smax[actions[i]] for i, a in enumerate(agents)})
            u0, u1 = s.state, s2.state
            allies_dead = ~jnp.any(u1.unit_alive[:n])
            enemies_dead = ~jnp.any(u1.unit_alive[n:])
            won = enemies_dead & ~allies_dead
            ep_length = ep_length + 1
            timeout = (ep_length >= episode_limit) & ~allies_dead & ~enemies_dead
            done = allies_dead | enemies_dead | timeout
            damage = jnp.sum(u0.unit_health[n:] - u1.unit_health[n:])
            kills = jnp.sum(u0.unit_alive[n:] & ~u1.unit_alive[n:])
            reward = (damage + 10.0 * kills + 200.0 * won) * reward_scale(u0.unit_types)  # SMAC's
            ep_return = ep_return + reward
            out = jnp.stack([reward, done, won, timeout, ep_return, ep_length]).astype(jnp.float32)
            (_, s_reset, *_), _ = reset_one(k_reset)
            s_next = jax.tree.map(lambda a, b: jnp.where(done, a, b), s_reset, s2)
            last = jnp.where(done, -1, actions)
            carry = (key, s_next, jnp.where(done, 0.0, ep_return), jnp.where(done, 0, ep_length), last)
            return carry, jnp.concatenate([observe(s_next, last), out])

        def resimulate(key, s, actions):
            """Env 0's 8 world ticks of one step, replayed from its pre-step key and state with the
            same key split as step_one, so the replay shows exactly what was played (the visualiser's
            own expand_state_seq splits the key differently and would re-roll the dice)."""
            _, k_step, _ = jax.random.split(key, 3)
            return env.step_env(k_step, s, {a: smac_to_smax[actions[i]] for i, a in enumerate(agents)},
                                True)  # get_state_sequence: the SMAX State of every world tick

        base = jax.random.PRNGKey(seed)
        self._keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(num_envs))
        # The jitted functions depend on the map and the episode limit only (seeds and num_envs are
        # arguments), so every env of a process with the same pair shares one trace and compile
        # (a script's training and evaluation envs; the tests' many envs).
        shared = (map_name, episode_limit)
        if shared not in _SMAX_JITTED:
            _SMAX_JITTED[shared] = (
                env, jax.jit(jax.vmap(reset_one)), jax.jit(jax.vmap(step_one), donate_argnums=0),
                jax.jit(resimulate),  # compiled on the first save_replay only
                jax.jit(lambda carry: jax.tree.map(lambda x: x[0], carry)))  # env 0's carry: one dispatch
        env, self._reset, self._step, self._resimulate, self._env0 = _SMAX_JITTED[shared]
        self._jax, self._jnp, self._smax = jax, jnp, env
        self._carry = None
        self._avail = None
        self._record = None  # env 0's [(key, state, actions)] while a replay is recorded (None: off)
        self._recording = False
        self._record_start = self._record_outcome = None

    def _unpack(self, packed):
        E, N, A = self.num_envs, self.n_agents, self.n_actions
        x = np.array(packed)  # a writable copy: torch.from_numpy needs one
        i = N * self.obs_dim
        obs = x[:, :i].reshape(E, N, self.obs_dim)
        state = x[:, i:i + self.state_dim]
        i += self.state_dim
        avail = x[:, i:i + N * A].reshape(E, N, A)
        self._avail = avail
        return obs, state, avail, x[:, i + N * A:]

    def reset(self):
        """Start a fresh episode in every env. Returns obs [E,N,obs_dim], state [E,S], avail [E,N,A]."""
        self._carry, packed = self._reset(self._keys)
        if self._recording:
            self._record = []  # a reset abandons the episode being recorded: record the new one
        return self._unpack(packed)[:3]

    def step(self, actions):
        """actions [E,N] ints (SMAC layout). Returns obs, state, avail, reward [E], done [E], info."""
        if self._carry is None:
            raise RuntimeError("call reset() before step()")
        a = _check_actions(actions, self._avail, (self.num_envs, self.n_agents))
        if self._recording:  # env 0's pre-step key and state, copied before _step donates the carry
            key, s, length = self._jax.device_get(self._env0((self._carry[0], self._carry[1],
                                                              self._carry[3])))
            if not self._record:
                self._record_start = int(length)  # steps env 0 had played before the recording
            self._record.append((key, s, a[0].copy()))
        self._carry, packed = self._step(self._carry, self._jnp.asarray(a, self._jnp.int32))
        obs, state, avail, out = self._unpack(packed)
        done = out[:, 1] > 0
        info = {"won": (out[:, 2] > 0) & done, "timeout": (out[:, 3] > 0) & done,
                "episode_return": np.where(done, out[:, 4], 0.0).astype(np.float32),
                "episode_length": np.where(done, out[:, 5], 0).astype(np.int64)}
        if self._recording and done[0]:
            self._recording = False
            self._record_outcome = ("won" if info["won"][0] else "time-out" if info["timeout"][0]
                                    else "lost")
        return obs, state, avail, out[:, 0].copy(), done, info

    def scripted_actions(self, state, avail):
        """A hand-written baseline (not a paper's): each live ally attacks the enemy with the least
        health among those in its range, else walks towards the closest live enemy (else stops).
        Reads this adapter's state (per unit: health, x, y, cooldown, 6 type bits); actions [E,N]."""
        E, N, A = avail.shape
        units = state[:, : 10 * (N + self.n_enemies)].reshape(E, N + self.n_enemies, 10)
        actions = np.zeros((E, N), np.int64)
        for e in range(E):
            enemies = units[e, N:]
            for i in range(N):
                if avail[e, i, 0]:  # dead: no-op
                    continue
                targets = np.flatnonzero(avail[e, i, 6:])
                if len(targets):
                    actions[e, i] = 6 + targets[np.argmin(enemies[targets, 0])]
                    continue
                alive = np.flatnonzero(enemies[:, 0] > 0)
                d = enemies[alive, 1:3] - units[e, i, 1:3]
                dx, dy = d[np.argmin((d ** 2).sum(-1))]
                move = (4 if dx > 0 else 5) if abs(dx) > abs(dy) else (2 if dy > 0 else 3)
                actions[e, i] = move if avail[e, i, move] else 1
        return actions

    # ------------------------------------------------------------------------------------------
    # Replays: start_recording() before an evaluation, save_replay(path) after it
    # ------------------------------------------------------------------------------------------
    def start_recording(self):
        """Record env 0 from the next reset() or step() until its episode ends (a reset() in
        between starts the recording again with the new episode). Costs nothing until called;
        while recording, each step copies env 0's key and state (a few kB)."""
        self._record, self._recording = [], True
        self._record_start = self._record_outcome = None

    def save_replay(self, path, frames_per_step: int = REPLAY_FRAMES_PER_STEP,
                    renderer: str = "numpy"):
        """Write the recorded episode of env 0 as an animated GIF at `path` (parent folders are
        created) and return `path`; the recording is consumed. An episode still running is drawn up
        to its last recorded step. `renderer` "numpy" (default, about 10 ms a frame) draws with
        `render_smax_gif`: 1 + frames_per_step x steps frames. "jaxmarl" hands the same
        re-simulated ticks to jaxmarl's `SMAXVisualizer` (its picture, 9 frames a step, about
        0.5 s a frame: minutes for one episode)."""
        if not self._record:
            raise RuntimeError("save_replay: nothing was recorded; call start_recording() "
                               "before the evaluation episode is played")
        if renderer not in ("numpy", "jaxmarl"):
            raise ValueError(f"unknown renderer {renderer!r}; choose numpy or jaxmarl")
        ticks = self._smax.world_steps_per_env_step
        if not 1 <= frames_per_step <= ticks:
            raise ValueError(f"frames_per_step must lie in [1, {ticks}], got {frames_per_step}")
        record, outcome, start = self._record, self._record_outcome, self._record_start
        self._record, self._recording = None, False
        steps = [self._jax.device_get(self._resimulate(key, s, self._jnp.asarray(act, self._jnp.int32)))
                 for key, s, act in record]  # per step: SMAX State with leading axis [ticks]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if renderer == "jaxmarl":
            return _render_smax_jaxmarl(path, self._smax, record, steps)
        return render_smax_gif(path, self._smax, record[0][1].state, steps, self.map_name,
                               frames_per_step=frames_per_step, first_step=start, outcome=outcome)

    def close(self):
        self._carry = None
        self._record, self._recording = None, False


def render_smax_gif(path, smax, first_state, steps, title, frames_per_step=REPLAY_FRAMES_PER_STEP,
                    first_step=0, outcome=None, size_px=320):
    """Draw a SMAX episode as an animated GIF with pillow, in the look of jaxmarl's SMAX renderer
    (allies blue, enemies green, lighter while being shot, the unit-type letter, a grey bullet
    flying from shooter to target) plus a health bar over each unit, zoomed on the ground the
    units covered. `first_state`: the SMAX State before the first step; `steps`: per env step the
    SMAX State of each world tick (leading axis [ticks], from step_env(get_state_sequence=True)).
    Frames: the first state, then `frames_per_step` evenly spaced ticks of each step (the last one
    is the state after the step), so len(steps) * frames_per_step + 1 frames, each distinct (the
    title carries the game time). Numpy and matplotlib's Agg canvas only (no pyplot, no ffmpeg).
    Returns `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, Rectangle
    from PIL import Image

    n_allies, n_move = smax.num_allies, smax.num_movement_actions
    n_ticks, tick_s = smax.world_steps_per_env_step, smax.time_per_step
    types = np.asarray(first_state.unit_types)
    U = len(types)
    radius = np.asarray(smax.unit_type_radiuses)[types]
    reach = np.asarray(smax.unit_type_attack_ranges)[types]
    max_hp = np.asarray(smax.unit_type_health)[types]
    letters = [smax.unit_type_shorthands[t] for t in types]

    # frames as (positions [U,2], health [U], alive [U], attack actions [U] or None, tick fraction,
    # env step, game seconds)
    frames = [(np.asarray(first_state.unit_positions), np.asarray(first_state.unit_health),
               np.asarray(first_state.unit_alive), None, 0.0, first_step, first_step * n_ticks * tick_s)]
    for t, st in enumerate(steps):
        attack = np.asarray(st.prev_attack_actions[-1])
        for j in range(1, frames_per_step + 1):
            i = round(j * n_ticks / frames_per_step) - 1  # tick index; the last frame is tick n_ticks
            frames.append((np.asarray(st.unit_positions[i]), np.asarray(st.unit_health[i]),
                           np.asarray(st.unit_alive[i]), attack, (i + 1) / n_ticks, first_step + t + 1,
                           ((first_step + t) * n_ticks + i + 1) * tick_s))

    # a square view around every position a live unit took, inside the map where it fits
    pos = np.concatenate([f[0][f[2].astype(bool)] for f in frames] or [frames[0][0]])
    lo, hi = pos.min(0) - 1.5, pos.max(0) + 1.5
    side = max(float((hi - lo).max()), 8.0)
    centre = (lo + hi) / 2
    size = np.array([smax.map_width, smax.map_height], np.float64)
    view_lo = np.clip(centre - side / 2, 0.0, np.maximum(size - side, 0.0))

    dpi = 80
    fig = Figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.9))
    ax.set_xlim(view_lo[0], view_lo[0] + side)
    ax.set_ylim(view_lo[1], view_lo[1] + side)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.add_patch(Rectangle((0, 0), *size, fill=False, edgecolor="black", linewidth=1.5))  # map border
    heading = ax.set_title("", fontsize=9)
    ally = np.arange(U) < n_allies
    body = [ax.add_patch(Circle((0, 0), radius[u], color="blue" if ally[u] else "green"))
            for u in range(U)]
    label = [ax.text(0, 0, letters[u], fontsize=6, color="white", ha="center", va="center")
             for u in range(U)]
    bar = [ax.add_patch(Rectangle((0, 0), 0, 0.18, color="black", linewidth=0)) for _ in range(U)]
    bullet = [ax.add_patch(Rectangle((0, 0), 0.4, 0.4, color="gray")) for _ in range(U)]

    images = []
    for k, (xy, hp, alive, attack, frac, env_step, seconds) in enumerate(frames):
        alive = alive.astype(bool)
        shot = np.zeros(U, bool)
        for b in bullet:
            b.set_visible(False)
        if attack is not None:
            for u in np.flatnonzero(alive & (attack >= n_move)):
                # SMAX's attack index: allies count enemies up from n_allies, enemies count allies down
                target = (attack[u] - n_move + n_allies if ally[u]
                          else n_allies - 1 - (attack[u] - n_move))
                if alive[target] and np.linalg.norm(xy[u] - xy[target]) < reach[u]:
                    shot[target] = True
                    bullet[u].set_xy((1 - frac) * xy[u] + frac * xy[target] - 0.2)
                    bullet[u].set_visible(True)
        for u in range(U):
            body[u].set_visible(alive[u])
            label[u].set_visible(alive[u])
            bar[u].set_visible(alive[u])
            body[u].center = tuple(xy[u])
            body[u].set_color(("cornflowerblue" if shot[u] else "blue") if ally[u]
                              else ("limegreen" if shot[u] else "green"))
            label[u].set_position(tuple(xy[u]))
            bar[u].set_xy((xy[u][0] - radius[u], xy[u][1] + radius[u] + 0.15))
            bar[u].set_width(2 * radius[u] * hp[u] / max_hp[u])
        end = f": {outcome}" if outcome and k == len(frames) - 1 else ""
        heading.set_text(f"{title}  step {env_step}/{frames[-1][5]}  {seconds:.2f} s{end}")
        canvas.draw()
        images.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]).quantize(
            colors=64, method=Image.Quantize.FASTOCTREE))  # 1 ms a frame; median cut takes 5-10
    durations = [REPLAY_FRAME_MS] * (len(images) - 1) + [REPLAY_LAST_FRAME_MS]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path


def _render_smax_jaxmarl(path, smax, record, steps):
    """The same episode through jaxmarl's own `SMAXVisualizer` (a pre-step frame and 8 tick frames
    per step, 64 ms each; about 0.5 s to draw a frame). Its `expand_state_seq` would re-simulate with
    a differently split key, so it is handed the already expanded sequence."""
    import dataclasses

    import matplotlib
    import matplotlib.pyplot as plt
    from jaxmarl.environments.smax.smax_env import State
    from jaxmarl.viz.visualizer import SMAXVisualizer

    seq = []
    for (key, s, _), st in zip(record, steps):
        ticks = [State(*leaves) for leaves in zip(*dataclasses.astuple(st))]
        viz_actions = {a: ticks[-1].prev_attack_actions[i] for i, a in enumerate(smax.all_agents)}
        seq += [(key, s.state, viz_actions)] + [(key, t, viz_actions) for t in ticks]
    viz = SMAXVisualizer(smax, seq)
    viz.have_expanded = True
    try:
        with matplotlib.rc_context({"animation.writer": "pillow"}):  # no ffmpeg needed
            viz.animate(save_fname=path, view=False)
    finally:
        plt.close(viz.fig)
    return path


# ----------------------------------------------------------------------------------------------
# StarCraft II backend (oxwhirl SMAC)
# ----------------------------------------------------------------------------------------------
def _make_sc2_env(map_name, seed, episode_limit):
    from smac.env import StarCraft2Env
    env = StarCraft2Env(map_name=map_name, seed=seed)
    if episode_limit is not None:
        env.episode_limit = episode_limit
    return env


# StarCraft2Env arguments of SMACv2's sc2_gen_<race>.yaml that differ from their defaults: true unit
# sight and attack ranges (attack at least 2), own position observed, no conic field of view.
SMACV2_ENV_ARGS = {"conic_fov": False, "use_unit_ranges": True, "min_attack_range": 2, "obs_own_pos": True,
                   "fully_observable": False}


def smacv2_capability_config(race, n_units, n_enemies):
    """SMACv2's capability config for a race (its sc2_gen_<race>.yaml with n_units/n_enemies set as
    its README's scenario table says): teams drawn with SMACV2_RACES' weights, the enemy team mirroring
    the allies' (plus extra units when n_enemies > n_units), start positions "surrounded" or
    "reflect" with probability 0.5 each on the 32x32 map."""
    types, weights, exceptions = SMACV2_RACES[race]
    team = {"dist_type": "weighted_teams", "unit_types": list(types), "weights": list(weights),
            "observe": True}
    if exceptions:
        team["exception_unit_types"] = list(exceptions)
    return {"n_units": n_units, "n_enemies": n_enemies, "team_gen": team,
            "start_positions": {"dist_type": "surrounded_and_reflect", "p": 0.5, "map_x": 32, "map_y": 32}}


def _seed_smacv2_draws(env, seed):
    """SMACv2's distributions draw teams and start positions with unseeded numpy Generators (an `rng`
    attribute, also on the distributions nested in others) and Python's `random` (shuffle, choice).
    Seed them all from `seed`, so that an env's sequence of drawn scenarios is reproducible (the
    battles themselves are not: StarCraft II is not deterministic)."""
    import random
    random.seed(seed)
    todo, k = list(getattr(env, "env_key_to_distribution_map", {}).values()), 0
    while todo:
        dist = todo.pop(0)
        for name, value in vars(dist).items():
            if isinstance(value, np.random.Generator):
                setattr(dist, name, np.random.default_rng([seed, k]))
                k += 1
            elif hasattr(value, "generate"):
                todo.append(value)


def _make_smacv2_env(map_name, seed, episode_limit):
    from smacv2.env.starcraft2.wrapper import StarCraftCapabilityEnvWrapper
    race, n, m = SMAC_MAPS[map_name].smacv2
    env = StarCraftCapabilityEnvWrapper(capability_config=smacv2_capability_config(race, n, m),
                                        map_name=f"10gen_{race}", seed=seed, **SMACV2_ENV_ARGS)
    _seed_smacv2_draws(env, seed)
    if episode_limit is not None:
        env.env.episode_limit = episode_limit  # the wrapper forwards reads, not writes, to StarCraft2Env
    return env


def _sc2_first(env):
    env.reset()
    return (np.asarray(env.get_obs(), np.float32), np.asarray(env.get_state(), np.float32),
            np.asarray(env.get_avail_actions(), np.float32))


def _sc2_worker(conn, make_env, seed):
    """One StarCraft2Env per process; auto-resets after `terminated` and reports the episode."""
    env = make_env(seed=seed)
    ep_return, ep_length = 0.0, 0
    try:
        while True:
            cmd, data = conn.recv()
            if cmd == "info":
                conn.send(env.get_env_info())
            elif cmd == "reset":
                ep_return, ep_length = 0.0, 0
                conn.send(_sc2_first(env))
            elif cmd == "step":
                timeouts = getattr(env, "timeouts", None)  # StarCraft2Env counts the episodes it cut
                reward, terminated, info = env.step([int(a) for a in data])
                ep_return += reward
                ep_length += 1
                end = None
                if terminated:
                    # SMAC and SMACv2 report info["episode_limit"] only with continuing_episode=True
                    # (off by default); their time-out counter says it either way
                    timeout = bool(info.get("episode_limit", False)) or (
                        timeouts is not None and getattr(env, "timeouts", timeouts) > timeouts)
                    end = (bool(info.get("battle_won", False)), timeout, ep_return, ep_length)
                    ep_return, ep_length = 0.0, 0
                    first = _sc2_first(env)
                else:
                    first = (np.asarray(env.get_obs(), np.float32), np.asarray(env.get_state(), np.float32),
                             np.asarray(env.get_avail_actions(), np.float32))
                conn.send((first, float(reward), bool(terminated), end))
            elif cmd == "save_replay":  # data: (replay_dir, replay_prefix), StarCraft2Env's own settings
                try:
                    env.replay_dir, env.replay_prefix = data
                    conn.send((True, env.save_replay()))
                except Exception as e:  # reported in the main process, which keeps the traceback short
                    conn.send((False, f"{type(e).__name__}: {e}"))
            elif cmd == "close":
                break
    finally:
        env.close()
        conn.close()


class SC2StarCraft:
    """`num_envs` StarCraft2Env instances, one per worker process, with the batched interface.
    `make_env(seed=...)` builds one env (default: SMAC's StarCraft2Env for `map_name`, or SMACv2's
    StarCraftCapabilityEnvWrapper for a SMACv2 map); tests pass a stand-in with StarCraft2Env's
    methods. Env i is seeded with seed + i. A terminated episode is a time-out when info says so or
    StarCraft2Env's `timeouts` counter went up (SMAC/SMACv2 set info["episode_limit"] only with
    continuing_episode=True)."""

    backend = "sc2"

    def __init__(self, map_name, num_envs, seed, episode_limit=None, make_env=None):
        if make_env is None:
            make_env = _Sc2Factory(map_name, episode_limit)
        ctx = mp.get_context("spawn")  # fork is unsafe once JAX/torch threads exist
        self._conns, self._procs = [], []
        for i in range(num_envs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_sc2_worker, args=(child, make_env, seed + i), daemon=True)
            p.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(p)
        self._conns[0].send(("info", None))
        info = self._conns[0].recv()
        self.map_name, self.num_envs = map_name, num_envs
        self.n_agents, self.n_actions = info["n_agents"], info["n_actions"]
        self.obs_dim, self.state_dim = info["obs_shape"], info["state_shape"]
        self.episode_limit = info["episode_limit"]
        self.env_info = info  # get_env_info() of env 0 (SMACv2 adds cap_shape, agent_features, ...)
        self._avail = None
        self._recording = None  # env 0's steps played since start_recording() (None: never called)

    def reset(self):
        for c in self._conns:
            c.send(("reset", None))
        obs, state, avail = (np.stack(x) for x in zip(*(c.recv() for c in self._conns)))
        self._avail = avail
        return obs, state, avail

    def step(self, actions):
        if self._avail is None:
            raise RuntimeError("call reset() before step()")
        a = _check_actions(actions, self._avail, (self.num_envs, self.n_agents))
        for c, ai in zip(self._conns, a):
            c.send(("step", ai))
        results = [c.recv() for c in self._conns]
        obs, state, avail = (np.stack(x) for x in zip(*(r[0] for r in results)))
        reward = np.array([r[1] for r in results], np.float32)
        done = np.array([r[2] for r in results], bool)
        ends = [r[3] or (False, False, 0.0, 0) for r in results]
        info = {"won": np.array([e[0] for e in ends], bool), "timeout": np.array([e[1] for e in ends], bool),
                "episode_return": np.array([e[2] for e in ends], np.float32),
                "episode_length": np.array([e[3] for e in ends], np.int64)}
        self._avail = avail
        if self._recording is not None:
            self._recording += 1
        return obs, state, avail, reward, done, info

    def start_recording(self):
        """Mark the start of the episode to keep. StarCraft II records its whole game by itself, so
        this costs nothing; save_replay() then needs at least one step of env 0 played after it."""
        self._recording = 0

    def save_replay(self, path):
        """Save env 0's StarCraft II replay with SMAC's `StarCraft2Env.save_replay()`, next to `path`:
        SC2 names it `<stem of path>_<UTC time>.SC2Replay` in path's folder (StarCraft2Env's
        replay_dir / replay_prefix; the folder is created). Returns what save_replay() reports, else
        the newest such file, else None. SMAC plays every episode of a worker inside one SC2 game, so
        the replay holds all episodes env 0 has played so far, the recorded one last; watch it in
        the StarCraft II client. The recording is consumed."""
        if not self._recording:
            raise RuntimeError("save_replay: nothing was recorded; call start_recording() "
                               "before the evaluation episode is played")
        self._recording = None
        folder = os.path.dirname(os.path.abspath(path))
        prefix = os.path.splitext(os.path.basename(path))[0] or "replay"
        os.makedirs(folder, exist_ok=True)
        self._conns[0].send(("save_replay", (folder, prefix)))
        ok, result = self._conns[0].recv()
        if not ok:
            raise RuntimeError(f"StarCraft II could not save the replay of env 0: {result}")
        if result is None:  # SMAC's save_replay() only logs where pysc2 wrote the file
            import glob
            found = glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "_*.SC2Replay"))
            result = max(found, key=os.path.getmtime) if found else None
        return result

    def close(self):
        for c, p in zip(self._conns, self._procs):
            try:
                c.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
            p.join(timeout=10)
        self._conns, self._procs = [], []


class _Sc2Factory:
    """Picklable `make_env` for the worker processes."""

    def __init__(self, map_name, episode_limit):
        self.map_name, self.episode_limit = map_name, episode_limit

    def __call__(self, seed):
        make = _make_smacv2_env if SMAC_MAPS[self.map_name].smacv2 else _make_sc2_env
        return make(self.map_name, seed, self.episode_limit)
