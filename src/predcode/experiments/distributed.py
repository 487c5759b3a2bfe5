"""Connecting several processes (one per machine, or per accelerator) with ``jax.distributed``.

Every process of a multi-process run calls :func:`initialize` before anything else touches JAX's
devices; afterwards ``jax.devices()`` lists the devices of all processes, and the data-parallel
trainer (``predcode.learning.parallel``) splits each batch over all of them. How to launch such a
run on a cluster (by hand, with Slurm, on CPUs) is in ``docs/distributed.md``.
"""

from __future__ import annotations

import os

import jax

__all__ = ["ENV_VARS", "initialize", "is_writer"]

ENV_VARS = ("PREDCODE_COORDINATOR", "PREDCODE_NUM_PROCESSES", "PREDCODE_PROCESS_ID")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None


def initialize(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Join this process to a multi-process JAX run (``jax.distributed.initialize``).

    Unset arguments come from ``PREDCODE_COORDINATOR`` (``host:port`` of process 0),
    ``PREDCODE_NUM_PROCESSES`` and ``PREDCODE_PROCESS_ID``; when those are unset too, JAX detects
    the cluster itself (Slurm, Open MPI, Kubernetes, Cloud TPU). On CPUs the cross-process
    collectives use gloo.
    """
    coordinator_address = coordinator_address or os.environ.get("PREDCODE_COORDINATOR") or None
    num_processes = num_processes if num_processes is not None else _env_int("PREDCODE_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("PREDCODE_PROCESS_ID")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes: expected an integer >= 1, got {num_processes!r}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id: expected an integer in [0, {num_processes - 1}], got {process_id!r}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )


def is_writer() -> bool:
    """True in the one process (index 0) that writes the run's files; the others compute alike."""
    return jax.process_index() == 0
