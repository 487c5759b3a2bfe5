"""One registry of the families that ``predcode fit``, ``sweep``, ``analyze`` and ``sample`` serve.

A run folder's family is the one its ``config.toml`` has for the config package
(:func:`predcode.experiments.config.toml_family`: ``"gncn"`` a museum model, ``"pc"`` a PC
network, ``"mlp"`` an MLP). :data:`ANALYSES` maps a family to its :class:`Analysis`: the analysis,
the lines the command line prints of its report, and the sampler. A family without an entry gets
one :class:`~predcode.experiments.analyze.AnalyzeError` naming it and the families served; a new
family's analysis is one entry here::

    summary = fit_run(cfg, "runs/demo")              # the family's fit (FITS), as predcode fit
    report, lines = analyze_run("runs/demo", AnalyzeOptions(n_test=1000))
    result = sample_run("runs/demo", n=16)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predcode.experiments.config import FAMILIES, load_config, toml_family

# The analyses (and scikit-learn, which they need) are imported when used: `predcode fit` goes
# through this registry too (FITS) and needs none of them.

__all__ = [
    "ANALYSES",
    "FITS",
    "Analysis",
    "AnalyzeOptions",
    "analysis_of",
    "analyze_run",
    "fit_run",
    "run_family",
    "sample_run",
]

MUSEUM_LATENTS = 18000  # --n-latents default of a museum run


@dataclass(frozen=True)
class AnalyzeOptions:
    """The options of ``predcode analyze``; each family's analysis reads those it takes.

    ``n_latents``: training images for the prior and probes (``None``: 18,000 for a museum model,
    every training image for a PC network, which takes ``n_latents // 10`` a class).
    """

    trial: int = 0
    n_components: int = 75
    n_latents: int | None = None
    n_samples: int = 5000
    n_is_samples: int | None = None
    seed: int = 0
    n_test: int | None = None
    batch_size: int = 500
    out: Path | None = None
    on_stage: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Analysis:
    """What ``analyze`` and ``sample`` do for one family.

    ``analyze(run, options)`` returns the report (with ``out``, the folder written);
    ``lines(report)`` the summary printed; ``sample(run, n=, out=, trial=, seed=)`` returns
    ``{"path", "prior"}``.
    """

    name: str
    analyze: Callable[[Path, AnalyzeOptions], dict]
    lines: Callable[[dict], list[str]]
    sample: Callable[..., dict]


def _museum_analyze(run: Path, o: AnalyzeOptions) -> dict:
    from predcode.experiments.analyze import analyze

    # the museum's analyze takes every option, under the same names
    return analyze(run, **{**vars(o), "n_latents": MUSEUM_LATENTS if o.n_latents is None else o.n_latents})


def _museum_lines(report: dict) -> list[str]:
    mc, imp = report["log_px_mc"], report["log_px_is"]
    is_text = (
        f"importance sampling {imp['mean']:.2f} +- {imp['mc_se_of_mean']:.2f}"
        if "mean" in imp
        else "importance sampling skipped"
    )
    errors = [report[k]["error_pct"] for k in ("linear_probe", "knn")]
    return [
        f"test BCE {report['test_bce']:.2f}  ToD {report['test_tod']:.2f}  masked MSE {report['masked_mse']:.2f}",
        f"log p(x): naive MC {mc['mean']:.2f} +- {mc['mc_se_of_mean']:.2f} (S = {mc['n_samples']}), "
        f"{is_text}; legacy (+log S) figure {report['log_px_legacy_plus_log_s']['mean']:.2f}",
        "linear probe error " + ", 5-NN error ".join("n/a" if e is None else f"{e:.2f}%" for e in errors),
    ]


def _museum_sample(run: Path, **kwargs: Any) -> dict:
    from predcode.experiments.analyze import sample

    return sample(run, **kwargs)


def _pc_sample(run: Path, **kwargs: Any) -> dict:
    from predcode.experiments.pc_analyze import pc_sample

    return pc_sample(run, **kwargs)


def _pc_analyze(run: Path, o: AnalyzeOptions) -> dict:
    from predcode.experiments.pc_analyze import pc_analyze

    return pc_analyze(
        run,
        trial=o.trial,
        n_per_class=None if o.n_latents is None else max(1, o.n_latents // 10),
        n_test=o.n_test,
        seed=o.seed,
        out=o.out,
        on_stage=o.on_stage,
    )


def _pc_lines(report: dict) -> list[str]:
    return [
        f"{report['representation']} ({report['dim']} units): linear probe accuracy "
        f"{report['linear_probe']['accuracy_pct']:.2f}%, {report['knn']['k']}-NN accuracy "
        f"{report['knn']['accuracy_pct']:.2f}% on {report['linear_probe']['n_test']} test images"
    ]


ANALYSES: dict[str, Analysis] = {
    "gncn": Analysis("museum models", _museum_analyze, _museum_lines, _museum_sample),
    "pc": Analysis("PC networks", _pc_analyze, _pc_lines, _pc_sample),
}


def run_family(run: str | Path) -> str:
    """The family of a run folder's ``config.toml`` (:class:`AnalyzeError` for a folder without one)."""
    from predcode.experiments.analyze import run_config_file

    config_file = run_config_file(run)
    family = toml_family(config_file.read_text(encoding="utf-8"))
    if family is None:  # not TOML: the config reader's message names the line
        family = type(load_config(config_file)).family
    return family


def analysis_of(run: str | Path, command: str = "analyze") -> Analysis:
    """The :class:`Analysis` of a run folder's family; :class:`AnalyzeError` for a family without one."""
    from predcode.experiments.analyze import AnalyzeError

    family = run_family(run)
    if family not in ANALYSES:
        served = ", ".join(f"{name} ({a.name})" for name, a in ANALYSES.items())
        title = FAMILIES[family].title if family in FAMILIES else "an unknown config"
        what = "an MLP run" if family == "mlp" else f"a run of family {family!r}"
        hint = (
            "; read its summary.json (accuracies, angles to backprop) or load best<t> with "
            "predcode.experiments.credit.load_rule_checkpoint"
            if family == "mlp"
            else ""
        )
        raise AnalyzeError(
            f"--run: {run} is {what} (family {family!r}: its config.toml is {title}); "
            f"`predcode {command}` serves the families {served}{hint}"
        )
    return ANALYSES[family]


def analyze_run(run: str | Path, options: AnalyzeOptions) -> tuple[dict, list[str]]:
    """Analyze a run folder of any served family: ``(report, summary lines)``."""
    analysis = analysis_of(run)
    report = analysis.analyze(Path(run), options)
    return report, analysis.lines(report)


def sample_run(run: str | Path, **kwargs: Any) -> dict:
    """Samples of a run folder of any served family (``n``, ``out``, ``trial``, ``seed``): ``{"path", "prior"}``.

    ``out`` must name an image format by its suffix (``.png``, ``.jpg``, ``.pdf``, ...); that
    format is written (:func:`predcode.experiments.plots.figure_format`).
    """
    from predcode.experiments.analyze import AnalyzeError
    from predcode.experiments.plots import figure_format

    if kwargs.get("out") is not None:
        try:
            figure_format(kwargs["out"])
        except ValueError as err:
            raise AnalyzeError(f"--out: {err}") from None
    return analysis_of(run, "sample").sample(Path(run), **kwargs)


# family -> (module, function) of its fit: ``fn(cfg, out, *, n_trials, resume, force, log, on_batch,
# on_epoch, ...) -> summary``; imported when used, so a family's loop loads only for its runs
FITS: dict[str, tuple[str, str]] = {
    "gncn": ("predcode.experiments.fit", "fit"),
    "pc": ("predcode.experiments.pc_fit", "pc_fit"),
    "mlp": ("predcode.experiments.mlp_fit", "mlp_fit"),
}


def fit_run(cfg: Any, out: str | Path, **kwargs: Any) -> dict:
    """Fit a config of any family into the run folder ``out`` (the entry of ``predcode fit`` and ``predcode sweep``)."""
    import importlib

    module, name = FITS[type(cfg).family]
    return getattr(importlib.import_module(module), name)(cfg, Path(out), **kwargs)
