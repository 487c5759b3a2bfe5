"""The protocols every part of predcode plugs into, and the result types they share.

predcode has one settling loop (:func:`predcode.dynamics.settle`), one trainer factory
(:func:`predcode.learning.make_trainer`) and one checkpoint scheme; what varies is written against
the small protocols below, so a new error cell, solver or learning rule is one class that serves
every model family (the museum's :class:`~predcode.models.GNCN`, a general
:class:`~predcode.models.PCNetwork` and the feedforward :class:`~predcode.models.MLP`).

=================  ==========================================================================
protocol           what it provides
=================  ==========================================================================
:class:`ErrorCell`  ``cell(target, mu, *, mask=None, modulator=None) -> CellOutput``: the
                   mismatch, the error signals on ``mu`` and ``target``, the energy per sample
:class:`Solver`     ``init(states) -> aux``, ``advance(states, aux, dz, field) -> (states, aux)``:
                   one step of the settling ODE ``dz/dt = f(z)``
:class:`Term`       the vector field of a settle: ``predict(states) -> (predictions, errors,
                   signals)``, ``drive(states, signals) -> dz``, ``energy(states, errors)``
:class:`SettlingModel`  a model with free states: ``term(params, batch)`` and
                   ``init_states(params, batch)``
:class:`Rule`       ``init(model, params) -> state``, ``update(model, params, state, batch) ->
                   (grads, state)``: a learning rule, shaped like an optax transform
=================  ==========================================================================

The *drive* of a model is the right-hand side of its settling ODE. For a :class:`PCNetwork` it is
minus the gradient of the network's energy with respect to the free states; the GNCN museum
supplies its own drive (its learned feedback ``E``, the legacy covariance rule and the lateral
competition ``V`` are not the gradient of any energy), and says so in its docstring. The MLP has no
free states: its rules see only the forward pass (:class:`predcode.learning.PredictiveCoding` adds
the hidden states it settles itself, through the same loop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax

Array = jax.Array

__all__ = [
    "CellOutput",
    "ErrorCell",
    "Rule",
    "SettleResult",
    "SettlingModel",
    "Solver",
    "Term",
]


class CellOutput(NamedTuple):
    """What an error cell returns: the error ``e``, the drives on the prediction (``dmu``) and on the
    target (``dtarget``), and the cell's energy per sample.

    ``dmu`` is the derivative of the log-likelihood with respect to ``mu`` (minus the derivative of
    the energy), ``dtarget`` likewise with respect to ``target``; both are masked and scaled by the
    modulator. ``energy: (batch,)``.
    """

    e: Array
    dmu: Array
    dtarget: Array
    energy: Array


@runtime_checkable
class ErrorCell(Protocol):
    """An error cell: ``cell(target, mu, *, mask=None, modulator=None) -> CellOutput``.

    Any object with this call works wherever predcode takes a cell (a :class:`PCNetwork` node, a
    museum model's image layer); the built-in ones are in :mod:`predcode.cells`. A general
    network differentiates ``energy`` with ``jax.grad``; a museum model sends ``dmu`` up as its
    error signal.
    """

    def __call__(self, target: Array, mu: Array, *, mask: Array | None = None, modulator: Array | None = None) -> Any:
        """Score ``target: (batch, n)`` against ``mu: (batch, n)``."""
        ...


@runtime_checkable
class Solver(Protocol):
    """One step of the settling ODE; see :class:`predcode.dynamics.AbstractSolver` for the base class."""

    def init(self, states: Any) -> Any:
        """The solver's auxiliary state for ``states`` (``()`` for a memoryless solver)."""
        ...

    def advance(self, states: Any, aux: Any, dz: Any, field: Callable[[Any], Any]) -> tuple[Any, Any]:
        """New states and aux from ``states``, their drive ``dz`` and ``field(z) -> f(z)``."""
        ...


class Term(NamedTuple):
    """The vector field one settle integrates (as diffrax's ``ODETerm``, with the units it needs).

    * ``predict(states) -> (predictions, errors, signals)``: the stateless prediction and error
      units of the current states; ``signals`` are what the drive reads (whitened errors, or the
      gradient of an energy);
    * ``drive(states, signals) -> dz``: ``dz/dt`` of every free state, shaped like ``states``;
    * ``energy(states, errors) -> scalar``: the quantity traced after every step.
    """

    predict: Callable[[Any], tuple[Any, Any, Any]]
    drive: Callable[[Any, Any], Any]
    energy: Callable[[Any, Any], Array]


class SettleResult(NamedTuple):
    """What a settle returns. ``energy`` has one entry per step; ``status`` is 0 (ok) or 1 (diverged).

    ``n_steps`` is the number of steps run (``steps`` unless a tolerance stopped the settle early;
    the energy trace then repeats its last value, as the states no longer move).
    """

    states: Any
    predictions: Any
    errors: Any
    signals: Any
    energy: Array
    status: Array
    n_steps: Array | None = None


@runtime_checkable
class SettlingModel(Protocol):
    """A model whose free states settle: the museum, a PC network, an MLP under predictive coding.

    ``batch`` is whatever the model is clamped to (an image batch; a dict of clamps and masks).
    """

    def term(self, params: Any, batch: Any) -> Term:
        """The vector field of the free states given ``params`` and the clamped ``batch``."""
        ...

    def init_states(self, params: Any, batch: Any) -> Any:
        """Where the free states start."""
        ...


@runtime_checkable
class Rule(Protocol):
    """A learning rule as an init/update pair, shaped like an optax ``GradientTransformation``.

    ``update`` returns a descent direction shaped like ``params`` (what an optax optimizer takes as
    its gradient) and the rule's new state. ``batch`` is the model family's batch: ``(x, weights)``
    for the museum, ``(clamps, masks)`` for a PC network, ``(x, y)`` for an MLP.
    """

    def init(self, model: Any, params: Any) -> Any:
        """The rule's state (``()`` for a stateless rule; fixed feedback matrices for FA)."""
        ...

    def update(self, model: Any, params: Any, state: Any, *batch: Any) -> tuple[Any, Any]:
        """``(grads, state)`` for one batch."""
        ...
