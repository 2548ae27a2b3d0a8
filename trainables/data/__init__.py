"""Datasets: the bundled digits and MNIST sample, torchvision-readable files, image folders; one
train/test split."""

from __future__ import annotations

from backdoor_sweep.exports import lazy_exports

_WHERE = {
    "BUNDLED": "datasets",
    "CIFAR10_FILES": "formats",
    "CIFAR10_FOLDER": "formats",
    "DATA_ENV": "datasets",
    "DEFAULT_IMAGE_SIZE": "datasets",
    "DEFAULT_TEST_FRACTION": "datasets",
    "Dataset": "datasets",
    "DatasetInfo": "datasets",
    "DatasetSpec": "datasets",
    "IDX_DATASETS": "formats",
    "IDX_FILES": "formats",
    "OFFICIAL_SPLIT": "datasets",
    "Source": "formats",
    "Split": "formats",
    "TEST_SPLIT_NAMES": "formats",
    "check_dataset_spec": "datasets",
    "class_folders": "formats",
    "class_position": "datasets",
    "data_root": "datasets",
    "dataset_info": "datasets",
    "expected_files": "formats",
    "image_folder_path": "datasets",
    "image_size": "datasets",
    "load_dataset": "datasets",
    "read_cifar10": "formats",
    "read_idx": "formats",
    "read_mnist_sample": "datasets",
    "read_image_folder": "formats",
    "read_source": "datasets",
    "split_folders": "formats",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
