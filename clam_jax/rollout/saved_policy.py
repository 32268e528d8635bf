"""Self-describing saved policies: parameters plus everything needed to act.

`<dir>/policy.json` holds the method, task, model shapes, observation
normalization and the training config; `<dir>/params` the orbax-saved
parameters. `load_policy` rebuilds the policy's actor (observations -> actions) from
these alone, so evaluation needs no config or dataset.
"""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from jax.experimental.multihost_utils import sync_global_devices

from clam_jax.data.statistics import normalizer_from_dict
from clam_jax.errors import DataError
from clam_jax.models.lam import ActionDecoder
from clam_jax.models.mlp import MLP
from clam_jax.models.policies import make_policy
from clam_jax.rollout.chunking import ChunkedActor

SPEC_FILE = "policy.json"


def policy_exists(directory) -> bool:
    return (Path(directory) / SPEC_FILE).exists()


def save_policy(directory, params: dict, spec: dict) -> None:
    """Saves `params` ({"policy": ..., optionally "decoder": ... and "encoder": ...}) and `spec`; the spec is
    written last. An encoder (an `MLP` of `spec["encoder"]`) maps observations to the policy's inputs, a
    decoder (`ActionDecoder` of `spec["decoder"]`) the policy's outputs to actions."""
    directory = Path(directory).absolute()
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory / "params", params, force=True)
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    sync_global_devices(f"clam_jax: policy saved in {directory}")


def make_act_fn(spec: dict, params: dict):
    """A jitted function from raw observations [N, *obs] (states, or frames for image policies, or frames and
    proprioception: `clam_jax.data.observations`) to chunks of environment actions [N, chunk, A] (chunk 1 unless
    the policy was trained to predict more steps, `clam_jax.rollout.chunking`)."""
    normalizer = normalizer_from_dict(spec["normalizer"])
    policy = make_policy(spec["policy"])
    decoder = ActionDecoder(**spec["decoder"]) if spec.get("decoder") else None
    encoder = MLP(**spec["encoder"]) if spec.get("encoder") else None

    @jax.jit
    def act(params, obs):
        inputs = normalizer(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), obs))
        if encoder is not None:
            inputs = encoder.apply(params["encoder"], inputs)
        out = policy.apply(params["policy"], inputs)
        out = out.reshape(out.shape[0], spec.get("chunk", 1), -1)
        return decoder.apply(params["decoder"], out) if decoder is not None else out

    return lambda obs: act(params, obs)


def load_policy(directory, *, execution: str | None = None, ensemble_m: float | None = None):
    """Returns (actor, spec) for a policy saved by `save_policy`: `actor(observations [N, *obs])` gives each
    step's actions [N, A] (a `ChunkedActor`; reset it before new episodes). A policy that predicts chunks
    executes them as `execution` says ("ensemble" with weight `ensemble_m`, or "open_loop"), by default as
    its training config's `eval` section says."""
    directory = Path(directory).absolute()
    if not policy_exists(directory):
        raise DataError(f"No saved policy in {directory}; train one with `python -m clam_jax.train`.")
    spec = json.loads((directory / SPEC_FILE).read_text())
    params = ocp.StandardCheckpointer().restore(directory / "params")
    trained = spec.get("config", {}).get("eval", {})
    actor = ChunkedActor(make_act_fn(spec, params), spec.get("chunk", 1),
                         execution=execution or trained.get("chunk_execution", "ensemble"),
                         ensemble_m=trained.get("ensemble_m", 0.5) if ensemble_m is None else ensemble_m)
    return actor, spec
