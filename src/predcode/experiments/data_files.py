"""The one validator of training data that come from outside: ``.npy`` files and validation splits.

Every family reads its data through these two functions, so a bad file or split gets the same
:class:`~predcode.experiments.config.ConfigError` (exit 2 at the command line) whatever the model:

- :func:`read_data_file`: a ``data.train_file`` / ``data.val_file`` design matrix. It must hold
  real numbers (not complex, not strings or objects), two dimensions of the model's width, at
  least one row, no NaN or infinity (the message counts them and gives the first), values in
  the model's range.
- :func:`check_split`: a validation split of ``n_val`` rows from ``n`` must leave at least one
  training row; the message names the data and both sizes.
"""

from __future__ import annotations

import numpy as np

from predcode.schema import ConfigError

__all__ = ["check_split", "read_data_file"]


def read_data_file(
    path: str, key: str, *, width: int, width_key: str = "model.x_dim", low: float = 0.0, high: float = 1.0
) -> np.ndarray:
    """The ``(n, width)`` float32 design matrix in ``path`` (the value of config key ``key``), or ConfigError."""
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"{key}: file {path} does not exist; fix the path in the config", key=key) from None
    except (ValueError, OSError, EOFError) as err:
        raise ConfigError(f"{key}: {path} is not a readable .npy array without pickles ({err})", key=key) from None
    if not isinstance(x, np.ndarray):  # an .npz archive
        raise ConfigError(f"{key}: expected one .npy array in {path}, got an .npz archive; save one array", key=key)
    if x.dtype.kind not in "biuf":
        what = {"c": "complex numbers", "U": "strings", "S": "bytes", "O": "objects", "V": "records"}.get(
            x.dtype.kind, f"dtype {x.dtype}"
        )
        raise ConfigError(
            f"{key}: expected real numbers (a float or integer dtype) in {path}, got {what} (dtype {x.dtype}); "
            "save the pixels as float32 in [0, 1]",
            key=key,
        )
    if x.ndim != 2 or x.shape[1] != width:
        raise ConfigError(
            f"{key}: expected a design matrix of shape (n, {width}) (one image a row, "
            f"{width_key} = {width}), got shape {x.shape} in {path}",
            key=key,
        )
    if x.shape[0] == 0:
        raise ConfigError(
            f"{key}: expected at least 1 row in {path}, got 0 rows (shape {x.shape}); the file holds no images",
            key=key,
        )
    x = x.astype(np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        row, col = (int(i) for i in np.unravel_index(int(np.argmin(finite)), x.shape))
        raise ConfigError(
            f"{key}: expected finite values in {path}, got {n_nan} NaN and {n_inf} infinite value(s) "
            f"(first at row {row}, column {col}: {x[row, col]}); drop or repair those rows",
            key=key,
        )
    lo, hi = float(x.min()), float(x.max())
    if lo < low or hi > high:
        raise ConfigError(
            f"{key}: expected values in [{low:g}, {high:g}] in {path}, got values from {lo:g} to {hi:g}; "
            "scale the pixels to [0, 1] (uint8 pixels / 255)",
            key=key,
        )
    return x


def check_split(n: int, n_val: int, source: str, key: str = "data.n_val") -> None:
    """Refuse a validation split of ``n_val`` rows that leaves no training row of the ``n`` in ``source``."""
    if not 1 <= n_val <= n - 1:
        raise ConfigError(
            f"{key}: expected at most {n - 1} validation rows for the {n} row(s) of {source} (at least one "
            f"must stay for training), got {n_val}; lower {key}" + (" or add rows to the file" if n < 2 else ""),
            key=key,
        )
