"""INSTRE: building instre.csv from a synthetic gnd_instre.mat, then the paper subsets."""
from __future__ import annotations

import numpy as np
import pytest

from test_datasets_support import write_image
from os2d.data.datasets.instre import build_instre_csv, read_box_file
from os2d.data.datasets.paper import paper_dataset

scipy_io = pytest.importorskip("scipy.io")


def _cell(strings):
    arr = np.empty((1, len(strings)), dtype=object)
    for i, s in enumerate(strings):
        arr[0, i] = np.array([s])
    return arr


def _make_instre(root):
    for rel in ("INSTRE-S1/01a_book/001.jpg", "INSTRE-S2/mug/001.jpg", "INSTRE-M/01_x/000.jpg"):
        write_image(root / rel, (20, 10))
    for rel, size, lines in (("INSTRE-S1/01a_book/002", (40, 20), ["4 2 8 10"]),
                             ("INSTRE-M/01_x/001", (50, 50), ["0 0 10 10", "20 20 5 5"]),
                             ("INSTRE-S2/mug/002", (10, 10), ["1 1 2 2"])):
        write_image(root / f"{rel}.jpg", size)
        (root / f"{rel}.txt").write_text("\n".join(lines) + "\n")
    gnd = np.empty((1, 3), dtype=[("ok", "O"), ("bbx", "O")])
    gnd[0, 0] = (np.array([[1, 2]]), np.array([[2, 1, 12, 9]]))
    gnd[0, 1] = (np.array([[3]]), np.array([[0, 0, 5, 5]]))
    gnd[0, 2] = (np.array([[2]]), np.array([[0, 0, 20, 10]]))
    scipy_io.savemat(root / "gnd_instre.mat", {
        "qimlist": _cell(["INSTRE-S1/01a_book/001.jpg", "INSTRE-S2/mug/001.jpg", "INSTRE-M/01_x/000.jpg"]),
        "imlist": _cell(["INSTRE-S1/01a_book/002.jpg", "INSTRE-M/01_x/001.jpg", "INSTRE-S2/mug/002.jpg"]),
        "gnd": gnd,
    })


def test_build_csv_and_read_all(tmp_path):
    _make_instre(tmp_path / "instre")
    ds = paper_dataset("instre-all", data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert ds.class_names == ["00000_INSTRE-S1_01a_book_001", "00001_INSTRE-S2_mug_001"]
    assert [r.file_name for r in ds.images] == [
        "INSTRE-S1/01a_book/002.jpg", "INSTRE-M/01_x/001.jpg", "INSTRE-S2/mug/002.jpg"]
    np.testing.assert_allclose(ds.images[0].boxes, [[4, 2, 12, 12]])
    np.testing.assert_allclose(ds.images[1].boxes, [[0, 0, 10, 10]])  # box "a" of the INSTRE-M image
    crop = ds.class_images[ds.class_names[0]][0]
    assert crop.is_relative_to(tmp_path / "cache")
    assert not (tmp_path / "instre" / "classes").exists()


def test_read_box_file_errors(tmp_path):
    (tmp_path / "b.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="expected 'x y w h'"):
        read_box_file(tmp_path / "b.txt")
    with pytest.raises(FileNotFoundError, match="INSTRE box file not found"):
        read_box_file(tmp_path / "none.txt")


def test_error_missing_mat(tmp_path):
    with pytest.raises(FileNotFoundError, match="gnd_instre.mat"):
        build_instre_csv(tmp_path, out_dir=tmp_path / "out")
