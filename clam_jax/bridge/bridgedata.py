"""A client of BridgeData's WidowX robot service, so labs that run it drive the robot with clam_jax policies.

BridgeData's robot computer runs `widowx_env_service --server`
(github.com/rail-berkeley/bridge_data_robot, over edgeml): a ZeroMQ REP server
whose messages are lz4-compressed pickled dicts.
  {"type": "hash"} -> {"success": True, "payload": <the server's config as compact JSON>}; the client compares
      the md5 of its own config's JSON with it (port_number, action_keys, observation_keys, broadcast_port,
      version) and refuses a server that differs.
  {"type": "act", "key": k, "payload": {...}} -> {"status": WidowX status}, k one of the action keys:
      init {"env_params", "image_size"}, move {"pose", "duration", "blocking"}, gripper {"open"},
      reset {}, step_action {"action": 7-D delta with the gripper in [0, 1] (1 open), "blocking"}.
  {"type": "obs", "keys": set of observation keys} -> {"image": float [3 * S * S] in [0, 1], channels first,
      "state": 7-D, "full_image": uint8 [H, W, 3]}.
Moves take 0.2 s. Replies are unpickled by `clam_jax.data.safe_pickle`, which admits
numpy arrays, numpy scalars and plain containers and refuses every other global,
so a reply cannot run code on the policy's machine.

`BridgeDataRobot` gives that service `clam_jax.bridge.client.RobotClient`'s
interface, so `clam_jax.bridge.rollout` and `clam_jax.evaluate --robot=bridgedata://HOST:PORT` use it.
"""
import hashlib
import json
import pickle
import time

import lz4.frame
import numpy as np

from clam_jax.bridge.backends import widowx_action
from clam_jax.bridge.client import BridgeError, Closing, RequestSocket
from clam_jax.bridge.protocol import Status
from clam_jax.data.safe_pickle import restricted_loads

ACTION_KEYS = ("init", "move", "gripper", "reset", "step_action")
OBSERVATION_KEYS = ("image", "state", "full_image")
VERSION = "0.0.1"


class WidowXStatus:
    """The service's status codes."""

    NO_CONNECTION = 0
    SUCCESS = 1
    EXECUTION_FAILURE = 2
    NOT_INITIALIZED = 3


def dumps(message) -> bytes:
    return lz4.frame.compress(pickle.dumps(message))


def loads(data: bytes):
    """A reply's message; `pickle.UnpicklingError` for one that names anything but arrays and containers."""
    return restricted_loads(lz4.frame.decompress(data))


def config_json(port: int, action_keys=ACTION_KEYS, observation_keys=OBSERVATION_KEYS, version=VERSION) -> str:
    """The service's configuration as it hashes it (edgeml's ActionConfig, compact JSON)."""
    config = {"port_number": port, "action_keys": list(action_keys), "observation_keys": list(observation_keys),
              "broadcast_port": port + 1, "version": version}
    return json.dumps(config, separators=(",", ":"))


class BridgeDataClient(RequestSocket):
    """The robot service at tcp://`host`:`port`; every call waits at most `timeout_s`."""

    def __init__(self, host: str, port: int = 5556, *, timeout_s: float = 5.0, action_keys=ACTION_KEYS,
                 observation_keys=OBSERVATION_KEYS, version: str = VERSION):
        super().__init__(f"tcp://{host}:{port}", timeout_s)
        expected = config_json(port, action_keys, observation_keys, version)
        reply = self._send({"type": "hash"})
        served = reply.get("payload") if isinstance(reply, dict) else None
        if not isinstance(served, str) or _md5(served) != _md5(expected):
            raise BridgeError(Status.HANDSHAKE_REFUSED, f"the robot service's configuration {served!r} differs "
                                                        f"from this client's {expected}")

    def _send(self, message: dict):
        data = self.request(dumps(message))
        try:
            return loads(data)
        except Exception as e:
            raise BridgeError(Status.BAD_REQUEST, f"unreadable reply from {self.address}: {e}") from None

    def act(self, key: str, payload: dict) -> None:
        reply = self._send({"type": "act", "key": key, "payload": payload})
        status = reply.get("status") if isinstance(reply, dict) else None
        if status != WidowXStatus.SUCCESS:
            code = {WidowXStatus.NOT_INITIALIZED: Status.NOT_INITIALISED}.get(status, Status.EXECUTION_FAILED)
            raise BridgeError(code, f"{key} answered status {status}")

    def observe(self) -> dict:
        reply = self._send({"type": "obs", "keys": set(OBSERVATION_KEYS)})
        if not isinstance(reply, dict) or not {"image", "state"} <= set(reply):
            raise BridgeError(Status.EXECUTION_FAILED, "the robot service sent no observation")
        return reply


class BridgeDataRobot(Closing):
    """`RobotClient`'s interface over BridgeData's robot service: policy images are the service's `image`
    (image_size x image_size), the gripper command in [-1, 1] (1 closed) maps to its [0, 1] (1 open)."""

    def __init__(self, client: BridgeDataClient, env_params: dict | None = None):
        self.client, self.env_params = client, dict(env_params or {})
        self.image_size = 0
        self._steps = 0
        self._start = time.monotonic()

    def hello(self) -> dict:
        return {}  # the md5 handshake happened when the client connected

    def init(self, *, image_size: int, **params) -> dict:
        del params  # the task and episode length are the operator's: a real scene has no seeds
        self.image_size = image_size
        self.client.act("init", {"env_params": self.env_params, "image_size": image_size})
        return {"image_shape": [image_size, image_size], "metres_per_unit": 1.0}

    def reset(self, seed: int) -> dict:
        del seed
        self.client.act("reset", {})
        self._steps = 0
        return self._observation()

    def step(self, action: np.ndarray, blocking: bool = True) -> dict:
        self.client.act("step_action", {"action": widowx_action(action), "blocking": blocking})
        self._steps += 1
        return self._observation()

    def stop(self) -> None:
        """Nothing to send: the service's arm holds its last pose."""

    def close(self) -> None:
        self.client.close()

    def _observation(self) -> dict:
        raw = self.client.observe()
        size = self.image_size
        image = np.asarray(raw["image"], np.float32).reshape(3, size, size).transpose(1, 2, 0)
        return {"images": {"external": np.clip(np.round(image * 255), 0, 255).astype(np.uint8)},
                "state": np.asarray(raw["state"], np.float32)[:7], "time": time.monotonic() - self._start,
                "step": self._steps, "clipped": False, "info": {}}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()
