"""Tests of the fast mode (os2d.inference.cascade): without cut-offs it is exact mode; its last stage
gives the exact head's outputs; every class keeps its own candidates; the coarse score is the identity
score on a coarser grid."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from os2d import Detector
from os2d.cli.detect import example_files
from os2d.inference.cascade import cascade_candidates, class_templates, coarse_scores
from os2d.ops.features import l2_normalize

NO_CUTS = {"candidates": 100000, "max_windows": 10_000_000, "radius": 0, "candidate_nms": 1.0}


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


def test_last_stage_outputs_are_the_exact_head_outputs(setup):
    """Every fast candidate carries the dense head's score at its level and location."""
    det, scene_path, bank = setup
    fast = det.with_settings(method="fast", cascade={"candidates": 4, "radius": 1})
    scene = fast.scene(scene_path)
    cands = cascade_candidates(fast, scene, bank)
    assert len(cands) > 0 and set(cands.entries.tolist()) == {0, 1}  # both classes got candidates
    for level in cands.levels.unique().tolist():
        sel = (cands.levels == level).nonzero().squeeze(1)
        out = det.model.head(scene.features(level), bank.features)
        sx, sy = scene.levels[level].scale
        centre = (cands.anchors[sel, :2] + cands.anchors[sel, 2:]) / 2 / torch.tensor([sx, sy])
        cols, rows = (centre[:, 0] / 16 - 0.5).round().long(), (centre[:, 1] / 16 - 0.5).round().long()
        torch.testing.assert_close(cands.scores[sel], out.scores[0][cands.entries[sel], rows, cols], rtol=0, atol=1e-5)


def test_every_class_keeps_its_own_candidates_among_many_others(setup):
    """Classes are not shortlisted against each other: the real classes keep their best detections
    next to 20 noise classes whose (incomparable) coarse scores may be higher."""
    det, scene, _ = setup
    rng = np.random.default_rng(0)
    noise = {f"noise{i}": rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for i in range(20)}
    _, real = example_files()
    small = det.with_settings(method="fast").detect(scene, det.prepare_classes(real))
    big = det.with_settings(method="fast").detect(scene, det.prepare_classes({**noise, **real}))
    for name in real:
        mine = small.scores[[n == name for n in small.names]]
        theirs = big.scores[[n == name for n in big.names]]
        torch.testing.assert_close(theirs[:3], mine[:3], rtol=0, atol=1e-5)


def test_max_windows_bounds_the_candidates(setup):
    det, scene_path, bank = setup
    fast = det.with_settings(method="fast", cascade={"candidates": 50, "max_windows": 2, "radius": 0,
                                                      "candidate_nms": 1.0})
    cands = cascade_candidates(fast, fast.scene(scene_path), bank)
    assert len(cands) == 2  # one candidate per entry: max_windows // K, at least 1


def test_coarse_score_is_the_mean_cosine_over_the_template_cells():
    g = torch.Generator().manual_seed(0)
    feats = l2_normalize(torch.randn(2, 6, 15, 15, generator=g), dim=1)
    templates = class_templates(feats)
    assert templates.shape == (2, 6, 5, 5)
    torch.testing.assert_close(templates.norm(dim=1), torch.ones(2, 5, 5))
    # a scene that is the class feature map itself, at the anchor scale: the coarse score at its centre
    scene = torch.zeros(1, 6, 25, 25)
    scene[0, :, 5:20, 5:20] = feats[0]
    score = coarse_scores(scene, templates)
    assert score.shape == (2, 25, 25)
    assert int(score[0].argmax()) == 12 * 25 + 12 and float(score[0, 12, 12]) > 0.99
