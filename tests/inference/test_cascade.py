"""Tests of the fast mode (os2d.inference.cascade): without cut-offs it is exact mode; its last stage
gives the exact head's outputs; the shortlist keeps the classes that are there; crops are aligned."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from os2d import Detector
from os2d.cli.detect import example_files
from os2d.inference.cascade import cascade_candidates, probe_level

NO_CUTS = {"shortlist": 0, "max_levels": 0, "candidates": 100000, "radius": 0, "candidate_nms": 1.0}


@pytest.fixture(scope="module")
def setup():
    scenes, classes = example_files()
    det = Detector.load("default", score_threshold=float("-inf"), max_detections=40, scales=[480, 640],
                        scores="raw", one_label=False)
    return det, scenes[0], det.prepare_classes(classes)


def test_without_cut_offs_fast_equals_exact(setup):
    det, scene, bank = setup
    exact = det.detect(scene, bank)
    fast = det.with_settings(method="fast", cascade=NO_CUTS).detect(scene, bank)
    assert fast.labels.tolist() == exact.labels.tolist()
    torch.testing.assert_close(fast.scores, exact.scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast.boxes, exact.boxes, rtol=0, atol=1e-2)


@pytest.mark.parametrize("margin", [0, 6])
def test_last_stage_outputs_are_the_exact_head_outputs(setup, margin):
    """Every fast candidate carries the dense head's score at its level and location (full levels),
    and stays close to it when the backbone ran on a crop of the level (margin > 0)."""
    det, scene_path, bank = setup
    fast = det.with_settings(method="fast", cascade={"crop_margin": margin, "max_levels": 1, "regions": 3})
    scene = fast.scene(scene_path)
    cands = cascade_candidates(fast, scene, bank)
    assert len(cands) > 0
    for level in cands.levels.unique().tolist():
        sel = (cands.levels == level).nonzero().squeeze(1)
        out = det.model.head(scene.features(level), bank.features)
        sx, sy = scene.levels[level].scale
        centre = (cands.anchors[sel, :2] + cands.anchors[sel, 2:]) / 2 / torch.tensor([sx, sy])
        cols, rows = (centre[:, 0] / 16 - 0.5).round().long(), (centre[:, 1] / 16 - 0.5).round().long()
        dense = out.scores[0][cands.entries[sel], rows, cols]
        tol = 1e-5 if margin == 0 else 0.05
        torch.testing.assert_close(cands.scores[sel], dense, rtol=0, atol=tol)


def test_shortlist_keeps_the_classes_that_are_in_the_scene(setup):
    det, scene, _ = setup
    rng = np.random.default_rng(0)
    noise = {f"noise{i}": rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for i in range(20)}
    _, real = example_files()
    bank = det.prepare_classes({**noise, **real})
    fast = det.with_settings(method="fast", cascade={"shortlist": 2})
    found = fast.detect(scene, bank)
    assert set(found.names) <= {"fantasia-berry", "fantasia-choco"} and len(found) > 0


def test_probe_level_is_the_nearest_in_log_scale(setup):
    det, scene_path, _ = setup
    scene = det.with_settings(scales=[300, 500, 900]).scene(scene_path)
    assert probe_level(scene, 480) == 1 and probe_level(scene, 700) == 2 and probe_level(scene, 32) == 0


def test_crop_features_align_with_the_full_level(setup):
    det, scene_path, _ = setup
    scene = det.scene(scene_path)
    rows, cols = scene.level_cells(1)
    full = scene.features(1)
    fresh = det.scene(scene_path)  # nothing cached: the crop is computed from its pixels
    crop = fresh.crop_features(1, (4, 6, rows, cols))
    assert crop.shape[-2:] == (rows - 4, cols - 6)
    inner = (crop[0, :, 6:-6, 6:-6] * full[0, :, 10:-6, 12:-6]).sum(0)
    # cosine of the features of the same cells, away from the crop border
    assert float(inner.mean()) > 0.95
