"""Fit configs: shipped files load, TOML round trip, legacy ngc-learn files, every error is a ConfigError."""

from __future__ import annotations

import json
import math
import re
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predcode.experiments.config import (
    LEGACY_KEYS,
    SPECS,
    ConfigError,
    DataConfig,
    FitConfig,
    OptimizerConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    dump_toml,
    load_config,
    model_config,
    parse_legacy,
    parse_override,
    parse_toml,
    with_overrides,
)
from predcode.learning.optim import keras_adam
from predcode.models.gncn import GNCNConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TOML_CONFIGS = sorted(CONFIGS.glob("mnist/**/*.toml"))
MODELS = ("gncn_t1", "gncn_t1_sigma", "gncn_t2_lsigma", "gncn_pdh")

# Walkthrough 1's gncn_pdh/fit.cfg, with the values listed in shared/reference/GNCN.md.
WALKTHROUGH_PDH = """\
################################################################################
# Train GNCN-PDH (GNCN-t2-LSigma-PDH) on the MNIST database
################################################################################

out_dir = gncn_pdh/
train_xfname = ../data/mnist/trainX.npy
dev_xfname = ../data/mnist/validX.npy

# training meta-parameters
num_iter = 100
eta = 0.001
batch_size = 512
dev_batch_size = 512

# model meta-parameters
model_type = GNCN_PDH

seed = 69
wght_sd = 0.05
act_fx = relu
out_fx = sigmoid
z_dim = 360
z_top_dim = 360
n_group = 12
n_top_group = 18
alpha_scale = 0.15
beta_scale = 0.1

beta = 0.1 # controls latent state update
K = 50 # controls number of steps in a iterative settling episode
leak = 0.001 # controls leak variable
"""


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ----- shipped configs ------------------------------------------------------------------------


def test_every_model_ships_a_walkthrough_and_a_paper_config():
    names = {p.relative_to(CONFIGS / "mnist").as_posix() for p in TOML_CONFIGS}
    assert names == {f"{m}.toml" for m in MODELS} | {f"paper/{m}.toml" for m in MODELS}


@pytest.mark.parametrize("path", TOML_CONFIGS, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_shipped_toml_config_loads_with_its_protocol(path):
    text = path.read_text()
    assert text.startswith("#"), "a shipped config says in its first lines what it reproduces"
    cfg = load_config(path)
    assert cfg.model.kind == path.stem
    assert cfg.source == str(path)
    assert cfg.model.z_dims == (360, 360, 360) and cfg.model.K == 50
    assert (cfg.model.beta, cfg.model.leak) == (0.1, 0.001)
    assert cfg.model.lmbda == (0.01 if path.stem.startswith("gncn_t1") else 0.0)
    assert cfg.data == DataConfig(dataset="mnist", n_val=2000)
    assert cfg.optimizer == OptimizerConfig("keras_adam", 1e-3, 1e-7)
    if path.parent.name == "paper":
        assert cfg.train == TrainConfig(batch_size=200, eval_batch_size=200, epochs=50, patience=None, seed=69)
    else:
        assert cfg.train == TrainConfig(batch_size=512, eval_batch_size=512, epochs=100, patience=10, seed=69)
    assert cfg.out_dir == str(ROOT / "runs" / path.relative_to(CONFIGS).with_suffix(""))


def test_shipped_models_take_the_museum_settings():
    t1 = load_config(CONFIGS / "mnist/gncn_t1.toml").model
    assert (t1.phi, t1.g_hidden, t1.g_out) == ("tanh", "identity", "sigmoid")
    pdh = load_config(CONFIGS / "mnist/gncn_pdh.toml").model
    assert (pdh.phi, pdh.g_hidden, pdh.n_group, pdh.n_top_group) == ("relu", "relu", 12, 18)
    assert (pdh.alpha_scale, pdh.beta_scale, pdh.wght_sd, pdh.sigma_rule) == (0.15, 0.1, 0.05, "legacy")
    for m in MODELS:
        assert load_config(CONFIGS / f"mnist/{m}.toml").model == GNCNConfig(kind=m)


def test_shipped_legacy_cfg_parses_like_the_walkthrough_text(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    shipped = load_config(CONFIGS / "legacy/gncn_pdh_fit.cfg")
    assert shipped == parse_legacy(WALKTHROUGH_PDH, "fit.cfg")
    assert shipped.data.train_file == str(tmp_path.parent / "data/mnist/trainX.npy")


# ----- legacy format --------------------------------------------------------------------------


def test_walkthrough_pdh_file_gives_the_expected_config(monkeypatch, tmp_path):
    work = tmp_path / "walkthrough1"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = parse_legacy(WALKTHROUGH_PDH, "gncn_pdh/fit.cfg")
    expected = FitConfig(
        model=GNCNConfig(
            kind="gncn_pdh",
            x_dim=784,
            z_dims=(360, 360, 360),
            K=50,
            beta=0.1,
            leak=0.001,
            phi="relu",
            g_out="sigmoid",
            n_group=12,
            n_top_group=18,
            alpha_scale=0.15,
            beta_scale=0.1,
            wght_sd=0.05,
        ),
        data=DataConfig(
            train_file=str(tmp_path / "data/mnist/trainX.npy"),
            val_file=str(tmp_path / "data/mnist/validX.npy"),
            binarize=True,
        ),
        train=TrainConfig(batch_size=512, eval_batch_size=512, epochs=100, patience=10, seed=69),
        optimizer=OptimizerConfig(name="keras_adam", learning_rate=0.001, eps=1e-7),
        out_dir=str(work / "gncn_pdh"),
    )
    assert cfg == expected
    assert cfg.model.lmbda == 0.0 and cfg.model.g_hidden == "relu"
    assert cfg.source == "gncn_pdh/fit.cfg"


def test_walkthrough_t1_file_sets_tanh_and_the_laplace_prior():
    text = WALKTHROUGH_PDH.replace("GNCN_PDH", "GNCN_t1").replace("act_fx = relu", "act_fx = tanh")
    cfg = parse_legacy(text + "lmbda = 0.01 # controls Laplacian prior\n")
    assert (cfg.model.kind, cfg.model.phi, cfg.model.lmbda, cfg.model.g_hidden) == ("gncn_t1", "tanh", 0.01, "identity")


@pytest.mark.parametrize(
    "written, kind",
    [
        ("GNCN_t1", "gncn_t1"),
        ("gncn_T1", "gncn_t1"),
        ("GNCN_t1_Sigma", "gncn_t1_sigma"),
        ("GNCN_T1_SIGMA", "gncn_t1_sigma"),
        ("GNCN_t2_LSigma", "gncn_t2_lsigma"),
        ("GNCN_PDH", "gncn_pdh"),
        ("gncn_pdh", "gncn_pdh"),
        ("GNCN_t2_LSigma_PDH", "gncn_pdh"),
        ("gncn_t2_lsigma_pdh", "gncn_pdh"),
    ],
)
def test_legacy_model_type_in_any_case_and_its_aliases(written, kind):
    assert parse_legacy(f"model_type = {written}\n").model.kind == kind


def test_legacy_later_duplicate_key_wins():
    cfg = parse_legacy("K = 20\nbatch_size = 64\nK = 30\n")
    assert cfg.model.K == 30 and cfg.train.batch_size == 64


def test_legacy_ignores_spaces_comments_and_blank_lines():
    cfg = parse_legacy("\n  # a comment\n\t\nK=7#trailing comment\n  b a t c h _ s i z e  =  1 2 \r\n")
    assert cfg.model.K == 7 and cfg.train.batch_size == 12


def test_legacy_z_dim_sets_the_lower_layers_and_z_top_dim_the_top():
    cfg = parse_legacy("model_type = GNCN_t1\nz_dim = 100\nz_top_dim = 40\n")
    assert cfg.model.z_dims == (100, 100, 40)


def test_legacy_defaults_keep_the_walkthrough_patience_and_keras_adam():
    cfg = parse_legacy("eta = 0.0005\n")
    assert cfg.train.patience == 10
    assert cfg.optimizer == OptimizerConfig("keras_adam", 0.0005, 1e-7)


def test_legacy_line_without_equals_names_the_line():
    msg = _error(parse_legacy, "K = 50\n\nbatch_size 512\n", "fit.cfg")
    assert "fit.cfg, line 3" in msg and "batch_size 512" in msg and "name = value" in msg


def test_legacy_non_integer_names_key_line_expected_and_got():
    with pytest.raises(ConfigError) as info:
        parse_legacy("# settling\n\nK = fifty\n", "fit.cfg")
    err = info.value
    assert (err.key, err.line, err.source) == ("model.K", 3, "fit.cfg")
    assert "fit.cfg, line 3" in str(err) and "K (model.K)" in str(err)
    assert "expected an integer" in str(err) and "got 'fifty'" in str(err)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("beta = fast\n", "expected a number > 0, got 'fast'"),
        ("eta = 1e-3x\n", "expected a number > 0"),
        ("seed = -1\n", "train.seed"),
        ("num_iter = 0\n", "num_iter (train.epochs): expected an integer in [1, 1000000], got 0"),
        ("batch_size = 5.0\n", "got '5.0'"),
        ("model_type = GNCN_t3\n", "model_type (model.kind)"),
        ("act_fx = relu6\n", "act_fx (model.phi): expected one of"),
        ("out_fx =\n", "out_fx (model.g_out)"),
        ("= 5\n", "expected a name before '='"),
        ("a = b = c\n", "one '='"),
        ("eta = inf\n", "expected a number > 0, got 'inf'"),
        ("K = " + "9" * 5000 + "\n", "expected an integer in [1, 100000]"),
    ],
)
def test_legacy_bad_values_are_config_errors(text, fragment):
    assert fragment in _error(parse_legacy, text, "fit.cfg")


def test_legacy_unknown_key_names_the_closest_known_key():
    msg = _error(parse_legacy, "K = 50\nbatch_sise = 512\n", "fit.cfg")
    assert msg == "unknown key 'batch_sise' in fit.cfg, line 2; did you mean 'batch_size'?"
    assert "did you mean 'K'" in _error(parse_legacy, "k = 50\n")


@pytest.mark.parametrize("key", ["use_dfx", "node_name", "x_dim", "rotNeg90"])
def test_legacy_keys_predcode_fit_does_not_use_are_refused(key):
    msg = _error(parse_legacy, f"{key} = True\n", "fit.cfg")
    assert f"unknown key {key!r} in fit.cfg, line 1" in msg and "remove the line" in msg


def test_legacy_range_error_points_at_the_legacy_key_and_line():
    msg = _error(parse_legacy, "model_type = GNCN_PDH\nz_dim = 100\n", "fit.cfg")
    assert msg.startswith("fit.cfg, line 2: z_dim (model.z_dims[0]): expected a multiple of n_group=12, got 100")
    msg = _error(parse_legacy, "model_type = GNCN_PDH\nz_top_dim = 100\n", "fit.cfg")
    assert msg.startswith("fit.cfg, line 2: z_top_dim (model.z_dims[2]): expected a multiple of n_top_group=18")


def test_legacy_relative_paths_are_relative_to_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = parse_legacy("train_xfname = data/x.npy\nout_dir = out/\n", "elsewhere/fit.cfg")
    assert cfg.data.train_file == str(tmp_path / "data/x.npy")
    assert cfg.out_dir == str(tmp_path / "out")
    cfg = parse_legacy("train_xfname = /abs/x.npy\n")
    assert cfg.data.train_file == "/abs/x.npy"


def test_load_config_reads_other_suffixes_as_legacy(tmp_path):
    path = tmp_path / "fit.txt"
    path.write_text("K = 12\nmodel_type = GNCN_t1\n")
    cfg = load_config(path)
    assert (cfg.model.K, cfg.model.kind, cfg.source) == (12, "gncn_t1", str(path))


# ----- TOML: round trip, dict form, overrides -------------------------------------------------


@pytest.mark.parametrize(
    "path", [*TOML_CONFIGS, CONFIGS / "legacy/gncn_pdh_fit.cfg"], ids=lambda p: p.relative_to(CONFIGS).as_posix()
)
def test_dump_toml_round_trips_through_parse_toml(path):
    cfg = load_config(path)
    text = dump_toml(cfg)
    again = parse_toml(text, "dumped.toml")
    assert again == cfg
    assert dump_toml(again).split("\n", 2)[2] == text.split("\n", 2)[2]


def test_config_to_dict_is_json_in_the_toml_layout_and_round_trips():
    cfg = load_config(CONFIGS / "mnist/paper/gncn_pdh.toml")
    d = config_to_dict(cfg)
    assert set(d) == {"model", "data", "train", "optimizer", "out_dir"}
    assert set(SPECS) == {f"{s}.{k}" for s in ("model", "data", "train", "optimizer") for k in d[s]} | {"out_dir"}
    assert json.loads(json.dumps(d)) == d
    assert d["train"]["patience"] is None and d["model"]["z_dims"] == [360, 360, 360]
    assert config_from_dict(d) == cfg


def test_round_trip_keeps_none_values_and_awkward_strings(tmp_path):
    cfg = FitConfig(
        model=GNCNConfig(kind="gncn_t1", z_dims=(7, 5), lmbda=1e-300, wght_sd=1e10),
        data=DataConfig(dataset='my "data"', n_train=3, train_file=str(tmp_path / 'a "b"\\c\n\x7f\t.npy')),
        train=TrainConfig(patience=None, seed=2**32 - 1),
        optimizer=OptimizerConfig(name="sgd", learning_rate=5e-324, eps=1.5),
        out_dir="/päth/with ünïcode/😀",
    )
    assert parse_toml(dump_toml(cfg)) == cfg
    assert parse_toml(dump_toml(FitConfig())) == FitConfig()


def test_toml_accepts_ints_for_floats_and_none_words():
    cfg = parse_toml(
        '[optimizer]\nlearning_rate = 1\n[train]\npatience = "None"\n[data]\nn_train = "all"\n'
        '[model]\nlmbda = "none"\nkind = "gncn_t1"\n'
    )
    assert cfg.optimizer.learning_rate == 1.0 and isinstance(cfg.optimizer.learning_rate, float)
    assert cfg.train.patience is None and cfg.data.n_train is None and cfg.model.lmbda == 0.01


def test_toml_relative_paths_are_relative_to_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "configs" / "exp"
    folder.mkdir(parents=True)
    (folder / "cfg.toml").write_text(
        'out_dir = "../runs/x"\n[data]\ntrain_file = "data/train.npy"\nval_file = "/abs/val.npy"\n'
    )
    monkeypatch.chdir(tmp_path)
    cfg = load_config("configs/exp/cfg.toml")
    assert cfg.out_dir == str(tmp_path / "configs" / "runs" / "x")
    assert cfg.data.train_file == str(folder / "data" / "train.npy")
    assert cfg.data.val_file == "/abs/val.npy"
    assert cfg.source == str(folder / "cfg.toml")
    assert parse_toml('[data]\ntrain_file = "t.npy"\n', base_dir=tmp_path).data.train_file == str(tmp_path / "t.npy")


def test_with_overrides_replaces_and_validates():
    cfg = load_config(CONFIGS / "mnist/gncn_pdh.toml")
    short = with_overrides(cfg, **{"train.epochs": 2, "data.n_train": 1000, "model.K": 5})
    assert (short.train.epochs, short.data.n_train, short.model.K) == (2, 1000, 5)
    assert short.model.n_group == 12 and short.source == cfg.source
    assert with_overrides(cfg) == cfg
    assert "train.epochs: expected an integer in [1, 1000000], got 0" in _error(
        with_overrides, cfg, **{"train.epochs": 0}
    )
    assert "did you mean 'train.epochs'" in _error(with_overrides, cfg, **{"train.epoch": 3})
    with pytest.raises(FrozenInstanceError):
        cfg.train.epochs = 3


def test_with_overrides_of_kind_takes_the_new_kinds_defaults():
    pdh = FitConfig()
    t1 = with_overrides(pdh, **{"model.kind": "gncn_t1"})
    assert t1.model == GNCNConfig(kind="gncn_t1")
    custom = with_overrides(FitConfig(model=GNCNConfig(phi="tanh")), **{"model.kind": "gncn_t1_sigma"})
    assert custom.model.phi == "tanh" and custom.model.lmbda == 0.01


def test_with_overrides_resolves_relative_paths_against_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert with_overrides(FitConfig(), out_dir="runs/a").out_dir == str(tmp_path / "runs/a")


def test_ablation_switches_override_the_kind_round_trip_and_name_bad_values():
    cfg = load_config(CONFIGS / "mnist/gncn_pdh.toml")
    overrides = dict(parse_override(s) for s in ("model.lateral=false", "model.alpha_scale=-0.2"))
    ablated = with_overrides(cfg, **overrides)
    assert ablated.model.lateral is False and ablated.model.flags["lateral"] is False
    assert ablated.model.alpha_scale == -0.2  # self-inhibition is allowed
    assert cfg.model.lateral is None and cfg.model.flags["lateral"] is True
    back = parse_toml(dump_toml(ablated))
    assert back.model == ablated.model and back.model.flags == ablated.model.flags
    assert with_overrides(ablated, **{"model.lateral": "none"}).model.flags["lateral"] is True
    msg = _error(with_overrides, cfg, **{"model.tied_feedback": "yes"})
    assert 'model.tied_feedback: expected true, false or "none"' in msg and "got 'yes'" in msg


def test_parse_override_reads_toml_values_else_strings():
    assert parse_override("train.epochs=2") == ("train.epochs", 2)
    assert parse_override(" model.z_dims = [12, 12, 18]") == ("model.z_dims", [12, 12, 18])
    assert parse_override("model.kind=gncn_t1") == ("model.kind", "gncn_t1")
    assert parse_override("out_dir=runs/x") == ("out_dir", "runs/x")
    assert "did you mean 'train.epochs'" in _error(parse_override, "train.epoch=2")
    assert "section.key=value" in _error(parse_override, "train.epochs")


def test_optimizer_build_gives_the_named_transformation():
    params = {"w": np.ones(3, np.float32)}
    grads = {"w": np.full(3, 0.5, np.float32)}
    for cfg, reference in [
        (OptimizerConfig("keras_adam", 0.01, 1e-7), keras_adam(0.01, eps=1e-7)),
        (OptimizerConfig("adam", 0.01, 1e-8), optax.adam(0.01, eps=1e-8)),
        (OptimizerConfig("sgd", 0.01), optax.sgd(0.01)),
    ]:
        opt = cfg.build()
        got, _ = opt.update(grads, opt.init(params), params)
        want, _ = reference.update(grads, reference.init(params), params)
        np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)


# ----- errors ---------------------------------------------------------------------------------


def test_typo_gives_the_closest_key():
    msg = _error(parse_toml, "[train]\nepochs = 3\nbach_size = 512\n", "cfg.toml")
    assert msg == "unknown key 'train.bach_size' in cfg.toml, line 3; did you mean 'train.batch_size'?"
    assert "did you mean 'train.batch_size'" in _error(parse_toml, "[data]\nbatch_size = 5\n")
    assert "did you mean 'model.K'" in _error(parse_toml, "K = 5\n")


def test_unknown_section_names_the_closest_section():
    msg = _error(parse_toml, "[model]\nK = 5\n\n[trian]\nepochs = 3\n", "cfg.toml")
    assert msg == "unknown section [trian] in cfg.toml, line 4; did you mean [train]?"
    assert "the sections are [model], [data], [train], [optimizer]" in _error(parse_toml, "[zzzzzz]\n")


def test_toml_syntax_error_names_file_and_line():
    with pytest.raises(ConfigError) as info:
        parse_toml("[model]\nK = 50\nkind = gncn_pdh\n", "cfg.toml")
    assert info.value.line == 3
    assert str(info.value).startswith("cfg.toml, line 3: TOML syntax error")
    assert "strings need quotes" in str(info.value)


@pytest.mark.parametrize(
    "toml, fragment",
    [
        ("[model]\nK = -3\n", "cfg.toml, line 2: model.K: expected an integer in [1, 100000], got -3"),
        ("[train]\nbatch_size = 0\n", "train.batch_size: expected an integer in [1, 1048576], got 0"),
        ("[optimizer]\nlearning_rate = 0\n", "optimizer.learning_rate: expected a number > 0, got 0.0"),
        ("[optimizer]\nlearning_rate = -1e-3\n", "optimizer.learning_rate: expected a number > 0, got -0.001"),
        ("[optimizer]\neps = 0.0\n", "optimizer.eps: expected a number > 0"),
        ("[optimizer]\nlearning_rate = nan\n", "expected a finite number > 0, got nan"),
        ('[optimizer]\nname = "adamw"\n', "optimizer.name: expected one of 'keras_adam', 'adam', 'sgd', got 'adamw'"),
        ("[model]\nbeta = 0\n", "model.beta: expected a number > 0, got 0.0"),
        ("[model]\nbeta = -0.1\n", "model.beta: expected a number > 0, got -0.1"),
        ("[model]\nleak = -1\n", "model.leak: expected a number >= 0"),
        ("[model]\nwght_sd = 0\n", "model.wght_sd: expected a number > 0"),
        ("[model]\nn_group = 0\n", "model.n_group: expected an integer in [1, 1048576], got 0"),
        ("[model]\nx_dim = 0\n", "model.x_dim"),
        (
            "[model]\nz_dims = []\n",
            "model.z_dims: expected a non-empty list of at most 1000 integers in [1, 1048576], got []",
        ),
        ("[model]\nz_dims = [360, 0]\n", "model.z_dims"),
        ("[model]\nz_dims = 360\n", "model.z_dims"),
        ('[model]\nphi = "rleu"\n', "did you mean 'relu'?"),
        ('[model]\nsigma_rule = "exact"\n', "model.sigma_rule: expected one of 'legacy', 'nll'"),
        ('[model]\nkind = "gncn_PDH"\n', "did you mean 'gncn_pdh'?"),
        ("[train]\npatience = 0\n", 'train.patience: expected an integer in [1, 1000000] or "none", got 0'),
        ("[train]\nseed = -1\n", "train.seed: expected an integer in [0, 4294967295], got -1"),
        ("[data]\nn_val = 0\n", "data.n_val: expected an integer in [1, 1000000000], got 0"),
        ("[data]\nn_train = 0\n", "data.n_train"),
        (
            '[data]\ndataset = "mnsit"\n',
            "data.dataset: expected one of 'mnist', 'fashion-mnist', 'kmnist', got 'mnsit' (did you mean 'mnist'?",
        ),
        ('[data]\nval_file = "v.npy"\n', "data.val_file: expected no value without data.train_file"),
        ("[data]\nbinarize = false\n", "data.binarize: expected true for dataset 'mnist'"),
        ("[data]\nbinarize = 1\n", "data.binarize: expected true or false, got 1"),
        ('[data]\ntrain_file = ""\n', "data.train_file: expected a path to a .npy file, got ''"),
        ("out_dir = 3\n", "out_dir: expected a path to a folder, got 3"),
        ("model = 3\n", "model: expected a table [model] of keys, got 3"),
        ("[model]\nx_dim = 100\n", "model.x_dim: expected 784 for dataset 'mnist', got 100"),
    ],
)
def test_out_of_range_and_malformed_values_are_config_errors(toml, fragment):
    assert fragment in _error(parse_toml, toml, "cfg.toml")


@pytest.mark.parametrize(
    "toml, hint",
    [
        ('[model]\nK = "50"\n', "got '50' (write the number without quotes)"),
        ("[train]\nbatch_size = true\n", "got True (true/false is not a number)"),
        ("[model]\nbeta = false\n", "got False (true/false is not a number)"),
        ("[train]\nepochs = 10.0\n", "got 10.0 (write 10 without a decimal point)"),
        ('[data]\nbinarize = "true"\n', "(write true without quotes)"),
        ("[model]\nkind = 1\n", "model.kind: expected one of"),
        ("[model]\nz_dims = [360, true, 360]\n", "model.z_dims"),
    ],
)
def test_wrong_types_are_config_errors_with_a_fix(toml, hint):
    assert hint in _error(parse_toml, toml, "cfg.toml")


def test_z_dims_not_a_multiple_of_the_group_size_is_caught():
    msg = _error(parse_toml, '[model]\nkind = "gncn_pdh"\nz_dims = [100, 360, 360]\n', "cfg.toml")
    assert msg.startswith("cfg.toml, line 3: model.z_dims[0]: expected a multiple of n_group=12, got 100")
    assert "n_top_group=18" in _error(parse_toml, "[model]\nz_dims = [360, 360, 100]\n")
    # the t1 models have no lateral competition, so any size goes
    assert parse_toml('[model]\nkind = "gncn_t1"\nz_dims = [100, 7]\n').model.z_dims == (100, 7)


def test_sections_validate_on_construction():
    with pytest.raises(ConfigError, match=r"train.batch_size: expected an integer in \[1, 1048576\], got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"train.epochs: expected an integer in \[1, 1000000\], got True"):
        TrainConfig(epochs=True)
    with pytest.raises(ValueError, match=r"train.patience"):
        TrainConfig(patience=0)
    with pytest.raises(ConfigError, match=r"optimizer.learning_rate: expected a number > 0, got 0"):
        OptimizerConfig(learning_rate=0)
    with pytest.raises(ConfigError, match=r"data.n_val"):
        DataConfig(n_val=1.5)
    with pytest.raises(ConfigError, match=r"model.K: expected an integer in \[1, 100000\], got -1"):
        model_config(K=-1)
    with pytest.raises(ConfigError, match=r"model.alpha_scale: expected a finite number, got nan"):
        FitConfig(model=GNCNConfig(alpha_scale=float("nan")))
    with pytest.raises(ConfigError, match=r"model: expected a GNCNConfig"):
        FitConfig(model={"kind": "gncn_pdh"})
    assert TrainConfig(patience=np.int64(3)).patience == 3
    assert OptimizerConfig(learning_rate=1).learning_rate == 1.0
    assert DataConfig(dataset="anything", train_file=Path("/x.npy")).train_file == "/x.npy"


def test_missing_and_unreadable_files_are_config_errors(tmp_path):
    msg = _error(load_config, tmp_path / "nope.toml")
    assert "config file not found" in msg and "nope.toml" in msg
    assert "got a folder" in _error(load_config, tmp_path)
    bad = tmp_path / "bad.cfg"
    bad.write_bytes(b"K = \xff\xfe\n")
    assert "expected UTF-8 text" in _error(load_config, bad)


def test_docs_describe_every_key_and_every_legacy_key():
    doc = (ROOT / "docs/config.md").read_text()
    for key in SPECS:
        assert f"`{key.rsplit('.', 1)[-1]}`" in doc, key
    for key in LEGACY_KEYS:
        assert re.search(rf"^\| `{key}` \|", doc, re.M), key


# ----- fuzz: anything in, FitConfig or ConfigError out ----------------------------------------

_VALID_TOML = (CONFIGS / "mnist/gncn_pdh.toml").read_text()
_FRAGMENTS = [
    "=",
    "\n",
    "[",
    "]",
    "[[",
    '"',
    "'",
    "#",
    "0",
    "-1",
    "1e999",
    "nan",
    "true",
    ".",
    ",",
    "[model]",
    "[train]",
    "z_dims",
    "K",
    "= []",
    "= {}",
    "= [[]]",
    "\x00",
    "~",
    "none",
]


@st.composite
def _mutated(draw, base: str):
    text = base
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        insert = draw(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=6)))
        text = text[:i] + insert + text[j:]
    return text


def _parses_or_config_error(parse, text: str) -> None:
    try:
        cfg = parse(text, "fuzz", base_dir="/base")
    except ConfigError as err:
        assert str(err)
    else:
        assert isinstance(cfg, FitConfig)


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.text(max_size=300))
def test_random_text_never_raises_anything_but_config_error(text):
    _parses_or_config_error(parse_legacy, text)
    _parses_or_config_error(parse_toml, text)


@_FUZZ
@given(_mutated(_VALID_TOML))
def test_mutated_toml_config_never_raises_anything_but_config_error(text):
    _parses_or_config_error(parse_toml, text)


@_FUZZ
@given(_mutated(WALKTHROUGH_PDH))
def test_mutated_legacy_config_never_raises_anything_but_config_error(text):
    _parses_or_config_error(parse_legacy, text)


_KEY_LINES = st.builds(
    lambda k, v: f"{k} = {v}",
    st.sampled_from(sorted(LEGACY_KEYS)),
    st.one_of(
        st.from_regex(r"-?[0-9]{1,4}(\.[0-9]{0,3})?(e-?[0-9])?", fullmatch=True),
        st.sampled_from(["relu", "tanh", "GNCN_PDH", "gncn_t1", "x.npy", "", "nan"]),
    ),
)


@_FUZZ
@given(st.lists(_KEY_LINES, max_size=12))
def test_random_legacy_key_values_never_raise_anything_but_config_error(lines):
    _parses_or_config_error(parse_legacy, "\n".join(lines))


_TOML_VALUES = st.one_of(
    st.integers(-3, 2**40),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(-2, 400), max_size=4),
    st.none(),
)


@_FUZZ
@given(st.dictionaries(st.sampled_from(sorted(SPECS)), _TOML_VALUES, max_size=6))
def test_random_values_for_known_keys_give_a_config_or_a_config_error(values):
    doc: dict = {}
    for key, value in values.items():
        section, _, leaf = key.rpartition(".")
        (doc.setdefault(section, {}) if section else doc)[leaf] = value
    try:
        cfg = config_from_dict(doc, source="fuzz", base_dir="/base")
    except ConfigError:
        return
    assert parse_toml(dump_toml(cfg)) == cfg  # whatever validates also round trips


_ABS_PATH = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10).map(
    lambda s: "/" + s
)


@_FUZZ
@given(
    kind=st.sampled_from(["gncn_t1", "gncn_t1_sigma"]),
    z=st.lists(st.integers(1, 10**6), min_size=1, max_size=5),
    beta=st.floats(1e-300, 1e300),
    lr=st.floats(1e-300, 1e300),
    patience=st.one_of(st.none(), st.integers(1, 10**6)),
    n_train=st.one_of(st.none(), st.integers(1, 10**9)),
    train_file=st.one_of(st.none(), _ABS_PATH),
    out_dir=st.one_of(st.none(), _ABS_PATH),
    dataset=st.text(min_size=1, max_size=8),
    name=st.sampled_from(["keras_adam", "adam", "sgd"]),
)
def test_any_valid_config_round_trips_through_toml(
    kind, z, beta, lr, patience, n_train, train_file, out_dir, dataset, name
):
    cfg = FitConfig(
        model=GNCNConfig(kind=kind, z_dims=tuple(z), beta=beta),
        data=DataConfig(dataset=dataset if train_file else "kmnist", n_train=n_train, train_file=train_file),
        train=TrainConfig(patience=patience),
        optimizer=OptimizerConfig(name=name, learning_rate=lr),
        out_dir=out_dir,
    )
    again = parse_toml(dump_toml(cfg), base_dir="/elsewhere")
    assert again == cfg
    assert math.isclose(again.optimizer.learning_rate, lr, rel_tol=0)


def test_out_dir_written_inside_a_section_is_pointed_to_the_top_level():
    msg = _error(parse_toml, '[train]\nepochs = 3\nout_dir = "runs/x"\n', "cfg.toml")
    assert msg == (
        "unknown key 'train.out_dir' in cfg.toml, line 3; did you mean 'out_dir'? "
        "(top-level keys go before the first [section])"
    )
