"""A saved policy driving a robot through the bridge, episode by episode, at a fixed control rate.

The policy sees what it saw in training, built from the robot's observation:
image policies the camera frame (the server renders or crops it at the policy's
`image_size`) and, with proprioception, the hand's xyz and gripper opening (the
robot state's entries 0-2 and 6, MetaWorld's first four state entries); state
policies the simulator's state, which only the simulated backend serves. Its
actions become 7-D bridge actions, the xyz scaled by the server's
`metres_per_unit` (MetaWorld's 4-D actions: no rotation). Every step is
recorded, so robot evaluations become RLDS datasets (`clam_jax.data.episodes`).
"""
import time

import numpy as np

from clam_jax.data.episodes import Episodes
from clam_jax.data.observations import model_observations
from clam_jax.errors import ConfigError
from clam_jax.rollout.chunking import start_episodes

OUTCOMES = ("success", "partial", "fail")


class Pacer:
    """`wait()` returns at most once per `period_s`: it sleeps until a period after the last return, or
    returns at once when the caller is already late (which restarts the schedule)."""

    def __init__(self, period_s: float, clock=time.monotonic, sleep=time.sleep):
        self.period_s, self.clock, self.sleep = period_s, clock, sleep
        self._due = None

    def wait(self) -> None:
        now = self.clock()
        if self._due is not None and now < self._due:
            self.sleep(self._due - now)
            now = self._due
        self._due = now + self.period_s


def camera_image(observation: dict, camera: str | None) -> np.ndarray:
    """The frame of `camera`, or with None the observation's only one."""
    images = observation["images"]
    if camera is None:
        if len(images) != 1:
            raise ConfigError(f"The robot sends the cameras {sorted(images)}; choose the policy's with --camera.")
        return next(iter(images.values()))
    if camera not in images:
        raise ConfigError(f"The robot has no camera {camera!r}; it sends {sorted(images)}.")
    return images[camera]


def policy_input(observation: dict, spec: dict, camera: str | None):
    """The saved policy's input (a batch of one) from a bridge observation."""
    if spec.get("observation") != "image":
        state = observation["info"].get("sim_state")
        if state is None:
            raise ConfigError("A state policy needs the simulator's state, which only --backend=sim serves; "
                              "drive a real robot with an image policy (configs/metaworld_images.py).")
        return np.asarray(state, np.float32)[None]
    robot = observation["state"]
    proprio = np.concatenate([robot[:3], robot[6:7]]).astype(np.float32)  # MetaWorld's layout: xyz, gripper
    return model_observations(proprio[None], camera_image(observation, camera)[None], spec.get("proprio_dims", 0))


def bridge_action(action: np.ndarray, metres_per_unit: float) -> np.ndarray:
    """A policy's [dx, dy, dz, gripper] (MetaWorld's) or 7-D action as the bridge's 7-D float64 action, its xyz
    scaled by `metres_per_unit`."""
    action = np.asarray(action, np.float64)
    if action.shape[-1] == 7:
        return np.concatenate([action[:3] * metres_per_unit, action[3:]])
    return np.concatenate([action[:3] * metres_per_unit, np.zeros(3), action[3:4]])


def run_on_robot(act, client, spec: dict, seeds: list[int], *, pacer: Pacer, camera: str | None = None,
                 operator=None) -> tuple[dict, Episodes]:
    """Runs `act` (a saved policy's actor, reset before each episode) for one episode per seed on the robot
    behind `client`.

    The outcome of an episode is the operator's (`operator(episode_index)` -> one of
    OUTCOMES) when given, else the simulator's success flag. Returns the evaluation
    (as `clam_jax.rollout.evaluation.evaluate`'s, plus outcomes and step timings) and
    the recorded episodes (robot states, 7-D actions, rewards, frames).
    """
    info = client.init(image_size=int(spec.get("image_size") or 84), task=spec["task"],
                       max_steps=spec["max_steps"], action_repeat=spec["action_repeat"])
    steps = spec["max_steps"]
    states, actions, rewards, frames, outcomes, returns, step_times = [], [], [], [], [], [], []
    for episode, seed in enumerate(seeds):
        observation = client.reset(seed)
        start_episodes(act)
        episode_states, episode_frames = [observation["state"]], [camera_image(observation, camera)]
        episode_actions, episode_rewards, success = [], [], False
        for _ in range(steps):
            pacer.wait()
            start = time.perf_counter()
            action = bridge_action(np.asarray(act(policy_input(observation, spec, camera)))[0],
                                   info["metres_per_unit"])
            observation = client.step(action)
            step_times.append(time.perf_counter() - start)
            episode_states.append(observation["state"])
            episode_frames.append(camera_image(observation, camera))
            episode_actions.append(action.astype(np.float32))
            episode_rewards.append(observation["info"].get("reward", 0.0))
            success |= bool(observation["info"].get("success", False))
        client.stop()
        outcome = operator(episode) if operator else ("success" if success else "fail")
        if outcome not in OUTCOMES:
            raise ValueError(f"episode outcome {outcome!r} is not one of {OUTCOMES}")
        outcomes.append(outcome)
        returns.append(float(np.sum(episode_rewards)))
        states.append(episode_states)
        frames.append(episode_frames)
        actions.append(episode_actions + [np.zeros(7, np.float32)])  # RLDS: the last step has no action
        rewards.append(episode_rewards + [0.0])
    successes = [o == "success" for o in outcomes]
    result = {"success_rate": float(np.mean(successes)), "num_episodes": len(seeds), "successes": successes,
              "returns": returns, "outcomes": outcomes, "step_time_s_mean": float(np.mean(step_times)),
              "step_time_s_max": float(np.max(step_times))}
    episodes = Episodes(observations=np.asarray(states, np.float32), actions=np.asarray(actions, np.float32),
                        rewards=np.asarray(rewards, np.float32), success=np.asarray(successes),
                        behavior=np.array(["robot"] * len(seeds)), images=np.asarray(frames, np.uint8))
    return result, episodes


def connect(address: str, *, timeout_s: float):
    """A robot client with the handshake done: `tcp://HOST:PORT` a clam_jax robot server,
    `bridgedata://HOST:PORT` BridgeData's WidowX service."""
    from clam_jax.bridge.bridgedata import BridgeDataClient, BridgeDataRobot
    from clam_jax.bridge.client import RobotClient

    scheme, _, location = address.partition("://")
    if scheme == "tcp":
        client = RobotClient(address, timeout_s=timeout_s)
        try:
            client.hello()
        except Exception:
            client.close()
            raise
        return client
    if scheme == "bridgedata":
        host, _, port = location.rpartition(":")
        return BridgeDataRobot(BridgeDataClient(host, int(port), timeout_s=timeout_s))
    raise ConfigError(f"Unknown robot address {address!r}; use tcp://HOST:PORT (a clam_jax robot server) or "
                      "bridgedata://HOST:PORT (BridgeData's WidowX service).")


def ask_operator(episode: int) -> str:
    """Asks on the terminal how episode `episode` went (the paper's protocol: success, partial or fail)."""
    while True:
        answer = input(f"episode {episode}: outcome? [s]uccess / [p]artial / [f]ail: ").strip().lower()
        for outcome in OUTCOMES:
            if answer and outcome.startswith(answer):
                return outcome
