"""The policy side of the bridge: a ZeroMQ REQ client of `clam_jax.bridge.server`.

Every call waits at most `timeout_s` for its reply and raises `BridgeTimeout`
otherwise (a dead, stalled or unreachable server never hangs the client); the
socket is then rebuilt, since a REQ socket that lost its reply cannot send
again. A reply whose status is not OK raises `BridgeError` with the server's
message.
"""
import numpy as np
import zmq

from clam_jax.bridge import protocol
from clam_jax.bridge.protocol import Status
from clam_jax.errors import ClamError


class BridgeError(ClamError):
    """The robot did not do what was asked; `status` says why (TIMEOUT: it did not answer)."""

    def __init__(self, status: Status, message: str):
        super().__init__(f"robot bridge: {status.name}: {message}")
        self.status = status


class BridgeTimeout(BridgeError):
    def __init__(self, message: str):
        super().__init__(Status.TIMEOUT, message)


class Closing:
    """A context manager that calls the object's `close()` on exit."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RequestSocket(Closing):
    """A ZeroMQ REQ socket to `address` whose every request waits at most `timeout_s` for its reply."""

    def __init__(self, address: str, timeout_s: float):
        self.address, self.timeout_s = address, timeout_s
        self._socket = None
        self._connect()

    def _connect(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket = zmq.Context.instance().socket(zmq.REQ)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(self.address)

    def request(self, data: bytes) -> bytes:
        """The reply's bytes; `BridgeTimeout` (with a fresh socket for the next request) when none comes."""
        self._socket.send(data)
        if not self._socket.poll(timeout=int(self.timeout_s * 1000)):
            self._connect()
            raise BridgeTimeout(f"no reply from {self.address} within {self.timeout_s} s")
        return self._socket.recv()

    def close(self) -> None:
        self._socket.close()


class RobotClient(RequestSocket):
    def __init__(self, address: str, *, timeout_s: float = 5.0, compress_above: int = 65_536):
        super().__init__(address, timeout_s)
        self.compress_above = compress_above

    def call(self, request: dict) -> dict:
        """Sends `request` and returns the server's OK reply."""
        return self.send_bytes(protocol.encode(request, self.compress_above))

    def send_bytes(self, data: bytes) -> dict:
        """Sends raw request bytes (any bytes: the server answers garbage with an error) and returns the OK reply."""
        reply = self.request(data)
        try:
            message = protocol.check_reply(protocol.decode(reply))
        except protocol.ProtocolError as e:
            raise BridgeError(Status.BAD_REQUEST, f"unreadable reply from {self.address}: {e}") from None
        status = Status(message["status"])
        if status != Status.OK:
            raise BridgeError(status, message["message"])
        return message

    def hello(self, action_keys=protocol.ACTION_KEYS, observation_keys=protocol.OBSERVATION_KEYS) -> dict:
        return self.call(protocol.request("hello", action_keys=list(action_keys),
                                          observation_keys=list(observation_keys)))

    def init(self, **params) -> dict:
        return self.call(protocol.request("init", params=params))["info"]

    def reset(self, seed: int) -> dict:
        return self.call(protocol.request("reset", seed=int(seed)))["observation"]

    def step(self, action: np.ndarray, blocking: bool = True) -> dict:
        """Executes a 7-D action (sent in float64, so metric actions from float32 policies convert back exactly)."""
        action = np.asarray(action, np.float64)
        return self.call(protocol.request("step", action=action, blocking=blocking))["observation"]

    def stop(self) -> None:
        self.call(protocol.request("stop"))
