"""The generative neural coding networks (GNCN) of Ororbia & Kifer (2022), Nat. Commun. 13:2064.

One class, :class:`GNCN`, computes all four museum models; :data:`MUSEUM` holds what tells them
apart. Row-vector convention (a batch is ``B x n``), layer 0 is the clamped data ``x``, layers
``1..L`` are latent states ``z_l``::

    mu_l  = g_l( phi(z_{l+1}) W_{l+1}  [+ phi(z_{l+2}) M_{l+2}   PDH only] )
    e_l   = target_l - mu_l,  target_0 = x,  target_l = phi(z_l) (t2, PDH) or z_l (t1 models)
    e~_l  = e_l P_l  with a learned covariance (P_l = (R_l^{-1})^T, R_l = cholesky(Sigma_l)), else e_l
    dz_l  = [e~_{l-1} E_l] * phi'(z_l)^{t1 only} - e~_l - phi(z_l) V_l - lmbda sign(z_l) - leak z_l
    z_l  <- z_l + beta dz_l       (K steps from zero states; E_l = W_l^T for the t1 models)

Arrays (names used in checkpoints, shapes (n_from, n_to)): ``W{l}`` (d_l, d_{l-1}); ``M{l}``
(d_l, d_{l-2}); ``E{l}`` (d_{l-1}, d_l); ``Sigma{l}``, ``Prec{l}`` (d_l, d_l) for l < L;
``V{l}`` (d_l, d_l). See ``../shared/reference/GNCN.md`` and ``docs/checkpoint-format.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, cast

import jax
import jax.numpy as jnp
import numpy as np

from predcode.activations import ACTIVATIONS, get_activation
from predcode.cells import CELLS, GaussianErrorCell, make_cell, whiten
from predcode.core import SettleResult, Term
from predcode.dynamics.settle import settle
from predcode.dynamics.solvers import SOLVERS, make_solver
from predcode.learning.constraints import clip_column_norms
from predcode.learning.covariance import (
    gaussian_nll_sigma_grad,
    init_covariance,
    legacy_precision,
    legacy_sigma_update,
)
from predcode.learning.hebbian import hebbian
from predcode.schema import MAX_DIM, MAX_STEPS, bad, setting, validate
from predcode.validation import check_array, check_batch, check_key

Array = jax.Array
Params = dict[str, Array]
_Data = TypeVar("_Data", jax.Array, np.ndarray)  # check_input returns its argument unchanged


@dataclass(frozen=True)
class MuseumSpec:
    """What distinguishes one museum model from another (GNCN.md, "The four models").

    ``phi`` (the state nonlinearity), ``g_hidden`` (the hidden predictions' output activation) and
    ``lmbda`` (the sparsity penalty) are defaults a config may change; the six switches are the
    model's structure (a config may override them for ablations, see :data:`SWITCHES`). Read a field
    as an attribute (``spec.lateral``) or, as configs do, by name (``spec["lateral"]``).
    """

    phi: str
    g_hidden: str
    lmbda: float
    tied_feedback: bool  # error feedback W^T (True) or a learned E (False)
    use_dfx: bool  # phi'(z) on the bottom-up term of the drive
    error_on_phi: bool  # errors of layers 1.. against phi(z) (True) or the raw z
    learn_sigma: bool  # learned covariance on the errors of layers 1..L-1
    lateral: bool  # fixed lateral competition V
    skip: bool  # skip predictions M (z_{l+2} -> mu_l)

    def __getitem__(self, name: str) -> Any:
        if name not in _SPEC_FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def replace(self, **changes: Any) -> MuseumSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(MuseumSpec))
_T1 = MuseumSpec(
    phi="tanh",
    g_hidden="identity",
    lmbda=0.01,
    tied_feedback=True,
    use_dfx=True,
    error_on_phi=False,
    learn_sigma=False,
    lateral=False,
    skip=False,
)
_T2 = MuseumSpec(
    phi="relu",
    g_hidden="relu",
    lmbda=0.0,
    tied_feedback=False,
    use_dfx=False,
    error_on_phi=True,
    learn_sigma=True,
    lateral=True,
    skip=False,
)
MUSEUM: dict[str, MuseumSpec] = {
    "gncn_t1": _T1,
    "gncn_t1_sigma": _T1.replace(phi="relu", learn_sigma=True),
    "gncn_t2_lsigma": _T2,
    "gncn_pdh": _T2.replace(skip=True),  # t2-LSigma with skip predictions: the paper's PDH
}
SIGMA_RULES = ("legacy", "nll")
E_INITS = ("random", "transpose")
LATERAL_FORMS = ("matrix", "grouped")
# The museum switches a config may override, for ablations (None keeps the kind's value above).
SWITCHES = ("tied_feedback", "use_dfx", "error_on_phi", "learn_sigma", "lateral", "skip")
# The image layer's error signal: the cell's dmu (the museum's; no derivative of g_out, as legacy),
# or dmu times g_out'(a), the gradient with respect to the output activation's input.
X_SIGNALS = ("mu", "pre_activation")


_ACTS = tuple(ACTIVATIONS)


def _switch() -> Any:
    return setting(
        None,
        "bool",
        optional=True,
        none_means="the kind's own",
        help="an ablation of the museum model's structure (docs/config.md)",
        resume="history",
    )


@dataclass(frozen=True)
class GNCNConfig:
    """Architecture and settling hyper-parameters. ``None`` fields take the museum model's default.

    Every field is declared once, with its type, range or choices and help (:func:`predcode.schema.setting`);
    a config file's ``[model]`` table takes the same names (docs/config.md).
    """

    SECTION: ClassVar[str] = "model"

    kind: str = setting("gncn_pdh", "str", choices=tuple(MUSEUM), help="which museum model (GNCN.md)", resume="history")
    x_dim: int = setting(
        784, "int", low=1, high=MAX_DIM, help="pixels per image: 784 for 28 x 28 images", resume="history"
    )
    z_dims: tuple[int, ...] = setting(
        (360, 360, 360),
        "ints",
        high=MAX_DIM,
        help="latent layer sizes from z1 (bottom) to the top, e.g. [360, 360, 360]",
        resume="history",
    )
    K: int = setting(
        50, "int", low=1, high=MAX_STEPS, help="settling steps per batch; the museum uses 50", resume="history"
    )
    beta: float = setting(
        0.1, "float", low=0, open_low=True, help="the Euler step of the settling; the museum uses 0.1", resume="history"
    )
    leak: float = setting(
        0.001, "float", low=0, help="the leak -leak z in the drive; the museum uses 0.001", resume="history"
    )
    lmbda: float | None = setting(
        None,
        "float",
        low=0,
        optional=True,
        none_means="the model's default",
        help="the Laplace prior's strength",
        resume="history",
    )
    phi: str | None = setting(
        None,
        "str",
        choices=_ACTS,
        optional=True,
        none_means="the kind's own",
        help="the latent activation (legacy act_fx)",
        resume="history",
    )
    g_hidden: str | None = setting(
        None,
        "str",
        choices=_ACTS,
        optional=True,
        none_means="the kind's own",
        help="the activation of the latent predictions",
        resume="history",
    )
    g_out: str = setting(
        "sigmoid", "str", choices=_ACTS, help="the activation of the image prediction (legacy out_fx)", resume="history"
    )
    n_group: int = setting(
        12,
        "int",
        low=1,
        high=MAX_DIM,
        help="units per lateral competition group of the lower latent layers",
        resume="history",
    )
    n_top_group: int = setting(
        18,
        "int",
        low=1,
        high=MAX_DIM,
        help="units per lateral competition group of the top latent layer",
        resume="history",
    )
    alpha_scale: float = setting(
        0.15, "float", help="self-excitation of each unit; a negative value makes it self-inhibition", resume="history"
    )
    beta_scale: float = setting(0.1, "float", low=0, help="cross-inhibition within a lateral group", resume="history")
    wght_sd: float = setting(
        0.05, "float", low=0, open_low=True, help="the initial weights' standard deviation", resume="history"
    )
    sigma_rule: str = setting(
        "legacy",
        "str",
        choices=SIGMA_RULES,
        help="the learned covariance's update: legacy's or the Gaussian NLL gradient",
        resume="history",
    )
    legacy_frozen_precision: bool = setting(
        False,
        "bool",
        help="true reproduces legacy ngc-learn >= 0.2, whose settling "
        "kept the first precision (GNCN.md); the default uses the current one",
        resume="history",
    )
    e_init: str = setting(
        "random",
        "str",
        choices=E_INITS,
        help='the learned feedback E: "random" (legacy, drawn apart from W) or "transpose" (W^T)',
        resume="history",
    )
    lateral_form: str = setting(
        "matrix",
        "str",
        choices=LATERAL_FORMS,
        help='how phi(z) V is computed: "matrix" (a matmul, the default) or "grouped" (group sums of the '
        "fixed V, fewer FLOPs, the same values)",
        resume="safe",
    )
    solver: str = setting(
        "euler",
        "str",
        choices=SOLVERS,
        help='the settling solver; the museum uses "euler" (docs/config.md)',
        resume="history",
    )
    momentum: float = setting(
        0.5,
        "float",
        low=0,
        high=1,
        open_high=True,
        help='state momentum of the "momentum" and "nesterov" solvers',
        resume="history",
    )
    settle_tol: float | None = setting(
        None,
        "float",
        low=0,
        open_low=True,
        optional=True,
        help="stop settling once a step moves the states by at most this fraction",
        resume="history",
    )
    rtol: float = setting(
        1e-3, "float", low=0, open_low=True, help='relative tolerance of the "adaptive_heun" solver', resume="history"
    )
    atol: float = setting(
        1e-3, "float", low=0, open_low=True, help='absolute tolerance of the "adaptive_heun" solver', resume="history"
    )
    # Ablations: override one of the kind's structural switches (MUSEUM); None keeps the kind's.
    tied_feedback: bool | None = _switch()  # error feedback W^T (True) or a learned E (False)
    use_dfx: bool | None = _switch()  # phi'(z) on the bottom-up term of the drive
    error_on_phi: bool | None = _switch()  # errors of layers 1.. against phi(z) (True) or the raw z
    learn_sigma: bool | None = _switch()  # learned covariance on the errors of layers 1..L-1
    lateral: bool | None = _switch()  # fixed lateral competition V
    skip: bool | None = _switch()  # skip predictions M (z_{l+2} -> mu_l)
    x_cell: str = setting(
        "gaussian",
        "str",
        choices=CELLS,
        help="the error cell of the image layer x (the legacy museum: gaussian)",
        resume="history",
    )
    x_signal: str = setting(
        "mu",
        "str",
        choices=X_SIGNALS,
        help="the image error sent up: the cell's dmu (\"mu\", the museum's) or dmu g_out'(a)",
        resume="history",
    )
    flags: MuseumSpec = field(default=None, compare=False, hash=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        validate(self)  # every declared field: type, range, choices
        if self.solver == "adaptive_heun" and self.settle_tol is not None:
            raise bad(
                "model.settle_tol",
                'none with solver = "adaptive_heun"',
                self.settle_tol,
                "the adaptive solver stops at its own steady state: set rtol and atol instead",
            )
        defaults = MUSEUM[self.kind]
        for name in ("lmbda", "phi", "g_hidden"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, defaults[name])
        overrides = {name: getattr(self, name) for name in SWITCHES if getattr(self, name) is not None}
        object.__setattr__(self, "flags", defaults.replace(**overrides))
        if self.flags["lateral"]:
            *lower, top = self.z_dims
            groups = [("n_group", self.n_group, i, d) for i, d in enumerate(lower)]
            for group, size, i, d in [*groups, ("n_top_group", self.n_top_group, len(lower), top)]:
                if d % size:
                    raise bad(
                        "model.z_dims",
                        f"a multiple of {group}={size}",
                        d,
                        "lateral competition groups the units of the lower latent layers by n_group and"
                        " of the top layer by n_top_group: change the layer size or the group size",
                        label=f"model.z_dims[{i}]",
                    )

    @property
    def L(self) -> int:
        """Number of latent layers."""
        return len(self.z_dims)

    def dims(self) -> tuple[int, ...]:
        """``(d_0, d_1, ..., d_L)`` with ``d_0 = x_dim``."""
        return (self.x_dim, *self.z_dims)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-ready values (``z_dims`` a list; the derived museum flags left out)."""
        d = dataclasses.asdict(self)
        d.pop("flags")
        d["z_dims"] = list(self.z_dims)
        return d


def lateral_matrix(n: int, group: int, alpha_scale: float, beta_scale: float) -> np.ndarray:
    """Fixed lateral competition ``V = beta_s (same group, i != j) - alpha_s I`` (groups of consecutive units).

    The drive subtracts ``phi(z) V``: each unit excites itself and is inhibited by its group-mates.
    """
    g = np.arange(n) // group
    same = (g[:, None] == g[None, :]).astype(np.float32)
    eye = np.eye(n, dtype=np.float32)
    return (beta_scale * (same - eye) - alpha_scale * eye).astype(np.float32)


@dataclass(frozen=True)
class GNCN:
    """A GNCN model: pure functions of a flat ``params`` dict. ``GNCN(GNCNConfig(kind="gncn_t1"))``.

    The errors go through error cells (:mod:`predcode.cells`): the image layer's is the config's
    ``x_cell`` (the museum's unit Gaussian), or any :class:`~predcode.core.ErrorCell` given as
    ``x_cell=`` here; the latent layers' are unit Gaussians, whitened by the legacy covariance rule
    where the model learns ``Sigma``. The error signal a layer sends up is its cell's ``dmu``
    (for the image, times ``g_out'(a)`` with ``x_signal = "pre_activation"``: the right signal for
    a Bernoulli cell on a sigmoid output, where it equals the museum's ``x - mu``).

    The settling drive is the museum's own, not an energy gradient: the learned feedback ``E``,
    the legacy ``Sigma`` rule and the lateral ``V`` have no energy whose gradient they are (for
    GNCN-t1 alone the drive is ``-dE/dz``, tested). :meth:`term` exposes it for
    :func:`predcode.dynamics.settle`.
    """

    config: GNCNConfig
    x_cell: Any = None

    # ----- parameters -----------------------------------------------------------------------
    def learnable_names(self) -> tuple[str, ...]:
        """Names of the learned arrays: ``W{l}``, then ``M{l}``, ``E{l}``, ``Sigma{l}`` where the kind has them."""
        c, f = self.config, self.config.flags
        names = [f"W{l}" for l in range(1, c.L + 1)]
        if f.skip:
            names += [f"M{l}" for l in range(2, c.L + 1)]
        if not f.tied_feedback:
            names += [f"E{l}" for l in range(1, c.L + 1)]
        if f.learn_sigma:
            names += [f"Sigma{l}" for l in range(1, c.L)]
        return tuple(names)

    def fixed_names(self) -> tuple[str, ...]:
        """Names of the arrays not learned by gradient: the precisions ``Prec{l}`` and lateral ``V{l}``."""
        c, f = self.config, self.config.flags
        names = [f"Prec{l}" for l in range(1, c.L)] if f.learn_sigma else []
        if f.lateral:
            names += [f"V{l}" for l in range(1, c.L + 1)]
        return tuple(names)

    def param_shapes(self) -> dict[str, tuple[int, int]]:
        """Shape ``(n_from, n_to)`` of every array in ``params``, by name."""
        c, f = self.config, self.config.flags
        d = c.dims()
        shapes: dict[str, tuple[int, int]] = {}
        for l in range(1, c.L + 1):
            shapes[f"W{l}"] = (d[l], d[l - 1])
        if f.skip:
            shapes.update({f"M{l}": (d[l], d[l - 2]) for l in range(2, c.L + 1)})
        if not f.tied_feedback:
            shapes.update({f"E{l}": (d[l - 1], d[l]) for l in range(1, c.L + 1)})
        if f.learn_sigma:
            shapes.update({f"Sigma{l}": (d[l], d[l]) for l in range(1, c.L)})
            shapes.update({f"Prec{l}": (d[l], d[l]) for l in range(1, c.L)})
        if f.lateral:
            shapes.update({f"V{l}": (d[l], d[l]) for l in range(1, c.L + 1)})
        return shapes

    def init(self, key: Array) -> Params:
        """Weights ``N(0, wght_sd^2)``, covariances ``I + U(-0.01, 0.01)``, then the constraints once.

        With ``e_init = "transpose"`` each learned feedback matrix ``E_l`` starts as ``W_l^T``
        (before the constraints, which clip ``E``'s and ``W``'s columns separately).
        """
        c = self.config
        check_key(key)
        params: Params = {}
        for i, (name, shape) in enumerate(sorted(self.param_shapes().items())):
            k = jax.random.fold_in(key, i)
            if name.startswith("Sigma"):
                params[name] = init_covariance(k, shape[0])
            elif name[0] in "WME":
                params[name] = c.wght_sd * jax.random.normal(k, shape, jnp.float32)
        if c.e_init == "transpose":  # learned feedback starts as the transposed forward weights
            for name in [n for n in params if n.startswith("E") and n[1:].isdigit()]:
                params[name] = params[f"W{name[1:]}"].T
        for l in range(1, c.L + 1):
            if c.flags.lateral:
                params[f"V{l}"] = jnp.asarray(self._lateral_matrix(l))
        return self.apply_constraints(params)

    def apply_constraints(self, params: Params) -> Params:
        """Legacy ``apply_constraints``: covariance floor and precision, then column-norm clip of W, M, E, Sigma."""
        out = dict(params)
        for name in self.learnable_names():
            if name.startswith("Sigma"):
                l = name[len("Sigma") :]
                if self.config.sigma_rule == "nll":
                    # Over general matrices the sample covariance is only a saddle point of the
                    # Gaussian NLL: keep Sigma symmetric so descent converges to it.
                    out[name] = 0.5 * (out[name] + out[name].T)
                cov, prec = legacy_precision(out[name])
                # legacy_frozen_precision: legacy ngc-learn >= 0.2 captured P once, when the settling
                # graph was traced, so the learned Sigma never reached inference (GNCN.md). Parity
                # studies keep the first precision; Sigma itself still learns.
                if not (self.config.legacy_frozen_precision and f"Prec{l}" in params):
                    out[f"Prec{l}"] = prec
                out[name] = clip_column_norms(cov)
            else:
                out[name] = clip_column_norms(out[name])
        return out

    # ----- input checks (static under jit, full on concrete arrays) ---------------------------
    def check_params(self, params: Params, *, values: bool = True) -> Params:
        """Check that ``params`` has every array of this model with its shape, floating and finite.

        Raises ``ValueError`` naming the array. Under ``jit``, or with ``values=False``, only names,
        shapes and dtypes are checked (no array is read).
        """
        fix = (
            f"the parameters must come from this model's init(key) or a checkpoint of the same "
            f"architecture (kind={self.config.kind!r}, x_dim={self.config.x_dim}, "
            f"z_dims={list(self.config.z_dims)})"
        )
        if not isinstance(params, dict):
            raise ValueError(f"params: expected a dict of name -> array, got {type(params).__name__}; {fix}")
        shapes = self.param_shapes()
        missing = sorted(set(shapes) - set(params))
        if missing:
            raise ValueError(
                f"params: expected arrays {sorted(shapes)}, got {sorted(params)} (missing {missing}); {fix}"
            )
        for name, shape in shapes.items():
            check_array(
                params[name],
                f"params[{name!r}]",
                shape=shape,
                fix=fix[0].upper() + fix[1:],
                finite=values,
                nonfinite_fix="The parameters have diverged: reload the last good "
                "checkpoint (predcode never saves non-finite weights) and lower the learning rate",
            )
        return self.check_lateral(params) if values else params

    def check_input(self, x: _Data, name: str = "x") -> _Data:
        """Check data for the model: (batch, x_dim) floats, finite, in [0, 1] under a sigmoid output.

        ``x`` (NumPy or JAX) is returned unchanged; bad data raise ``ValueError`` naming ``name``.
        """
        bernoulli = self.config.g_out == "sigmoid"
        return check_array(
            x,
            name,
            shape=(None, self.config.x_dim),
            low=0.0 if bernoulli else None,
            high=1.0 if bernoulli else None,
            why="pixel probabilities of the model's Bernoulli (g_out = sigmoid) output layer",
            fix="Scale images to [0, 1] (uint8 pixels: predcode.data.to_float or binarize) and one "
            "image a row (predcode.data.flatten)"
            if bernoulli
            else "Pass one sample a row",
        )

    def check_weights(self, weights: _Data, x: _Data) -> _Data:
        """Check per-row weights for the batch ``x``: shape (batch,), finite, >= 0, not all 0 (returned unchanged)."""
        weights = check_array(
            weights,
            "weights",
            shape=(x.shape[0],),
            low=0.0,
            why="1 for a real row, 0 for padding",
            fix="pad_batch(x, batch_size) returns x and matching weights",
        )
        check_batch(x.shape[0], "x", weights=weights)
        return weights

    # ----- dynamics ---------------------------------------------------------------------------
    def image_cell(self) -> Any:
        """The image layer's error cell: ``x_cell`` if given, else the config's (``x_cell`` name)."""
        return self.x_cell if self.x_cell is not None else make_cell(self.config.x_cell, parameter="x_cell")

    def _predict(self, params: Params, x: Array, mask, states):
        c, f = self.config, self.config.flags
        assert c.phi is not None and c.g_hidden is not None  # filled from MUSEUM by __post_init__
        phi, g_hidden = (get_activation(n).fn for n in (c.phi, c.g_hidden))
        g_out = get_activation(c.g_out)
        cells = (self.image_cell(), GaussianErrorCell())
        phis = [phi(z) for z in states]
        preds, errs, sigs = [], [], []
        for l in range(c.L):  # prediction and error of layer l (0 = data)
            a = phis[l] @ params[f"W{l + 1}"]
            if f.skip and l + 2 <= c.L:
                a = a + phis[l + 1] @ params[f"M{l + 2}"]
            mu = (g_out.fn if l == 0 else g_hidden)(a)
            target = x if l == 0 else (phis[l - 1] if f.error_on_phi else states[l - 1])
            out = cells[min(l, 1)](target, mu, mask=mask if l == 0 else None)
            if l >= 1 and f.learn_sigma:
                sig = whiten(out.e, params[f"Prec{l}"])
            elif l == 0 and c.x_signal == "pre_activation":
                sig = out.dmu * g_out.deriv(a)
            else:
                sig = out.dmu
            preds.append(mu)
            errs.append(out.e)
            sigs.append(sig)
        return tuple(preds), tuple(errs), tuple(sigs)

    def _drive(self, params: Params, states, sigs):
        c, f = self.config, self.config.flags
        assert c.phi is not None and c.lmbda is not None  # filled from MUSEUM by __post_init__
        act = get_activation(c.phi)
        dz = []
        for l in range(1, c.L + 1):
            z = states[l - 1]
            feedback = params[f"W{l}"].T if f.tied_feedback else params[f"E{l}"]
            d = sigs[l - 1] @ feedback
            if f.use_dfx:
                d = d * act.deriv(z)
            if l < c.L:
                d = d - sigs[l]
            if f.lateral:
                d = d - self._lateral(params, l, act.fn(z))
            if c.lmbda > 0:
                d = d - c.lmbda * jnp.sign(z)
            dz.append(d - c.leak * z)
        return tuple(dz)

    def _lateral_group(self, l: int) -> int:
        """Units per lateral competition group of latent layer ``l`` (1..L)."""
        return self.config.n_top_group if l == self.config.L else self.config.n_group

    def _lateral_matrix(self, l: int) -> np.ndarray:
        """The fixed lateral matrix ``V_l`` of the config."""
        c = self.config
        return lateral_matrix(c.z_dims[l - 1], self._lateral_group(l), c.alpha_scale, c.beta_scale)

    def _lateral(self, params: Params, l: int, p: Array) -> Array:
        """``phi(z_l) V_l``. ``lateral_form = "grouped"`` computes it from the structure of the fixed V,
        ``beta_s (group sum - p) - alpha_s p``, with the group sums as two thin matmuls against a 0/1
        membership matrix (n x n/group) instead of the n x n product; it then ignores
        ``params["V{l}"]``, which :meth:`check_lateral` compares with that structure."""
        c = self.config
        if c.lateral_form == "matrix":
            return p @ params[f"V{l}"]
        group = self._lateral_group(l)
        n = p.shape[-1]
        member = (np.arange(n)[:, None] // group == np.arange(n // group)[None, :]).astype(np.float32)
        sums = (p @ member) @ member.T  # each unit's group sum: two thin matmuls, n/group wide
        return c.beta_scale * sums - (c.beta_scale + c.alpha_scale) * p

    def check_lateral(self, params: Params) -> Params:
        """With ``lateral_form = "grouped"``: check that every ``V{l}`` in ``params`` is the fixed lateral
        matrix of the config (the grouped form computes ``phi(z) V`` from the config alone). Skipped
        for traced arrays; returns ``params``."""
        c = self.config
        if c.lateral_form != "grouped" or not c.flags.lateral:
            return params
        for l in range(1, c.L + 1):
            v = params.get(f"V{l}")
            if v is None or isinstance(v, jax.core.Tracer):
                continue
            want = self._lateral_matrix(l)
            if np.shape(v) != want.shape or not np.allclose(np.asarray(v), want, atol=1e-6):
                raise ValueError(
                    f"params['V{l}']: expected the fixed lateral matrix of the config (groups of "
                    f"{self._lateral_group(l)}, "
                    f"alpha_scale={c.alpha_scale}, beta_scale={c.beta_scale}) because lateral_form is "
                    '"grouped", which computes phi(z) V from the config; got another matrix. Use '
                    'lateral_form = "matrix" for a custom V'
                )
        return params

    def settle(
        self,
        params: Params,
        x: Array,
        *,
        mask: Array | None = None,
        weights: Array | None = None,
        steps: int | None = None,
        solver: Any = None,
    ) -> SettleResult:
        """Settle the latent states on ``x`` (batch, x_dim) from zero for ``steps`` (default K) steps.

        ``mask`` (batch, x_dim) hides pixels from the bottom error. The energy trace is the total
        discrepancy per sample (``weights``-averaged) after each step. The config's ``solver``
        (step ``beta``, ``momentum``) and ``settle_tol`` choose the integration; the museum's is
        Euler for exactly ``K`` steps. ``solver`` (any solver or optax optimizer) replaces the
        config's.
        """
        c = self.config
        self.check_params(params)
        self.check_input(x)
        if mask is not None:
            check_array(
                mask,
                "mask",
                shape=x.shape,
                low=0.0,
                high=1.0,
                why="1 keeps a pixel, 0 hides it",
                fix="A mask has the shape of x: 1 keeps a pixel, 0 hides it",
            )
        if weights is not None:
            self.check_weights(weights, x)
        return settle(
            self.term(params, (x, weights, mask)),
            self.init_states(params, x),
            steps=c.K if steps is None else steps,
            solver=make_solver(c.solver, c.beta, c.momentum, rtol=c.rtol, atol=c.atol) if solver is None else solver,
            tol=c.settle_tol,
        )

    def term(self, params: Params, batch: Any) -> Term:
        """The settling vector field on ``batch``: ``x``, ``(x, weights)`` or ``(x, weights, mask)``.

        ``predict`` gives the top-down predictions, the errors and the signals (whitened where the
        model learns ``Sigma``), ``drive`` the museum's ``dz`` and ``energy`` the total discrepancy
        (``weights``-averaged). No input checks: :meth:`settle` checks, then calls this.
        """
        x, weights, mask = _unpack_batch(batch)
        return Term(
            lambda s: self._predict(params, x, mask, s),
            lambda s, sig: self._drive(params, s, sig),
            lambda s, errs: total_discrepancy(errs, weights),
        )

    def init_states(self, params: Params, batch: Any) -> tuple[Array, ...]:
        """Zero latent states ``z_1..z_L``, ``(batch, d_l)`` each, as the museum starts every settle."""
        x = _unpack_batch(batch)[0]
        return tuple(jnp.zeros((x.shape[0], d), x.dtype) for d in self.config.z_dims)

    def calc_updates(self, params: Params, result: SettleResult, weights: Array | None = None) -> Params:
        """Gradients for the optimizer (negated Hebbian updates) from the settled states and errors."""
        c, f = self.config, self.config.flags
        assert c.phi is not None  # filled from MUSEUM by __post_init__
        phi = get_activation(c.phi).fn
        phis = [phi(z) for z in result.states]
        sigs = result.signals
        grads: Params = {}
        for l in range(1, c.L + 1):
            grads[f"W{l}"] = -hebbian(phis[l - 1], sigs[l - 1], weights)
            if f.skip and l >= 2:
                grads[f"M{l}"] = -hebbian(phis[l - 1], sigs[l - 2], weights)
            if not f.tied_feedback:
                grads[f"E{l}"] = grads[f"W{l}"].T
            if f.learn_sigma and l < c.L:
                if c.sigma_rule == "legacy":
                    grads[f"Sigma{l}"] = legacy_sigma_update(sigs[l], params[f"Prec{l}"], weights)
                else:
                    g = gaussian_nll_sigma_grad(result.errors[l], params[f"Sigma{l}"], weights)
                    grads[f"Sigma{l}"] = 0.5 * (g + g.T)
        return grads

    def project(self, params: Params, z_top: Array, *, apply_phi: bool = True) -> Array:
        """Ancestral sampling: run the top-down predictions from ``z_top`` (batch, d_L) to ``mu_0``.

        ``s_L = phi(z_top)`` (or ``z_top`` itself with ``apply_phi=False``, for samples already in
        ``phi`` space such as draws from a prior fitted to ``phi(z_L)``), ``s_l = phi(s_{l+1} W_{l+1}
        [+ s_{l+2} M_{l+2}])``, ``mu_0 = g_out(s_1 W_1 [+ s_2 M_2])``. Hidden layers use ``phi``,
        as the legacy ``project`` does.
        """
        c, f = self.config, self.config.flags
        self.check_params(params)
        check_array(
            z_top, "z_top", shape=(None, c.z_dims[-1]), fix=f"pass one top-layer latent of size {c.z_dims[-1]} a row"
        )
        assert c.phi is not None  # filled from MUSEUM by __post_init__
        phi, g_out = get_activation(c.phi).fn, get_activation(c.g_out).fn
        s: dict[int, Array] = {c.L: phi(z_top) if apply_phi else z_top}
        for l in range(c.L - 1, -1, -1):
            a = s[l + 1] @ params[f"W{l + 1}"]
            if f.skip and l + 2 <= c.L:
                a = a + s[l + 2] @ params[f"M{l + 2}"]
            s[l] = g_out(a) if l == 0 else phi(a)
        return s[0]


def _unpack_batch(batch: Any) -> tuple[Array, Array | None, Array | None]:
    """``(x, weights, mask)`` from a museum batch: ``x`` alone, ``(x, weights)`` or ``(x, weights, mask)``."""
    if isinstance(batch, (tuple, list)):
        x, weights, mask = (*batch, None, None)[:3]
        return x, weights, mask
    return batch, None, None


def _weighted_mean(per_sample: Array, weights: Array | None) -> Array:
    if weights is None:
        return jnp.mean(per_sample)
    return jnp.sum(per_sample * weights) / jnp.sum(weights)


def discrepancy_per_sample(errors) -> Array:
    """``sum_l sum_units e_l^2`` of the un-whitened errors for each sample, shape (batch,)."""
    return cast(Array, sum(jnp.sum(e * e, axis=-1) for e in errors))  # errors is never empty (L >= 1)


def total_discrepancy(errors, weights: Array | None = None) -> Array:
    """ToD: ``sum_l sum_units e_l^2`` of the un-whitened errors, averaged over samples (positive; no 1/2)."""
    return _weighted_mean(discrepancy_per_sample(errors), weights)


def bce_per_sample(x: Array, p: Array, eps: float = 1e-7) -> Array:
    """Binary cross-entropy summed over pixels for each sample (nats per image); ``p`` clipped to [eps, 1 - eps]."""
    p = jnp.clip(p, eps, 1 - eps)
    return -jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log(1 - p), axis=-1)


def bce(x: Array, p: Array, weights: Array | None = None, eps: float = 1e-7) -> Array:
    """Binary cross-entropy summed over pixels, averaged over samples (nats per image); ``p`` clipped."""
    return _weighted_mean(bce_per_sample(x, p, eps), weights)
