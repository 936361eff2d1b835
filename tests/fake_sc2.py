"""A stand-in with oxwhirl SMAC's `StarCraft2Env` method names, for testing the SC2 backend's
batching and auto-reset without StarCraft II. Dynamics: the episode lasts `length` steps, where
`length` = 3 + (seed + episode) % 4; the last step is won when the summed actions of that step are
even, otherwise it is a time-out on every third episode and a loss otherwise. Reward = sum of actions.
save_replay() writes, as SMAC does through pysc2, `<replay_dir>/<replay_prefix>_<time>.SC2Replay`
(here a text line naming the seed and the episodes played) and returns None."""
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
