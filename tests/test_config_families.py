"""One config schema for the three families: shared keys, the family's own model table, old run folders."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from predcode.cli import app
from predcode.experiments import credit
from predcode.experiments.checkpoint import load_checkpoint
from predcode.experiments.config import (
    FAMILIES,
    ConfigError,
    DataConfig,
    FitConfig,
    MLPFitConfig,
    OptimizerConfig,
    PCFitConfig,
    TrainConfig,
    dump_toml,
    family_specs,
    load_config,
    parse_override,
    parse_toml,
    with_overrides,
)
from predcode.schema import specs

ROOT = Path(__file__).resolve().parents[1]
OLD_RUNS = Path(__file__).resolve().parent / "fixtures" / "runs_e2a4e43"  # written by predcode e2a4e43
SHIPPED = {"gncn": "mnist/gncn_pdh", "pc": "pc/mnist_supervised", "mlp": "credit/mnist_fa"}
SHARED = (
    "data.dataset",
    "data.n_train",
    "data.n_val",
    "train.batch_size",
    "train.epochs",
    "train.seed",
    "optimizer.name",
    "optimizer.learning_rate",
)


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_every_family_takes_the_shared_keys_with_one_declaration():
    for family, cls in FAMILIES.items():
        known = family_specs(cls)
        assert set(SHARED) <= set(known), family
        for key in SHARED:
            section, leaf = key.split(".")
            declared = specs({"data": DataConfig, "train": TrainConfig, "optimizer": OptimizerConfig}[section])[leaf]
            assert known[key].kind == declared.kind and known[key].help == declared.help, (family, key)


def test_the_museum_keys_are_gncnconfigs_own_declarations():
    from predcode.models.gncn import GNCNConfig

    own = specs(GNCNConfig)
    assert set(own) == {f.removeprefix("model.") for f in family_specs(FitConfig) if f.startswith("model.")}
    for name, spec in own.items():
        assert family_specs(FitConfig)[f"model.{name}"] is spec, name  # declared once, not copied


@pytest.mark.parametrize("family", sorted(SHIPPED))
def test_the_same_overrides_mean_the_same_in_every_family(family):
    cfg = load_config(SHIPPED[family])
    assert type(cfg) is FAMILIES[family] and cfg.family == family
    text = (
        "data.n_train=1000",
        "train.epochs=2",
        "train.batch_size=32",
        "train.seed=7",
        "optimizer.learning_rate=0.01",
    )
    short = with_overrides(cfg, **dict(parse_override(t) for t in text))
    assert (short.data.n_train, short.train.epochs, short.train.batch_size) == (1000, 2, 32)
    assert (short.train.seed, short.optimizer.learning_rate) == (7, 0.01)
    assert parse_toml(dump_toml(short)) == short
    assert "train.epochs: expected an integer in [1, 1000000], got 0" in _error(
        with_overrides, cfg, **{"train.epochs": 0}
    )


def test_every_key_of_every_family_has_help_and_is_documented():
    doc = (ROOT / "docs/config.md").read_text()
    for family, cls in FAMILIES.items():
        for key, spec in family_specs(cls).items():
            assert spec.help, (family, key)
            assert f"`{key.rsplit('.', 1)[-1]}`" in doc, (family, key)


def test_a_family_refuses_the_shared_keys_it_does_not_serve():
    # (every family serves every [train] key since the one epoch loop; [data] keys differ)
    msg = _error(parse_toml, "[model]\nfamily = 'mlp'\n[data]\nn_val = 200\nbinarize = true\n", "mlp.toml")
    assert msg == "unknown key 'data.binarize' in mlp.toml, line 5; [data] takes dataset, n_train, n_val"
    msg = _error(MLPFitConfig, data=DataConfig(binarize=True))
    assert msg.startswith("data.binarize: expected False, got True (an MLP's config does not use data.binarize")
    assert "did you mean 'data.n_val'" in _error(parse_toml, "[model]\nfamily = 'mlp'\n[data]\nn_vall = 3\n")
    assert "a museum model's config has the sections [model], [data], [train], [optimizer]" in _error(
        with_overrides, FitConfig(), **{"inference.T": 3}
    )
    mlp = str(ROOT / "configs" / "credit" / "mnist_fa.toml")
    result = CliRunner().invoke(app, ["fit", "--config", mlp, "--set", "data.binarize=true"])
    assert result.exit_code == 2 and "[data] takes dataset, n_train, n_val" in result.output  # text, not markup


def test_a_family_narrows_the_shared_choices():
    assert "optimizer.name: expected one of 'keras_adam', 'adam', 'sgd', got 'adamw'" in _error(
        parse_toml, '[optimizer]\nname = "adamw"\n'
    )
    assert parse_toml('[network]\n[optimizer]\nname = "adamw"\n').optimizer.name == "adamw"
    msg = _error(parse_toml, '[network]\n[optimizer]\nname = "sgdd"\n', "pc.toml")
    assert (
        msg
        == "pc.toml, line 3: optimizer.name: expected one of 'adam', 'adamw', 'sgd', got 'sgdd' (did you mean 'sgd'?)"
    )
    assert "optimizer.name: expected one of 'adam', got 'sgd'" in _error(
        with_overrides, load_config(SHIPPED["mlp"]), **{"optimizer.name": "sgd"}
    )
    with pytest.raises(ConfigError, match="optimizer.schedule: expected 'constant', got 'cosine'"):
        FitConfig(optimizer=OptimizerConfig(schedule="cosine"))


def test_each_family_keeps_its_defaults_for_the_shared_tables():
    assert (FitConfig().train.batch_size, PCFitConfig().train.batch_size, MLPFitConfig().train.batch_size) == (
        512,
        64,
        128,
    )
    assert (FitConfig().data.binarize, PCFitConfig().data.binarize) == (True, False)
    assert (FitConfig().optimizer.name, PCFitConfig().optimizer.name, MLPFitConfig().optimizer.schedule) == (
        "keras_adam",
        "adam",
        "cosine",
    )
    assert parse_toml("[network]\n") == PCFitConfig() and parse_toml('[model]\nfamily = "mlp"\n') == MLPFitConfig()


def test_mlp_config_names_its_rule_and_errors_point_at_the_line():
    cfg = load_config(SHIPPED["mlp"])
    assert (cfg.model.rule, cfg.model.sizes, cfg.optimizer.schedule) == ("fa", (784, 256, 256, 10), "cosine")
    msg = _error(parse_toml, '[model]\nfamily = "mlp"\nrule = "dfx"\n', "mlp.toml")
    expected = "model.rule: expected one of 'backprop', 'fa', 'dfa', 'pc', got 'dfx' (did you mean 'dfa'?)"
    assert msg == "mlp.toml, line 3: " + expected
    assert "model.family: expected one of 'mlp', got 'MLP' (did you mean 'mlp'?)" in _error(
        parse_toml, '[model]\nfamily = "MLP"\n'
    )
    assert "model.sizes: expected 784 inputs and 10 outputs" in _error(
        parse_toml, '[model]\nfamily = "mlp"\nsizes = [784, 10, 3]\n'
    )


def test_credit_mnist_trains_the_rule_an_mlp_config_names(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(credit, "run_mnist", lambda out, **options: seen.update(options, out=out))
    path = ROOT / "configs" / "credit" / "mnist_fa.toml"
    done = CliRunner().invoke(
        app, ["credit", "mnist", "--config", str(path), "--set", "model.rule=dfa", "--set", "data.n_train=100"]
    )
    assert done.exit_code == 0, done.output
    assert seen["rules"] == ["dfa"] and seen["n_train"] == 100 and seen["n_val"] == 5000
    assert seen["checkpoints"] == ROOT / "runs" / "credit" / "mnist_fa"
    bad = CliRunner().invoke(app, ["credit", "mnist", "--config", str(path), "--set", "data.binarize=true"])
    assert bad.exit_code == 2 and "unknown key 'data.binarize'" in bad.output
    # `predcode fit` trains an MLP config itself now (tests/test_mlp_fit.py); its bad keys are refused alike.
    result = CliRunner().invoke(
        app, ["fit", "--config", str(path), "--out", str(tmp_path / "x"), "--set", "model.rule=x"]
    )
    assert (
        result.exit_code == 2 and "model.rule: expected one of 'backprop', 'fa', 'dfa', 'pc', got 'x'" in result.output
    )


def test_the_config_package_has_no_import_circle_and_no_pc_config():
    package = ROOT / "src" / "predcode" / "experiments" / "config"
    assert not (package.parent / "pc_config.py").exists()
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("predcode.experiments.config.")
        }
    done: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        assert name not in stack, f"import circle: {' -> '.join((*stack, name))}"
        if name not in done:
            for dep in graph.get(name, ()):
                visit(dep, (*stack, name))
            done.add(name)

    for name in graph:
        visit(name, ())
    gncn = (ROOT / "src" / "predcode" / "models" / "gncn.py").read_text()
    assert "predcode.experiments" not in gncn  # the model layer declares its fields without the experiment layer


# ----- run folders written by predcode e2a4e43 (before the one schema) -------------------------


def test_config_tomls_written_before_the_one_schema_still_load():
    museum = load_config(OLD_RUNS / "museum" / "config.toml")
    assert isinstance(museum, FitConfig)
    assert (museum.model.kind, museum.model.z_dims, museum.model.K, museum.model.lateral) == (
        "gncn_t1",
        (4, 4),
        5,
        False,
    )
    assert (museum.data.n_train, museum.data.n_val, museum.train.patience, museum.train.seed) == (128, 64, None, 5)
    assert museum.optimizer == OptimizerConfig("keras_adam", 1e-3, 1e-7)
    assert museum.model.x_cell == "gaussian" and museum.model.x_signal == "mu"  # keys added since take their defaults
    pc = load_config(OLD_RUNS / "pc" / "config.toml")
    assert isinstance(pc, PCFitConfig)
    assert (pc.network.dims, pc.network.activation, pc.network.output_sigma, pc.inference.T) == (
        (784, 4, 10),
        "tanh",
        100.0,
        4,
    )
    assert (pc.optimizer.name, pc.optimizer.eps, pc.data.n_train, pc.data.binarize) == ("adam", 1e-8, 256, False)
    assert (pc.train.batch_size, pc.train.eval_batch_size, pc.train.epochs, pc.train.seed) == (64, 100, 1, 3)
    for cfg in (museum, pc):
        assert parse_toml(dump_toml(cfg)) == cfg


@pytest.mark.slow  # four tiny trainings on MNIST
@pytest.mark.parametrize("family", ["museum", "pc"])
def test_a_run_folder_written_before_the_one_schema_resumes_like_an_uninterrupted_run(family, tmp_path):
    run, straight = tmp_path / "run", tmp_path / "straight"
    shutil.copytree(OLD_RUNS / family, run)
    args = ["--set", "train.epochs=2", "--quiet"]
    result = CliRunner().invoke(
        app, ["fit", "--config", str(run / "config.toml"), "--out", str(run), "--resume", *args]
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        app, ["fit", "--config", str(OLD_RUNS / family / "config.toml"), "--out", str(straight), *args]
    )
    assert result.exit_code == 0, result.output
    a, meta_a = load_checkpoint(run / "state0")
    b, meta_b = load_checkpoint(straight / "state0")
    assert meta_a["epoch"] == meta_b["epoch"] == 2
    for k in b:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    first = json.loads((OLD_RUNS / family / "state0.json").read_text())
    assert json.loads((run / "state0.json").read_text())["history"][0] == first["history"][0]
