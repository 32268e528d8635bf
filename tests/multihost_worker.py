"""One process of the two-process test in test_multihost.py (not collected by pytest).

usage: python tests/multihost_worker.py PORT NUM_PROCESSES PROCESS_ID WORKDIR
Trains the regression problem of test_training_loop with the real loop, data
parallel over the devices of all processes, with orbax checkpoints and metrics
in a shared WORKDIR, and prints the final loss and a parameter checksum.
"""
import json
import sys

port, num_processes, process_id, workdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

from clam_jax.training.distributed import initialize  # noqa: E402

if num_processes > 1:
    initialize(f"127.0.0.1:{port}", num_processes, process_id)

import functools  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from clam_jax.methods.policy import init_policy, make_policy_step  # noqa: E402
from clam_jax.models.lam import MLPPolicy  # noqa: E402
from clam_jax.training.checkpoints import TrainStateCheckpoints  # noqa: E402
from clam_jax.training.loop import device_inputs, make_multi_step, train  # noqa: E402
from clam_jax.training.metrics import MetricWriter  # noqa: E402
from clam_jax.training.optim import make_optimizer  # noqa: E402
from clam_jax.training.sharding import batch_split, init_replicated, make_mesh, put_replicated  # noqa: E402

rng = np.random.default_rng(0)
inputs = rng.normal(size=(256, 5)).astype(np.float32)
targets = np.tanh(inputs @ rng.normal(size=(5, 2))).astype(np.float32)
mesh = make_mesh()
model = MLPPolicy(out_dim=2, hidden=(32,), squash=True)
tx = make_optimizer(lr=1e-2, weight_decay=0.0, warmup=5, clip=1.0)
state = init_replicated(functools.partial(init_policy, model=model, tx=tx, example=jnp.zeros((1, 5))), mesh,
                        jax.random.key(0))
step = make_policy_step(model, tx, batch_size=32, batch_sharding=batch_split(mesh))
data = put_replicated({"inputs": inputs, "targets": targets}, mesh)
writer = MetricWriter(workdir, "policy")
state = train(state, make_multi_step(step, 10), device_inputs(data), num_steps=60, steps_per_dispatch=10,
              log_every=20, checkpoint_every=20, checkpoints=TrainStateCheckpoints(f"{workdir}/checkpoints"),
              writer=writer)
writer.close()
loss = float(np.mean((np.asarray(model.apply(state.params, inputs)) - targets) ** 2))
checksum = float(sum(np.abs(np.asarray(x)).sum() for x in jax.tree.leaves(state.params)))
print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                  "devices": jax.device_count(), "loss": loss, "checksum": checksum}))
