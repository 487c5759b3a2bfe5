"""Fit configurations of every family: frozen, validated dataclasses read from TOML or legacy ngc-learn files.

Three families share one schema mechanism (each field declared once with
:func:`predcode.schema.setting`: type, range or choices, default, help), one validator, one TOML
reader and writer and one ``--set`` parser, and the ``[data]``, ``[train]`` and ``[optimizer]``
tables (:mod:`.sections`): ``data.n_train``, ``train.epochs`` or ``optimizer.name`` mean the same
for all. The model table is the family's own:

- a museum model (:class:`FitConfig`): ``[model]`` is a :class:`~predcode.models.gncn.GNCNConfig`;
- a general PC network (:class:`PCFitConfig`): ``[network]`` and ``[inference]``;
- an MLP trained by a credit-assignment rule (:class:`MLPFitConfig`): ``[model]`` with ``family = "mlp"``.

A file is read as TOML (``*.toml``; relative paths relative to its folder) or, for any other
suffix, as a legacy ngc-learn 0.x ``fit.cfg`` (a museum model). Every problem raises
:class:`ConfigError`, whose message names the file (and line where known), the key, what was
expected, what was got and the fix. Every key is documented in ``docs/config.md``::

    cfg = load_config("configs/mnist/gncn_pdh.toml")
    cfg = with_overrides(cfg, **{"train.epochs": 2})
    text = dump_toml(cfg)          # parse_toml(text) == cfg
"""

from __future__ import annotations

from predcode.experiments.config.files import (
    CONFIG_SUFFIXES,
    find_config,
    load_config,
    shipped_configs,
    shipped_configs_dir,
)
from predcode.experiments.config.layout import (
    FAMILIES,
    AnyConfig,
    config_from_dict,
    config_to_dict,
    dump_toml,
    family_of,
    parse_override,
    parse_toml,
    toml_family,
    with_overrides,
)
from predcode.experiments.config.legacy import LEGACY_KEYS, LEGACY_MODEL_TYPES, parse_legacy
from predcode.experiments.config.mlp import RULES, MLPFitConfig, MLPModelConfig
from predcode.experiments.config.museum import IMAGE_DIM, FitConfig, model_config
from predcode.experiments.config.network import InferenceSection, NetworkSection, PCFitConfig, build_network
from predcode.experiments.config.sections import DataConfig, OptimizerConfig, TrainConfig, family_specs
from predcode.schema import ConfigError

SPECS = family_specs(FitConfig)  # every key of a museum config, with its spec

__all__ = [
    "AnyConfig",
    "CONFIG_SUFFIXES",
    "ConfigError",
    "DataConfig",
    "FAMILIES",
    "FitConfig",
    "IMAGE_DIM",
    "InferenceSection",
    "LEGACY_KEYS",
    "LEGACY_MODEL_TYPES",
    "MLPFitConfig",
    "MLPModelConfig",
    "NetworkSection",
    "OptimizerConfig",
    "PCFitConfig",
    "RULES",
    "SPECS",
    "TrainConfig",
    "build_network",
    "config_from_dict",
    "config_to_dict",
    "dump_toml",
    "family_of",
    "family_specs",
    "find_config",
    "load_config",
    "model_config",
    "parse_legacy",
    "parse_override",
    "parse_toml",
    "shipped_configs",
    "shipped_configs_dir",
    "toml_family",
    "with_overrides",
]
