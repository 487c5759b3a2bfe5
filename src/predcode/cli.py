"""The ``predcode`` command line: wiring of the library's layers, no mathematics.

Only typer and rich load at start-up: every command imports the library (and with it JAX) inside
its function, so ``predcode --version``, ``--help`` and shell completion stay fast.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import predcode

app = typer.Typer(
    help="predcode: predictive-coding networks in JAX.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
_FLAG = ""  # typer would print <bool> beside a flag, which takes no value
console = Console(soft_wrap=True)  # log lines stay whole when the output is a file


def _version(value: bool) -> None:
    if value:
        console.print(f"predcode {predcode.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", metavar=_FLAG, callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """predcode: predictive-coding networks in JAX."""


def _at_least_1(value: int) -> int:
    """Option check whose message gives the value got (typer's ``min=1`` does not)."""
    if value is not None and value < 1:
        raise typer.BadParameter(f"expected an integer >= 1, got {value}")
    return value


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
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
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
            console.print("interrupted")
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
        1, "--n-trials", callback=_at_least_1, help="Independent trials (seeds seed, seed+1, ...)."
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
        help="Also log to: tensorboard (event files in <out>/tb/trial<t>/); "
        "repeat for several. metrics.csv is always written.",
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
    from rich.markup import escape

    from predcode.experiments.config import ConfigError, load_config, parse_override, with_overrides
    from predcode.experiments.fit import LOGGERS
    from predcode.experiments.fit import fit as run_fit

    for name in log:
        if name not in LOGGERS:
            console.print(f"[red]error:[/red] --log: expected one of {', '.join(LOGGERS)}, got {name!r}")
            raise typer.Exit(2)
    from predcode.experiments.config import MLPFitConfig, PCFitConfig

    try:
        cfg = load_config(config)
        if isinstance(cfg, MLPFitConfig) and (data_parallel or distributed):
            console.print(
                f"[red]error:[/red] --data-parallel/--distributed: not available for an MLP config "
                f"({config}); an MLP trains on one device"
            )
            raise typer.Exit(2)
        if overrides:
            cfg = with_overrides(cfg, **dict(parse_override(text) for text in overrides))
    except ConfigError as err:
        console.print(f"[red]error:[/red] {escape(str(err))}")  # a key such as [train] is text, not markup
        raise typer.Exit(2) from None
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
            console.print(
                escape(f"resume: {key} {change['old']!r} -> {change['new']!r}")
                + (escape(f" ({change['note']})") if "note" in change else "")
                + f" (recorded in config.toml and {RESUMES})"
            )
    if isinstance(cfg, PCFitConfig):  # a [network] table: a general PC network
        return _fit_pc(cfg, folder, quiet=quiet, data_parallel=data_parallel or distributed, **common)
    if isinstance(cfg, MLPFitConfig):  # [model] family = "mlp": an MLP trained by its rule
        return _fit_mlp(cfg, folder, quiet=quiet, **common)

    def epoch_line(trial, r):
        return f"trial {trial} " + _epoch_line(r), r.epoch

    summary = _train_with_progress(
        folder,
        quiet=quiet,
        first="compiling the training step ..." if resume else "compiling, then evaluating the untrained model ...",
        rate=_Throughput(cfg.train.batch_size, per_trial=n_trials > 1),
        batch_info=lambda bce, tod: f"BCE {bce:7.2f}  ToD {tod:7.2f}",
        epoch_line=epoch_line,
        train=lambda on_batch, on_epoch: run_fit(
            cfg, folder, on_batch=on_batch, on_epoch=on_epoch, data_parallel=data_parallel or distributed, **common
        ),
    )
    console.print(
        f"best validation BCE {summary['best_val_bce_mean']:.2f} +- {summary['best_val_bce_std']:.2f}, "
        f"ToD {summary['best_val_tod_mean']:.2f} over {n_trials} trial(s); "
        f"{summary['seconds_per_epoch']:.1f} s per epoch"
    )
    console.print(f"wrote the run to [bold]{folder.resolve()}[/bold]")


@contextmanager
def _fit_errors(folder: Path) -> Iterator[None]:
    """A fit's errors as one line and an exit code: 2 for usage (config, run folder), 1 for failures,
    130 after Ctrl-C (the last finished epoch is on disk)."""
    from rich.markup import escape

    from predcode.data import DatasetError
    from predcode.experiments.checkpoint import CheckpointError
    from predcode.experiments.config import ConfigError
    from predcode.experiments.fit import RunFolderError

    try:
        yield
    except (ConfigError, RunFolderError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}")  # a key such as [train] is text, not markup
        raise typer.Exit(2) from None
    except (DatasetError, CheckpointError, FloatingPointError, ValueError, OSError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print(
            f"interrupted: the last finished epoch is saved in {folder}; continue with --resume --out {folder}"
        )
        raise typer.Exit(130) from None


def _train_with_progress(
    folder: Path, *, quiet: bool, rate: _Throughput, batch_info, epoch_line, train, first: str | None = None
) -> dict:
    """Run ``train(on_batch, on_epoch)`` under a progress bar and :func:`_fit_errors`; return its summary.

    ``batch_info(*metrics)`` is the bar's text for a batch's metrics; ``epoch_line(trial, record, *rest)``
    gives the line a finished epoch prints and the epoch's number (0: the untrained model's record);
    ``first`` is the bar's text before the first batch.
    """
    compiling = "compiling the training step ..."
    with _progress(quiet) as progress:
        task = progress.add_task("trial 0 epoch 1", total=None, info=first or compiling)

        def on_batch(b, n, *metrics):
            progress.update(task, completed=b, total=n, info=batch_info(*metrics) + rate(b, n))

        def on_epoch(trial, record, *rest):
            text, epoch = epoch_line(trial, record, *rest)
            console.print(text)
            info = compiling if epoch == 0 else ""
            progress.update(task, description=f"trial {trial} epoch {epoch + 1}", completed=0, info=info)

        with _fit_errors(folder):
            summary = train(on_batch, on_epoch)
            progress.remove_task(task)  # the bar of the epoch that never started
    return summary


def _fit_pc(cfg, folder: Path, *, quiet: bool, data_parallel: bool, **common) -> None:
    """``predcode fit`` for a config with a ``[network]`` table (predcode.experiments.pc_fit)."""
    from predcode.experiments.pc_fit import pc_fit

    def epoch_line(trial, r):
        score = (
            f"val accuracy {100 * r.val_accuracy:6.2f}%" if r.val_accuracy is not None else f"val MSE {r.val_mse:7.3f}"
        )
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
        train=lambda on_batch, on_epoch: pc_fit(
            cfg, folder, on_batch=on_batch, on_epoch=on_epoch, data_parallel=data_parallel, **common
        ),
    )
    if "test_accuracy_forward_mean" in summary:
        console.print(
            f"test accuracy {100 * summary['test_accuracy_forward_mean']:.2f}% (forward pass) "
            f"over {common['n_trials']} trial(s)"
        )
    console.print(
        f"trained in {summary['train_seconds_total']:.0f} s; wrote the run to [bold]{folder.resolve()}[/bold]"
    )


def _fit_mlp(cfg, folder: Path, *, quiet: bool, **common) -> None:
    """``predcode fit`` for a ``[model] family = "mlp"`` config (predcode.experiments.mlp_fit)."""
    from predcode.experiments.mlp_fit import mlp_fit

    summary = _train_with_progress(
        folder,
        quiet=quiet,
        rate=_Throughput(cfg.train.batch_size),
        batch_info=lambda loss: f"loss {loss:.4f}",
        epoch_line=lambda trial, record, line: (f"trial {trial} {line}", record["epoch"]),
        train=lambda on_batch, on_epoch: mlp_fit(cfg, folder, on_batch=on_batch, on_epoch=on_epoch, **common),
    )
    console.print(
        f"rule {summary['rule']}: test accuracy {100 * summary['test_accuracy_mean']:.2f}% (last epoch) over "
        f"{common['n_trials']} trial(s); trained in {summary['train_seconds_total']:.0f} s; "
        f"wrote the run to [bold]{folder.resolve()}[/bold]"
    )


@app.command()
@_interruptible
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Run folder (a run already in it is overwritten)."),
    kind: str = typer.Option("gncn_pdh", help="Museum model: gncn_t1, gncn_t1_sigma, gncn_t2_lsigma, gncn_pdh."),
    dataset: str = typer.Option("mnist", help="mnist, fashion-mnist or kmnist."),
    n_train: int = typer.Option(5000, callback=_at_least_1, help="Training images."),
    n_val: int = typer.Option(1000, callback=_at_least_1, help="Validation images."),
    epochs: int = typer.Option(5, callback=_at_least_1),
    batch_size: int = typer.Option(200, callback=_at_least_1),
    seed: int = typer.Option(69),
) -> None:
    """Train a GNCN briefly (a `predcode fit` run folder), then write samples.png and the test BCE.

    `predcode analyze --run` and `predcode sample --run` work on the folder it writes.
    """
    from rich.markup import escape

    from predcode.data import NAMES, DatasetError
    from predcode.experiments.checkpoint import CheckpointError
    from predcode.experiments.config import ConfigError
    from predcode.experiments.demo import demo_config, run_demo
    from predcode.experiments.fit import RunFolderError
    from predcode.models.gncn import MUSEUM

    for option, value, allowed in (("--kind", kind, tuple(MUSEUM)), ("--dataset", dataset, NAMES)):
        if value not in allowed:
            console.print(f"[red]error:[/red] {option}: expected one of {', '.join(allowed)}, got {value!r}")
            raise typer.Exit(2)
    with _progress(False) as progress:
        task = progress.add_task("epoch 1", total=None, info="compiling, then evaluating the untrained model ...")
        rate = _Throughput(batch_size)

        def on_batch(b, n, bce, tod):
            progress.update(task, completed=b, total=n, info=f"BCE {bce:7.2f}  ToD {tod:7.2f}" + rate(b, n))

        def on_epoch(r):
            console.print(_epoch_line(r))
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
            console.print(f"[red]error:[/red] {escape(str(err))}")
            raise typer.Exit(2) from None
        except (DatasetError, CheckpointError, FloatingPointError, ValueError, OSError) as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print(f"interrupted: the demo's run folder {out} holds the last finished epoch")
            raise typer.Exit(130) from None
    console.print(
        f"validation BCE {summary['initial_val_bce']:.2f} -> {summary['best_val_bce']:.2f} "
        f"(best epoch {summary['best_epoch']}); test BCE {summary['test_bce_first_2000']:.2f}"
    )
    console.print(f"wrote {', '.join(summary['files'])} to [bold]{out.resolve()}[/bold]")


def _analysis_errors(run):
    """Run ``run()``; print a one-line message and exit 2 (bad folder or option) or 1 (bad data) on errors."""
    from rich.markup import escape

    from predcode.data import DatasetError
    from predcode.experiments.analyze import AnalyzeError
    from predcode.experiments.checkpoint import CheckpointError
    from predcode.experiments.config import ConfigError
    from predcode.experiments.density import PriorFileError

    try:
        return run()
    except (AnalyzeError, ConfigError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}")  # a key such as [train] is text, not markup
        raise typer.Exit(2) from None
    except (CheckpointError, PriorFileError, DatasetError, FloatingPointError, ValueError, OSError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None


@app.command()
def analyze(
    run: Path = typer.Option(..., "--run", help="Run folder written by `predcode fit` or `predcode demo`."),
    trial: int = typer.Option(0, "--trial", help="Which trial's best model (best{trial})."),
    n_components: int = typer.Option(75, "--n-components", help="Gaussian-mixture components of the prior."),
    n_latents: int = typer.Option(
        None,
        "--n-latents",
        help="Class-balanced training latents for the prior and probes (default: 18000 for a museum "
        "model, every training image for a general PC network).",
    ),
    n_samples: int = typer.Option(5000, "--n-samples", help="Prior samples per test image (naive Monte Carlo)."),
    n_is_samples: int = typer.Option(
        None,
        "--n-is-samples",
        help="Importance samples in each searched mixture component of a test image (default 64; "
        "0 skips the estimate).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds the latent sample, the mixture fit and the estimators."),
    n_test: int = typer.Option(None, "--n-test", help="First N test images (default: all)."),
    batch_size: int = typer.Option(500, "--batch-size", help="Images per settle / estimator batch."),
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
        on_stage=lambda msg: console.print(msg),
    )
    report, lines = _analysis_errors(lambda: analyze_run(run, options))
    for line in lines:
        console.print(line)
    console.print(f"wrote the analysis to [bold]{Path(report['out']).resolve()}[/bold]")


@app.command()
def sample(
    run: Path = typer.Option(..., "--run", help="Run folder written by `predcode fit` or `predcode demo`."),
    n: int = typer.Option(64, "-n", help="Number of samples."),
    out: Path = typer.Option(None, "--out", help="PNG file (default: <run>/samples<trial>.png)."),
    trial: int = typer.Option(0, "--trial", help="Which trial's best model (best{trial})."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Ancestral samples from the run's prior (analysis<trial>/prior.npz, else a quick 10-component fit).

    For a generative PC network run: codes from a Gaussian fitted to training codes, passed down.
    """
    from predcode.experiments.registry import sample_run

    result = _analysis_errors(lambda: sample_run(run, n=n, out=out, trial=trial, seed=seed))
    console.print(f"wrote {result['path']} (prior: {result['prior']})")


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
            console.print(
                f"[red]error:[/red] {option}: invalid choice: {item!r} (choose from {', '.join(map(repr, choices))})"
            )
            raise typer.Exit(2)
        try:
            out.append(cast(item))
        except ValueError:
            console.print(f"[red]error:[/red] {option}: expected integers, got {item!r}")
            raise typer.Exit(2) from None
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
    epochs: int = typer.Option(20, "--epochs", callback=_at_least_1, help="Epochs per rule (cosine-decayed Adam)."),
    sizes: list[str] = typer.Option(
        [], "--sizes", help="Layer widths, e.g. --sizes 784,256,256,10 (default 784,256,256,10)."
    ),
    activation: str = typer.Option("relu", "--activation", help="Hidden nonlinearity."),
    batch_size: int = typer.Option(128, "--batch-size", callback=_at_least_1),
    learning_rate: float = typer.Option(1e-3, "--learning-rate", help="Adam peak learning rate."),
    pc_steps: int = typer.Option(20, "--pc-steps", help="PC inference steps T."),
    pc_rate: float = typer.Option(0.1, "--pc-rate", help="PC inference step size."),
    seed: int = typer.Option(0, "--seed"),
    init_scale: float = typer.Option(1.0, "--init-scale", help="Multiplies the initial forward weights."),
    n_train: int = typer.Option(None, "--n-train", callback=_at_least_1, help="First N training images (default all)."),
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
    from rich.markup import escape

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
        console.print("[red]error:[/red] --set: needs --config")
        raise typer.Exit(2)
    if config is not None:
        try:
            cfg = load_config(config)
            if not isinstance(cfg, MLPFitConfig):
                raise ConfigError(
                    f'{cfg.source}: expected an MLP config ([model] family = "mlp"), got a {cfg.family} config'
                )
            cfg = with_overrides(cfg, **dict(parse_override(text) for text in overrides))
        except ConfigError as err:
            console.print(f"[red]error:[/red] {escape(str(err))}")
            raise typer.Exit(2) from None
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
        credit.run_mnist(out, log=lambda s: console.print(s), resume=resume, force=force, **options)


@credit_app.command("report")
def credit_report(
    folder: Path = typer.Option(Path("results/credit"), "--folder", help="Folder of <rule>.json."),
    out: Path = typer.Option(Path("results/credit_assignment"), "--out", help="Stem of the .md and .json."),
    extra: list[Path] = typer.Option([], "--extra", help="Folder of variant runs to add (repeatable)."),
    notes: Path = typer.Option(None, "--notes", help="Markdown discussion to include."),
) -> None:
    """Join the per-rule results into markdown + JSON."""
    from predcode.experiments.credit import write_report

    try:
        write_report(folder, out.with_suffix(".md"), out.with_suffix(".json"), extra=tuple(extra), notes=notes)
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    console.print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


@credit_app.command("online")
def credit_online(
    out: Path = typer.Option(Path("results/online.png"), "--out", help="Figure (JSON beside it)."),
    seconds: float = typer.Option(60.0, "--seconds", help="Simulated seconds at 1 ms steps."),
    learning_rate: float = typer.Option(3e-5, "--learning-rate", help="SGD learning rate per step."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """The seed-004 online product demo (FA and backprop, one update a 1 ms step); writes the figure and JSON."""
    from predcode.experiments.credit import write_online

    if not seconds > 0:
        console.print(f"[red]error:[/red] --seconds: expected a positive number, got {seconds}")
        raise typer.Exit(2)
    try:
        record = write_online(out, seconds=seconds, learning_rate=learning_rate, seed=seed)
    except (FloatingPointError, ValueError, OSError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    for name, r in record["runs"].items():
        console.print(
            f"{name}: MSE over the last 10 s {r['mse_last_10s']:.3e} = "
            f"{100 * r['relative_mse']:.2f}% of the target variance (final weights frozen: "
            f"{100 * r['frozen_relative_mse']:.2f}%)"
        )
