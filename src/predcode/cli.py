"""The ``predcode`` command line: wiring of the library's layers, no mathematics."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import predcode

app = typer.Typer(help="predcode: predictive-coding networks in JAX.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console()


def _version(value: bool) -> None:
    if value:
        console.print(f"predcode {predcode.__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """predcode: predictive-coding networks in JAX."""


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                    disable=quiet)


def _epoch_line(r) -> str:
    return (f"epoch {r.epoch:3d}  train BCE {r.train_bce:7.2f}  ToD {r.train_tod:7.2f}  "
            f"| val BCE {r.val_bce:7.2f}  ToD {r.val_tod:7.2f}  ({r.seconds:.1f} s)")


@app.command()
def fit(
    config: Path = typer.Option(..., "--config", "-c", help="Config file: TOML, or ngc-learn 0.x `name = value`."),
    out: Path = typer.Option(None, help="Run folder (default: the config's out_dir, else runs/<config name>)."),
    n_trials: int = typer.Option(1, "--n-trials", min=1, help="Independent trials (seeds seed, seed+1, ...)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out."),
    force: bool = typer.Option(False, "--force", help="Overwrite a finished run in --out."),
    quiet: bool = typer.Option(False, "--quiet", help="Plain log lines instead of a progress bar."),
) -> None:
    """Train a museum model from a config file; keep the best model, stop early, resume."""
    from predcode.data import DatasetError
    from predcode.experiments.checkpoint import CheckpointError
    from predcode.experiments.config import ConfigError, load_config
    from predcode.experiments.fit import RunFolderError, fit as run_fit

    try:
        cfg = load_config(config)
    except ConfigError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    folder = out or Path(cfg.out_dir or Path("runs") / config.stem)
    with _progress(quiet) as progress:
        task = progress.add_task("trial 0 epoch 1", total=None, info="evaluating the untrained model")

        def on_batch(b, n, bce, tod):
            progress.update(task, completed=b, total=n, info=f"BCE {bce:7.2f}  ToD {tod:7.2f}")

        def on_epoch(trial, r):
            console.print(f"trial {trial} " + _epoch_line(r))
            progress.update(task, description=f"trial {trial} epoch {r.epoch + 1}", completed=0)

        try:
            summary = run_fit(cfg, folder, n_trials=n_trials, resume=resume, force=force,
                              on_batch=on_batch, on_epoch=on_epoch)
        except (ConfigError, RunFolderError) as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(2) from None
        except (DatasetError, CheckpointError, FloatingPointError, ValueError) as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print(f"interrupted: the last finished epoch is saved in {folder}; "
                          f"continue with --resume --out {folder}")
            raise typer.Exit(130) from None
    console.print(f"best validation BCE {summary['best_val_bce_mean']:.2f} +- {summary['best_val_bce_std']:.2f}, "
                  f"ToD {summary['best_val_tod_mean']:.2f} over {n_trials} trial(s); "
                  f"{summary['seconds_per_epoch']:.1f} s per epoch")
    console.print(f"wrote the run to [bold]{folder.resolve()}[/bold]")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Output folder for metrics, checkpoint and figures."),
    kind: str = typer.Option("gncn_pdh", help="Museum model: gncn_t1, gncn_t1_sigma, gncn_t2_lsigma, gncn_pdh."),
    dataset: str = typer.Option("mnist", help="mnist, fashion-mnist or kmnist."),
    n_train: int = typer.Option(5000, min=1, help="Training images."),
    n_val: int = typer.Option(1000, min=1, help="Validation images."),
    epochs: int = typer.Option(5, min=1),
    batch_size: int = typer.Option(200, min=1),
    seed: int = typer.Option(69),
) -> None:
    """Train a GNCN briefly, then write metrics, a checkpoint, curves.png and samples.png."""
    from predcode.data import DatasetError
    from predcode.experiments.demo import run_demo

    with _progress(False) as progress:
        task = progress.add_task("epoch 1", total=None, info="compiling and evaluating the untrained model")

        def on_batch(b, n, bce, tod):
            progress.update(task, completed=b, total=n, info=f"BCE {bce:7.2f}  ToD {tod:7.2f}")

        def on_epoch(r, state):
            console.print(_epoch_line(r))
            progress.update(task, description=f"epoch {r.epoch + 1}", completed=0)

        try:
            summary = run_demo(out, kind=kind, dataset=dataset, n_train=n_train, n_val=n_val,
                               epochs=epochs, batch_size=batch_size, seed=seed,
                               on_batch=on_batch, on_epoch=on_epoch)
        except (DatasetError, ValueError) as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(1) from None
    console.print(f"validation BCE {summary['initial_val_bce']:.2f} -> {summary['best_val_bce']:.2f} "
                  f"(best epoch {summary['best_epoch']}); test BCE {summary['test_bce_first_2000']:.2f}")
    console.print(f"wrote {', '.join(summary['files'])} to [bold]{out.resolve()}[/bold]")
