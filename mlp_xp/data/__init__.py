"""Datasets for mlp_xp, one source a module: :mod:`.idx` (IDX files), :mod:`.folders` (MNIST-layout folders),
:mod:`.download` (named image sets: lookup and download), :mod:`.generated` (digits, synthetic data),
:mod:`.npz` (.npz files), and :mod:`.datasets`, whose :func:`load_dataset` picks among them by name or path."""

from .dataset import Dataset
from .datasets import DATASET_NAMES, UnknownDataset, load_dataset
from .download import SYSTEM_DATA_DIRS, DataFolderWarning, default_cache_dir
from .folders import MNIST_FILES, load_mnist_folder
from .generated import make_synthetic
from .idx import read_idx, write_idx

__all__ = [
    "DATASET_NAMES",
    "MNIST_FILES",
    "SYSTEM_DATA_DIRS",
    "UnknownDataset",
    "DataFolderWarning",
    "Dataset",
    "default_cache_dir",
    "load_dataset",
    "load_mnist_folder",
    "make_synthetic",
    "read_idx",
    "write_idx",
]
