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

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task("epoch 1", total=None, info="compiling and evaluating the untrained model")

        def on_batch(b, n, bce, tod):
            progress.update(task, completed=b, total=n, info=f"BCE {bce:7.2f}  ToD {tod:7.2f}")

        def on_epoch(r):
            console.print(f"epoch {r.epoch:3d}  train BCE {r.train_bce:7.2f}  ToD {r.train_tod:7.2f}  "
                          f"| val BCE {r.val_bce:7.2f}  ToD {r.val_tod:7.2f}  ({r.seconds:.1f} s)")
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
