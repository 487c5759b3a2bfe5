"""Data-parallel training steps: each batch split over the devices of a mesh, weights replicated.

Settling is independent per image and the Hebbian updates are sums over the batch, so a batch can
be split across devices along its rows: every device settles its share, XLA adds the partial
updates across devices (an all-reduce), and every device applies the same optimizer step to its
replica of the weights. The devices may belong to several processes, on several machines, once
``jax.distributed.initialize`` has connected them (see ``docs/distributed.md``); every process then
runs the same program on the same host data and supplies the rows its own devices hold::

    trainer = make_data_parallel_trainer(model)        # all devices of all processes
    params = model.init(jax.random.key(0))
    opt_state = trainer.init(params)
    params, opt_state, metrics = trainer.step(params, opt_state, x, weights)   # x: (batch, x_dim)

The result equals the single-device step up to the order of the floating-point sums.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from predcode.learning.step import GNCNTrainer, make_trainer
from predcode.models.gncn import GNCN

__all__ = ["DATA_AXIS", "data_mesh", "make_data_parallel_trainer", "sharded", "to_global"]

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh (``"data"``) over ``devices``; default: every device of every process."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: expected at least one device, got none")
    return Mesh(np.array(devices), (DATA_AXIS,))


def to_global(tree: Any, sharding: NamedSharding) -> Any:
    """Host or single-device arrays as global arrays with ``sharding``; arrays already so are kept.

    Every process must pass the same full values: each one contributes the pieces its own devices hold.
    """

    def put(a):
        if isinstance(a, jax.Array) and a.sharding == sharding:
            return a
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


class _Sharded:
    """A jitted function of (replicated..., row-split...) arguments that takes host arrays too."""

    def __init__(self, fn: Callable, mesh: Mesh, n_replicated: int, n_rows: int, out_shardings: Any):
        self.mesh = mesh
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self.rows = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
        self.n_replicated = n_replicated
        self.compiled = jax.jit(
            fn, in_shardings=(self.replicated,) * n_replicated + (self.rows,) * n_rows, out_shardings=out_shardings
        )

    def __call__(self, *args):
        n = self.mesh.size
        batch = np.shape(jax.tree.leaves(args[self.n_replicated])[0])[0]
        if batch % n:
            raise ValueError(
                f"batch_size: expected a multiple of the {n} devices the batch is split over, "
                f"got {batch}; choose a batch size divisible by {n}"
            )
        return self.unchecked(*args)

    def unchecked(self, *args):
        """The compiled function on the arguments made global arrays (no batch-size check)."""
        rep = [to_global(a, self.replicated) for a in args[: self.n_replicated]]
        rows = [to_global(a, self.rows) for a in args[self.n_replicated :]]
        return self.compiled(*rep, *rows)


def sharded(fn: Callable, mesh: Mesh | None = None, *, n_replicated: int, n_rows: int) -> Callable:
    """``fn`` jitted with its first ``n_replicated`` arguments replicated and the next ``n_rows``
    (pytrees of arrays, e.g. a dict of clamps) split by rows over the devices of ``mesh``; outputs
    replicated. Host arrays are accepted; the row count must be a multiple of the devices."""
    mesh = data_mesh() if mesh is None else mesh
    return _Sharded(fn, mesh, n_replicated, n_rows, NamedSharding(mesh, PartitionSpec()))


def make_data_parallel_trainer(
    model: GNCN, optimizer: optax.GradientTransformation | None = None, mesh: Mesh | None = None
) -> GNCNTrainer:
    """:func:`~predcode.learning.step.make_trainer`, with every batch split over the devices of ``mesh``.

    ``mesh`` defaults to :func:`data_mesh` (all devices of all processes). The batch size must be a
    multiple of the number of devices. ``step`` and ``evaluate`` accept host (NumPy) arrays or
    global ``jax.Array`` s and return global arrays: parameters, optimizer state and metrics
    replicated on every device, so ``float(metrics.bce)`` and ``np.asarray(params[...])`` work in
    every process.
    """
    base = make_trainer(model, optimizer)
    mesh = data_mesh() if mesh is None else mesh
    replicated = NamedSharding(mesh, PartitionSpec())
    step = _Sharded(base.step, mesh, 2, 2, replicated)
    evaluate = _Sharded(base.evaluate, mesh, 1, 2, replicated)
    init_jit = jax.jit(base.init, in_shardings=(replicated,), out_shardings=replicated)

    def init(params):
        return init_jit(to_global(params, replicated))

    return GNCNTrainer(model, base.optimizer, init, step, evaluate)
