"""The example script of docs/export.md runs with onnxruntime alone and finds what os2d finds."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from export_helpers import EXAMPLE
from shared_data import assert_same_detection_sets

from os2d import Detector

DOC = Path(__file__).resolve().parents[2] / "docs" / "export.md"
MARKER = "<!-- onnx_detect.py"
SCALES = (512.0, 700.0)
THRESHOLD = 0.42  # raw: the default model's cups score 0.42-0.46 at these scales
#: Runs the script with ``import torch`` and ``import os2d`` failing: it must need neither.
NO_TORCH = ("import runpy, sys; sys.modules.update(torch=None, torchvision=None, os2d=None); "
            "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def example_script() -> str:
    """The python block that follows the marker comment in docs/export.md."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], flags=re.S)
    return match.group(1)


def run_example(tmp_path, export_dir, threshold=THRESHOLD):
    script = tmp_path / "onnx_detect.py"
    script.write_text(example_script(), encoding="utf-8")
    args = [str(export_dir), str(EXAMPLE / "input_image.jpg"),
            "--class", f"c0={EXAMPLE / 'class_image_0.jpg'}", "--class", f"c1={EXAMPLE / 'class_image_1.jpg'}",
            "--scales", ",".join(str(s) for s in SCALES), "--threads", "1"]
    args += [] if threshold is None else ["--threshold", str(threshold)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(script), *args], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def as_tensors(records, names):
    boxes = torch.tensor([r["bbox"] for r in records], dtype=torch.float32).reshape(-1, 4)
    scores = torch.tensor([r["score"] for r in records], dtype=torch.float32)
    labels = torch.tensor([names.index(r["class"]) for r in records], dtype=torch.int64)
    return boxes, scores, labels


def test_docs_example_finds_the_detections_of_os2d(tmp_path, default_export):
    records = run_example(tmp_path, default_export.out)
    # the ONNX example computes raw scores without cross-class steps (docs/export.md): compare like with like
    detector = Detector.load("default", scales=SCALES, score_threshold=THRESHOLD, scores="raw", one_label=False)
    want = detector.detect(EXAMPLE / "input_image.jpg", {"c0": EXAMPLE / "class_image_0.jpg",
                                                         "c1": EXAMPLE / "class_image_1.jpg"})
    assert len(want.scores) >= 5  # a meaningful comparison: several detections of both classes
    assert {r["class"] for r in records} == {"c0", "c1"}
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)
    top = records[0]
    width, height = want.image_size
    x1, y1, x2, y2 = top["bbox"]
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height and top["score"] > THRESHOLD
    boxes, scores, labels = as_tensors(records, ["c0", "c1"])
    assert_same_detection_sets(boxes, scores, labels, want.boxes, want.scores, want.labels)
    assert top["class"] == want.class_names[int(want.labels[0])]
    assert abs(top["score"] - float(want.scores[0])) <= 1e-4


def test_docs_example_defaults_to_the_raw_equivalent_of_the_models_threshold(tmp_path, default_export):
    manifest = json.loads((default_export.out / "export.json").read_text())
    raw = manifest["raw_score_threshold"]
    records = run_example(tmp_path, default_export.out, threshold=None)
    detector = Detector.load("default", scales=SCALES, score_threshold=raw, scores="raw", one_label=False)
    want = detector.detect(EXAMPLE / "input_image.jpg", {"c0": EXAMPLE / "class_image_0.jpg",
                                                         "c1": EXAMPLE / "class_image_1.jpg"})
    # not the calibrated default read as a raw score, which would keep dozens of weak boxes
    assert all(r["score"] > raw for r in records) and len(records) == len(want.scores)
    low = Detector.load("default", scales=SCALES, score_threshold=manifest["model"]["score_threshold"],
                        scores="raw", one_label=False)
    assert len(low.detect(EXAMPLE / "input_image.jpg", {"c0": EXAMPLE / "class_image_0.jpg"}).scores) > len(records)
