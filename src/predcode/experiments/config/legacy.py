"""The legacy ngc-learn 0.x fit config (Walkthrough 1's ``fit.cfg``): ``name = value`` lines, a museum config."""

from __future__ import annotations

import os
import re
from typing import Any

from predcode.experiments.config.layout import from_mapping
from predcode.experiments.config.museum import FitConfig
from predcode.experiments.config.sections import family_specs, tables
from predcode.models.gncn import GNCNConfig
from predcode.schema import ConfigError, bad, closest, where

__all__ = ["LEGACY_KEYS", "LEGACY_MODEL_TYPES", "parse_legacy"]


LEGACY_KEYS: dict[str, str] = {
    "model_type": "model.kind",
    "out_dir": "out_dir",
    "train_xfname": "data.train_file",
    "dev_xfname": "data.val_file",
    "batch_size": "train.batch_size",
    "dev_batch_size": "train.eval_batch_size",
    "eta": "optimizer.learning_rate",
    "num_iter": "train.epochs",
    "seed": "train.seed",
    "K": "model.K",
    "beta": "model.beta",
    "leak": "model.leak",
    "lmbda": "model.lmbda",
    "wght_sd": "model.wght_sd",
    "n_group": "model.n_group",
    "n_top_group": "model.n_top_group",
    "alpha_scale": "model.alpha_scale",
    "beta_scale": "model.beta_scale",
    "z_dim": "model.z_dims",  # every latent layer but the top
    "z_top_dim": "model.z_dims",  # the top latent layer
    "act_fx": "model.phi",
    "out_fx": "model.g_out",
}
LEGACY_MODEL_TYPES: dict[str, str] = {
    "gncn_t1": "gncn_t1",
    "gncn_t1_sigma": "gncn_t1_sigma",
    "gncn_t2_lsigma": "gncn_t2_lsigma",
    "gncn_pdh": "gncn_pdh",
    "gncn_t2_lsigma_pdh": "gncn_pdh",
}
# Keys legacy scripts read that predcode's fit has no use for: named in the error, never ignored.
_LEGACY_UNUSED: dict[str, str] = {
    "use_dfx": "predcode's museum fixes the use of phi'(z) by model kind",
    "x_dim": "legacy took it from the data; predcode's is model.x_dim, 784 for MNIST",
    **dict.fromkeys(
        (
            "model_fname",
            "node_name",
            "cmpt_name",
            "latents_fname",
            "gmm_fname",
            "labels_fname",
            "n_trials",
            "dev_yfname",
            "results_fname",
            "rotNeg90",
        ),
        "it belongs in an analyze.cfg, not in a fit config",
    ),
}
_LEGACY_LAYERS = 3  # legacy museum models have z1, z2 (z_dim units) and z3 (z_top_dim units)
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _legacy_value(name: str, key: str, text: str) -> Any:
    """Convert a legacy string value to the type its predcode key takes."""
    spec = family_specs(FitConfig)[key]
    if name == "model_type":
        kind = LEGACY_MODEL_TYPES.get(text.lower().replace("-", "_"))
        if kind is None:
            near = closest(text, ["GNCN_t1", "GNCN_t1_Sigma", "GNCN_t2_LSigma", "GNCN_PDH", "GNCN_t2_LSigma_PDH"])
            raise bad(
                key,
                "one of GNCN_t1, GNCN_t1_Sigma, GNCN_t2_LSigma, GNCN_PDH, GNCN_t2_LSigma_PDH (any case)",
                text,
                f"did you mean {near!r}?" if near else "",
            )
        return kind
    kind = "int" if spec.kind == "ints" else spec.kind
    if kind == "int":
        if _INT.fullmatch(text):
            try:
                return int(text)
            except ValueError:  # more digits than Python converts
                pass
        raise bad(key, spec.describe() if spec.kind == "int" else "an integer >= 1", text, spec.help)
    if kind == "float":
        if _FLOAT.fullmatch(text):
            return float(text)
        raise bad(key, spec.describe(), text, spec.help)
    return text  # str and path values are taken as written


def parse_legacy(text: str, source: str | None = None, base_dir: str | os.PathLike | None = None) -> FitConfig:
    """A FitConfig from legacy ngc-learn 0.x ``name = value`` text (Walkthrough 1's ``fit.cfg``).

    Spaces are ignored, ``#`` starts a comment, a later duplicate key wins, and relative paths are
    relative to ``base_dir`` (default: the current working folder, as in legacy). Legacy's
    hard-coded early-stopping patience of 10 and its Keras Adam are the defaults. Unknown keys
    (including ones legacy read but predcode's fit has no use for, such as ``use_dfx``) are errors.
    """
    entries: dict[str, tuple[str, int]] = {}
    for n, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = "".join(raw.split("#", 1)[0].split())
        if not line:
            continue
        if "=" not in line:
            fix = (
                "this looks like TOML: give the file a .toml suffix"
                if line.startswith("[")
                else "a legacy config holds one `name = value` a line; comments start with #"
            )
            raise ConfigError(
                f"{where(source, n)}: expected `name = value`, got {raw.strip()!r} ({fix})", source=source, line=n
            )
        name, value = line.split("=", 1)
        if not name:
            raise ConfigError(
                f"{where(source, n)}: expected a name before '=', got {raw.strip()!r}", source=source, line=n
            )
        if "=" in value:
            raise ConfigError(
                f"{where(source, n)}: expected one '=' in `name = value`, got {raw.strip()!r} "
                f"(legacy ngc-learn would have read the value as {value.split('=')[0]!r})",
                key=name,
                source=source,
                line=n,
            )
        if name not in LEGACY_KEYS:
            near = closest(name, LEGACY_KEYS)
            fix = f"did you mean {near!r}?" if near else "legacy keys: " + ", ".join(LEGACY_KEYS)
            if name in _LEGACY_UNUSED:
                fix = (
                    f"legacy ngc-learn read it, but predcode's fit has no use for it ({_LEGACY_UNUSED[name]}): "
                    "remove the line" + (f"; the closest known key is {near!r}" if near else "")
                )
            raise ConfigError(f"unknown key {name!r} in {where(source, n)}; {fix}", key=name, source=source, line=n)
        entries[name] = (value, n)

    doc: dict[str, Any] = {s: {} for s in tables(FitConfig)}
    origin: dict[str, tuple[str, int]] = {}  # predcode key or label -> (legacy name, line)
    default = GNCNConfig().z_dims
    z_dims = [default[0]] * (_LEGACY_LAYERS - 1) + [default[-1]]
    for name, (value, n) in entries.items():
        key = LEGACY_KEYS[name]
        try:
            converted = _legacy_value(name, key, value)
        except ConfigError as err:
            raise err.located(source, n, label=f"{name} ({key})") from None
        if name == "z_dim":
            z_dims[:-1] = [converted] * (_LEGACY_LAYERS - 1)
            origin.update({f"model.z_dims[{i}]": (name, n) for i in range(_LEGACY_LAYERS - 1)})
            origin.setdefault("model.z_dims", (name, n))
        elif name == "z_top_dim":
            z_dims[-1] = converted
            origin[f"model.z_dims[{_LEGACY_LAYERS - 1}]"] = origin["model.z_dims"] = (name, n)
        else:
            section, _, leaf = key.rpartition(".")
            (doc[section] if section else doc)[leaf] = converted
            origin[key] = (name, n)
    doc["model"]["z_dims"] = z_dims

    def relocate(err: ConfigError) -> ConfigError:
        found = origin.get(err.label or "") or origin.get(err.key or "")
        if found is None:
            return err.located(source)
        return err.located(source, found[1], label=f"{found[0]} ({err.label})")

    return from_mapping(doc, source=source, base_dir=base_dir, relocate=relocate, cls=FitConfig)
