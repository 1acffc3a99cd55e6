"""The real FlickrLogos-27 copy in ../shared/data, in the OS2D layout."""
from __future__ import annotations

import numpy as np

from os2d.data.datasets import resolve_dataset


def test_full_dataset(shared):
    ds = resolve_dataset(str(shared("data", "flickrlogos27")))
    assert len(ds) == 521 and ds.num_boxes == 831 and len(ds.class_names) == 18
    assert ds.splits == ["train", "val-new-cl"]
    for rec in ds.images:
        w, h = rec.size
        assert rec.path.is_file() and max(w, h) <= 500
        assert (rec.boxes[:, 2:] <= [w, h]).all() and (rec.boxes[:, :2] >= 0).all()
    assert all(len(files) == 1 and files[0].is_file() for files in ds.class_images.values())


def test_val_new_cl_split(shared):
    ds = resolve_dataset("flickrlogos27", data_root=shared("data"), split="val-new-cl")
    assert set(ds.class_names) == {"Google", "Mini", "Puma", "Texaco", "Vodafone", "Fedex"}
    assert len(ds) == 174 and ds.num_boxes == 268
    assert all(len(r) > 0 for r in ds.images)
    assert not np.concatenate([r.difficult for r in ds.images]).any()
