"""Data parallelism over one mesh axis, "data": parameters replicated, batches split.

The same code runs on one CPU, several GPUs, or a multi-host pod: datasets and
train states are replicated global arrays, each step samples one global batch
from them inside `jit`, and a sharding constraint splits that batch over the
devices, so every device computes the gradient of its slice and XLA all-reduces.
The sampled batch does not depend on the device count, so a run on 8 devices
matches a run on 1 up to the order of floating-point sums.
"""
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from clam_jax.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_split(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def chunk_sharding(mesh: Mesh) -> NamedSharding:
    """Streamed chunks of K batches, [K, B, ...]: the batch axis (axis 1) split over the devices."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def put_replicated(tree, mesh: Mesh):
    """Host arrays (the same in every process) -> global arrays replicated on every device."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def init_replicated(init_fn, mesh: Mesh, *args):
    """Runs `init_fn(*args)` under jit with replicated outputs: the state is born on every device."""
    return jax.jit(init_fn, out_shardings=replicated(mesh))(*args)


def split_batch(tree, sharding: NamedSharding | None):
    """Constrains the leading (batch) axis of every leaf to be split over the mesh; no-op without one."""
    if sharding is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def check_batch_divisible(batch_size: int, mesh: Mesh, name: str) -> None:
    if batch_size % mesh.size:
        raise ConfigError(f"{name}={batch_size} must be a multiple of the {mesh.size} devices of the mesh.")
