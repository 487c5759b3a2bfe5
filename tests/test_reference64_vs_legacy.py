"""The float64 NumPy GNCN reference reproduces the legacy ngc-learn v0.5.0 golden fixtures.

Fixtures: ``shared/reference/legacy-fixtures/{gncn_t1,gncn_t1_sigma,gncn_pdh}.npz`` (float32,
written by the real TensorFlow code; see that folder's README). The reference lives in
``tests/gncn_reference64.py`` and is independent of ``predcode``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gncn_reference64 as ref

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "legacy-fixtures"
if not FIXTURE_DIR.is_dir():  # fall back to the absolute workspace location
    FIXTURE_DIR = Path("/work/shared/reference/legacy-fixtures")

FIXTURE_KINDS = ("gncn_t1", "gncn_t1_sigma", "gncn_pdh")
RTOL, ATOL = 1e-4, 1e-5

# legacy short name -> reference name
NAME_MAP = {"S2": "M2", "S3": "M3", "Sigma_e1": "Sigma1", "Sigma_e2": "Sigma2", "Prec_e1": "Prec1", "Prec_e2": "Prec2"}
# fixture settle suffix -> reference settle key
SETTLE_MAP = {
    "z1_z": "z1",
    "z2_z": "z2",
    "z3_z": "z3",
    "z1_phi": "phi1",
    "z2_phi": "phi2",
    "z3_phi": "phi3",
    "mu0_phi": "mu0",
    "mu1_phi": "mu1",
    "mu2_phi": "mu2",
    "e0_phi": "e0",
    "e1_phi": "et1",
    "e2_phi": "et2",  # e1/e2 phi are the whitened errors
    "x_hat": "mu0",
}


def _ref_name(legacy: str) -> str:
    return NAME_MAP.get(legacy, legacy)


def _load(kind):
    path = FIXTURE_DIR / f"{kind}.npz"
    if not path.exists():
        pytest.skip(f"legacy fixture {path} not present")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _params(fx, prefix):
    return {_ref_name(k[len(prefix) :]): fx[k].astype(np.float64) for k in fx if k.startswith(prefix)}


def _close(got, want, what, rtol=RTOL, atol=ATOL):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != fixture {want.shape}"
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{what}: max |diff| {err:.3e}")
    return err


@pytest.fixture(scope="module", params=FIXTURE_KINDS)
def case(request):
    kind = request.param
    fx = _load(kind)
    p0 = _params(fx, "param0_")
    s0 = ref.settle64(kind, p0, fx["x"])
    return kind, fx, p0, s0


def _check_settle(s, fx, prefix):
    for suffix, key in SETTLE_MAP.items():
        _close(s[key], fx[prefix + suffix], prefix + suffix)
    for l in range(3):
        e = s[f"e{l}"]  # e*_L uses the errors before whitening
        _close(np.sum(e * e), fx[f"{prefix}e{l}_L"], f"{prefix}e{l}_L")


def test_initial_settle_matches_legacy_states_predictions_and_errors(case):
    kind, fx, _, s0 = case
    _check_settle(s0, fx, "settle0_")


def test_t1_models_have_unwhitened_errors_and_identity_precision(case):
    kind, fx, _, s0 = case
    if kind == "gncn_t1":
        np.testing.assert_array_equal(s0["et1"], s0["e1"])
        np.testing.assert_array_equal(s0["et2"], s0["e2"])
    else:  # the whitening is not a no-op, so the e1_phi comparison is meaningful
        assert np.max(np.abs(s0["et1"] - s0["e1"])) > 1e-3


def test_initial_metrics_match_legacy_tod_and_bce(case):
    kind, fx, _, s0 = case
    _close(ref.tod64(s0), -fx["tod0"], "tod0 (legacy sign is negative)")
    _close(ref.tod64(s0), -fx["tod0_train"], "tod0_train")
    _close(ref.bce64(fx["x"], s0["mu0"]), fx["bce0"], "bce0")
    _close(ref.bce64(fx["x"], s0["mu0"]), fx["bce0_train"], "bce0_train")
    per = [ref.bce64(fx["x"][i : i + 1], s0["mu0"][i : i + 1]) for i in range(fx["x"].shape[0])]
    _close(per, fx["bce0_per_sample"], "bce0_per_sample")


def test_hebbian_updates_match_legacy_deltas(case):
    kind, fx, p0, s0 = case
    d = ref.updates64(kind, p0, s0)
    order = [str(n) for n in fx["theta_order"]]
    assert sorted(_ref_name(n) for n in order) == sorted(ref.learnable_names(kind))
    for n in order:
        _close(d[_ref_name(n)], fx["delta_" + n], "delta_" + n, atol=1e-6)


def test_adam_and_constraints_reproduce_legacy_step_one_parameters(case):
    kind, fx, p0, s0 = case
    d = ref.updates64(kind, p0, s0)
    p1, m, v = ref.adam_constraints_step64(kind, p0, d, t=1)
    want = _params(fx, "param1_")
    assert set(want) <= set(p1), sorted(set(want) - set(p1))
    for n, w in want.items():
        _close(p1[n], w, "param1_" + n, atol=1e-6)
    for n in ("V1", "V2", "V3"):
        if n in p0:
            np.testing.assert_array_equal(p1[n], p0[n])
    assert set(m) == set(v) == set(ref.learnable_names(kind))


def test_projection_matches_legacy_project(case):
    kind, fx, p0, _ = case
    _close(ref.project64(kind, p0, fx["z_sample"]), fx["proj0_x"], "proj0_x")
    _close(ref.project64(kind, _params(fx, "param1_"), fx["z_sample"]), fx["proj1_x"], "proj1_x")


def test_eager_second_settle_with_current_precision_matches_legacy(case):
    kind, fx, _, _ = case
    p1 = _params(fx, "param1_")
    s1 = ref.settle64(kind, p1, fx["x"])
    _check_settle(s1, fx, "settle1e_")
    _close(ref.tod64(s1), -fx["tod1_eager"], "tod1_eager")
    _close(ref.bce64(fx["x"], s1["mu0"]), fx["bce1_eager"], "bce1_eager")


def test_reference_step_chain_reproduces_eager_second_settle(case):
    """Same as above but from the reference's own param1 (no fixture param1 used)."""
    kind, fx, p0, s0 = case
    p1, _, _ = ref.adam_constraints_step64(kind, p0, ref.updates64(kind, p0, s0), t=1)
    s1 = ref.settle64(kind, p1, fx["x"])
    _check_settle(s1, fx, "settle1e_")


def test_graph_mode_second_settle_is_the_frozen_initial_precision(case):
    """Legacy bug: graph mode settles with param1 weights but the construction-time Prec."""
    kind, fx, p0, _ = case
    p1 = _params(fx, "param1_")
    if "Prec1" in p1:
        p1["Prec1"], p1["Prec2"] = p0["Prec1"], p0["Prec2"]
    s1g = ref.settle64(kind, p1, fx["x"])
    _check_settle(s1g, fx, "settle1g_")
    _close(ref.tod64(s1g), -fx["tod1"], "tod1 (graph)")
    _close(ref.bce64(fx["x"], s1g["mu0"]), fx["bce1"], "bce1 (graph)")


@pytest.mark.parametrize("kind", ["gncn_t1_sigma", "gncn_pdh"])
def test_comparison_is_sensitive_to_a_stale_precision(kind):
    """The tolerances are tight enough to tell eager from graph mode (the tests can fail)."""
    fx = _load(kind)
    p1 = _params(fx, "param1_")
    p1["Prec1"], p1["Prec2"] = _params(fx, "param0_")["Prec1"], _params(fx, "param0_")["Prec2"]
    s = ref.settle64(kind, p1, fx["x"])
    with pytest.raises(AssertionError):
        _check_settle(s, fx, "settle1e_")


@pytest.mark.parametrize("kind", FIXTURE_KINDS)
def test_comparison_is_sensitive_to_fewer_settling_steps(kind):
    fx = _load(kind)
    s = ref.settle64(kind, _params(fx, "param0_"), fx["x"], K=49)
    with pytest.raises(AssertionError):
        _check_settle(s, fx, "settle0_")


def test_first_step_leaves_states_at_zero_and_predicts_one_half():
    fx = _load("gncn_t1_sigma")
    s = ref.settle64("gncn_t1_sigma", _params(fx, "param0_"), fx["x"], K=1)
    for k in ("z1", "z2", "z3"):
        np.testing.assert_array_equal(s[k], 0.0)
    np.testing.assert_array_equal(s["mu0"], 0.5)
    np.testing.assert_array_equal(s["e0"], fx["x"] - 0.5)


def test_t2_lsigma_is_pdh_without_skip_matrices():
    fx = _load("gncn_pdh")
    p = _params(fx, "param0_")
    p_t2 = {k: v for k, v in p.items() if k not in ("M2", "M3")}
    p_zero = dict(p, M2=np.zeros_like(p["M2"]), M3=np.zeros_like(p["M3"]))
    s_t2 = ref.settle64("gncn_t2_lsigma", p_t2, fx["x"])
    s_pdh = ref.settle64("gncn_pdh", p_zero, fx["x"])
    for k in s_t2:
        np.testing.assert_allclose(s_t2[k], s_pdh[k], rtol=0, atol=1e-12, err_msg=k)
    d = ref.updates64("gncn_t2_lsigma", p_t2, s_t2)
    assert set(d) == set(ref.learnable_names("gncn_t2_lsigma"))
    assert "M2" not in d and "E1" in d and "Sigma1" in d
    np.testing.assert_array_equal(d["E2"], d["W2"].T)
    p1, _, _ = ref.adam_constraints_step64("gncn_t2_lsigma", p_t2, d)
    for n in ("W1", "E1", "Sigma1"):
        assert np.all(np.linalg.norm(p1[n], axis=0) <= 1.0 + 1e-12)
    np.testing.assert_array_equal(p1["V2"], p_t2["V2"])
    # Prec P satisfies P P^T = cov^{-1}, cov = the (lower-triangle) covariance after Adam + clamp
    cov = _cov_after(p_t2["Sigma1"], d["Sigma1"])
    np.testing.assert_allclose(p1["Prec1"] @ p1["Prec1"].T, np.linalg.inv(cov), rtol=1e-8, atol=1e-10)


def _cov_after(Sigma, g, lr=1e-3, b2=0.999, b1=0.9, eps=1e-7):
    # Adam step 1 followed by the legacy diagonal clamp and +0.00025, symmetrised from the lower triangle
    m, v = (1 - b1) * g, (1 - b2) * g * g
    S = Sigma - lr * np.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + eps)
    I = np.eye(S.shape[0])
    cov = np.maximum(1.0, S) * I + S * (1 - I) + 0.00025
    return np.tril(cov) + np.tril(cov, -1).T


def test_adam_second_step_uses_bias_correction_and_moments():
    fx = _load("gncn_t1")
    p = _params(fx, "param0_")
    g1 = {n: np.full_like(p[n], 0.5) for n in ("W1", "W2", "W3")}
    g2 = {n: np.full_like(p[n], -0.25) for n in ("W1", "W2", "W3")}
    _, m1, v1 = ref.adam_constraints_step64("gncn_t1", p, g1, t=1)
    _, m2, v2 = ref.adam_constraints_step64("gncn_t1", p, g2, t=2, m=m1, v=v1)
    np.testing.assert_allclose(m2["W2"], 0.9 * 0.05 + 0.1 * -0.25)
    np.testing.assert_allclose(v2["W2"], 0.999 * 0.001 * 0.25 + 0.001 * 0.0625)
