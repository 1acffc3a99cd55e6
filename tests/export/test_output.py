"""The export's output folder: refused targets, staging, publishing, nothing left on failure."""
from __future__ import annotations

import subprocess
import sys

import pytest
from onnx import TensorProto, helper

from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.export import ONNX_FILES, exporter
from os2d.export.output import check_output_folder, new_staging, publish, remove_stale_staging
from os2d.model.checkpoint import build_model
from os2d.zoo import untrained_config


def test_non_empty_folder_refused_without_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not empty"):
        check_output_folder(tmp_path, files=ONNX_FILES, overwrite=False)


def test_existing_file_refused(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(InvalidInputError, match="existing file"):
        check_output_folder(tmp_path / "out", files=ONNX_FILES, overwrite=True)


def test_missing_parent_refused(tmp_path):
    with pytest.raises(InputNotFoundError, match="parent folder"):
        check_output_folder(tmp_path / "no" / "out", files=ONNX_FILES, overwrite=False)


def test_overwrite_refuses_a_folder_named_like_an_export_file(tmp_path):
    (tmp_path / "head.onnx").mkdir()
    with pytest.raises(InvalidInputError, match="not a regular file"):
        check_output_folder(tmp_path, files=ONNX_FILES, overwrite=True)


def test_new_and_empty_folders_accepted(tmp_path):
    check_output_folder(tmp_path / "new", files=ONNX_FILES, overwrite=False)
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", files=ONNX_FILES, overwrite=False)


def test_publish_into_new_folder(tmp_path):
    out = tmp_path / "out"
    staging = new_staging(out)
    (staging / "head.onnx").write_text("new")
    publish(staging, out, last="export.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "head.onnx").read_text() == "new"


def test_publish_with_overwrite_replaces_only_the_export_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "head.onnx").write_text("old")
    (out / "notes.txt").write_text("mine")
    staging = new_staging(out)
    (staging / "head.onnx").write_text("new")
    (staging / "export.json").write_text("{}")
    publish(staging, out, last="export.json")
    assert {p.name: p.read_text() for p in out.iterdir()} == {"head.onnx": "new", "notes.txt": "mine",
                                                               "export.json": "{}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stale_staging_of_a_dead_process_removed(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.export-{int(dead.stdout)}-abc.tmp"
    stale.mkdir()
    (stale / "head.onnx").write_text("partial")
    mine = new_staging(out)
    remove_stale_staging(out)
    assert not stale.exists() and mine.exists()


def _identity_graph():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    return helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))


def test_failed_check_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "head.onnx").write_text("old")
    graphs = {name: _identity_graph() for name in ONNX_FILES if name.endswith(".onnx")}
    monkeypatch.setattr(exporter, "onnx_graphs", lambda model, opset: graphs)

    def mismatch(model, folder):
        assert sorted(p.name for p in folder.iterdir()) == sorted(graphs)  # written, not yet published
        raise RuntimeError("exported output 'scores' differs from PyTorch")

    monkeypatch.setattr(exporter, "verify_graphs", mismatch)
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        exporter.export_onnx(build_model(untrained_config()), untrained_config(), out, overwrite=True)
    assert [(p.name, p.read_text()) for p in tmp_path.rglob("*") if p.is_file()] == [("head.onnx", "old")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_replaces_the_export_files_and_keeps_the_rest(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "head.onnx").write_text("old")
    (out / "notes.txt").write_text("mine")
    graphs = {name: _identity_graph() for name in ONNX_FILES if name.endswith(".onnx")}
    monkeypatch.setattr(exporter, "onnx_graphs", lambda model, opset: graphs)
    monkeypatch.setattr(exporter, "verify_graphs", lambda model, folder: None)
    model = build_model(untrained_config())
    manifest = exporter.export_onnx(model, untrained_config(), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([*ONNX_FILES, "notes.txt"])
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "head.onnx").read_bytes() == graphs["head.onnx"].SerializeToString()
    assert exporter.read_manifest(out) == manifest
    assert manifest.graphs["head"].file == "head.onnx" and manifest.geometry.variant == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
