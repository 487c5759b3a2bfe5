"""Credit-assignment experiments: backprop, FA, DFA and PC on MNIST, and the online product demo.

``predcode credit mnist --out results/credit`` trains the same MLP with every rule, each as
``predcode fit`` on an MLP config (:mod:`predcode.experiments.mlp_fit`, run folders
``runs/credit/<rule>``), and writes ``<out>/<rule>.json`` (test accuracy, seconds per epoch, the
angle between each rule's update and backprop's gradient over training); ``predcode credit report``
joins them into markdown and JSON. ``predcode credit online --out results/online.png`` runs the
Nengo worked example (seed 004: FA and backprop learned online, biases included).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from predcode.experiments.checkpoint import (
    CheckpointError,
    check_finite,
    check_metadata,
    load_checkpoint,
    save_checkpoint,
    tree_arrays,
    tree_from_arrays,
    upgrade_arrays,
)
from predcode.experiments.config import RULES, MLPModelConfig
from predcode.experiments.data_files import check_split
from predcode.experiments.interrupt import stop_if_interrupted
from predcode.experiments.loop import epoch_order
from predcode.learning.rules import (
    BackProp,
    DirectFeedbackAlignment,
    FeedbackAlignment,
    FeedbackState,
    PredictiveCoding,
    alignment_angles,
    hidden_error_angles,
)
from predcode.learning.streaming import make_rule_trainer, online
from predcode.models.mlp import MLP, Layer, MLPParams

TARGETS = {"backprop": 98.0, "fa": 97.0, "dfa": 96.5, "pc": 98.0}


def make_rule(name: str, *, seed: int = 0, pc_steps: int = 20, pc_rate: float = 0.1):
    """The rule called ``name`` (``backprop``, ``fa``, ``dfa``, ``pc``); FA/DFA keys from ``seed``."""
    if name == "backprop":
        return BackProp()
    if name == "fa":
        return FeedbackAlignment(key=jax.random.key(seed + 1000))
    if name == "dfa":
        return DirectFeedbackAlignment(key=jax.random.key(seed + 2000))
    if name == "pc":
        return PredictiveCoding(steps=pc_steps, inference_rate=pc_rate)
    raise ValueError(f"rule: expected one of {list(RULES)}, got {name!r}")


# ---------------------------------------------------------------------------------- checkpoints


def save_rule_checkpoint(path, model: MLP, rule, params: MLPParams, rule_state, metadata=None):
    """Save weights, biases and the rule's fixed feedback matrices as one predcode checkpoint.

    The arrays are ``params/{i}/W``, ``params/{i}/b`` (layer ``i + 1``) and, for FA and DFA,
    ``rule_state/B/{j}`` (the j-th feedback matrix, ``B{j + 2}`` for FA, ``D{j + 1}`` for DFA).
    """
    model.check_params(params)
    arrays: dict[str, Any] = {"params": params}
    if hasattr(rule, "shapes"):  # FA, DFA: the fixed feedback matrices are the rule's state
        rule.check_state(model, rule_state)
        arrays["rule_state"] = rule_state
    meta = {
        "kind": "credit-mlp",
        "rule": rule.name,
        "sizes": list(model.sizes),
        "activation": model.activation,
        "loss": model.loss,
        **(metadata or {}),
    }
    return save_checkpoint(path, arrays, meta)


def load_rule_checkpoint(path, rule=None):
    """Load ``(model, rule, params, rule_state, metadata)`` written by :func:`save_rule_checkpoint`.

    ``rule`` defaults to a fresh rule of the recorded kind (its feedback matrices come from the
    file, never from a new key). Raises CheckpointError when a weight or feedback matrix has a
    shape the recorded network cannot use.
    """
    arrays, meta = load_checkpoint(path)
    if meta.get("kind") != "credit-mlp":
        raise CheckpointError(
            f"{path}: expected a credit-assignment MLP checkpoint (kind 'credit-mlp'), found kind {meta.get('kind')!r}"
        )
    check_metadata(meta, MLPModelConfig, source=path, names={f: f for f in ("sizes", "activation", "loss", "rule")})
    try:
        model = MLP(tuple(meta["sizes"]), activation=meta["activation"], loss=meta["loss"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the recorded network description is invalid ({err})") from err
    rule = make_rule(meta["rule"]) if rule is None else rule
    if rule.name != meta["rule"]:
        raise CheckpointError(f"{path}: holds a {meta['rule']!r} run, but rule {rule.name!r} was given")
    like: dict[str, Any] = {"params": jax.eval_shape(model.init, jax.random.key(0))}
    try:
        if hasattr(rule, "shapes"):  # FA, DFA: the fixed feedback matrices are stored as the rule's state
            shapes = rule.shapes(model)
            like["rule_state"] = FeedbackState(tuple(jnp.zeros(s, jnp.float32) for s in shapes))
        arrays = upgrade_arrays(arrays, meta, like, source=str(path))  # format version 1 too
        if "rule_state" in like:  # the rule's own check first: it names the matrix (B3) and the sizes
            paths = tree_arrays({"rule_state": like["rule_state"]})
            stored = {n: arrays[k] for n, k in zip(rule.names(model), paths) if k in arrays}
            rule.state_from_arrays(model, stored, source=f"{path} feedback matrices")
        tree = tree_from_arrays(arrays, like, source=str(path))
        params = tree["params"]
        model.check_params(params, parameter=f"{path} weights")
    except CheckpointError:
        raise
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    check_finite(tree, path)
    state = tree["rule_state"] if "rule_state" in tree else rule.init(model, params)
    return model, rule, params, state, meta


# ---------------------------------------------------------------------------------------- MNIST


def load_mnist(n_val: int = 5000, seed: int = 0, n_train: int | None = None):
    """Standardised MNIST rows: ``(x_train, y_train, x_val, y_val, x_test, y_test)`` (``n_train``: the first
    training rows left after the validation split; default all)."""
    from predcode.data import flatten, load, to_float

    xtr, ytr = load("mnist", "train")
    xte, yte = load("mnist", "test")
    check_split(len(xtr), n_val, "the mnist training set")
    xtr, xte = flatten(to_float(xtr)), flatten(to_float(xte))
    mean, std = xtr.mean(), xtr.std()
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    perm = np.random.default_rng(seed).permutation(len(xtr))
    val, train = perm[:n_val], perm[n_val:][:n_train]
    return (xtr[train], ytr[train].astype(np.int32), xtr[val], ytr[val].astype(np.int32), xte, yte.astype(np.int32))


def _accuracy(model, params, x, y, batch=2000):
    acc = jax.jit(lambda p, xb, yb: jnp.sum(jnp.argmax(model.apply(p, xb), -1) == yb))
    return float(sum(acc(params, x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch))) / len(x)


class RuleRun:
    """One MLP trained by one rule with Adam (cosine-decayed learning rate): its state, an epoch, the angle probe.

    The loop of :func:`train_rule` and of ``predcode fit`` on an MLP config
    (:mod:`predcode.experiments.mlp_fit`). Epoch ``e`` shuffles the training rows with the seed
    ``(seed, e)``, so a run resumed from its state after any epoch ends as an uninterrupted one.
    ``history`` holds the epochs (validation and test accuracy, training loss, seconds with
    compilation and probes excluded) and the per-layer angles between the rule's update and
    backprop's gradient on a fixed batch of ``angle_batch`` training rows (at step 0, at steps
    10, 30, 100 and 300 of the first epoch and after every epoch).
    """

    EARLY = (10, 30, 100, 300)

    def __init__(
        self,
        name: str,
        data,
        *,
        sizes=(784, 256, 256, 10),
        activation="relu",
        epochs=20,
        batch_size=128,
        learning_rate=1e-3,
        seed=0,
        pc_steps=20,
        pc_rate=0.1,
        init_scale=1.0,
        angle_batch=1000,
    ):
        self.name, self.data, self.seed, self.batch_size, self.epochs = name, data, seed, batch_size, epochs
        xtr, ytr = data[0], data[1]
        if len(xtr) < batch_size:
            raise ValueError(f"train.batch_size: expected at most the {len(xtr)} training images, got {batch_size}")
        self.model = model = MLP(tuple(sizes), activation=activation, loss="cross_entropy")
        self.rule = rule = make_rule(name, seed=seed, pc_steps=pc_steps, pc_rate=pc_rate)
        params = model.init(jax.random.key(seed))
        self.params = tuple(Layer(init_scale * W, b) for W, b in params)
        self.steps_per_epoch = len(xtr) // batch_size
        schedule = optax.cosine_decay_schedule(learning_rate, epochs * self.steps_per_epoch)
        self.trainer = make_rule_trainer(model, rule, optax.adam(schedule))
        self.rule_state, self.opt_state = self.trainer.init(self.params)
        self.step = 0
        self.history: dict[str, list[dict[str, Any]]] = {"angles": [], "epochs": []}
        self.settings = {
            "sizes": list(sizes),
            "activation": activation,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "seed": seed,
            "pc_steps": pc_steps,
            "pc_rate": pc_rate,
            "init_scale": init_scale,
            "angle_batch": angle_batch,
        }
        xa, ya = jnp.asarray(xtr[:angle_batch]), jnp.asarray(ytr[:angle_batch])
        xe, ye = xa[:200], ya[:200]
        self._angles = jax.jit(
            lambda p, s: (
                alignment_angles(rule.update(model, p, s, xa, ya)[0], BackProp().update(model, p, (), xa, ya)[0]),
                hidden_error_angles(model, rule, p, s, xe, ye),
            )
        )
        # Compile outside the timed epochs (on a throwaway copy of the state).
        jax.block_until_ready(
            self.trainer.step(self.params, self.rule_state, self.opt_state, xa[:batch_size], ya[:batch_size])
        )

    @property
    def epoch(self) -> int:
        """Epochs finished."""
        return len(self.history["epochs"])

    def state(self) -> dict[str, Any]:
        """The arrays to resume from: ``params``, ``opt_state`` and ``rule_state`` (FA's, DFA's matrices)."""
        return {"params": self.params, "opt_state": self.opt_state, "rule_state": self.rule_state}

    def restore(self, state: dict[str, Any], history: dict[str, list[dict[str, Any]]]) -> None:
        """Continue from :meth:`state` and the ``history`` recorded with it."""
        self.params, self.opt_state, self.rule_state = state["params"], state["opt_state"], state["rule_state"]
        self.history = {"angles": list(history["angles"]), "epochs": list(history["epochs"])}
        self.step = self.epoch * self.steps_per_epoch

    def record_angle(self) -> None:
        """Append the angles at the current weights (and step) to ``history["angles"]``."""
        updates, errors = self._angles(self.params, self.rule_state)
        self.history["angles"].append(
            {
                "step": self.step,
                "epoch": self.step / self.steps_per_epoch,
                "degrees": [float(a) for a in updates],
                "error_degrees": [float(a) for a in errors],
            }
        )

    def train_epoch(self, on_batch: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
        """Train the next epoch; record and return its entry of ``history["epochs"]``."""
        self.begin_epoch()
        n = self.steps_per_epoch
        for i in range(n):
            loss = self.train_batch(i)
            stop_if_interrupted()  # Ctrl-C: here, between steps (predcode.experiments.interrupt)
            if on_batch is not None and (i % 50 == 0 or i == n - 1):
                on_batch(i + 1, n, float(loss))
        return self.finish_epoch()

    def begin_epoch(self) -> None:
        """Start the next epoch: its data order (seed, epoch) and its clock."""
        if not self.history["angles"]:
            self.record_angle()
        self._order = epoch_order(len(self.data[0]), self.seed, self.epoch + 1)
        self._losses: list[Any] = []
        self._t0 = time.perf_counter()

    def batch(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``i`` of the epoch begun: ``(x, y)`` rows of the training set."""
        idx = self._order[i * self.batch_size : (i + 1) * self.batch_size]
        return self.data[0][idx], self.data[1][idx]

    def train_batch(self, i: int) -> Any:
        """One training step on batch ``i`` of the epoch begun; its loss (a device scalar)."""
        x, y = self.batch(i)
        self.params, self.rule_state, self.opt_state, loss = self.trainer.step(
            self.params, self.rule_state, self.opt_state, x, y
        )
        self.after_step(loss)
        return loss

    def after_step(self, loss: Any) -> None:
        """Count a step whose new state is in ``params`` / ``rule_state``: its loss, the early angle probes."""
        self._losses.append(loss)
        self.step += 1
        if self.step in self.EARLY and self.step < self.steps_per_epoch:
            jax.block_until_ready(self.params)
            pause = time.perf_counter()
            self.record_angle()
            self._t0 += time.perf_counter() - pause  # the angle probe is not training time

    def finish_epoch(self) -> dict[str, Any]:
        """End the epoch begun: probe the angles, evaluate; record and return its ``history["epochs"]`` entry."""
        _, _, xval, yval, xte, yte = self.data
        epoch = self.epoch + 1
        jax.block_until_ready(self.params)
        seconds = time.perf_counter() - self._t0
        self.record_angle()
        train_loss = float(jnp.mean(jnp.stack(self._losses)))
        if not np.isfinite(train_loss):
            raise FloatingPointError(f"rule {self.name}: the training loss became {train_loss} in epoch {epoch}")
        record = {
            "epoch": epoch,
            "seconds": seconds,
            "train_loss": train_loss,
            "val_accuracy": _accuracy(self.model, self.params, xval, yval),
            "test_accuracy": _accuracy(self.model, self.params, xte, yte),
        }
        self.history["epochs"].append(record)
        return record

    def describe(self, record: dict[str, Any]) -> str:
        """One log line for an epoch's record."""
        angles = ", ".join(f"{a:.1f}" for a in self.history["angles"][-1]["degrees"])
        errors = ", ".join(f"{a:.1f}" for a in self.history["angles"][-1]["error_degrees"])
        return (
            f"{self.name:8s} epoch {record['epoch']:2d}  loss {record['train_loss']:.4f}  "
            f"val {100 * record['val_accuracy']:.2f}%  test {100 * record['test_accuracy']:.2f}%  "
            f"{record['seconds']:.1f} s  angle to backprop: updates [{angles}], hidden errors [{errors}] deg"
        )

    def result(self) -> dict[str, Any]:
        """The rule's results: settings, the last epoch's accuracies, the median seconds per epoch, history."""
        last = self.history["epochs"][-1]
        return {
            "rule": self.name,
            "settings": dict(self.settings),
            "test_accuracy": last["test_accuracy"],
            "val_accuracy": last["val_accuracy"],
            "seconds_per_epoch": float(np.median([e["seconds"] for e in self.history["epochs"]])),
            **self.history,
        }


def train_rule(name: str, data, *, checkpoint=None, log: Callable[[str], None] = print, **options) -> dict:
    """Train one rule with Adam (cosine-decayed learning rate) and return its history.

    ``data`` is ``(x_train, y_train, x_val, y_val, x_test, y_test)``; ``options`` are those of
    :class:`RuleRun` (sizes, activation, epochs, batch_size, learning_rate, seed, pc_steps,
    pc_rate, init_scale, angle_batch). Every epoch records validation and test accuracy, the
    training-time seconds (compilation excluded) and the per-layer angle between the rule's update
    and backprop's gradient on a fixed batch of ``angle_batch`` training rows, at the rule's current
    weights. ``init_scale`` multiplies the initial (He-uniform) forward weights. ``checkpoint``: where
    to save the final weights (and FA's, DFA's feedback matrices) with :func:`save_rule_checkpoint`.
    """
    run = RuleRun(name, data, **options)
    while run.epoch < run.epochs:
        log(run.describe(run.train_epoch()))
    result = run.result()
    if checkpoint is not None:
        save_rule_checkpoint(
            checkpoint,
            run.model,
            run.rule,
            run.params,
            run.rule_state,
            {"epochs": run.epochs, "test_accuracy": result["test_accuracy"]},
        )
    return result


_PROVENANCE = ("command", "commit", "date", "machine", "predcode_version", "jax_version", "python_version")


def run_mnist(
    out: Path,
    *,
    rules=RULES,
    checkpoints: Path | None = Path("runs/credit"),
    log: Callable[[str], None] = print,
    n_val: int = 5000,
    n_train: int | None = None,
    resume: bool = False,
    force: bool = False,
    **options,
) -> dict:
    """Train each rule in ``rules`` on MNIST (``n_val`` images held out); write ``<out>/<rule>.json`` per rule.

    Each rule is ``predcode fit`` on an MLP config (:func:`predcode.experiments.mlp_fit.mlp_fit`)
    into the run folder ``<checkpoints>/<rule>`` (a temporary folder when ``checkpoints`` is None);
    ``options`` are the keys of :class:`RuleRun` (sizes, epochs, learning_rate, ...). Per-rule
    files let the four runs go one at a time; :func:`write_report` joins them.
    """
    import tempfile

    from predcode.experiments.atomic import write_json
    from predcode.experiments.mlp_fit import mlp_config, mlp_fit

    configs = {name: mlp_config(rule=name, n_val=n_val, n_train=n_train, **options) for name in rules}
    out = Path(out)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, cfg in configs.items():
            folder = Path(scratch if checkpoints is None else checkpoints) / name
            summary = mlp_fit(cfg, folder, resume=resume, force=force, on_epoch=lambda t, r, line: log(line))
            res = {k: v for k, v in summary["trials"][0].items() if k not in ("trial", "seed")}
            res["provenance"] = {k: summary[k] for k in _PROVENANCE}
            res["checkpoint"] = None if checkpoints is None else str(folder / "best0")
            write_json(out / f"{name}.json", res)
            results[name] = res
    return results


def _read_runs(folder: Path) -> dict:
    import json

    runs = {}
    for name in RULES:
        p = Path(folder) / f"{name}.json"
        if p.exists():
            runs[name] = json.loads(p.read_text())
    if not runs:
        raise FileNotFoundError(f"folder: no per-rule results ({', '.join(r + '.json' for r in RULES)}) in {folder}")
    return runs


_LABELS = {
    "backprop": "BackProp()",
    "fa": "FeedbackAlignment",
    "dfa": "DirectFeedbackAlignment",
    "pc": "PredictiveCoding",
}
_ANGLE_EPOCHS = (0.0, 0.02, 0.07, 0.23, 1, 2, 5, 10, 15, 20)


def _variant(r: dict) -> str:
    scale = r.get("settings", {}).get("init_scale", 1.0)
    return "" if scale == 1.0 else f" (init x{scale:g})"


def _angle_table(groups: list[dict], key: str) -> list[str]:
    first = next(iter(groups[0].values()))["angles"]
    picked = [i for i, a in enumerate(first) if any(abs(a["epoch"] - e) < 0.01 for e in _ANGLE_EPOCHS)]
    rows = [
        "| rule, layer | " + " | ".join(f"{first[i]['epoch']:.2f}" for i in picked) + " |",
        "|---" * (1 + len(picked)) + "|",
    ]
    for runs in groups:
        for name, r in runs.items():
            if name == "backprop":
                continue
            for layer in range(len(r["angles"][0]["error_degrees"])):
                rows.append(
                    f"| {name}{_variant(r)}, hidden layer {layer + 1} | "
                    + " | ".join(f"{r['angles'][i][key][layer]:.1f}" for i in picked)
                    + " |"
                )
    return rows


def write_report(
    folder: Path, md_path: Path, json_path: Path, *, extra: tuple[Path, ...] = (), notes: Path | None = None
) -> dict:
    """Join the per-rule results in ``folder`` (and variant runs in ``extra``) into JSON and markdown.

    ``notes`` (a markdown file) is copied in as the discussion of the numbers.
    """
    from predcode.experiments.atomic import write_json, write_text

    groups = [_read_runs(folder)] + [_read_runs(f) for f in extra]
    runs = groups[0]
    write_json(json_path, {"runs": runs, "variants": {str(f): g for f, g in zip(extra, groups[1:])}})
    lines = [
        "| rule | test accuracy | target | met | val accuracy | s / epoch, median (min) | "
        "angle to backprop at the end, updates W1, W2 (deg) |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        for name, r in group.items():
            acc, target = 100 * r["test_accuracy"], TARGETS[name]
            angle = ", ".join(f"{a:.1f}" for a in r["angles"][-1]["degrees"][:-1])
            fastest = min(e["seconds"] for e in r["epochs"])
            met = "yes" if acc >= target else f"no ({acc - target:+.2f})"
            lines.append(
                f"| {_LABELS[name]}{_variant(r)} | {acc:.2f}% | >= {target}% | {met} "
                f"| {100 * r['val_accuracy']:.2f}% | {r['seconds_per_epoch']:.1f} ({fastest:.1f}) | {angle} |"
            )
    settings = runs[next(iter(runs))]["settings"]
    prov = [
        f"- `{name}{_variant(r)}`: command `{p['command']}`, commit {p['commit']}, "
        f"{p['date']}, {p['machine']}, jax {p['jax_version']}"
        if (p := r.get("provenance"))
        else f"- `{name}{_variant(r)}`: not recorded (not written by run_mnist)"
        for group in groups
        for name, r in group.items()
    ]
    text = [
        "# Credit assignment on MNIST: backprop, FA, DFA, predictive coding",
        "",
        f"The same MLP {tuple(settings['sizes'])} ({settings['activation']} hidden units, softmax "
        f"cross-entropy) trained with each rule for {settings['epochs']} epochs: Adam, peak learning "
        f"rate {settings['learning_rate']:g} with cosine decay to 0, batch {settings['batch_size']}, "
        f"55,000 training images (5,000 held out for validation), inputs standardised; PC with "
        f"T = {settings['pc_steps']} inference steps of size {settings['pc_rate']:g}. Test accuracy "
        "is the final epoch's on the 10,000 test images (no selection on test). Seconds per epoch "
        "exclude compilation and the angle probes; the machine was shared with other jobs, so the "
        "median and the fastest epoch are both given.",
        "",
        *lines,
        "",
        "## Alignment with backprop over training",
        "",
        "Angle between the rule's weight-and-bias update of each hidden layer and backprop's "
        "gradient, at the rule's current weights, on a fixed batch of 1,000 training images "
        "(epochs; fractions are steps within the first epoch):",
        "",
        *_angle_table(groups, "degrees"),
        "",
        "Mean per-sample angle between the rule's hidden-layer error (delta) and backprop's, on "
        "200 training images (the angle Lillicrap et al. 2016 plot):",
        "",
        *_angle_table(groups, "error_degrees"),
        "",
    ]
    if notes is not None:
        text += [Path(notes).read_text().rstrip(), ""]
    text += [
        "## Provenance",
        "",
        *prov,
        "",
        f"Per-rule histories (every epoch's accuracy, loss, seconds and angles) are in `{Path(json_path).name}`.",
        "",
    ]
    write_text(md_path, "\n".join(text))
    return runs


# -------------------------------------------------------------------------------------- online


def product_signal(seconds: float = 60.0, dt: float = 1e-3):
    """Seed 004's signal: ``x(t) = (sin(2 pi t / 2), sin(2 pi 0.7 t / 2))``, target ``x0 * x1``."""
    t = np.arange(round(seconds / dt), dtype=np.float64) * dt
    xs = np.stack([np.sin(2 * np.pi * t / 2), np.sin(2 * np.pi * 0.7 * t / 2)], axis=1)
    return t, xs.astype(np.float32), (xs[:, :1] * xs[:, 1:]).astype(np.float32)


def run_online(
    *,
    seconds: float = 60.0,
    dt: float = 1e-3,
    hidden: int = 100,
    learning_rate: float = 3e-5,
    seed: int = 0,
    rules=("backprop", "fa"),
) -> dict:
    """Learn the product online (one SGD update per time step) with each rule; return the traces.

    The ReLU layer gets random biases (uniform in [-1, 1]) so its units tile the input range, as
    a Nengo ensemble's intercepts do; both layers and all biases learn.
    """
    t, xs, ys = product_signal(seconds, dt)
    model = MLP((2, hidden, 1), activation="relu", loss="squared_error")
    k_w, k_b = jax.random.split(jax.random.key(seed))
    params = model.init(k_w)
    params = (Layer(params[0].W, jax.random.uniform(k_b, (hidden,), jnp.float32, -1.0, 1.0)), params[1])
    variance = float(np.var(ys))
    last = t >= t[-1] - 10.0 + dt / 2
    runs = {}
    for name in rules:
        rule = make_rule(name, seed=seed)
        res = online(model, rule, optax.sgd(learning_rate), params, xs, ys)
        out = np.asarray(res.outputs)
        mse = float(np.mean((out[last] - ys[last]) ** 2))
        # The learned weights, frozen, on the last 10 s: a function learned, not a value tracked.
        frozen = np.asarray(model.apply(res.params, xs[last]))
        frozen_mse = float(np.mean((frozen - ys[last]) ** 2))
        runs[name] = {
            "outputs": out[:, 0],
            "mse_last_10s": mse,
            "relative_mse": mse / variance,
            "frozen_mse_last_10s": frozen_mse,
            "frozen_relative_mse": frozen_mse / variance,
        }
    return {"t": t, "target": ys[:, 0], "variance": variance, "runs": runs}


def plot_online(result: dict, path: Path) -> Path:
    """Target and output over time for each rule (full run and the last 5 s)."""
    from predcode.experiments.plots import new_figure, save_figure

    t, target = result["t"], result["target"]
    names = list(result["runs"])
    fig = new_figure(figsize=(14, 2.8 * len(names)))
    axes = fig.subplots(len(names), 3, squeeze=False, gridspec_kw={"width_ratios": [1, 3, 1]})
    windows = (("first 5 s", t <= 5), (f"all {t[-1] + t[1]:.0f} s", t >= 0), ("last 5 s", t >= t[-1] - 5))
    for row, name in zip(axes, names):
        r = result["runs"][name]
        label = {"backprop": "backprop", "fa": "feedback alignment"}.get(name, name)
        for ax, (title, window) in zip(row, windows):
            ax.plot(t[window], target[window], color="0.6", lw=1.2, label="target x0*x1")
            ax.plot(
                t[window],
                r["outputs"][window],
                color="C0" if name == "backprop" else "C3",
                lw=0.8,
                label=f"output ({label})",
            )
            ax.set_xlabel("time (s)")
            ax.set_title(title, fontsize=10)
        row[1].set_title(
            f"{label}: MSE over the last 10 s {r['mse_last_10s']:.2e} "
            f"({100 * r['relative_mse']:.2f}% of the target variance; final weights "
            f"frozen: {100 * r['frozen_relative_mse']:.2f}%)",
            fontsize=10,
        )
        row[1].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, Path(path), dpi=110)


def write_online(out: Path, *, seconds: float = 60.0, learning_rate: float = 3e-5, seed: int = 0) -> dict:
    """Run :func:`run_online`, write its figure to ``out`` and its numbers (no traces) to ``out`` as .json."""
    from predcode.experiments.atomic import write_json
    from predcode.experiments.provenance import provenance

    out = Path(out)
    t0 = time.perf_counter()
    result = run_online(seconds=seconds, learning_rate=learning_rate, seed=seed)
    elapsed = time.perf_counter() - t0
    plot_online(result, out)
    summary = {name: {k: v for k, v in r.items() if k != "outputs"} for name, r in result["runs"].items()}
    record = {
        "target_variance": result["variance"],
        "runs": summary,
        "seconds": elapsed,
        "settings": {
            "seconds": seconds,
            "dt": 1e-3,
            "hidden": 100,
            "optimizer": "sgd",
            "learning_rate": learning_rate,
            "seed": seed,
        },
        "provenance": provenance(),
    }
    write_json(out.with_suffix(".json"), record)
    return record
