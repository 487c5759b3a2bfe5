"""Subprocess side of tests/test_parallel.py: train a few data-parallel steps and save the weights.

    python parallel_worker.py OUT.npz                          # one process, all its (forced) devices
    python parallel_worker.py OUT.npz ADDRESS N_PROCESSES ID   # one of several processes (jax.distributed)

XLA_FLAGS must be set by the caller before this starts: JAX reads it when it is imported.
"""

import sys

import numpy as np

STEPS, BATCH = 3, 16


def problem():
    """The model and the batches, the same in every process (and in the test's reference)."""
    from predcode.models.gncn import GNCN, GNCNConfig

    model = GNCN(GNCNConfig(kind="gncn_pdh", x_dim=64, z_dims=(24, 24, 36), K=10))
    rng = np.random.default_rng(7)
    batches = [(rng.random((BATCH, 64)) < 0.3).astype(np.float32) for _ in range(STEPS)]
    weights = np.ones(BATCH, np.float32)
    weights[-3:] = 0.0  # padding rows, split over the devices like the rest
    return model, batches, weights


def train(model, trainer, batches, weights):
    """STEPS training steps from the seed-0 initial weights: ``(params, opt_state, per-step BCE)``."""
    import jax

    params = model.init(jax.random.key(0))
    opt_state = trainer.init(params)
    bces = []
    for x in batches:
        params, opt_state, m = trainer.step(params, opt_state, x, weights)
        bces.append(float(m.bce))
    return params, opt_state, bces


def main(out: str, *distributed: str) -> None:
    import jax

    if distributed:
        address, n, pid = distributed[0], int(distributed[1]), int(distributed[2])
        from predcode.experiments.distributed import initialize

        initialize(coordinator_address=address, num_processes=n, process_id=pid)
    from predcode.learning.parallel import make_data_parallel_trainer

    model, batches, weights = problem()
    trainer = make_data_parallel_trainer(model)
    params, opt_state, bces = train(model, trainer, batches, weights)
    refused = ""
    try:  # a batch the devices cannot share evenly
        trainer.step(params, opt_state, batches[0][: BATCH - 1], weights[: BATCH - 1])
    except ValueError as err:
        refused = str(err)
    if jax.process_index() == 0:
        arrays = {k: np.asarray(v) for k, v in params.items()}
        np.savez(
            out,
            bces=np.array(bces),
            n_devices=trainer.step.mesh.size,
            n_processes=jax.process_count(),
            refused=refused,
            **arrays,
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
