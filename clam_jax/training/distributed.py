"""Multi-process (multi-host) start-up: one JAX process per host or per accelerator."""
import jax


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Joins this process to a multi-process JAX run.

    On a cluster (SLURM, TPU pods, Kubernetes) call it with no arguments: JAX reads
    the topology from the environment. On one machine, give all three arguments.
    Collectives between CPU devices go over gloo (GPUs and TPUs use their own).
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
