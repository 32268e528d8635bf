"""The robot bridge over real sockets on loopback: messages, the server's robustness, workspace clipping, the idle
stop, timeouts and a killed server, the BridgeData-compatible transport against a stand-in of its service, and a
trained policy evaluated through the bridge against the same policy in simulation."""
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from clam_jax.bridge import bridgedata, protocol
from clam_jax.bridge.backends import SimBackend, make_backend
from clam_jax.bridge.client import BridgeError, BridgeTimeout, RobotClient
from clam_jax.bridge.protocol import ProtocolError, Status
from clam_jax.bridge.rollout import Pacer, ask_operator, bridge_action, connect, run_on_robot
from clam_jax.bridge.server import SIM_WORKSPACE, RobotServer, Workspace
from clam_jax.envs.metaworld import MetaWorldTask, expert_policy
from clam_jax.errors import ConfigError

ROOT = Path(__file__).parents[1]
MAX_BYTES = 2 ** 20
PARAMS = {"image_size": 32, "task": "assembly-v3", "max_steps": 10, "action_repeat": 2}


class Served:
    """A robot server with the simulated arm, serving in a thread; stopped and closed on exit."""

    def __init__(self, **options):
        self.backend = SimBackend()
        self.server = RobotServer(self.backend, "tcp://127.0.0.1:0", options.pop("workspace", SIM_WORKSPACE),
                                  max_bytes=MAX_BYTES, **options)
        self.address = f"tcp://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.clients = []

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        for client in self.clients:
            client.close()
        self.server.stop()
        self.thread.join()
        self.backend.close()

    def client(self, **options) -> RobotClient:
        """A client of this server, closed with it."""
        self.clients.append(RobotClient(self.address, timeout_s=options.pop("timeout_s", 10.0), **options))
        return self.clients[-1]


@pytest.fixture
def served():
    with Served() as s:
        yield s


def ready_client(served) -> RobotClient:
    client = served.client()
    client.hello()
    client.init(**PARAMS)
    return client


def test_messages_round_trip_arrays_and_lossless_compressed_images():
    rows, columns = np.mgrid[:480, :640]
    frame = np.stack([rows % 256, columns % 256, (rows + columns) % 7], -1).astype(np.uint8)  # a camera-like frame
    message = {"schema": 1, "a": np.arange(6, dtype=np.float32).reshape(2, 3), "frame": frame, "n": [1, "x", None]}
    data = protocol.encode(message)
    assert len(data) < frame.nbytes / 4  # the frame went as PNG
    decoded = protocol.decode(data)
    np.testing.assert_array_equal(decoded["a"], message["a"])
    assert decoded["a"].dtype == np.float32 and decoded["n"] == [1, "x", None]
    np.testing.assert_array_equal(decoded["frame"], frame)


@pytest.mark.parametrize("payload", [np.array([object()]), object(), {1, 2}])
def test_only_data_travels(payload):
    with pytest.raises(TypeError):
        protocol.encode({"schema": 1, "x": payload})


def valid_requests() -> list[bytes]:
    return [protocol.encode(protocol.request("hello", action_keys=list(protocol.ACTION_KEYS),
                                             observation_keys=list(protocol.OBSERVATION_KEYS))),
            protocol.encode(protocol.request("init", params=PARAMS)),
            protocol.encode(protocol.request("reset", seed=3)),
            protocol.encode(protocol.request("step", action=np.zeros(7, np.float32), blocking=True))]


def mutated(data: bytes, rng) -> bytes:
    """`data` after one to three random edits: a byte changed, the tail cut off, or four random bytes inserted."""
    data = bytearray(data)
    for _ in range(rng.integers(1, 4)):
        at, edit = int(rng.integers(len(data) + 1)), rng.integers(3)
        if edit == 0 and at < len(data):
            data[at] = int(rng.integers(256))
        elif edit == 1:
            del data[at:]
        else:
            data[at:at] = rng.integers(0, 256, 4, np.uint8).tobytes()
    return bytes(data)


def test_fuzzed_requests_get_error_replies_and_never_crash_the_server():
    """Random bytes and random mutations (flips, truncations, insertions) of valid requests, straight into the
    server's handler: every one gets a well-formed reply, and the server still serves an episode afterwards."""
    rng = np.random.default_rng(0)
    valid = valid_requests()
    with Served() as s:
        survived = 0
        for i in range(3000):
            if i % 3 == 0:
                data = rng.integers(0, 256, rng.integers(0, 200), np.uint8).tobytes()
            else:
                data = mutated(valid[rng.integers(len(valid))], rng)
            reply = protocol.check_reply(protocol.decode(s.server.handle(data)))
            assert reply["status"] in set(Status)
            survived += 1
        assert survived == 3000
        client = ready_client(s)
        assert client.reset(0)["images"]["corner"].shape == (32, 32, 3)


def test_decoder_refuses_what_is_not_a_message():
    for data in (b"", b"\xc1", protocol.encode([1, 2]), protocol.encode({"type": "hello"}),
                 b"\xd4\x07\x00", b"\xc7\x03\x01\x00\x01\x02"):
        with pytest.raises(ProtocolError):
            protocol.decode(data)
    with pytest.raises(ProtocolError, match="exceeds"):
        protocol.decode(b"\x00" * 11, max_bytes=10)
    # A PNG whose header claims 100000 x 100000 pixels is refused before it is decoded.
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (100_000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        protocol.decode(protocol.msgpack.packb({"schema": 1, "x": protocol.msgpack.ExtType(2, header)}))


def test_an_episode_through_the_bridge_is_the_simulation(served):
    client = ready_client(served)
    direct = MetaWorldTask("assembly-v3", max_steps=10, action_repeat=2)
    try:
        observation, state = client.reset(5), direct.reset(5)
        np.testing.assert_array_equal(observation["info"]["sim_state"], state)
        np.testing.assert_array_equal(observation["images"]["corner"], direct.render(32, 32))
        for action in np.random.default_rng(1).uniform(-1, 1, (5, 4)).astype(np.float32):
            observation = client.step(bridge_action(action, 0.02))
            state, reward, _ = direct.step(action)
            np.testing.assert_array_equal(observation["info"]["sim_state"], state)
            assert observation["info"]["reward"] == reward and not observation["clipped"]
            np.testing.assert_array_equal(observation["state"][[0, 1, 2, 6]], state[:4])
        assert observation["step"] == 5
    finally:
        direct.close()


def test_handshake_with_other_keys_or_schema_is_refused(served):
    client = served.client()
    with pytest.raises(BridgeError) as refused:
        client.hello(action_keys=["delta_xyz", "gripper"])
    assert refused.value.status == Status.HANDSHAKE_REFUSED and "action_keys" in str(refused.value)
    with pytest.raises(BridgeError) as refused:
        client.call({**protocol.request("hello", action_keys=list(protocol.ACTION_KEYS),
                                        observation_keys=list(protocol.OBSERVATION_KEYS)), "schema": 99})
    assert refused.value.status == Status.BAD_REQUEST and "schema version 99" in str(refused.value)
    with pytest.raises(BridgeError) as refused:
        client.reset(0)  # no handshake yet
    assert refused.value.status == Status.HANDSHAKE_REFUSED
    client.hello()
    with pytest.raises(BridgeError) as refused:
        client.reset(0)
    assert refused.value.status == Status.NOT_INITIALISED


def test_malformed_truncated_and_oversized_requests_are_answered_and_serving_goes_on(served):
    client = ready_client(served)
    step = valid_requests()[3]
    for data, status in ((b"not msgpack", Status.BAD_REQUEST), (step[:-5], Status.BAD_REQUEST),
                         (protocol.encode(protocol.request("step", action=np.zeros(3))), Status.BAD_REQUEST),
                         (protocol.encode(protocol.request("fly")), Status.BAD_REQUEST),
                         (b"\x00" * (MAX_BYTES + 1), Status.TOO_LARGE)):
        with pytest.raises(BridgeError) as answered:
            client.send_bytes(data)
        assert answered.value.status == status
    # Larger still than the socket accepts: the server drops the connection unread, the client times out and
    # reconnects, and serving goes on.
    impatient = served.client(timeout_s=1.0)
    with pytest.raises(BridgeTimeout):
        impatient.send_bytes(b"\x00" * (3 * MAX_BYTES))
    impatient.hello()
    client.reset(0)
    assert client.step(np.zeros(7))["step"] == 1


def test_a_client_that_leaves_mid_request_does_not_stop_the_server(served):
    leaving = served.client()
    leaving.hello()
    leaving.init(**PARAMS)
    leaving._socket.send(protocol.encode(protocol.request("reset", seed=0)))
    leaving.close()  # gone before the reply
    staying = served.client()
    staying.hello()
    assert staying.reset(1)["step"] == 0 and staying.step(np.zeros(7))["step"] == 1


def test_workspace_clips_steps_and_bounds():
    workspace = Workspace(low=(0.0, 0.0, 0.0), high=(1.0, 1.0, 1.0), max_translation=0.05, max_rotation=0.1)
    hand = np.array([0.5, 0.99, 0.02])
    inside = np.array([0.01, 0.0, -0.01, 0.05, 0.0, 0.0, 0.3], np.float32)
    kept, changed = workspace.clip(inside, hand)
    assert not changed and np.array_equal(kept, inside)  # bit for bit
    clipped, changed = workspace.clip(np.array([0.3, 0.04, -0.04, 1.0, -1.0, 0.0, 5.0]), hand)
    assert changed
    np.testing.assert_allclose(clipped, [0.05, 0.01, -0.02, 0.1, -0.1, 0.0, 1.0], atol=1e-12)


def test_server_clips_every_commanded_action():
    with Served(workspace=Workspace(low=(-0.5, 0.4, 0.05), high=(0.5, 1.0, 0.5), max_translation=0.005)) as s:
        client = ready_client(s)
        start = client.reset(0)["state"][:3]
        observation = client.step(np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]))
        assert observation["clipped"]
        moved = observation["state"][:3] - start
        assert 0.0 < moved[0] <= 0.005 + 1e-3  # the mocap leads the hand by a little


def test_idle_client_gets_the_arm_stopped_once():
    now = [0.0]
    with Served(idle_stop_s=1.0, clock=lambda: now[0]) as s:
        client = ready_client(s)
        client.reset(0)
        for _ in range(3):
            now[0] += 0.5  # a step every half second: never idle for long enough
            client.step(np.zeros(7))
        assert s.backend.stops == 0
        now[0] += 1.5
        deadline = time.monotonic() + 5
        while s.backend.stops == 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # the serving thread's watchdog runs every 20 ms
        now[0] += 5.0
        time.sleep(0.1)
        assert s.backend.stops == 1  # once, not again while still idle
        assert client.step(np.zeros(7))["info"]["stops"] == 1


def test_pacer_spaces_steps_by_the_period():
    now, slept = [0.0], []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(0.2, clock=lambda: now[0], sleep=sleep)
    starts = []
    for work in (0.05, 0.05, 0.3, 0.05):
        pacer.wait()
        starts.append(now[0])
        now[0] += work
    assert starts == pytest.approx([0.0, 0.2, 0.4, 0.7])  # late after the 0.3 s step: no catching up
    assert slept == pytest.approx([0.15, 0.15])


def test_scripted_expert_succeeds_through_the_bridge_and_the_operator_has_the_last_word(served):
    expert = expert_policy("assembly-v3")
    spec = {"observation": "state", "image_size": 0, "task": "assembly-v3", "max_steps": 100, "action_repeat": 2}
    client = served.client()
    client.hello()

    def act(states):
        return expert(states[0])[None]

    result, episodes = run_on_robot(act, client, spec, [7], pacer=Pacer(0.0))
    assert result["successes"] == [True] and result["outcomes"] == ["success"]
    assert episodes.actions.shape == (1, 101, 7) and episodes.images.shape == (1, 101, 84, 84, 3)
    result, _ = run_on_robot(act, client, spec, [7], pacer=Pacer(0.0), operator=lambda episode: "partial")
    assert result["outcomes"] == ["partial"] and result["success_rate"] == 0.0


def test_operator_is_asked_until_the_answer_is_an_outcome(monkeypatch):
    answers = iter(["", "maybe", "p", "S"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert ask_operator(0) == "partial" and ask_operator(1) == "success"


def test_client_times_out_without_a_server_and_after_the_server_dies(tmp_path):
    start = time.monotonic()
    with RobotClient("tcp://127.0.0.1:9", timeout_s=0.5) as nobody, pytest.raises(BridgeTimeout):
        nobody.hello()
    assert time.monotonic() - start < 5
    server = subprocess.Popen([sys.executable, "-m", "clam_jax.bridge.server", "--backend=sim", "--port=0"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        port = int(server.stdout.readline().split("port")[1])
        client = RobotClient(f"tcp://127.0.0.1:{port}", timeout_s=10.0)
        client.hello()
        client.init(**PARAMS)
        client.reset(0)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        client.timeout_s = 1.0
        start = time.monotonic()
        with pytest.raises(BridgeTimeout):
            client.step(np.zeros(7))
        assert time.monotonic() - start < 5
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)


def test_widowx_backend_without_the_robot_stack_says_what_to_install():
    with pytest.raises(ConfigError, match="bridge_data_robot"):
        make_backend("widowx")
    done = subprocess.run([sys.executable, "-m", "clam_jax.bridge.server", "--backend=widowx"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: The WidowX backend")


class BridgeDataStandIn:
    """BridgeData's WidowX robot service as its protocol is described (lz4 + pickle over REQ/REP, md5 config
    handshake, act and obs requests), serving the simulated arm; `poison` makes it reply with a pickle that would
    run a command."""

    def __init__(self, poison_path: Path | None = None, action_keys=bridgedata.ACTION_KEYS):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.config = bridgedata.config_json(self.port, action_keys)
        self.poison_path = poison_path
        self.env = MetaWorldTask("assembly-v3", max_steps=10, action_repeat=2)
        self.image_size, self.state, self.requests = 0, None, []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                message = pickle.loads(bridgedata.lz4.frame.decompress(self.socket.recv()))
            except zmq.ZMQError:  # the context was terminated: close() was called
                self.socket.close()
                return
            self.requests.append(message)
            self.socket.send(bridgedata.lz4.frame.compress(pickle.dumps(self.answer(message))))

    def answer(self, message):
        if message["type"] == "hash":
            return {"success": True, "payload": self.config}
        if self.poison_path is not None:
            return Poison(self.poison_path)
        if message["type"] == "obs":
            frame = self.env.render(self.image_size, self.image_size)
            image = (frame.transpose(2, 0, 1).reshape(-1) / 255.0).astype(np.float32)
            state = np.concatenate([self.state[:3], np.zeros(3), [self.state[3]]]).astype(np.float32)
            return {"image": image, "state": state, "full_image": frame}
        key, payload = message["key"], message["payload"]
        if key == "init":
            self.image_size = payload["image_size"]
        elif key == "reset":
            self.state = self.env.reset(0)
        elif key == "step_action":
            action = payload["action"]
            self.state, _, _ = self.env.step(np.array([*action[:3] / 0.02, 1.0 - 2.0 * action[6]], np.float32))
        return {"status": bridgedata.WidowXStatus.SUCCESS}

    def close(self):
        self.context.term()  # wakes the serving thread, which closes its socket
        self.thread.join()
        self.env.close()


class Poison:
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def test_bridgedata_transport_runs_an_episode_against_the_service():
    service = BridgeDataStandIn()
    try:
        with connect(f"bridgedata://127.0.0.1:{service.port}", timeout_s=10.0) as robot:
            spec = {"observation": "image", "image_size": 32, "proprio_dims": 4, "task": "assembly-v3",
                    "max_steps": 6, "action_repeat": 2}
            seen = []

            def act(observations):
                seen.append(observations)
                return np.array([[0.01, 0.0, 0.0, 1.0]], np.float32)  # metres: a WidowX policy's units

            result, episodes = run_on_robot(act, robot, spec, [0], pacer=Pacer(0.0))
        assert result["num_episodes"] == 1 and episodes.images.shape == (1, 7, 32, 32, 3)
        assert seen[0]["image"].shape == (1, 32, 32, 3) and seen[0]["proprio"].shape == (1, 4)
        steps = [m["payload"] for m in service.requests if m.get("key") == "step_action"]
        assert len(steps) == 6 and steps[0]["action"][6] == 0.0  # gripper closed: 0 in BridgeData's convention
        np.testing.assert_allclose(steps[0]["action"][:3], [0.01, 0.0, 0.0])
        assert episodes.observations[0, -1, 0] > episodes.observations[0, 0, 0]  # the hand moved along x
    finally:
        service.close()


def test_bridgedata_handshake_refuses_another_configuration():
    service = BridgeDataStandIn(action_keys=("init", "move", "gripper", "reset", "step_action", "reboot_motor"))
    try:
        with pytest.raises(BridgeError, match="configuration") as refused:
            bridgedata.BridgeDataClient("127.0.0.1", service.port, timeout_s=10.0)
        assert refused.value.status == Status.HANDSHAKE_REFUSED
    finally:
        service.close()


def test_bridgedata_replies_that_would_run_code_are_refused(tmp_path):
    marker = tmp_path / "ran"
    service = BridgeDataStandIn(poison_path=marker)
    try:
        client = bridgedata.BridgeDataClient("127.0.0.1", service.port, timeout_s=10.0)
        with pytest.raises(BridgeError, match="refused to load posix.system"):
            client.observe()
        assert not marker.exists()
        with pytest.raises(pickle.UnpicklingError):
            bridgedata.loads(bridgedata.dumps(Poison(marker)))
        assert not marker.exists()
    finally:
        service.close()
    payload = {"a": np.arange(3.0), "s": {1, 2}, "x": np.float32(2.5), "t": (1, "b")}
    decoded = bridgedata.loads(bridgedata.dumps(payload))
    np.testing.assert_array_equal(decoded["a"], payload["a"])
    assert decoded["s"] == {1, 2} and decoded["x"] == np.float32(2.5) and decoded["t"] == (1, "b")


@pytest.fixture(scope="module")
def trained_policy(tmp_path_factory):
    """A tiny CLAM policy that predicts chunks of 3 latent actions, executed with temporal ensembling."""
    workdir = tmp_path_factory.mktemp("bridge_policy")
    done = subprocess.run([sys.executable, "-m", "clam_jax.train", "--config=configs/metaworld.py:tiny",
                           "--config.methods=('clam',)", "--config.policy.chunk=3", f"--workdir={workdir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir / "clam" / "policy"


def test_evaluation_with_dimensions_from_another_policy(trained_policy):
    """`clam_jax.evaluate --dims_from`: the policy with its own xyz motion swapped in acts as the policy alone
    (same successes and returns as its evaluation after training); a bad dimension is one clear line."""
    evaluate = [sys.executable, "-m", "clam_jax.evaluate", f"--policy={trained_policy}", "--episodes=4",
                f"--dims_from={trained_policy}"]
    done = subprocess.run([*evaluate, "--dims=0,1,2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "clam with dims 0,1,2 of clam on assembly-v3: success rate" in done.stdout
    mixed = json.loads((trained_policy / "evaluation_test_dims0-1-2_from_clam.json").read_text())
    alone = json.loads((trained_policy.parent / "summary.json").read_text())["eval"]
    assert mixed["successes"] == alone["successes"]
    np.testing.assert_allclose(mixed["returns"], alone["returns"], rtol=1e-5)
    bad = subprocess.run([*evaluate, "--dims=4"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        "error: Action dimensions to mix must be in 0 .. 3, got [4].")


def test_evaluation_with_another_episode_length(trained_policy):
    """`clam_jax.evaluate --max_steps`: its own results file, a success step for each success; 0 steps is one
    clear line."""
    evaluate = [sys.executable, "-m", "clam_jax.evaluate", f"--policy={trained_policy}", "--episodes=4"]
    done = subprocess.run([*evaluate, "--max_steps=45"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    longer = json.loads((trained_policy / "evaluation_test_steps45.json").read_text())
    assert len(longer["success_steps"]) == 4
    assert [n is not None and 1 <= n <= 45 for n in longer["success_steps"]] == longer["successes"]
    bad = subprocess.run([*evaluate, "--max_steps=0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == "error: --max_steps must be at least 1, got 0."


def test_policy_through_the_bridge_matches_the_policy_in_simulation(trained_policy):
    """`clam_jax.evaluate --robot` against a server process with the simulated arm: the same variations give
    the same successes and, up to float rounding of batched inference, the same returns (chunks ensembled
    episode by episode on the robot, the 4 episodes in lockstep in simulation)."""
    server = subprocess.Popen([sys.executable, "-m", "clam_jax.bridge.server", "--backend=sim", "--port=0"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        port = int(server.stdout.readline().split("port")[1])
        done = subprocess.run([sys.executable, "-m", "clam_jax.evaluate", f"--policy={trained_policy}",
                               "--episodes=4", f"--robot=tcp://127.0.0.1:{port}", "--rate_hz=1000",
                               "--timeout_s=30"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        os.killpg(server.pid, signal.SIGKILL)
    assert json.loads((trained_policy / "policy.json").read_text())["chunk"] == 3
    on_robot = json.loads((trained_policy / "evaluation_robot.json").read_text())
    in_simulation = json.loads((trained_policy.parent / "summary.json").read_text())["eval"]
    assert on_robot["successes"] == in_simulation["successes"]
    np.testing.assert_allclose(on_robot["returns"], in_simulation["returns"], rtol=1e-4)
    recorded = next((trained_policy / "robot_episodes").iterdir())
    from clam_jax.data.episodes import read_episodes

    episodes = read_episodes(recorded)
    assert episodes.num_episodes == 4 and episodes.actions.shape[-1] == 7
    np.testing.assert_allclose(np.sort(episodes.rewards[:, :-1].sum(1)), np.sort(on_robot["returns"]), rtol=1e-5)
