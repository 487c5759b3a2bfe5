"""Training: a real short MNIST run learns, and the jitted step compiles once per shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from predcode.data import load_binarized, train_val_split
from predcode.experiments.train import train
from predcode.learning.step import make_trainer, pad_batch
from predcode.models.gncn import GNCN, GNCNConfig

TRACES: list[str] = []


class CountingGNCN(GNCN):
    """Records each trace of the training step (calc_updates runs in Python only while tracing)."""

    def calc_updates(self, *args, **kwargs):
        TRACES.append("step")
        return super().calc_updates(*args, **kwargs)


def test_training_step_is_traced_once_for_all_batches_including_the_short_last_one():
    TRACES.clear()
    model = CountingGNCN(GNCNConfig(kind="gncn_pdh", x_dim=64, z_dims=(24, 24, 36), K=5))
    x = (np.random.default_rng(0).random((230, 64)) < 0.4).astype(np.float32)
    result = train(model, x[:200], x[200:], epochs=3, batch_size=64, seed=0)  # 200 = 3 * 64 + 8
    assert len(result.history) == 3
    assert TRACES == ["step"], f"the step was traced {len(TRACES)} times"


def test_padding_rows_do_not_change_the_update():
    model = GNCN(GNCNConfig(kind="gncn_pdh", x_dim=64, z_dims=(24, 24, 36), K=10))
    params = model.init(jax.random.key(0))
    x = jnp.asarray((np.random.default_rng(1).random((10, 64)) < 0.4).astype(np.float32))
    trainer = make_trainer(model)
    exact, _, m_exact = trainer.step(dict(params), trainer.init(params), x, jnp.ones(10))
    xp, w = pad_batch(x, 16)
    padded, _, m_padded = trainer.step(dict(params), trainer.init(params), xp, w)
    for name in exact:
        np.testing.assert_allclose(padded[name], exact[name], rtol=1e-5, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(m_padded.bce, m_exact.bce, rtol=1e-6)
    np.testing.assert_allclose(m_padded.tod, m_exact.tod, rtol=1e-6)


def test_bad_training_arguments_name_the_parameter():
    model = GNCN(GNCNConfig(kind="gncn_t1", x_dim=4, z_dims=(3,)))
    x = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"batch_size: expected an integer in \[1, 1048576\], got 0"):
        train(model, x, x, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        train(model, x, x, epochs=0, batch_size=2)
    with pytest.raises(ValueError, match="x: expected at most batch_size=2 rows, got 4"):
        pad_batch(jnp.asarray(x), 2)


@pytest.mark.slow
def test_one_epoch_of_gncn_pdh_on_10000_mnist_images_lowers_validation_bce():
    images, labels = load_binarized("mnist", "train")
    x_tr, _, x_val, _ = train_val_split(images[:11000], labels[:11000], 1000, seed=0)
    assert len(x_tr) == 10000
    model = GNCN(GNCNConfig(kind="gncn_pdh"))
    result = train(model, x_tr, x_val, epochs=1, batch_size=512, seed=69)
    before, after = result.initial.val_bce, result.history[0].val_bce
    print(
        f"GNCN-PDH, 1 epoch on 10,000 MNIST images: validation BCE {before:.2f} -> {after:.2f}, "
        f"ToD {result.initial.val_tod:.2f} -> {result.history[0].val_tod:.2f}, "
        f"{result.history[0].seconds:.1f} s"
    )
    assert before > 500, "an untrained model predicts about 0.5 everywhere (784 ln 2 = 543)"
    assert after < before - 50
    assert result.best_epoch == 1
