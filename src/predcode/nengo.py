"""Backprop and feedback alignment as Nengo learning rules on an ensemble's encoders and bias.

Nengo (https://www.nengo.ai) learns decoders online with PES, but has no rule that trains the
*input* side of a hidden ensemble from an output error. This module adds two, for nengo's reference
``nengo.Simulator`` (install with ``pip install "predcode[nengo]"``; nengo is imported nowhere
else in predcode)::

    layer2 = nengo.Connection(hidden, output, function=lambda x: 0,
                              learning_rule_type=nengo.PES(learning_rate=1e-4))
    layer1 = nengo.Connection(inp, hidden, learning_rule_type=BackProp(layer2, learning_rate=...))
    nengo.Connection(error, layer1.learning_rule)    # error = output - target, shape (n_out,)

The math is predcode's :mod:`predcode.learning.rules` on the two-layer network that a Nengo
ensemble forms. With ``x: (d,)`` the ensemble's decoded input (what its encoders multiply),
``E: (n, d)`` its scaled encoders (gain / radius folded in, as nengo stores them), ``b: (n,)`` its
bias, ``J = E x + b`` the input current, ``G`` the neuron type's rate function (gain 1, bias 0) and
``W: (n_out, n)`` the weights of the output connection (``output = W G(J)``), the loss
``1/2 ||e||^2`` of the error ``e = output - target`` has the gradient

    ``delta = G'(J) * (W^T e)``,  ``dLoss/dE = delta x^T``,  ``dLoss/db = delta``,

which is predcode's ``BackProp`` with ``W1 = E``, ``b1 = b``, ``W2 = W``. Each simulator step
changes ``E`` by ``-learning_rate * dt * delta x^T`` and ``b`` by ``-learning_rate * dt * delta``
(applied at the start of the next step, as nengo applies every rule's delta). Feedback alignment
replaces ``W^T`` by a fixed matrix ``B: (n, n_out)``, exactly as predcode's
``FeedbackAlignment`` does (``B = W^T`` is backprop).

``G'`` is the derivative of the neuron type's rate function at the current input current: for the
spiking types (LIF, SpikingRectifiedLinear, and the RegularSpiking / StochasticSpiking /
PoissonSpiking wrappers) that of their rate approximation. Supported: LIF, LIFRate,
RectifiedLinear, SpikingRectifiedLinear, Sigmoid, Tanh and the wrappers around those; any other
type is refused when the network is built.
"""

from __future__ import annotations

from typing import Any

import nengo
import numpy as np
from nengo.builder import Builder, Operator, Signal
from nengo.builder.operator import Copy, Reset
from nengo.exceptions import BuildError, ValidationError
from nengo.params import BoolParam, IntParam, NdarrayParam, NumberParam, Parameter

__all__ = [
    "BackProp",
    "DirectFeedbackAlignment",
    "FeedbackAlignment",
    "SimEncoderBias",
    "rate_derivative",
]


# --------------------------------------------------------------------------------------------
# The derivative of a neuron type's rate function


def _lif_rate_derivative(neuron_type: Any, J: np.ndarray, out: np.ndarray) -> None:
    # rate = amplitude / (tau_ref + tau_rc log(1 + 1/(J-1))) for J > 1, else 0;
    # d/dJ log(1 + 1/(J-1)) = -1 / (J (J-1)), so the derivative is amplitude tau_rc r^2 / (J (J-1)).
    j = J - 1.0
    out[...] = 0.0
    on = j > 0
    jo = j[on]
    r = 1.0 / (neuron_type.tau_ref + neuron_type.tau_rc * np.log1p(1.0 / jo))
    out[on] = neuron_type.amplitude * neuron_type.tau_rc * r * r / (jo * (jo + 1.0))


def _relu_derivative(neuron_type: Any, J: np.ndarray, out: np.ndarray) -> None:
    np.multiply(J > 0, neuron_type.amplitude, out=out)


def _sigmoid_derivative(neuron_type: Any, J: np.ndarray, out: np.ndarray) -> None:
    s = 1.0 / (1.0 + np.exp(-J))
    out[...] = s * (1.0 - s) / neuron_type.tau_ref


def _tanh_derivative(neuron_type: Any, J: np.ndarray, out: np.ndarray) -> None:
    t = np.tanh(J)
    out[...] = (1.0 - t * t) / neuron_type.tau_ref


# Most specific first: LIF subclasses LIFRate, SpikingRectifiedLinear subclasses RectifiedLinear.
# AdaptiveLIF(Rate) subclass LIF(Rate) but their rate also depends on the adaptation state, so
# they are refused by name before the table is consulted.
_DERIVATIVES = (
    (nengo.LIFRate, _lif_rate_derivative),
    (nengo.RectifiedLinear, _relu_derivative),
    (nengo.Sigmoid, _sigmoid_derivative),
    (nengo.Tanh, _tanh_derivative),
)
_NO_DERIVATIVE = (nengo.AdaptiveLIFRate, nengo.AdaptiveLIF, nengo.Izhikevich, nengo.Direct)
SUPPORTED = (
    "LIF, LIFRate, RectifiedLinear, SpikingRectifiedLinear, Sigmoid, Tanh "
    "(or RegularSpiking, StochasticSpiking, PoissonSpiking around one of them)"
)


def _derivative_fn(neuron_type: Any, *, where: str = "neuron_type"):
    """The function ``(J, out) -> None`` writing ``G'(J)`` for ``neuron_type``, or a BuildError."""
    base = neuron_type
    while isinstance(base, nengo.neurons.RatesToSpikesNeuronType):
        base = base.base_type
    if not isinstance(base, _NO_DERIVATIVE):
        for cls, fn in _DERIVATIVES:
            if isinstance(base, cls):
                return lambda J, out: fn(base, J, out)
    raise BuildError(
        f"{where}: the backprop and feedback-alignment rules need the derivative of the neuron "
        f"type's rate function; expected one of {SUPPORTED}, got {type(neuron_type).__name__} "
        f"({neuron_type!r}), which has none here"
    )


def rate_derivative(neuron_type: Any, J: Any) -> np.ndarray:
    """``G'(J)``: the derivative of ``neuron_type``'s rate function at input currents ``J``.

    ``G`` is the rate as a function of the current (gain 1, bias 0), so an ensemble with gain
    ``g`` and bias ``b`` has ``d rate / d x = g G'(g x + b)``. Spiking types use their rate
    approximation. ``J``: any shape; returns a float64 array of the same shape. Raises
    ``nengo.exceptions.BuildError`` naming a type that has no derivative here.
    """
    J = np.asarray(J, dtype=np.float64)
    out = np.empty_like(J)
    _derivative_fn(neuron_type)(J, out)
    return out


# --------------------------------------------------------------------------------------------
# Learning rule types


def _check_learning_rate(rule: str, learning_rate: Any) -> float:
    ok = isinstance(learning_rate, (int, float, np.number)) and not isinstance(learning_rate, bool)
    if not ok or not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValidationError(
            f"learning_rate: {rule} expected a positive finite number, got {learning_rate!r}",
            attr="learning_rate",
        )
    return float(learning_rate)


class _EncoderBiasRule(nengo.learning_rules.LearningRuleType):
    """Shared parts of the rules that train the post ensemble's encoders and bias."""

    modifies = "encoders"
    probeable = ("error", "delta", "bias_delta", "local_error")

    learning_rate = NumberParam("learning_rate", low=0, low_open=True, readonly=True, default=1.0)
    learn_bias = BoolParam("learn_bias", default=True, readonly=True)


class BackProp(_EncoderBiasRule):
    """Exact backprop to a hidden ensemble's encoders and bias through an output connection.

    Put it on a connection *into* the hidden ensemble; ``conn`` is the connection *out of* it whose
    output the error is about. Each step reads ``conn``'s current weights ``W: (n_out, n)`` (so
    PES may learn them at the same time) and changes the scaled encoders ``E: (n, d)`` and the bias
    ``b: (n,)`` by ``-learning_rate * dt`` times the gradient of ``1/2 ||e||^2``:
    ``delta = G'(J) * (W^T e)``, ``dE = delta x^T``, ``db = delta``.

    Args:
        conn: a ``nengo.Connection`` from the hidden ensemble (or its neurons) to the output.
        learning_rate: ``kappa > 0``, in units of 1 / (error^2 s) per unit of the gradient. The
            gradient carries the decoders' small scale (about 1 / (n max_rate)), so useful values are
            far larger than PES's (the seed's task uses 1000).
        learn_bias: also train the bias (default True); False trains the encoders alone.

    The error connected to the rule must have ``conn.size_out`` dimensions (``output - target``).
    """

    conn = Parameter("conn", readonly=True)

    def __init__(self, conn: Any, learning_rate: Any = 1.0, learn_bias: bool = True) -> None:
        if not isinstance(conn, nengo.Connection):
            raise ValidationError(
                f"conn: BackProp expected the nengo.Connection out of the hidden ensemble (whose "
                f"weights carry the error back), got {type(conn).__name__}",
                attr="conn",
            )
        lr = _check_learning_rate("BackProp", learning_rate)
        super().__init__(lr, size_in=conn.size_out)
        self.conn = conn
        self.learn_bias = learn_bias

    @property
    def _argreprs(self) -> list[str]:
        return [f"conn={self.conn}", f"learning_rate={self.learning_rate!r}"]


class FeedbackAlignment(_EncoderBiasRule):
    """Feedback alignment to a hidden ensemble's encoders and bias: ``W^T`` replaced by fixed ``B``.

    As :class:`BackProp` with ``delta = G'(J) * (B e)``; ``B: (n, error_size)`` is drawn once at
    build time and kept in the built model (``sim.data[conn.learning_rule].feedback``), or given.
    ``feedback = W^T`` (the output weights transposed) makes the rule backprop.

    Args:
        error_size: dimensions of the error signal, ``n_out``.
        learning_rate: ``kappa > 0``, on the same scale as :class:`BackProp`'s.
        seed: seeds the draw of ``B`` (None: the model's seed for this rule).
        feedback: ``B: (n_neurons, error_size)`` itself instead of a draw (checked at build time).
        learn_bias: also train the bias (default True).

    The draw follows the seed sketch: ``n`` vectors of ``error_size`` dimensions from the
    ensemble's own encoder distribution, then scaled by ``1 / (n mean(max_rates))``, the size of
    decoders that read a unit-range value out of the ensemble, so that a learning rate suits
    backprop and feedback alignment alike (with ``B`` of order 1 the updates would be about
    ``n max_rate`` times larger).
    """

    error_size = IntParam("error_size", low=1, readonly=True)
    seed = IntParam("seed", low=0, optional=True, readonly=True)
    feedback = NdarrayParam("feedback", shape=("*", "*"), optional=True, readonly=True)

    def __init__(
        self,
        error_size: int,
        learning_rate: Any = 1.0,
        seed: int | None = None,
        feedback: Any = None,
        learn_bias: bool = True,
    ) -> None:
        name = type(self).__name__
        if not isinstance(error_size, (int, np.integer)) or isinstance(error_size, bool) or error_size < 1:
            raise ValidationError(
                f"error_size: {name} expected a positive integer (the error's dimensions), got {error_size!r}",
                attr="error_size",
            )
        lr = _check_learning_rate(name, learning_rate)
        if feedback is not None:
            fb = np.asarray(feedback, dtype=np.float64)
            if fb.ndim != 2 or fb.shape[1] != error_size or not np.all(np.isfinite(fb)):
                raise ValidationError(
                    f"feedback: {name} expected a finite matrix of shape (n_neurons, error_size="
                    f"{error_size}), got shape {fb.shape}"
                    + ("" if np.all(np.isfinite(fb)) else " with non-finite values"),
                    attr="feedback",
                )
            feedback = fb
        super().__init__(lr, size_in=int(error_size))
        self.error_size = int(error_size)
        self.seed = seed
        self.feedback = feedback
        self.learn_bias = learn_bias

    @property
    def _argreprs(self) -> list[str]:
        args = [f"error_size={self.error_size}", f"learning_rate={self.learning_rate!r}"]
        if self.seed is not None:
            args.append(f"seed={self.seed}")
        if self.feedback is not None:
            args.append(f"feedback=<{self.feedback.shape[0]}x{self.feedback.shape[1]}>")
        return args


class DirectFeedbackAlignment(FeedbackAlignment):
    """Direct feedback alignment: every hidden ensemble of a chain gets the *output* error via its own ``B``.

    The same operator as :class:`FeedbackAlignment`; the difference is only where the error comes
    from. In a chain ``inp -> h1 -> h2 -> out``, put one on each connection into ``h1`` and ``h2``
    and connect the network's output error to both (with one hidden ensemble it is feedback
    alignment). Arguments as :class:`FeedbackAlignment`.
    """


# --------------------------------------------------------------------------------------------
# The operator


class SimEncoderBias(Operator):
    """Compute the encoder and bias deltas of :class:`BackProp` / :class:`FeedbackAlignment`.

    Per step: ``local = G'(J) * (M e)`` with ``M`` the feedback ``(n, n_out)`` (for backprop the
    transpose of the output weights ``W: (n_out, n)``, read at that step), then
    ``delta = -kappa dt outer(local, x)`` ``(n, d)`` and ``bias_delta = -kappa dt local`` ``(n,)``.

    Args:
        x: the post ensemble's decoded input ``(d,)``.
        current: the post neurons' input current ``J`` ``(n,)``.
        error: the error ``e`` ``(n_out,)``.
        matrix: the output weights ``W`` (``transpose=True``) or the feedback ``B``; for a
            backprop rule whose output connection is not built yet, a zero-argument function that
            returns that signal once it is (nengo builds connections in the order they were made).
        delta: the encoders' delta ``(n, d)``, updated.
        bias_delta: the bias's delta ``(n,)``, updated (None: the bias is not learned).
        local_error: ``local`` ``(n,)``, set (kept for probes).
        derivative: ``(J, out) -> None`` writing ``G'(J)`` into ``out``.
        learning_rate: ``kappa``.

    Notes: sets ``[local_error]``, incs ``[]``, reads ``[x, current, error, matrix]``, updates
    ``[delta, bias_delta]``.
    """

    def __init__(
        self,
        x,
        current,
        error,
        matrix,
        delta,
        bias_delta,
        local_error,
        derivative,
        learning_rate,
        transpose,
        tag=None,
    ):
        super().__init__(tag=tag)
        self.learning_rate = learning_rate
        self.transpose = transpose
        self.derivative = derivative
        self._matrix = matrix
        self._reads_head = [x, current, error]
        self.sets = [local_error]
        self.incs = []
        self.updates = [delta] if bias_delta is None else [delta, bias_delta]

    @property
    def matrix(self):
        """The signal of the output weights or of the feedback matrix."""
        if callable(self._matrix):
            self._matrix = self._matrix()
        return self._matrix

    @property
    def reads(self):
        """``[x, current, error, matrix]``; the matrix resolved when first asked for."""
        return [*self._reads_head, self.matrix]

    @reads.setter
    def reads(self, val):
        self._reads_head = list(val[:3])
        if len(val) > 3:
            self._matrix = val[3]

    @property
    def _descstr(self):
        return f"x={self._reads_head[0]}, J={self._reads_head[1]}, e={self._reads_head[2]} -> {self.updates}"

    def make_step(self, signals, dt, rng):
        """Return the step function of the reference simulator."""
        x = signals[self._reads_head[0]]
        J = signals[self._reads_head[1]]
        error = signals[self._reads_head[2]]
        M = signals[self.matrix]
        local = signals[self.sets[0]]
        delta = signals[self.updates[0]]
        bias_delta = signals[self.updates[1]] if len(self.updates) > 1 else None
        alpha = -self.learning_rate * dt
        deriv = self.derivative
        dJ = np.empty(J.shape)
        transpose = self.transpose

        def step_encoder_bias():
            deriv(J, dJ)
            back = M.T @ error if transpose else M @ error
            np.multiply(dJ, back, out=local)
            np.outer(alpha * local, x, out=delta)
            if bias_delta is not None:
                np.multiply(alpha, local, out=bias_delta)

        return step_encoder_bias


# --------------------------------------------------------------------------------------------
# Builders


def _post_ensemble(rule: Any, name: str) -> Any:
    conn = rule.connection
    if not isinstance(conn.post_obj, nengo.Ensemble):
        raise BuildError(
            f"learning_rule_type: {name} trains the encoders and bias of the connection's post "
            f"ensemble, so the connection must end at a nengo.Ensemble; {conn} ends at "
            f"{type(conn.post_obj).__name__} {conn.post_obj}"
        )
    post = conn.post_obj
    if isinstance(post.neuron_type, nengo.Direct):
        raise BuildError(
            f"learning_rule_type: {name} needs neurons, but post ensemble {post} is in Direct mode "
            "(no encoders, bias or rate function)"
        )
    return post


def _build_common(model, rule_type, rule, matrix, transpose, name) -> None:
    conn = rule.connection
    post = _post_ensemble(rule, name)
    derivative = _derivative_fn(post.neuron_type, where=f"{post}.neuron_type")
    n = post.n_neurons

    error = Signal(shape=rule.size_in, name=f"{name}:error")
    model.add_op(Reset(error))
    model.sig[rule]["in"] = error  # the error connection attaches here

    local_error = Signal(shape=(n,), name=f"{name}:local_error")
    bias_delta = None
    if rule_type.learn_bias:
        bias = model.sig[post.neurons]["bias"]
        bias.readonly = False
        bias_delta = Signal(shape=(n,), name=f"{name}:bias_delta")
        model.add_op(Copy(bias_delta, bias, inc=True, tag=f"{name}: bias += bias_delta"))
        model.sig[rule]["bias_delta"] = bias_delta
    model.add_op(
        SimEncoderBias(
            x=model.sig[post]["in"],
            current=model.sig[post.neurons]["in"],
            error=error,
            matrix=matrix,
            delta=model.sig[rule]["delta"],
            bias_delta=bias_delta,
            local_error=local_error,
            derivative=derivative,
            learning_rate=rule_type.learning_rate,
            transpose=transpose,
            tag=f"{name} on {conn}",
        )
    )
    model.sig[rule]["error"] = error
    model.sig[rule]["local_error"] = local_error


@Builder.register(BackProp)
def build_backprop(model, bp, rule):
    """Build :class:`BackProp` into a nengo model: checks, the error signal and the operator."""
    conn = rule.connection
    post = _post_ensemble(rule, "BackProp")
    out = bp.conn
    if out.pre_obj is not post and out.pre_obj is not post.neurons:
        raise BuildError(
            f"conn: BackProp on {conn} carries the error back through the connection out of the "
            f"post ensemble {post} (or its neurons); got {out}, which leaves {out.pre_obj}"
        )
    if out.pre_slice != slice(None):
        raise BuildError(f"conn: BackProp needs every neuron of {post} to feed {out}; got pre_slice {out.pre_slice!r}")
    if rule.size_in != out.size_out:
        raise BuildError(f"conn: BackProp's error has {rule.size_in} dimensions but {out} has {out.size_out}")
    n = post.n_neurons

    def weights():
        sig = model.sig[out].get("weights")
        if sig is None or out not in model.params:
            raise BuildError(
                f"conn: BackProp on {conn} reads the weights of {out}, which was not built; it "
                "must be in the network being simulated"
            )
        if sig.ndim != 2 or sig.shape != (out.size_out, n):
            raise BuildError(
                f"conn: BackProp expected {out} to have weights of shape ({out.size_out}, {n}) "
                f"(decoders, or a full transform from the neurons), got shape {sig.shape}; a "
                "scalar or elementwise transform from neurons has no such matrix"
            )
        return sig

    # nengo builds connections in the order they were made: if the output connection comes later,
    # its weights are looked up when the simulator orders the operators, after the whole build.
    matrix = weights() if out in model.params else weights
    _build_common(model, bp, rule, matrix, True, "BackProp")


@Builder.register(FeedbackAlignment)
def build_feedback_alignment(model, fa, rule):
    """Build :class:`FeedbackAlignment` (or DFA): draw or check ``B``, then the operator."""
    name = type(fa).__name__
    post = _post_ensemble(rule, name)
    n = post.n_neurons
    if fa.feedback is not None:
        B = np.asarray(fa.feedback, dtype=np.float64)
        if B.shape != (n, fa.error_size):
            raise BuildError(
                f"feedback: {name} on {rule.connection} expected shape (n_neurons={n}, "
                f"error_size={fa.error_size}), got {B.shape}"
            )
    else:
        seed = model.seeds[rule.connection] if fa.seed is None else fa.seed
        rng = np.random.RandomState(seed)
        dist = post.encoders
        if not isinstance(dist, nengo.dists.Distribution):
            dist = nengo.dists.UniformHypersphere(surface=True)
        B = np.asarray(dist.sample(n, fa.error_size, rng=rng), dtype=np.float64)
        B = B / (n * float(np.mean(model.params[post].max_rates)))
    feedback = Signal(B, name=f"{name}:feedback", readonly=True)
    _build_common(model, fa, rule, feedback, False, name)
    model.sig[rule]["feedback"] = feedback
    model.params[rule] = _BuiltFeedback(B)


class _BuiltFeedback:
    """What ``sim.data[conn.learning_rule]`` holds for FA/DFA: ``feedback: (n_neurons, error_size)``."""

    def __init__(self, feedback: np.ndarray) -> None:
        self.feedback = feedback

    def __repr__(self) -> str:
        return f"BuiltFeedback(feedback=<{self.feedback.shape[0]}x{self.feedback.shape[1]}>)"
