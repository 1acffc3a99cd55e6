"""build_method / MethodRunner / suggest_base_size, and ``os2d detect --method sift``."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shared_data import shared_path
from os2d.data.datasets.base import Dataset, SceneRecord
from os2d.eval.methods import ALL_METHODS, build_method, check_method, suggest_base_size
from os2d.inference.pyramid import target_scales

GOOGLE_SCENE = "3904333688.jpg"  # SIFT finds the Google logo here (see tests/baselines/test_sift.py)




def flickr():
    return shared_path("data", "flickrlogos27")


def test_method_names():
    assert ALL_METHODS == ("os2d", "exact", "fast", "sliding-window-square", "sliding-window-ar", "sift")
    assert check_method("sift") == "sift" and check_method("os2d") == "exact"
    with pytest.raises(ValueError, match="unknown method 'orb'.*sift"):
        build_method("orb")


def test_sift_refuses_os2d_settings_and_models():
    with pytest.raises(ValueError, match=r"\['scales'\] do not apply to method 'sift'"):
        build_method("sift", scales=[400])
    with pytest.raises(ValueError, match="augment"):
        build_method("sift", augment=("flip",))
    with pytest.raises(ValueError, match="uses no model"):
        build_method("sift", model="untrained")
    with pytest.raises(TypeError, match="unknown detector settings"):
        build_method("sift", colour=True)
    # defaults of the pyramid-only settings are fine (the detect CLI always passes them)
    runner = build_method("sift", resize_rule="longer-side", interpolation="bilinear", augment=())
    assert runner.method == "sift" and runner.model is None


def test_sift_runner_threshold_and_max_detections():
    root = flickr()
    classes = {n: root / "classes" / "images" / f"{n}.jpg" for n in ("Google", "Puma", "Fedex")}
    scene = root / "src" / GOOGLE_SCENE
    full = build_method("sift")
    bank = full.prepare_classes(classes)
    dets = full.detect(scene, bank, image_name="scene.jpg")
    assert len(dets) >= 1 and dets.image_name == "scene.jpg" and dets.names[0] == "Google"
    assert bool((dets.scores[:-1] >= dets.scores[1:]).all())
    one = build_method("sift", max_detections=1).detect(scene, bank)
    assert len(one) == 1 and one.image_name == GOOGLE_SCENE
    assert float(one.scores[0]) == float(dets.scores[0])
    none = build_method("sift", score_threshold=0.999).detect(scene, bank)
    assert len(none) == 0
    blob = json.dumps(full.describe(), allow_nan=False)
    assert '"score_threshold": "-inf"' in blob and '"min_inliers": 8' in blob


def test_os2d_family_shares_a_loaded_detector():
    from os2d.detector import Detector

    det = Detector.load("default")
    runner = build_method("sliding-window-ar", detector=det, scales=[320, 480], score_threshold=float("-inf"),
                          max_detections=7, augment=None)
    assert runner.detector.model is det.model and runner.detector.settings.method == "sliding-window-ar"
    assert det.settings.method == "exact"  # the loaded detector is not modified
    described = runner.describe()
    assert described["settings"]["level_scales"] == [320.0, 480.0] and described["model"] == "default"
    json.dumps(described, allow_nan=False)
    pyramid = build_method("os2d", detector=det, base_size=850, pyramid_rule="paper")
    assert target_scales(500, 400, pyramid.detector.settings) == pytest.approx(
        [f * 850 for f in (0.5, 0.625, 0.8, 1.0, 1.2, 1.4, 1.6)])
    root = flickr()
    bank = runner.prepare_classes({"Google": root / "classes" / "images" / "Google.jpg"})
    dets = runner.detect(root / "src" / GOOGLE_SCENE, bank, image_name="g.jpg")
    assert 1 <= len(dets) <= 7 and dets.image_name == "g.jpg"


def test_suggest_base_size_known_answer():
    images = [SceneRecord("1", "a.jpg", Path("/x/a.jpg"), np.array([[0, 0, 100, 100], [0, 0, 50, 200]]),
                          ["cat", "cat"], np.array([False, False]), size=(500, 400)),
              SceneRecord("2", "b.jpg", Path("/x/b.jpg"), np.array([[0, 0, 10, 10]]), ["cat"], np.array([True]),
                          size=(500, 400))]
    ds = Dataset("toy", ["cat"], {"cat": [Path("/x/cat.png")]}, images)
    # both non-difficult boxes are sqrt(10000) / 500 = 0.2 of the photo: 240 / 0.2 = 1200
    assert suggest_base_size(ds) == 1200
    assert suggest_base_size(ds, object_size=100, multiple=1) == 500
    empty = Dataset("toy", ["cat"], {"cat": [Path("/x/cat.png")]}, [images[1]])
    with pytest.raises(ValueError, match="no usable boxes"):
        suggest_base_size(empty)


def test_suggest_base_size_flickrlogos27():
    from os2d.data.datasets import resolve_dataset

    val = resolve_dataset("flickrlogos27", data_root=flickr().parent, split="val-new-cl")
    train = resolve_dataset("flickrlogos27", data_root=flickr().parent, split="train")
    assert suggest_base_size(val) == 850  # the pyramid base of benchmarks/results_report.py
    assert suggest_base_size(train) == 860


def _detect(args):
    from os2d.cli.main import _register_commands, app

    _register_commands()
    return CliRunner().invoke(app, ["detect", *args], catch_exceptions=False)


def test_detect_cli_sift(tmp_path):
    root = flickr()
    out = tmp_path / "d.json"
    result = _detect(["--image", str(root / "src" / GOOGLE_SCENE), "--classes", str(root / "classes" / "images"),
                      "--method", "sift", "--json", str(out)])
    assert result.exit_code == 0, result.output
    records = json.loads(out.read_text())
    assert records and records[0]["class"] == "Google" and records[0]["image"] == GOOGLE_SCENE
    assert all(math.isfinite(r["score"]) for r in records)


def test_detect_cli_sift_refuses_scales(tmp_path):
    root = flickr()
    with pytest.raises(ValueError, match="do not apply to method 'sift'"):
        _detect(["--image", str(root / "src" / GOOGLE_SCENE), "--class", f"g={root / 'classes' / 'images' / 'Google.jpg'}",
                 "--method", "sift", "--scales", "500"])
