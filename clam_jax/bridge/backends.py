"""What a robot server drives: a simulated Sawyer (MetaWorld) or a real WidowX through BridgeData's ROS stack.

A backend takes 7-D actions (end-effector delta xyz in metres, roll-pitch-yaw in
radians, gripper command in [-1, 1]: -1 open, 1 closed) that the server has
already clipped to the workspace, and returns observations shaped as
`clam_jax.bridge.protocol` describes.
"""
import time
from typing import Protocol

import numpy as np

from clam_jax.errors import ConfigError


class RobotBackend(Protocol):
    def init(self, params: dict) -> dict:
        """(Re)starts the robot with environment `params`; returns what the client needs to know: the frames'
        "image_shape" and "metres_per_unit", the length the xyz of an action is measured in."""

    def reset(self, seed: int) -> dict:
        """Starts an episode; returns the first observation."""

    def step(self, action: np.ndarray, blocking: bool) -> dict:
        """Executes one 7-D action; returns the next observation."""

    def hand_position(self) -> np.ndarray:
        """The end effector's xyz in metres (for the workspace bounds)."""

    def stop(self) -> None:
        """Holds the arm where it is (the client went quiet or asked to stop)."""

    def close(self) -> None:
        """Releases the robot or simulator."""


def widowx_action(action: np.ndarray) -> np.ndarray:
    """A 7-D bridge action as BridgeData's WidowX takes it: the gripper command in [-1, 1] (1 closed) becomes
    its opening in [0, 1] (1 open)."""
    widowx = np.asarray(action, np.float64).copy()
    widowx[6] = (1.0 - np.clip(widowx[6], -1.0, 1.0)) / 2.0
    return widowx


class SimBackend:
    """A MetaWorld task as the robot: its Sawyer arm moves its hand by the xyz delta and closes its gripper by the
    gripper command (rotations are ignored: MetaWorld's hand keeps its orientation), and its corner camera is the
    robot's camera. `init` takes the task, the episode length and the action repeat (as a saved policy's spec
    has them) and the image size (square, or `image_height` x `image_width`).

    MetaWorld moves the hand's mocap target by `action * 0.01 m` per simulator step, for `action_repeat` steps,
    so a delta of d metres is the MetaWorld action d / metres_per_unit (as float32, a policy's actions: a policy
    run through the bridge acts exactly as in simulation). The observation's `info` carries the simulator's
    reward, success flag and full 39-D state (so state policies run through the bridge too)."""

    def __init__(self):
        self.env = None
        self.image_shape = (0, 0)
        self.metres_per_unit = 0.0
        self.stops = 0
        self._state = None
        self._steps = 0
        self._start = time.monotonic()

    def init(self, params: dict) -> dict:
        from clam_jax.envs.metaworld import MetaWorldTask

        size = int(params.get("image_size", 84))
        self.image_shape = (int(params.get("image_height", size)), int(params.get("image_width", size)))
        if not all(8 <= n <= 1024 for n in self.image_shape):
            raise ValueError(f"images of {self.image_shape} pixels: each side must be in [8, 1024]")
        task, max_steps, repeat = (params.get("task", "assembly-v3"), int(params.get("max_steps", 100)),
                                   int(params.get("action_repeat", 2)))
        if not (1 <= max_steps <= 100_000 and 1 <= repeat <= 100):
            raise ValueError(f"max_steps {max_steps} or action_repeat {repeat} out of range")
        if self.env is None or (self.env.task, self.env.max_steps, self.env.action_repeat) != (task, max_steps,
                                                                                              repeat):
            self.close()
            self.env = MetaWorldTask(task, max_steps=max_steps, action_repeat=repeat)
        self.metres_per_unit = 0.01 * repeat
        return {"image_shape": list(self.image_shape), "task": task, "metres_per_unit": self.metres_per_unit,
                "max_steps": max_steps}

    def reset(self, seed: int) -> dict:
        self._state = self.env.reset(seed)
        self._steps = 0
        return self._observation(reward=0.0, success=False)

    def step(self, action: np.ndarray, blocking: bool) -> dict:
        del blocking  # the simulator always finishes the step before replying
        xyz = (np.asarray(action[:3], np.float64) / self.metres_per_unit).astype(np.float32)
        gripper = np.float32(action[6])
        self._state, reward, success = self.env.step(np.concatenate([xyz, [gripper]]))
        self._steps += 1
        return self._observation(reward=reward, success=success)

    def hand_position(self) -> np.ndarray:
        return np.asarray(self._state[:3], np.float64)

    def stop(self) -> None:
        self.stops += 1  # the simulated arm does not move between steps

    def close(self) -> None:
        if self.env is not None:
            self.env.close()

    def _observation(self, *, reward: float, success: bool) -> dict:
        state = np.zeros(7, np.float32)
        state[:3], state[6] = self._state[:3], self._state[3]  # hand xyz; MetaWorld keeps the hand's rotation
        height, width = self.image_shape
        return {"images": {"corner": self.env.render(width, height)}, "state": state,
                "time": time.monotonic() - self._start, "step": self._steps, "clipped": False,
                "info": {"reward": float(reward), "success": bool(success), "sim_state": self._state,
                         "stops": self.stops}}


class WidowXBackend:
    """A real WidowX through BridgeData's robot stack (github.com/rail-berkeley/bridge_data_robot): run the
    server on the robot's computer, inside the stack's environment, where `widowx_envs` and ROS import."""

    def __init__(self):
        try:
            from widowx_envs.widowx_env import BridgeDataRailRLPrivateWidowX
        except ImportError as e:
            raise ConfigError(
                f"The WidowX backend needs BridgeData's robot stack ({e}); run the server on the robot's computer "
                "inside bridge_data_robot's environment (ROS and widowx_envs), or use --backend=sim.") from None
        self._env_class = BridgeDataRailRLPrivateWidowX
        self.env = None
        self._start = time.monotonic()
        self._steps = 0

    def init(self, params: dict) -> dict:
        image_size = int(params.get("image_size", 256))
        ours = ("image_size", "task", "max_steps", "action_repeat")  # what a clam_jax client sends besides
        self.env = self._env_class({k: v for k, v in params.items() if k not in ours}, image_size=image_size)
        return {"image_shape": [image_size, image_size], "metres_per_unit": 1.0}

    def reset(self, seed: int) -> dict:
        del seed  # a real scene is reset by the operator
        self.env.reset()
        self.env.start()
        self._steps = 0
        return self._observation()

    def step(self, action: np.ndarray, blocking: bool) -> dict:
        self.env.step(widowx_action(action), blocking=blocking)
        self._steps += 1
        return self._observation()

    def hand_position(self) -> np.ndarray:
        return np.asarray(self.env.current_obs()["state"][:3], np.float64)

    def stop(self) -> None:
        """Nothing to send: under position control the arm holds the last pose it reached."""

    def close(self) -> None:
        self.env = None

    def _observation(self) -> dict:
        obs = self.env.current_obs()
        state = np.asarray(obs["state"], np.float32)[:7]
        image = np.asarray(obs["full_image"] if obs.get("full_image") is not None else obs["image"])
        return {"images": {"external": image.astype(np.uint8)}, "state": state,
                "time": time.monotonic() - self._start, "step": self._steps, "clipped": False, "info": {}}


BACKENDS = ("sim", "widowx")


def make_backend(name: str) -> RobotBackend:
    if name == "sim":
        return SimBackend()
    if name == "widowx":
        return WidowXBackend()
    raise ConfigError(f"Unknown robot backend {name!r}; use one of {BACKENDS}.")
