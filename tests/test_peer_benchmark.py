"""The peer benchmark's predcode and plain-JAX steps against its float64 NumPy oracle (benchmarks/peers)."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks", "peers"))

from common import Spec, make_inputs, reference_step, step_flops


@pytest.mark.parametrize("name", ["predcode", "plain_jax"])
def test_one_step_matches_the_float64_oracle(name):
    import impl_jax

    spec = Spec(K=12, batch=16)
    W0, x = make_inputs(spec)
    ref = reference_step(spec, W0, x)
    impl = impl_jax.build(name, spec, W0, x)
    impl.step()
    got_W, got_z = impl.weights(), impl.states()
    for k in W0:
        assert np.max(np.abs(got_W[k] - ref["W"][k])) < 1e-6
        assert np.max(np.abs(ref["W"][k] - W0[k])) > 1e-6  # every weight matrix learned
    for z, zr in zip(got_z, ref["z"], strict=True):
        np.testing.assert_allclose(z, zr, atol=1e-5)
        assert np.mean(np.abs(zr)) > 1e-4  # every layer moved from its zero start


def test_flop_count_is_the_sum_of_the_matmuls():
    spec = Spec()
    one_pass = 2 * 512 * (784 * 360 + 360 * 360 + 360 * 360)
    assert step_flops(spec) == (51 + 50 + 1) * one_pass
