"""Dataset loading: MNIST, Fashion-MNIST and KMNIST from verified IDX files; CIFAR-10 from its verified archive."""

from predcode.data.cifar import load_cifar10
from predcode.data.datasets import (
    NAMES,
    SPLITS,
    binarize,
    cache_dir,
    flatten,
    load,
    load_binarized,
    locate,
    search_dirs,
    to_float,
    train_val_split,
)
from predcode.data.idx import DatasetError, read_idx_images, read_idx_labels, read_idx_pair

__all__ = [
    "NAMES",
    "SPLITS",
    "DatasetError",
    "binarize",
    "cache_dir",
    "flatten",
    "load",
    "load_binarized",
    "load_cifar10",
    "locate",
    "read_idx_images",
    "read_idx_labels",
    "read_idx_pair",
    "search_dirs",
    "to_float",
    "train_val_split",
]
