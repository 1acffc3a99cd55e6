"""Datasets: one :class:`Dataset` interface, readers for the OS2D CSV layout and COCO JSON."""
from os2d.data.datasets.base import Dataset, SceneRecord, read_image_size
from os2d.data.datasets.coco import read_coco
from os2d.data.datasets.os2d_csv import read_os2d_csv
from os2d.data.datasets.paper import paper_dataset, paper_dataset_names
from os2d.data.datasets.resolve import resolve_dataset

__all__ = [
    "Dataset", "SceneRecord", "read_image_size", "read_coco", "read_os2d_csv", "paper_dataset",
    "paper_dataset_names", "resolve_dataset",
]
