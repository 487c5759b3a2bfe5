"""``predcode sweep``: a grid or a list of ``--set`` values, one run folder per point, resumable.

A point is a set of overrides of the base config (``{"optimizer.learning_rate": 1e-3, "model.K": 20}``);
its run folder ``<out>/<name>`` is named by its values (``lr=0.001_K=20``) and trained by the same
fit entry as ``predcode fit`` (:func:`predcode.experiments.registry.fit_run`), so every family
sweeps. Running a sweep again skips the points whose folder holds a finished run (``summary.json``),
resumes those with a ``config.toml`` but no summary (interrupted), and starts the others; a point
whose training diverged is recorded in ``<point>/failed.json`` and not retried (``force`` does).
The sweep writes ``sweep.csv`` (one row a point: its values, the chosen metric, its status),
``sweep.json`` (the same with the best point and provenance) and ``sweep.png`` (the metric across
the grid, the best point marked)::

    points = plan_sweep(cfg, grid=parse_grid(["optimizer.learning_rate=1e-3,3e-4", "model.K=20,50"]))
    result = run_sweep(points, "runs/sweep1", metric="val_bce")
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predcode.experiments.atomic import atomic_path, write_json, write_text
from predcode.experiments.config import (
    ConfigError,
    config_to_dict,
    dump_toml,
    load_config,
    parse_override,
    with_overrides,
)

__all__ = [
    "METRICS",
    "SweepError",
    "SweepPoint",
    "SweepResult",
    "metric_of",
    "parse_grid",
    "parse_points",
    "plan_sweep",
    "point_name",
    "run_sweep",
    "sweep_figure",
]


class SweepError(ConfigError):
    """A bad ``--grid``, ``--list`` or ``--metric``, or a sweep folder that holds other runs (exit 2)."""


# Short names of a family's summary.json figures: alias -> (key, goal). A key "trials.<k>" is the
# mean of each trial's <k>. Any numeric top-level key of summary.json is a metric too.
METRICS: dict[str, dict[str, tuple[str, str]]] = {
    "gncn": {
        "val_bce": ("best_val_bce_mean", "min"),
        "val_tod": ("best_val_tod_mean", "min"),
        "seconds_per_epoch": ("seconds_per_epoch", "min"),
    },
    "pc": {
        "val_score": ("trials.best_val_score", "task"),  # validation accuracy (supervised), energy (generative)
        "test_accuracy": ("test_accuracy_forward_mean", "max"),
        "train_seconds": ("train_seconds_total", "min"),
    },
    "mlp": {
        "val_accuracy": ("best_val_accuracy_mean", "max"),
        "test_accuracy": ("test_accuracy_mean", "max"),
        "train_seconds": ("train_seconds_total", "min"),
    },
}
DEFAULT_METRIC = {"gncn": "val_bce", "pc": "val_score", "mlp": "val_accuracy"}
SHORT = {"learning_rate": "lr", "batch_size": "bs"}


@dataclass(frozen=True)
class SweepPoint:
    """One point: its overrides, folder name and validated config."""

    name: str
    values: dict[str, Any]
    config: Any


@dataclass
class SweepResult:
    """What :func:`run_sweep` wrote: the rows of ``sweep.csv``, the metric, its goal and the best row."""

    rows: list[dict[str, Any]]
    metric: str
    goal: str
    keys: list[str]
    best: dict[str, Any] | None
    out: Path
    files: list[str] = field(default_factory=list)


# ----- parsing ---------------------------------------------------------------------------------


def _split_top(text: str) -> list[str]:
    """Split at the commas outside brackets and quotes: ``"[8,8],[16,16]"`` -> ``["[8,8]", "[16,16]"]``."""
    parts, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _override(option: str, text: str) -> tuple[str, Any]:
    try:
        return parse_override(text)
    except ConfigError as err:
        raise SweepError(f"{option}: {err}") from None


def parse_grid(specs: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``["optimizer.learning_rate=1e-3,3e-4", "model.K=20,50"]`` -> ``[(key, [values...]), ...]``.

    Values are read as TOML (``[8,8]`` a list, ``"x"`` or a bare word a string), as ``--set`` reads them.
    """
    grid: list[tuple[str, list[Any]]] = []
    for spec in specs:
        key, eq, rest = spec.partition("=")
        key = key.strip()
        pieces = _split_top(rest) if eq else []
        if not eq or not key or not rest.strip() or any(p == "" for p in pieces):
            raise SweepError(f"--grid: expected `section.key=value1,value2,...` (e.g. model.K=20,50), got {spec!r}")
        if key in (k for k, _ in grid):
            raise SweepError(f"--grid: expected each key once, got {key} twice; give all its values in one --grid")
        values = [_override("--grid", f"{key}={p}")[1] for p in pieces]
        if len({json.dumps(v, sort_keys=True) for v in values}) < len(values):
            raise SweepError(f"--grid: expected distinct values of {key}, got {spec!r}")
        grid.append((key, values))
    return grid


def parse_points(specs: Sequence[str]) -> list[dict[str, Any]]:
    """``["optimizer.learning_rate=1e-3,model.K=20", ...]`` (one ``--list`` a point) -> one dict a point."""
    points = []
    for spec in specs:
        pieces = _split_top(spec)
        if not spec.strip() or any("=" not in p or p.startswith("=") for p in pieces):
            raise SweepError(
                f"--list: expected one point as `key=value,key=value,...` "
                f"(e.g. optimizer.learning_rate=1e-3,model.K=20), got {spec!r}"
            )
        point: dict[str, Any] = {}
        for piece in pieces:
            key, value = _override("--list", piece)
            if key in point:
                raise SweepError(f"--list: expected each key once in a point, got {key} twice in {spec!r}")
            point[key] = value
        points.append(point)
    return points


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_format(v) for v in value)
    return str(value)


def point_name(values: Mapping[str, Any]) -> str:
    """The folder name of a point: ``{"optimizer.learning_rate": 1e-3, "model.K": 20}`` -> ``lr=0.001_K=20``.

    A key is shown by its last part (``learning_rate`` as ``lr``, ``batch_size`` as ``bs``), or whole
    where two keys of the point share that part.
    """
    leaves = [k.rpartition(".")[2] for k in values]
    parts = []
    for key, leaf in zip(values, leaves):
        label = key if leaves.count(leaf) > 1 else SHORT.get(leaf, leaf)
        parts.append(f"{label}={_format(values[key])}")
    return re.sub(r"[^A-Za-z0-9._+=-]", "-", "_".join(parts)) or "base"


def plan_sweep(
    base: Any,
    *,
    grid: Sequence[tuple[str, Sequence[Any]]] = (),
    points: Sequence[Mapping[str, Any]] = (),
    fixed: Mapping[str, Any] | None = None,
) -> list[SweepPoint]:
    """The points of a sweep: each listed point (or the base alone) crossed with the grid's product.

    Every point's config is built and validated here, before anything trains: a value out of range
    is a :class:`SweepError` naming the point. ``fixed`` are the ``--set`` overrides of every point.
    """
    fixed = dict(fixed or {})
    try:  # the options in the order given: --set's values first
        base = with_overrides(base, **fixed) if fixed else base
    except ConfigError as err:
        raise SweepError(f"--set: {err}") from None
    if not grid and not points:
        raise SweepError("--grid/--list: expected at least one, got neither (e.g. --grid model.K=20,50)")
    swept = {k for k, _ in grid} | {k for p in points for k in p}
    both = sorted(swept & set(fixed))
    if both:
        raise SweepError(f"--set: expected keys the sweep does not vary, got {both[0]} in --set and --grid/--list")
    listed = [k for k, _ in grid if any(k in p for p in points)]
    if listed:
        raise SweepError(f"--grid: expected keys that --list does not set, got {listed[0]} in both")
    out: list[SweepPoint] = []
    names: dict[str, dict[str, Any]] = {}
    for listed_point in points or [{}]:
        for combo in itertools.product(*(values for _, values in grid)):
            values = {**listed_point, **dict(zip((k for k, _ in grid), combo))}
            name = point_name(values)
            if name in names:
                raise SweepError(f"--list: expected distinct points, got {names[name]} twice (folder {name})")
            names[name] = values
            option = "--grid" if not listed_point else "--list"
            try:
                cfg = with_overrides(base, **values)
            except ConfigError as err:
                raise SweepError(f"{option}: the point {name}: {err}") from None
            out.append(SweepPoint(name, values, cfg))
    return out


# ----- the metric ------------------------------------------------------------------------------


def metric_of(summary: Mapping[str, Any], family: str, metric: str | None) -> tuple[str, float, str]:
    """``(key, value, goal)`` of ``metric`` (an alias of :data:`METRICS` or a summary key) in ``summary``."""
    metric = metric or DEFAULT_METRIC[family]
    key, goal = METRICS.get(family, {}).get(metric, (metric, ""))
    if key.startswith("trials."):
        values = [t.get(key[7:]) for t in summary.get("trials", [])]
        value = float(sum(values) / len(values)) if values and all(_number(v) for v in values) else None
    else:
        value = float(summary[key]) if _number(summary.get(key)) else None
    if value is None:
        known = sorted(METRICS.get(family, {})) + sorted(k for k, v in summary.items() if _number(v))
        raise SweepError(f"--metric: expected one of {', '.join(known)}, got {metric!r}")
    if goal == "task":
        goal = "max" if summary.get("task") == "supervised" else "min"
    if not goal:
        goal = "max" if "acc" in key else "min"
    return key, value, goal


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_metric(family: str, metric: str | None) -> None:
    """A metric name is an alias of the family or looks like a summary key (checked against the first summary)."""
    if metric is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", metric):
        known = ", ".join(sorted(METRICS.get(family, {})))
        raise SweepError(f"--metric: expected one of {known} or a key of summary.json, got {metric!r}")


# ----- running ---------------------------------------------------------------------------------

FitFn = Callable[..., dict]


def _default_fit(cfg: Any, folder: Path, *, resume: bool, force: bool) -> dict:
    from predcode.experiments.registry import fit_run

    return fit_run(cfg, folder, resume=resume, force=force)


def _status(point: SweepPoint, folder: Path) -> str:
    """``done``, ``failed``, ``resume`` or ``new``; a SweepError if the folder holds another config's run."""
    if not (folder / "config.toml").exists():
        return "new"
    try:
        held = config_to_dict(load_config(folder / "config.toml"))
    except ConfigError as err:
        raise SweepError(f"--out: the point {point.name}: its config.toml does not load ({err}); use --force") from None
    wanted = config_to_dict(point.config)
    diff = [
        (f"{s}.{k}", held.get(s, {}).get(k), v)
        for s, table in wanted.items()
        if isinstance(table, dict)
        for k, v in table.items()
        if held.get(s, {}).get(k) != v
    ]
    if [d[0] for d in diff] == ["train.epochs"]:
        return "resume"  # more (or fewer) epochs: continue the run, as fit --resume --set train.epochs does
    if diff:
        key, got, want = next(d for d in diff if d[0] != "train.epochs")
        raise SweepError(
            f"--out: the folder {folder} holds a run of another config ({key} = {got!r}, the sweep "
            f"asks for {want!r}); pass --force to rerun it or choose another --out"
        )
    if (folder / "summary.json").exists():
        return "done"
    if (folder / "failed.json").exists():
        return "failed"
    return "resume"


def run_sweep(
    points: Sequence[SweepPoint],
    out: str | Path,
    *,
    metric: str | None = None,
    goal: str | None = None,
    force: bool = False,
    fit: FitFn | None = None,
    on_point: Callable[[int, int, SweepPoint, str], None] | None = None,
) -> SweepResult:
    """Train every point into ``out/<name>`` (skipping finished ones), then write the table and the figure.

    ``fit(cfg, folder, resume=, force=) -> summary`` trains one point (default: the ``predcode fit``
    entry, :func:`predcode.experiments.registry.fit_run`); ``on_point(i, n, point, status)`` is told
    each point's status before it runs (``done``: skipped; ``failed``: diverged before, skipped;
    ``resume``; ``new``). A point whose training diverges (``FloatingPointError``) is recorded as
    failed and the sweep goes on; any other error stops it (finished points stay on disk).
    ``goal``: ``min`` or ``max`` (default: from the metric).
    """
    if goal not in (None, "min", "max"):
        raise SweepError(f"--goal: expected min or max, got {goal!r}")
    if not points:
        raise SweepError("--grid/--list: expected at least one point, got none")
    family = type(points[0].config).family
    check_metric(family, metric)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out: expected a folder for the sweep, got the existing file {out}")
    out.mkdir(parents=True, exist_ok=True)
    fit = fit or _default_fit
    statuses = {p.name: "new" if force else _status(p, out / p.name) for p in points}  # every folder checked first
    with _shared_tracking(out):
        rows, (key, goal) = _run_points(points, out, statuses, fit, force, family, metric, goal, on_point)
    scored = [r for r in rows if _number(r.get(key)) and math.isfinite(r[key])]
    best = (min if goal == "min" else max)(scored, key=lambda r: r[key]) if scored else None
    for r in rows:
        r.setdefault(key, None)
        r["best"] = r is best
    keys = list(dict.fromkeys(k for p in points for k in p.values))
    result = SweepResult(rows, key, goal, keys, best, out)
    _write_table(result)
    sweep_figure(result, out / "sweep.png", title=_title(points[0].config, keys))
    result.files = ["sweep.csv", "sweep.json", "sweep.png"]
    return result


@contextlib.contextmanager
def _shared_tracking(out: Path) -> Iterator[None]:
    """The points' MLflow runs in one store, ``<out>/mlruns``, experiment ``<out>`` 's name, and their
    W&B runs under ``<out>/wandb``, unless the variables are set; restored afterwards."""
    defaults = {
        "MLFLOW_TRACKING_URI": (out / "mlruns").resolve().as_uri(),
        "MLFLOW_EXPERIMENT_NAME": out.resolve().name,
        "WANDB_DIR": str(out.resolve()),
    }
    added = [k for k in defaults if k not in os.environ]
    os.environ.update({k: defaults[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _run_points(
    points, out, statuses, fit, force, family, metric, goal, on_point
) -> tuple[list[dict[str, Any]], tuple[str, str]]:
    """Train or skip each point: the rows and the metric's ``(summary key, goal)``."""
    rows: list[dict[str, Any]] = []
    keys = list(dict.fromkeys(k for p in points for k in p.values))
    resolved: tuple[str, str] | None = None
    for i, point in enumerate(points):
        folder, status = out / point.name, statuses[point.name]
        if on_point:
            on_point(i, len(points), point, status)
        row: dict[str, Any] = {"point": point.name, **_values(point, keys)}
        summary: dict | None = None
        if status == "done":
            summary = json.loads((folder / "summary.json").read_text())
        elif status == "failed":
            row["error"] = json.loads((folder / "failed.json").read_text()).get("error", "")
        else:
            try:
                summary = fit(point.config, folder, resume=status == "resume", force=force)
                if status == "resume":  # fit --resume keeps the first config.toml; the point's epochs may differ
                    write_text(folder / "config.toml", dump_toml(point.config))
                if (folder / "failed.json").exists():
                    (folder / "failed.json").unlink()
            except FloatingPointError as err:
                write_json(folder / "failed.json", {"error": str(err)})
                status, row["error"] = "failed", str(err)
            else:
                status = {"new": "trained", "resume": "resumed"}[status]
        if summary is not None:
            key, value, point_goal = metric_of(summary, family, metric)
            resolved = resolved or (key, goal or point_goal)
            row[key] = value
        row["status"] = status
        rows.append(row)
    if resolved is None:  # every point failed: the metric's name from the alias table
        key = METRICS.get(family, {}).get(metric or DEFAULT_METRIC[family], (metric or "", ""))[0]
        resolved = (key, goal or "min")
    return rows, resolved


def _values(point: SweepPoint, keys: Sequence[str]) -> dict[str, Any]:
    """The point's value of every swept key (a key it does not set: the base config's value)."""
    flat = {f"{s}.{k}": v for s, t in config_to_dict(point.config).items() if isinstance(t, dict) for k, v in t.items()}
    return {k: point.values.get(k, flat.get(k)) for k in keys}


def _title(cfg: Any, keys: Sequence[str]) -> str:
    """Model and data of the sweep, leaving out what the sweep varies."""
    family = type(cfg).family
    if family == "gncn":
        data = Path(cfg.data.train_file).name if cfg.data.train_file else cfg.data.dataset
        model = "museum model" if "model.kind" in keys else cfg.model.kind
    elif family == "pc":
        data, model = cfg.data.dataset, f"PC network ({cfg.network.task})"
    else:
        data, model = cfg.data.dataset, "MLP" if "model.rule" in keys else f"MLP ({cfg.model.rule})"
    return f"{model} on {'the data sets' if 'data.dataset' in keys else data}"


def _write_table(result: SweepResult) -> None:
    from predcode.experiments.provenance import provenance

    columns = ["point", *result.keys, result.metric, "best", "status"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in result.rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, tuple)) else v for k, v in r.items()})
    write_text(result.out / "sweep.csv", buf.getvalue())
    write_json(
        result.out / "sweep.json",
        {
            **provenance(),
            "metric": result.metric,
            "goal": result.goal,
            "keys": result.keys,
            "best": result.best["point"] if result.best else None,
            "points": result.rows,
        },
    )


# ----- the figure ------------------------------------------------------------------------------


def _numeric(values: Sequence[Any]) -> bool:
    return all(_number(v) for v in values)


def _log_axis(values: Sequence[Any]) -> bool:
    return _numeric(values) and min(values) > 0 and max(values) / min(values) >= 10


def sweep_figure(result: SweepResult, path: str | Path, *, title: str = "") -> Path:
    """``sweep.png``: the metric against one swept key (a curve), two (a heat map) or the points (dots).

    Axes carry the keys' names and the metric's; the best point is marked and named in the title.
    Drawn with matplotlib's object API (:func:`predcode.experiments.plots.new_figure`).
    """
    from predcode.experiments.plots import new_figure

    rows, key, keys = result.rows, result.metric, result.keys
    best = result.best
    goal_text = "lower is better" if result.goal == "min" else "higher is better"
    values = {k: list(dict.fromkeys(json.dumps(r[k]) for r in rows)) for k in keys}
    full_grid = len(rows) == math.prod(len(v) for v in values.values())
    score = lambda r: r[key] if _number(r.get(key)) and math.isfinite(r[key]) else math.nan
    if len(keys) == 1 and full_grid:
        fig = new_figure(figsize=(6, 4), dpi=100)
        ax = fig.subplots()
        xs = [r[keys[0]] for r in rows]
        numeric = _numeric(xs)
        order = sorted(range(len(rows)), key=lambda i: xs[i]) if numeric else list(range(len(rows)))
        pos = [xs[i] for i in order] if numeric else list(range(len(rows)))
        ax.plot(pos, [score(rows[i]) for i in order], "o-", color="tab:blue")
        if not numeric:
            ax.set_xticks(pos, [_format(xs[i]) for i in order])
        if _log_axis(xs):
            ax.set_xscale("log")
        failed = [p for p, i in zip(pos, order) if math.isnan(score(rows[i]))]
        if failed:  # a diverged point has no value: a cross on the axis where it would be
            ax.plot(failed, [ax.get_ylim()[0]] * len(failed), "x", ms=10, mew=2, color="black", label="failed")
            ax.legend()
        if best is not None:
            bx = best[keys[0]] if numeric else order.index(rows.index(best))
            ax.plot([bx], [best[key]], "*", ms=16, color="tab:red", label=f"best: {best['point']}")
            ax.legend()
        ax.set_xlabel(keys[0])
        ax.set_ylabel(f"{key} ({goal_text})")
        ax.grid(alpha=0.3)
    elif len(keys) == 2 and full_grid:
        fig = new_figure(figsize=(6.5, 4.8), dpi=100)
        ax = fig.subplots()
        xv = [json.loads(v) for v in values[keys[1]]]
        yv = [json.loads(v) for v in values[keys[0]]]
        if _numeric(xv):
            xv = sorted(xv)
        if _numeric(yv):
            yv = sorted(yv)
        grid = [[math.nan] * len(xv) for _ in yv]
        for r in rows:
            grid[yv.index(r[keys[0]])][xv.index(r[keys[1]])] = score(r)
        cmap = "viridis_r" if result.goal == "min" else "viridis"  # the better, the brighter
        image = ax.imshow(grid, cmap=cmap, aspect="auto", origin="lower")
        finite = [v for row in grid for v in row if math.isfinite(v)]
        mid = (min(finite) + max(finite)) / 2 if finite else 0.0
        for yi, row in enumerate(grid):
            for xi, v in enumerate(row):
                text = "failed" if not math.isfinite(v) else f"{v:.4g}"
                bright = math.isfinite(v) and ((v < mid) == (result.goal == "min"))
                ax.text(xi, yi, text, ha="center", va="center", fontsize=9, color="black" if bright else "white")
        if best is not None:
            from matplotlib.patches import Rectangle

            bx, by = xv.index(best[keys[1]]), yv.index(best[keys[0]])
            ax.add_patch(Rectangle((bx - 0.5, by - 0.5), 1, 1, fill=False, edgecolor="tab:red", lw=3))
        ax.set_xticks(range(len(xv)), [_format(v) for v in xv])
        ax.set_yticks(range(len(yv)), [_format(v) for v in yv])
        ax.set_xlabel(keys[1])
        ax.set_ylabel(keys[0])
        fig.colorbar(image, ax=ax, label=f"{key} ({goal_text})")
    else:
        # a dot plot, not bars: the axis spans the values (their differences are the point), and
        # bars on an axis that does not start at zero would overstate them
        fig = new_figure(figsize=(7, 0.45 * len(rows) + 1.5), dpi=100)
        ax = fig.subplots()
        ys = list(range(len(rows)))
        ax.plot([score(r) for r in rows], ys, "o", ms=8, color="tab:blue")
        if best is not None:
            ax.plot([best[key]], [rows.index(best)], "*", ms=16, color="tab:red", label=f"best: {best['point']}")
            ax.legend()
        finite = [score(r) for r in rows if math.isfinite(score(r))]
        if finite:
            low, high = min(finite), max(finite)
            pad = (high - low) * 0.1 or abs(high) * 0.05 or 1.0
            ax.set_xlim(low - pad, high + pad)
        for y, r in zip(ys, rows):
            if not math.isfinite(score(r)):
                ax.text(ax.get_xlim()[0], y, " failed", va="center", fontsize=9)
        ax.set_yticks(ys, [r["point"] for r in rows])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel(f"{key} ({goal_text})")
        ax.grid(axis="x", alpha=0.3)
    best_text = f"best {best['point']}: {key} = {best[key]:.4g}" if best else "no point finished"
    ax.set_title(f"{title}: {best_text}" if title else best_text, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
