"""Datasets for mlp_xp: IDX files, MNIST-layout folders, named datasets, synthetic data, .npz files."""

from mlp_xp.data.datasets import (
    DATASET_NAMES,
    MNIST_FILES,
    SYSTEM_DATA_DIRS,
    DataFolderWarning,
    Dataset,
    default_cache_dir,
    load_dataset,
    load_mnist_folder,
    make_synthetic,
)
from mlp_xp.data.idx import read_idx, write_idx

__all__ = [
    "DATASET_NAMES",
    "MNIST_FILES",
    "SYSTEM_DATA_DIRS",
    "DataFolderWarning",
    "Dataset",
    "default_cache_dir",
    "load_dataset",
    "load_mnist_folder",
    "make_synthetic",
    "read_idx",
    "write_idx",
]
