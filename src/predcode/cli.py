"""The ``predcode`` command line: wiring of the library's layers, no mathematics.

Only typer and rich load at start-up: every command imports the library (and with it JAX) inside
its function, so ``predcode --version``, ``--help`` and shell completion stay fast.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

import predcode
from predcode.limits import MAX_BATCH, MAX_EPOCHS, MAX_ROWS, MAX_STEPS, MAX_TRIALS, SEED_MAX

app = typer.Typer(
    help="predcode: predictive-coding networks in JAX.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
_FLAG = ""  # typer would print <bool> beside a flag, which takes no value
console = Console(soft_wrap=True)  # log lines stay whole when the output is a file


def say(*parts: Any) -> None:
    """Print user text exactly as it is: every message of every command goes through here.

    Each part is a value (printed as ``str(value)``) or a ``(value, style)`` pair. Nothing is read
    as rich markup or highlighted, so a config key such as ``[model]``, a path with brackets or a
    value in a message reaches the terminal unchanged.
    """
    if len(parts) == 1 and hasattr(parts[0], "__rich_console__"):  # a rich Table of Text cells
        text: Any = parts[0]
    else:
        text = Text.assemble(*((str(p[0]), p[1]) if isinstance(p, tuple) else str(p) for p in parts))
    console.print(text)


def fail(message: Any, code: int) -> NoReturn:
    """Print ``error: <message>`` (the message as plain text) and exit with ``code`` (2 usage, 1 failure)."""
    say(("error:", "red"), " ", message)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        say(f"predcode {predcode.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", metavar=_FLAG, callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """predcode: predictive-coding networks in JAX."""


def _int_in(low: int, high: int):
    """Option check of an integer in ``[low, high]`` whose message gives the range and the value got.

    Every integer option has one (the bounds of :mod:`predcode.limits`, as the config's settings), so
    no value passes the command line only to overflow later; typer's own ``min=`` does not say the value.
    """

    def check(value: int | None) -> int | None:
        if value is not None and not low <= value <= high:
            raise typer.BadParameter(f"expected an integer in [{low}, {high}], got {value}")
        return value

    return check


def _positive(value: float | None) -> float | None:
    """Option check of a finite number > 0 (a step size, a learning rate, a duration)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"expected a finite number > 0, got {value}")
    return value


_COUNT = _int_in(1, MAX_ROWS)  # images, samples
_SEED = _int_in(0, SEED_MAX)
_TRIAL = _int_in(0, MAX_TRIALS - 1)


class _Throughput:
    """Images per second and the epoch's time left, from the batches after an epoch's first.

    The first batch of a run includes compiling the training step, so the rate is measured from
    the end of each epoch's first reported batch on; ``images_per_batch`` is the training batch size.
    """

    def __init__(self, images_per_batch: int, per_trial: bool = False) -> None:
        self.images_per_batch = images_per_batch
        self.unit = "img/s per trial" if per_trial else "img/s"
        self.start: tuple[int, float] | None = None

    def __call__(self, b: int, n: int) -> str:
        now = time.perf_counter()
        if self.start is None or b <= self.start[0]:  # a new epoch (or the run's first batch)
            self.start = (b, now)
            return "" if b < n else "  validating"
        done, seconds = b - self.start[0], now - self.start[1]
        tail = "  validating" if b >= n else ""
        if seconds <= 0:
            return tail
        per_batch = seconds / done
        left = int(per_batch * (n - b))
        return f"  {self.images_per_batch / per_batch:,.0f} {self.unit}  ETA {left // 60}:{left % 60:02d}" + tail


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )


def _epoch_line(r) -> str:
    return (
        f"epoch {r.epoch:3d}  train BCE {r.train_bce:7.2f}  ToD {r.train_tod:7.2f}  "
        f"| val BCE {r.val_bce:7.2f}  ToD {r.val_tod:7.2f}  ({r.seconds:.1f} s)"
    )


def _interruptible(command):
    """Ctrl-C before a fit's own handling starts (while the command imports the library or reads the
    config) exits 130 too, not click's "Aborted!" with 1."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            say("interrupted")
            raise typer.Exit(130) from None

    return run


@app.command()
@_interruptible
def fit(
    config: Path = typer.Option(
        ...,
        "--config",
        "-c",
        help="Config file (TOML, or ngc-learn 0.x `name = value`), or a shipped config's name such as mnist/gncn_pdh.",
    ),
    out: Path = typer.Option(None, help="Run folder (default: the config's out_dir, else runs/<config name>)."),
    n_trials: int = typer.Option(
        1, "--n-trials", callback=_int_in(1, MAX_TRIALS), help="Independent trials (seeds seed, seed+1, ...)."
    ),
    resume: bool = typer.Option(
        False, "--resume/--no-resume", metavar=_FLAG, help="Continue the interrupted run in --out."
    ),
    force: bool = typer.Option(False, "--force/--no-force", metavar=_FLAG, help="Overwrite a finished run in --out."),
    quiet: bool = typer.Option(
        False, "--quiet/--no-quiet", metavar=_FLAG, help="Plain log lines instead of a progress bar."
    ),
    log: list[str] = typer.Option(
        [],
        "--log",
        help="Also log to: tensorboard (event files in <out>/tb/trial<t>/), mlflow (local store "
        "<out>/mlruns unless MLFLOW_TRACKING_URI), wandb (offline in <out>/wandb unless WANDB_MODE); "
        "repeat for several. metrics.csv is always written (csv). See docs/tracking.md.",
    ),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Override a config key: --set train.epochs=2 "
        "(values as in TOML: --set model.z_dims=[12,12,18]); repeatable.",
    ),
    data_parallel: bool = typer.Option(
        False,
        "--data-parallel/--no-data-parallel",
        metavar=_FLAG,
        help="Split every batch over all devices (trials then run one after another).",
    ),
    distributed: bool = typer.Option(
        False,
        "--distributed/--no-distributed",
        metavar=_FLAG,
        help="Join a multi-process run first "
        "(jax.distributed; PREDCODE_COORDINATOR, PREDCODE_NUM_PROCESSES, "
        "PREDCODE_PROCESS_ID or Slurm); implies --data-parallel. "
        "See docs/distributed.md.",
    ),
) -> None:
    """Train a museum model, a PC network or an MLP with its rule from a config file; keep the best model, resume."""

    from predcode.experiments.config import ConfigError, load_config, parse_override, with_overrides
    from predcode.experiments.tracking import TrackerError, check_loggers

    try:
        check_loggers(log)  # a name, and its package installed (the track extra)
    except TrackerError as err:
        fail(str(err), 2)

    try:
        cfg = load_config(config)
        if overrides:
            cfg = with_overrides(cfg, **dict(parse_override(text) for text in overrides))
    except ConfigError as err:
        fail(err, 2)
    folder = out or Path(cfg.out_dir or Path("runs") / config.stem)
    if distributed:
        from predcode.experiments.distributed import initialize

        initialize()
    common: dict[str, Any] = dict(n_trials=n_trials, resume=resume, force=force, log=tuple(log))
    if resume and (folder / "config.toml").exists():
        from predcode.experiments.fit import RESUMES, resume_changes

        with _fit_errors(folder):
            accepted, refused = resume_changes(folder, cfg)  # the fit refuses what it must, naming each key
        for key, change in ({} if refused else accepted).items():
            say(
                f"resume: {key} {change['old']!r} -> {change['new']!r}"
                + (f" ({change['note']})" if "note" in change else "")
                + f" (recorded in config.toml and {RESUMES})"
            )
    _fit_family(cfg, folder, quiet=quiet, data_parallel=data_parallel or distributed, **common)


def _fit_family(cfg, folder: Path, *, quiet: bool, data_parallel: bool = False, catch: bool = True, **common) -> dict:
    """Train a config of any family (``registry.fit_run``) under its progress bar and print its closing
    lines; ``predcode fit`` and every point of ``predcode sweep``. ``catch``: errors as :func:`_fit_errors`."""
    from predcode.experiments.config import MLPFitConfig, PCFitConfig

    if isinstance(cfg, PCFitConfig):  # a [network] table: a general PC network
        return _fit_pc(cfg, folder, quiet=quiet, data_parallel=data_parallel, catch=catch, **common)
    if isinstance(cfg, MLPFitConfig):  # [model] family = "mlp": an MLP trained by its rule
        return _fit_mlp(cfg, folder, quiet=quiet, data_parallel=data_parallel, catch=catch, **common)
    return _fit_museum(cfg, folder, quiet=quiet, data_parallel=data_parallel, catch=catch, **common)


def _fit_museum(cfg, folder: Path, *, quiet: bool, data_parallel: bool, catch: bool, **common) -> dict:
    """``predcode fit`` for a museum model (predcode.experiments.fit)."""
    from predcode.experiments.registry import fit_run

    def epoch_line(trial, r):
        return f"trial {trial} " + _epoch_line(r), r.epoch

    n_trials = common["n_trials"]
    summary = _train_with_progress(
        folder,
        quiet=quiet,
        catch=catch,
        first="compiling the training step ..."
        if common["resume"]
        else "compiling, then evaluating the untrained model ...",
        rate=_Throughput(cfg.train.batch_size, per_trial=n_trials > 1),
        batch_info=lambda bce, tod: f"BCE {bce:7.2f}  ToD {tod:7.2f}",
        epoch_line=epoch_line,
        train=lambda on_batch, on_epoch: fit_run(
            cfg, folder, on_batch=on_batch, on_epoch=on_epoch, data_parallel=data_parallel, **common
        ),
    )
    say(
        f"best validation BCE {summary['best_val_bce_mean']:.2f} +- {summary['best_val_bce_std']:.2f}, "
        f"ToD {summary['best_val_tod_mean']:.2f} over {n_trials} trial(s); "
        f"{summary['seconds_per_epoch']:.1f} s per epoch"
    )
    say("wrote the run to ", (folder.resolve(), "bold"))
    return summary


@contextmanager
def _fit_errors(folder: Path, resume_hint: str | None = None) -> Iterator[None]:
    """A fit's errors as one line and an exit code: 2 for usage (config, run folder), 1 for failures,
    130 after Ctrl-C (the last finished epoch is on disk)."""

    from predcode.data import DatasetError
    from predcode.experiments.checkpoint import CheckpointError
    from predcode.experiments.config import ConfigError
    from predcode.experiments.fit import RunFolderError

    try:
        yield
    except (ConfigError, RunFolderError) as err:
        fail(err, 2)
    except (DatasetError, CheckpointError, FloatingPointError, ValueError, OSError) as err:
        fail(err, 1)
    except KeyboardInterrupt:
        say(
            f"interrupted: the last finished epoch is saved in {folder}; "
            + (resume_hint or f"continue with --resume --out {folder}")
        )
        raise typer.Exit(130) from None


def _train_with_progress(
    folder: Path,
    *,
    quiet: bool,
    rate: _Throughput,
    batch_info,
    epoch_line,
    train,
    first: str | None = None,
    catch: bool = True,
) -> dict:
    """Run ``train(on_batch, on_epoch)`` under a progress bar and :func:`_fit_errors`; return its summary.

    ``batch_info(*metrics)`` is the bar's text for a batch's metrics; ``epoch_line(trial, record, *rest)``
    gives the line a finished epoch prints and the epoch's number (0: the untrained model's record);
    ``first`` is the bar's text before the first batch; ``catch=False`` lets errors through (a sweep
    handles them).
    """
    compiling = "compiling the training step ..."
    with _progress(quiet) as progress:
        task = progress.add_task("trial 0 epoch 1", total=None, info=first or compiling)

        def on_batch(b, n, *metrics):
            progress.update(task, completed=b, total=n, info=batch_info(*metrics) + rate(b, n))

        def on_epoch(trial, record, *rest):
            text, epoch = epoch_line(trial, record, *rest)
            say(text)
            info = compiling if epoch == 0 else ""
            progress.update(task, description=f"trial {trial} epoch {epoch + 1}", completed=0, info=info)

        with _fit_errors(folder) if catch else nullcontext():
            summary = train(on_batch, on_epoch)
            progress.remove_task(task)  # the bar of the epoch that never started
    return summary


def _fit_pc(cfg, folder: Path, *, quiet: bool, data_parallel: bool, catch: bool = True, **common) -> dict:
    """``predcode fit`` for a config with a ``[network]`` table (predcode.experiments.pc_fit)."""
    from predcode.experiments.registry import fit_run

    def epoch_line(trial, r):
        score = (
            f"val accuracy {100 * r.val_accuracy:6.2f}%" if r.val_accuracy is not None else f"val MSE {r.val_mse:7.3f}"
        )
        if r.test_accuracy is not None:
            score += f"  test accuracy {100 * r.test_accuracy:6.2f}%"
        text = (
            f"trial {trial} epoch {r.epoch:3d}  train energy {r.train_energy:.4f}  "
            f"| val energy {r.val_energy:.4f}  {score}  ({r.seconds:.1f} s)"
        )
        return text, r.epoch

    summary = _train_with_progress(
        folder,
        quiet=quiet,
        rate=_Throughput(cfg.train.batch_size, per_trial=common["n_trials"] > 1),
        batch_info=lambda energy: f"energy {energy:9.2f}",
        epoch_line=epoch_line,
        train=lambda on_batch, on_epoch: fit_run(
            cfg, folder, on_batch=on_batch, on_epoch=on_epoch, data_parallel=data_parallel, **common
        ),
        catch=catch,
    )
    if "test_accuracy_forward_mean" in summary:
        say(
            f"test accuracy {100 * summary['test_accuracy_forward_mean']:.2f}% (forward pass) "
            f"over {common['n_trials']} trial(s)"
        )
    if "test_accuracy_max_over_epochs_mean" in summary:
        say(
            f"best test accuracy over epochs {100 * summary['test_accuracy_max_over_epochs_mean']:.2f}% "
            "(PCX's protocol: selected on the test set)"
        )
    say(f"trained in {summary['train_seconds_total']:.0f} s; wrote the run to ", (folder.resolve(), "bold"))
    return summary


def _fit_mlp(cfg, folder: Path, *, quiet: bool, data_parallel: bool = False, catch: bool = True, **common) -> dict:
    """``predcode fit`` for a ``[model] family = "mlp"`` config (predcode.experiments.mlp_fit)."""
    from predcode.experiments.registry import fit_run

    summary = _train_with_progress(
        folder,
        quiet=quiet,
        rate=_Throughput(cfg.train.batch_size, per_trial=common["n_trials"] > 1),
        batch_info=lambda loss: f"loss {loss:.4f}",
        epoch_line=lambda trial, record, line: (f"trial {trial} {line}", record["epoch"]),
        train=lambda on_batch, on_epoch: fit_run(
            cfg, folder, on_batch=on_batch, on_epoch=on_epoch, data_parallel=data_parallel, **common
        ),
        catch=catch,
    )
    say(
        f"rule {summary['rule']}: test accuracy {100 * summary['test_accuracy_mean']:.2f}% (last epoch) over "
        f"{common['n_trials']} trial(s); trained in {summary['train_seconds_total']:.0f} s; "
        "wrote the run to ",
        (folder.resolve(), "bold"),
    )
    return summary


@app.command()
def sweep(
    config: Path = typer.Option(
        ..., "--config", "-c", help="Base config (a file or a shipped config's name), as for `predcode fit`."
    ),
    grid: list[str] = typer.Option(
        [],
        "--grid",
        help="A key and its values: --grid optimizer.learning_rate=1e-3,3e-4 (values as --set reads them; "
        "lists in brackets: --grid model.z_dims=[8,8,8],[16,16,16]); repeat for a grid of every combination.",
    ),
    listed: list[str] = typer.Option(
        [],
        "--list",
        help="One point: --list optimizer.learning_rate=1e-3,model.K=20; repeat for more (crossed with --grid).",
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override a key for every point: --set train.epochs=5."),
    out: Path = typer.Option(None, help="Sweep folder, one run folder a point (default: runs/sweep-<config name>)."),
    metric: str = typer.Option(
        None,
        "--metric",
        help="What the table and figure compare: val_bce, val_tod (museum), val_score (PC network), val_accuracy, "
        "test_accuracy (MLP), or a key of summary.json (default: the family's validation metric).",
    ),
    goal: str = typer.Option(None, "--goal", help="min or max: which end is best (default: from the metric)."),
    n_trials: int = typer.Option(1, "--n-trials", callback=_int_in(1, MAX_TRIALS), help="Trials per point."),
    log: list[str] = typer.Option([], "--log", help="Trackers for every point, as for `predcode fit`."),
    force: bool = typer.Option(
        False, "--force/--no-force", metavar=_FLAG, help="Rerun every point (finished ones too)."
    ),
    quiet: bool = typer.Option(
        False, "--quiet/--no-quiet", metavar=_FLAG, help="Plain log lines instead of a progress bar."
    ),
) -> None:
    """Train a grid or list of --set values, a run folder per point; resumable; writes sweep.csv and sweep.png.

    Running it again skips finished points and resumes interrupted ones.
    """
    from rich.table import Table

    from predcode.experiments.config import ConfigError, load_config, parse_override
    from predcode.experiments.sweep import parse_grid, parse_points, plan_sweep, run_sweep
    from predcode.experiments.tracking import check_loggers

    folder = out or Path("runs") / f"sweep-{config.stem}"
    try:
        check_loggers(log)
        fixed = {}
        for text in overrides:
            try:
                key, value = parse_override(text)
            except ConfigError as err:
                raise ConfigError(f"--set: {err}") from None
            fixed[key] = value
        points = plan_sweep(load_config(config), grid=parse_grid(grid), points=parse_points(listed), fixed=fixed)
    except ValueError as err:  # ConfigError, SweepError, TrackerError: usage
        fail(err, 2)

    def on_point(i, n, point, status):
        what = {
            "done": "finished, skipped",
            "failed": "diverged before, skipped (--force reruns it)",
            "resume": "resuming",
            "new": "training",
        }
        say((f"point {i + 1}/{n} {point.name}", "bold"), f": {what[status]}")

    def fit_point(cfg, point_folder, *, resume, force):
        common: dict[str, Any] = dict(n_trials=n_trials, resume=resume, force=force, log=tuple(log))
        return _fit_family(cfg, point_folder, quiet=quiet, catch=False, **common)

    with _fit_errors(folder, resume_hint="run the same predcode sweep command again to resume"):
        result = run_sweep(points, folder, metric=metric, goal=goal, force=force, fit=fit_point, on_point=on_point)
    table = Table(title=f"{result.metric} ({'lower' if result.goal == 'min' else 'higher'} is better)")
    for column in ["point", *result.keys, result.metric, "status"]:
        table.add_column(column, justify="right" if column == result.metric else "left", overflow="fold")
    for row in result.rows:
        value = row[result.metric]
        cells = [row["point"], *(str(row[k]) for k in result.keys), "-" if value is None else f"{value:.6g}"]
        table.add_row(*(Text(c) for c in [*cells, row["status"]]), style="bold green" if row["best"] else None)
    say(table)  # the cells are Text: shown as they are, not read as markup
    if result.best is not None:
        say(f"best: {result.best['point']} ({result.metric} = {result.best[result.metric]:.6g})")
    say(f"wrote {', '.join(result.files)} to ", (folder.resolve(), "bold"))


@app.command()
@_interruptible
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Run folder (a run already in it is overwritten)."),
    kind: str = typer.Option("gncn_pdh", help="Museum model: gncn_t1, gncn_t1_sigma, gncn_t2_lsigma, gncn_pdh."),
    dataset: str = typer.Option("mnist", help="mnist, fashion-mnist or kmnist."),
    n_train: int = typer.Option(5000, callback=_COUNT, help="Training images."),
    n_val: int = typer.Option(1000, callback=_COUNT, help="Validation images."),
    epochs: int = typer.Option(5, callback=_int_in(1, MAX_EPOCHS)),
    batch_size: int = typer.Option(200, callback=_int_in(1, MAX_BATCH)),
    seed: int = typer.Option(69, callback=_SEED),
) -> None:
    """Train a GNCN briefly (a `predcode fit` run folder), then write samples.png and the test BCE.

    `predcode analyze --run` and `predcode sample --run` work on the folder it writes.
    """

    from predcode.data import NAMES, DatasetError
    from predcode.experiments.checkpoint import CheckpointError
    from predcode.experiments.config import ConfigError
    from predcode.experiments.demo import demo_config, run_demo
    from predcode.experiments.fit import RunFolderError
    from predcode.models.gncn import MUSEUM

    for option, value, allowed in (("--kind", kind, tuple(MUSEUM)), ("--dataset", dataset, NAMES)):
        if value not in allowed:
            fail(f"{option}: expected one of {', '.join(allowed)}, got {value!r}", 2)
    with _progress(False) as progress:
        task = progress.add_task("epoch 1", total=None, info="compiling, then evaluating the untrained model ...")
        rate = _Throughput(batch_size)

        def on_batch(b, n, bce, tod):
            progress.update(task, completed=b, total=n, info=f"BCE {bce:7.2f}  ToD {tod:7.2f}" + rate(b, n))

        def on_epoch(r):
            say(_epoch_line(r))
            info = "compiling the training step ..." if r.epoch == 0 else ""
            progress.update(task, description=f"epoch {r.epoch + 1}", completed=0, info=info)

        try:
            cfg = demo_config(
                kind=kind,
                dataset=dataset,
                n_train=n_train,
                n_val=n_val,
                epochs=epochs,
                batch_size=batch_size,
                seed=seed,
            )
            summary = run_demo(out, cfg, on_batch=on_batch, on_epoch=on_epoch)
            progress.remove_task(task)
        except (ConfigError, RunFolderError) as err:  # e.g. --out is a file
            fail(err, 2)
        except (DatasetError, CheckpointError, FloatingPointError, ValueError, OSError) as err:
            fail(err, 1)
        except KeyboardInterrupt:
            say(f"interrupted: the demo's run folder {out} holds the last finished epoch")
            raise typer.Exit(130) from None
    say(
        f"validation BCE {summary['initial_val_bce']:.2f} -> {summary['best_val_bce']:.2f} "
        f"(best epoch {summary['best_epoch']}); test BCE {summary['test_bce_first_2000']:.2f}"
    )
    say(f"wrote {', '.join(summary['files'])} to ", (out.resolve(), "bold"))


def _analysis_errors(run):
    """Run ``run()``; print a one-line message and exit 2 (bad folder or option) or 1 (bad data) on errors."""

    from predcode.data import DatasetError
    from predcode.experiments.analyze import AnalyzeError
    from predcode.experiments.checkpoint import CheckpointError
    from predcode.experiments.config import ConfigError
    from predcode.experiments.density import PriorFileError

    try:
        return run()
    except (AnalyzeError, ConfigError) as err:
        fail(err, 2)
    except (CheckpointError, PriorFileError, DatasetError, FloatingPointError, ValueError, OSError) as err:
        fail(err, 1)


@app.command()
def analyze(
    run: Path = typer.Option(..., "--run", help="Run folder written by `predcode fit` or `predcode demo`."),
    trial: int = typer.Option(0, "--trial", callback=_TRIAL, help="Which trial's best model (best{trial})."),
    n_components: int = typer.Option(
        75, "--n-components", callback=_int_in(1, 10_000), help="Gaussian-mixture components of the prior."
    ),
    n_latents: int = typer.Option(
        None,
        "--n-latents",
        callback=_COUNT,
        help="Class-balanced training latents for the prior and probes (default: 18000 for a museum "
        "model, every training image for a general PC network).",
    ),
    n_samples: int = typer.Option(
        5000, "--n-samples", callback=_COUNT, help="Prior samples per test image (naive Monte Carlo)."
    ),
    n_is_samples: int = typer.Option(
        None,
        "--n-is-samples",
        callback=_int_in(0, MAX_ROWS),
        help="Importance samples in each searched mixture component of a test image (default 64; "
        "0 skips the estimate).",
    ),
    seed: int = typer.Option(
        0, "--seed", callback=_SEED, help="Seeds the latent sample, the mixture fit and the estimators."
    ),
    n_test: int = typer.Option(None, "--n-test", callback=_COUNT, help="First N test images (default: all)."),
    batch_size: int = typer.Option(
        500, "--batch-size", callback=_int_in(1, MAX_BATCH), help="Images per settle / estimator batch."
    ),
    out: Path = typer.Option(None, "--out", help="Output folder (default: <run>/analysis<trial>)."),
) -> None:
    """Density (log p(x)), BCE, ToD, masked MSE, probes and figures of a trained run.

    For a general PC network run (a [network] config): linear probe, k-NN and PCA of the codes
    (generative) or the last hidden states (supervised), plus samples and reconstructions.
    Works on the folders of `predcode fit` and `predcode demo`.
    """
    from predcode.experiments.registry import AnalyzeOptions, analyze_run

    options = AnalyzeOptions(
        trial=trial,
        n_components=n_components,
        n_latents=n_latents,
        n_samples=n_samples,
        n_is_samples=n_is_samples,
        seed=seed,
        n_test=n_test,
        batch_size=batch_size,
        out=out,
        on_stage=say,
    )
    report, lines = _analysis_errors(lambda: analyze_run(run, options))
    for line in lines:
        say(line)
    say("wrote the analysis to ", (Path(report["out"]).resolve(), "bold"))


@app.command()
def sample(
    run: Path = typer.Option(..., "--run", help="Run folder written by `predcode fit` or `predcode demo`."),
    n: int = typer.Option(64, "-n", callback=_int_in(1, 100_000), help="Number of samples."),
    out: Path = typer.Option(
        None,
        "--out",
        help="Image file, its format from the suffix: .png, .jpg, .pdf, .svg, ... (default: <run>/samples<trial>.png).",
    ),
    trial: int = typer.Option(0, "--trial", callback=_TRIAL, help="Which trial's best model (best{trial})."),
    seed: int = typer.Option(0, "--seed", callback=_SEED),
) -> None:
    """Ancestral samples from the run's prior (analysis<trial>/prior.npz, else a quick 10-component fit).

    For a generative PC network run: codes from a Gaussian fitted to training codes, passed down.
    """
    from predcode.experiments.registry import sample_run

    result = _analysis_errors(lambda: sample_run(run, n=n, out=out, trial=trial, seed=seed))
    say(f"wrote {result['path']} (prior: {result['prior']})")


@app.command()
def export(
    run: Path = typer.Option(..., "--run", help="Run folder of `predcode fit` or `predcode demo` (any family)."),
    out: Path = typer.Option(..., "--out", help="File to write, e.g. model.safetensors."),
    format: str = typer.Option("safetensors", "--format", help="File format: safetensors."),
    trial: int = typer.Option(0, "--trial", callback=_TRIAL, help="Which trial's best model (best{trial})."),
    force: bool = typer.Option(False, "--force/--no-force", metavar=_FLAG, help="Replace an existing --out file."),
) -> None:
    """Write a run's best model as a safetensors file (PyTorch, JAX, NumPy read it).

    Tensors are named by their checkpoint key path (params/W1, rule_state/B/0); the metadata
    header holds the model kind, the run's config.toml, the predcode version and the checkpoint's
    format version.
    """
    from predcode.experiments.export import ExportError, export_run

    def run_export():
        try:
            return export_run(run, out, format=format, trial=trial, force=force)
        except ExportError as err:  # usage: the message names the option
            from predcode.experiments.analyze import AnalyzeError

            raise AnalyzeError(str(err)) from None

    result = _analysis_errors(run_export)
    say(
        f"wrote {result['arrays']} tensors of the {result['model_kind']} model ({result['bytes']:,} bytes) to ",
        (Path(result["path"]).resolve(), "bold"),
    )


credit_app = typer.Typer(
    help="Credit assignment (backprop, FA, DFA, PC): the MNIST comparison, its report and the online demo.",
    no_args_is_help=True,
)
app.add_typer(credit_app, name="credit")


def _listed(option: str, values: list[str], cast=str, choices: tuple[str, ...] | None = None) -> list:
    """A list option given repeated or comma-separated (``--rules fa,dfa`` or ``--rules fa --rules dfa``)."""
    items = [item.strip() for value in values for item in value.split(",") if item.strip()]
    out = []
    for item in items:
        if choices is not None and item not in choices:
            fail(f"{option}: invalid choice: {item!r} (choose from {', '.join(map(repr, choices))})", 2)
        try:
            out.append(cast(item))
        except ValueError:
            fail(f"{option}: expected integers, got {item!r}", 2)
    return out


@credit_app.command("mnist")
@_interruptible
def credit_mnist(
    out: Path = typer.Option(
        Path("results/credit"), "--out", help="Folder for <rule>.json (what `credit report` joins)."
    ),
    rules: list[str] = typer.Option(
        [], "--rules", help="Rules to train: backprop, fa, dfa, pc (repeat or comma-separate; default all)."
    ),
    epochs: int = typer.Option(
        20, "--epochs", callback=_int_in(1, MAX_EPOCHS), help="Epochs per rule (cosine-decayed Adam)."
    ),
    sizes: list[str] = typer.Option(
        [], "--sizes", help="Layer widths, e.g. --sizes 784,256,256,10 (default 784,256,256,10)."
    ),
    activation: str = typer.Option("relu", "--activation", help="Hidden nonlinearity."),
    batch_size: int = typer.Option(128, "--batch-size", callback=_int_in(1, MAX_BATCH)),
    learning_rate: float = typer.Option(1e-3, "--learning-rate", callback=_positive, help="Adam peak learning rate."),
    pc_steps: int = typer.Option(20, "--pc-steps", callback=_int_in(1, MAX_STEPS), help="PC inference steps T."),
    pc_rate: float = typer.Option(0.1, "--pc-rate", callback=_positive, help="PC inference step size."),
    seed: int = typer.Option(0, "--seed", callback=_SEED),
    init_scale: float = typer.Option(
        1.0, "--init-scale", callback=_positive, help="Multiplies the initial forward weights."
    ),
    n_train: int = typer.Option(None, "--n-train", callback=_COUNT, help="First N training images (default all)."),
    checkpoints: Path = typer.Option(
        Path("runs/credit"), "--checkpoints", help="Parent of the run folders <rule>/ (a `predcode fit` run each)."
    ),
    config: Path = typer.Option(
        None, "--config", help="An MLP config (configs/credit/): its keys replace the options above."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override a key of --config: --set model.rule=dfa."),
    resume: bool = typer.Option(False, "--resume/--no-resume", metavar=_FLAG, help="Continue interrupted runs."),
    force: bool = typer.Option(False, "--force/--no-force", metavar=_FLAG, help="Overwrite earlier runs."),
) -> None:
    """Train the MLP with each rule: `predcode fit` on an MLP config per rule, then `<out>/<rule>.json`."""

    from predcode.experiments import credit
    from predcode.experiments.config import (
        RULES,
        ConfigError,
        MLPFitConfig,
        load_config,
        parse_override,
        with_overrides,
    )
    from predcode.experiments.mlp_fit import rule_options

    options: dict[str, Any] = dict(
        rules=_listed("--rules", rules, choices=RULES) or list(RULES),
        checkpoints=checkpoints,
        sizes=tuple(_listed("--sizes", sizes, int) or (784, 256, 256, 10)),
        activation=activation,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        pc_steps=pc_steps,
        pc_rate=pc_rate,
        init_scale=init_scale,
        n_train=n_train,
    )
    if config is None and overrides:
        fail("--set: needs --config", 2)
    if config is not None:
        try:
            cfg = load_config(config)
            if not isinstance(cfg, MLPFitConfig):
                raise ConfigError(
                    f'{cfg.source}: expected an MLP config ([model] family = "mlp"), got a {cfg.family} config'
                )
            cfg = with_overrides(cfg, **dict(parse_override(text) for text in overrides))
        except ConfigError as err:
            fail(err, 2)
        options = dict(
            rules=[cfg.model.rule],
            checkpoints=Path(cfg.out_dir) if cfg.out_dir is not None else checkpoints,
            seed=cfg.train.seed,
            n_val=cfg.data.n_val,
            n_train=cfg.data.n_train,
            **rule_options(cfg),
        )
    parent: Path = options["checkpoints"]
    with _fit_errors(parent):
        credit.run_mnist(out, log=say, resume=resume, force=force, **options)


@credit_app.command("report")
def credit_report(
    folder: Path = typer.Option(Path("results/credit"), "--folder", help="Folder of <rule>.json."),
    out: Path = typer.Option(Path("results/credit_assignment"), "--out", help="Stem of the .md and .json."),
    extra: list[Path] = typer.Option([], "--extra", help="Folder of variant runs to add (repeatable)."),
    notes: Path = typer.Option(None, "--notes", help="Markdown discussion to include."),
) -> None:
    """Join the per-rule results into markdown + JSON."""
    from predcode.experiments.credit import write_report

    for option, path, is_folder in (
        *(("--extra", e, True) for e in extra),
        *((("--notes", notes, False),) if notes is not None else ()),
    ):  # a --folder without results is write_report's "no per-rule results" (exit 1)
        if not (path.is_dir() if is_folder else path.is_file()):
            fail(f"{option}: expected an existing {'folder' if is_folder else 'file'}, got {path}", 2)
    try:
        write_report(folder, out.with_suffix(".md"), out.with_suffix(".json"), extra=tuple(extra), notes=notes)
    except (FileNotFoundError, ValueError) as err:
        fail(err, 1)
    say(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


@credit_app.command("online")
def credit_online(
    out: Path = typer.Option(Path("results/online.png"), "--out", help="Figure (JSON beside it)."),
    seconds: float = typer.Option(60.0, "--seconds", callback=_positive, help="Simulated seconds at 1 ms steps."),
    learning_rate: float = typer.Option(
        3e-5, "--learning-rate", callback=_positive, help="SGD learning rate per step."
    ),
    seed: int = typer.Option(0, "--seed", callback=_SEED),
) -> None:
    """The seed-004 online product demo (FA and backprop, one update a 1 ms step); writes the figure and JSON."""
    from predcode.experiments.credit import write_online

    try:
        record = write_online(out, seconds=seconds, learning_rate=learning_rate, seed=seed)
    except (FloatingPointError, ValueError, OSError) as err:
        fail(err, 1)
    for name, r in record["runs"].items():
        say(
            f"{name}: MSE over the last 10 s {r['mse_last_10s']:.3e} = "
            f"{100 * r['relative_mse']:.2f}% of the target variance (final weights frozen: "
            f"{100 * r['frozen_relative_mse']:.2f}%)"
        )
