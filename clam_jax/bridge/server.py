"""The robot side of the bridge: a ZeroMQ REP server that drives a backend.

  python -m clam_jax.bridge.server --backend=sim --port=5556     # any machine: a simulated arm
  python -m clam_jax.bridge.server --backend=widowx --port=5556  # the WidowX's computer

Every request gets one reply, also a malformed one (BAD_REQUEST), one too large
(TOO_LARGE), one before the handshake (HANDSHAKE_REFUSED) or before `init`
(NOT_INITIALISED), and one whose execution raised (EXECUTION_FAILED): nothing a
client sends stops the server. Every commanded action is clipped to the
`Workspace` before the backend sees it. When no request arrives for
`idle_stop_s` after a step, the backend stops (holds) the arm once, so a client
that dies or stalls mid-episode cannot leave the arm moving.
"""
import dataclasses
import sys
import threading
import time

import numpy as np
import zmq
from absl import app, flags

from clam_jax.bridge import protocol
from clam_jax.bridge.protocol import ProtocolError, Status
from clam_jax.errors import ClamError


@dataclasses.dataclass(frozen=True)
class Workspace:
    """Where the end effector may go (metres, xyz box) and how far one action may move and turn it."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    max_translation: float  # metres per action and axis
    max_rotation: float = 0.25  # radians per action and axis

    def clip(self, action: np.ndarray, hand: np.ndarray) -> tuple[np.ndarray, bool]:
        """(the action inside the bounds, whether that changed it); entries within bounds stay bit for bit."""
        clipped = np.asarray(action, np.float64).copy()
        clipped[:3] = np.clip(clipped[:3], -self.max_translation, self.max_translation)
        clipped[3:6] = np.clip(clipped[3:6], -self.max_rotation, self.max_rotation)
        clipped[6] = np.clip(clipped[6], -1.0, 1.0)
        target = hand + clipped[:3]
        low, high = np.asarray(self.low), np.asarray(self.high)
        clipped[:3] = np.where(target > high, high - hand, np.where(target < low, low - hand, clipped[:3]))
        return clipped, not np.array_equal(clipped, action)


SIM_WORKSPACE = Workspace(low=(-0.5, 0.4, 0.05), high=(0.5, 1.0, 0.5), max_translation=0.02)  # MetaWorld's
WIDOWX_WORKSPACE = Workspace(low=(0.1, -0.15, -0.1), high=(0.45, 0.25, 0.18), max_translation=0.05)  # BridgeData's


class RobotServer:
    """Serves `backend` on `address` (e.g. "tcp://*:5556") until `stop()`; `handle` is the whole protocol."""

    def __init__(self, backend, address: str, workspace: Workspace, *, idle_stop_s: float = 1.0,
                 max_bytes: int = protocol.MAX_MESSAGE_BYTES, clock=time.monotonic):
        self.backend, self.workspace = backend, workspace
        self.idle_stop_s, self.max_bytes, self.clock = idle_stop_s, max_bytes, clock
        self.greeted = self.initialised = self.moving = False
        self.last_request = clock()
        self._stop = threading.Event()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, 2 * max_bytes)  # larger frames drop the connection unread
        self.port = self._bind(address)

    def _bind(self, address: str) -> int:
        if address.endswith(":0"):
            return self._socket.bind_to_random_port(address[:-2])
        self._socket.bind(address)
        return int(address.rsplit(":", 1)[1])

    def serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if poller.poll(timeout=20):
                    self._socket.send(self.handle(self._socket.recv()))
                self.watchdog()
        finally:
            self._socket.close()
            self._context.term()

    def stop(self) -> None:
        self._stop.set()

    def watchdog(self) -> None:
        """Stops the arm once when a moving episode has had no request for `idle_stop_s`."""
        if self.moving and self.clock() - self.last_request > self.idle_stop_s:
            self.backend.stop()
            self.moving = False

    def handle(self, data: bytes) -> bytes:
        """The reply to one request's bytes; never raises."""
        self.last_request = self.clock()
        if len(data) > self.max_bytes:
            too_large = f"{len(data)} bytes; the limit is {self.max_bytes}"
            return protocol.encode(protocol.reply(Status.TOO_LARGE, too_large))
        try:
            request = protocol.check_request(protocol.decode(data, self.max_bytes))
        except ProtocolError as e:
            return protocol.encode(protocol.reply(Status.BAD_REQUEST, str(e)))
        try:
            return protocol.encode(self._dispatch(request))
        except Exception as e:  # the backend failed: the robot or simulator could not execute the request
            self.moving = False
            return protocol.encode(protocol.reply(Status.EXECUTION_FAILED, f"{type(e).__name__}: {e}"))

    def _dispatch(self, request: dict) -> dict:
        kind = request["type"]
        if kind == "hello":
            expected = {"action_keys": list(protocol.ACTION_KEYS),
                        "observation_keys": list(protocol.OBSERVATION_KEYS)}
            for key, keys in expected.items():
                if request[key] != keys:
                    return protocol.reply(Status.HANDSHAKE_REFUSED,
                                          f"this server's {key} are {keys}, the client's {request[key]}", **expected)
            self.greeted = True
            return protocol.reply(Status.OK, **expected)
        if not self.greeted:
            return protocol.reply(Status.HANDSHAKE_REFUSED, "send hello first")
        if kind == "init":
            info = self.backend.init(request["params"])
            self.initialised = True
            return protocol.reply(Status.OK, info=info)
        if not self.initialised:
            return protocol.reply(Status.NOT_INITIALISED, "send init first")
        if kind == "reset":
            observation = self.backend.reset(request["seed"])
        elif kind == "step":
            action, clipped = self.workspace.clip(request["action"], self.backend.hand_position())
            observation = self.backend.step(action, request.get("blocking", True))
            observation["clipped"] = clipped
            self.moving = True
        else:
            self.backend.stop()
            self.moving = False
            return protocol.reply(Status.OK)
        return protocol.reply(Status.OK, observation=observation)


FLAGS = flags.FLAGS


def main(argv):
    del argv
    from clam_jax.bridge.backends import make_backend
    from clam_jax.cli import use_headless_rendering

    use_headless_rendering()
    try:
        backend = make_backend(FLAGS.backend)
    except ClamError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    workspace = SIM_WORKSPACE if FLAGS.backend == "sim" else WIDOWX_WORKSPACE
    server = RobotServer(backend, f"tcp://{FLAGS.host}:{FLAGS.port}", workspace, idle_stop_s=FLAGS.idle_stop_s)
    print(f"clam_jax robot server ({FLAGS.backend}) on port {server.port}", flush=True)
    try:
        server.serve()
    finally:
        backend.close()


if __name__ == "__main__":
    flags.DEFINE_enum("backend", "sim", ["sim", "widowx"], "The robot: a simulated MetaWorld arm or a real WidowX.")
    flags.DEFINE_string("host", "*", "The interface to listen on (* for all).")
    flags.DEFINE_integer("port", 5556, "The TCP port to listen on (0: any free port, printed at start).")
    flags.DEFINE_float("idle_stop_s", 1.0, "Stop the arm when a moving episode gets no request for this long.")
    app.run(main)
