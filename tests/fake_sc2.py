"""Stand-ins with oxwhirl SMAC's `StarCraft2Env` method names (and, at the end, SMACv2's capability
wrapper), for testing the SC2 backend's batching and auto-reset without StarCraft II. Dynamics of
FakeStarCraft2Env: the episode lasts `length` steps, where `length` = 3 + (seed + episode) % 4; the
last step is won when the summed actions of that step are even, otherwise it is a time-out on every
third episode and a loss otherwise. Reward = sum of actions. save_replay() writes, as SMAC does
through pysc2, `<replay_dir>/<replay_prefix>_<time>.SC2Replay` (here a text line naming the seed and
the episodes played) and returns None."""
import datetime
import os

import numpy as np


class FakeStarCraft2Env:
    def __init__(self, seed=0, n_agents=3, n_actions=5):
        self.seed, self.n_agents, self.n_actions = seed, n_agents, n_actions
        self.episode, self.t = -1, 0
        self.replay_dir, self.replay_prefix = "", ""  # StarCraft2Env's names and defaults

    def get_env_info(self):
        return {"n_agents": self.n_agents, "n_actions": self.n_actions, "obs_shape": 4,
                "state_shape": 2, "episode_limit": 6}

    def length(self):
        return 3 + (self.seed + self.episode) % 4

    def reset(self):
        self.episode += 1
        self.t = 0
        return self.get_obs(), self.get_state()

    def get_obs(self):
        return [np.array([self.seed, self.episode, self.t, i], np.float32) for i in range(self.n_agents)]

    def get_state(self):
        return np.array([self.seed, self.t], np.float32)

    def get_avail_actions(self):
        # agent i may not take action (t + i) % n_actions
        return [[int(a != (self.t + i) % self.n_actions) for a in range(self.n_actions)]
                for i in range(self.n_agents)]

    def step(self, actions):
        for i, a in enumerate(actions):
            assert self.get_avail_actions()[i][a], "unavailable action reached the env"
        self.t += 1
        reward = float(sum(actions))
        info = {}
        terminated = self.t >= self.length()
        if terminated:
            if sum(actions) % 2 == 0:
                info["battle_won"] = True
            elif self.episode % 3 == 0:
                info["episode_limit"] = True
                info["battle_won"] = False
            else:
                info["battle_won"] = False
        return reward, terminated, info

    def save_replay(self):
        if not os.path.isabs(self.replay_dir):
            raise ValueError("the stand-in only writes to an absolute replay_dir")
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")
        name = f"{self.replay_prefix or 'map'}_{now}.SC2Replay"
        with open(os.path.join(self.replay_dir, name), "w") as f:
            f.write(f"seed {self.seed} episodes {self.episode + 1} step {self.t}\n")

    def close(self):
        pass


def make_fake(seed):
    return FakeStarCraft2Env(seed=seed)


class FakeCountingTimeouts(FakeStarCraft2Env):
    """As real SMAC with continuing_episode=False (its default): a time-out sets no
    info["episode_limit"], it only increments StarCraft2Env's `timeouts` counter."""

    def __init__(self, seed=0):
        super().__init__(seed=seed)
        self.timeouts = 0

    def step(self, actions):
        reward, terminated, info = super().step(actions)
        if info.pop("episode_limit", False):
            self.timeouts += 1
        return reward, terminated, info


def make_fake_counting_timeouts(seed):
    return FakeCountingTimeouts(seed=seed)


# ------------------------------------------------------------------------------------- SMACv2
class _FakeDraw:
    """Like SMACv2's distributions: an unseeded numpy Generator in `rng`, and another distribution
    nested inside (as SMACv2's surrounded-and-reflect holds a reflect one holding a uniform one)."""

    def __init__(self, inner=None):
        self.rng = np.random.default_rng()
        self.inner = inner

    def generate(self):
        return float(self.rng.random()) + (self.inner.generate() if self.inner else 0.0)


class _FakeInnerEnv:
    """The wrapper's StarCraft2Env: its episode_limit and time-out counter."""

    def __init__(self, episode_limit):
        self.episode_limit, self.timeouts = episode_limit, 0


class FakeCapabilityEnvWrapper:
    """A stand-in for smacv2's `StarCraftCapabilityEnvWrapper(**kwargs)` (a fake `smacv2` package in
    the tests imports it under that name). get_env_info() echoes the constructor's keywords under
    "kwargs". Each reset draws a team (one type index per ally, from capability_config's team_gen,
    with the distribution's rng) and a start offset (from a nested distribution); obs[i] =
    [type of ally i, start offset, step, i]. The battle lasts 2 + (sum of the types) % 7 steps and is
    won when the last step's actions sum to an even number. As in SMAC/SMACv2 with the default
    continuing_episode=False, an episode cut by the episode limit sets no info["episode_limit"]: it
    only counts in `timeouts` (reached through the wrapper's __getattr__, as in smacv2)."""

    def __init__(self, **kwargs):
        cfg = kwargs["capability_config"]
        self.kwargs = kwargs
        self.n_agents, self.n_enemies = cfg["n_units"], cfg["n_enemies"]
        self.weights = cfg["team_gen"]["weights"]
        self.env_key_to_distribution_map = {"team_gen": _FakeDraw(),
                                            "start_positions": _FakeDraw(_FakeDraw())}
        self.env = _FakeInnerEnv(episode_limit=200)
        self.team, self.offset, self.t = None, 0.0, 0

    def __getattr__(self, name):
        if name != "env" and hasattr(self.env, name):
            return getattr(self.env, name)
        raise AttributeError

    def get_env_info(self):
        return {"n_agents": self.n_agents, "n_actions": 6 + self.n_enemies, "obs_shape": 4, "state_shape": 2,
                "cap_shape": 3, "episode_limit": self.env.episode_limit, "kwargs": self.kwargs}

    def reset(self):
        rng = self.env_key_to_distribution_map["team_gen"].rng
        self.team = rng.choice(len(self.weights), size=self.n_agents, p=self.weights)
        self.offset = self.env_key_to_distribution_map["start_positions"].generate()
        self.t = 0
        return self.get_obs(), self.get_state()

    def get_obs(self):
        return [np.array([self.team[i], self.offset, self.t, i], np.float32) for i in range(self.n_agents)]

    def get_state(self):
        return np.array([self.offset, self.t], np.float32)

    def get_avail_actions(self):
        return [[1] * (6 + self.n_enemies) for _ in range(self.n_agents)]

    def step(self, actions):
        self.t += 1
        info = {"battle_won": False}
        if self.t >= 2 + int(self.team.sum()) % 7:
            info["battle_won"] = sum(actions) % 2 == 0
            return 1.0, True, info
        if self.t >= self.env.episode_limit:
            self.env.timeouts += 1
            return 0.0, True, info
        return 0.0, False, info

    def save_replay(self):
        pass

    def close(self):
        pass
