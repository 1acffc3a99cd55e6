"""``os2d export`` through a subprocess: the written files, and refused inputs (exit 2, one line, nothing changed)."""
from __future__ import annotations

import json
import os

from export_helpers import EXAMPLE, run_os2d

EXPORT_FILES = ["class_features.onnx", "export.json", "head.onnx", "scene_features.onnx"]


def assert_user_error(result, *words):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("os2d: error:")]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in errors[0], errors[0]


def snapshot(folder):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def test_export_writes_the_graphs_and_the_manifest(default_export):
    out = default_export.out
    assert sorted(p.name for p in out.iterdir()) == EXPORT_FILES
    assert sorted(p.name for p in out.parent.iterdir()) == ["default"]  # no staging folder left
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["format"] == "os2d-onnx-export" and manifest["opset"] == 18
    assert manifest["model_identity"] in default_export.result.stdout
    assert {g["file"] for g in manifest["graphs"].values()} == set(EXPORT_FILES) - {"export.json"}



def test_manifest_gives_the_default_threshold_in_the_graphs_raw_units(default_export):
    from os2d import Detector

    manifest = json.loads((default_export.out / "export.json").read_text())
    detector = Detector.load("default")
    assert manifest["model"]["scores"] == "calibrated"
    assert manifest["model"]["score_threshold"] == detector.settings.score_threshold
    # the default model's calibration is one global map: its raw threshold is the same for every class
    bank = detector.prepare_classes({"a": EXAMPLE / "class_image_0.jpg", "b": EXAMPLE / "class_image_1.jpg"})
    raw = detector.raw_thresholds(bank)
    assert raw.shape == (2,) and float(raw.max() - raw.min()) < 1e-6
    assert abs(manifest["raw_score_threshold"] - float(raw[0])) < 1e-5
    assert 0.3 < manifest["raw_score_threshold"] < 1.0


def test_unknown_format_refused(tmp_path):
    result = run_os2d(["export", "--format", "tflite", "--out", tmp_path / "out"])
    assert_user_error(result, "tflite", "onnx")
    assert list(tmp_path.iterdir()) == []


def test_non_empty_folder_refused_and_unchanged(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "head.onnx").write_text("the user's own file")
    (out / "notes.txt").write_text("notes")
    before = snapshot(tmp_path)
    result = run_os2d(["export", "--format", "onnx", "--out", out])
    assert_user_error(result, "not empty", str(out), "--overwrite")
    assert snapshot(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_unknown_model_refused(tmp_path):
    result = run_os2d(["export", "--format", "onnx", "--out", tmp_path / "out", "--model", "no-such-model"])
    assert_user_error(result, "no-such-model")
    assert list(tmp_path.iterdir()) == []


def test_missing_format_is_a_usage_error(tmp_path):
    result = run_os2d(["export", "--out", "x"], cwd=tmp_path)
    assert_user_error(result, "Missing option", "--format")
    assert list(tmp_path.iterdir()) == []
