"""Tests of the fast mode (os2d.inference.cascade): without cut-offs it is exact mode; its last stage
gives the exact head's outputs; every class keeps its own candidates; the coarse score is the identity
score on a coarser grid."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from os2d import Detector
from os2d.cli.detect import example_files
from os2d.inference.cascade import (cascade_candidates, class_templates, coarse_scores, pooled_scene, probe_ranking,
                                    transform_dtype)
from os2d.ops.features import l2_normalize

FP32 = {"precision": "float32", "backbone_precision": "float32"}
NO_CUTS = {"candidates": 100000, "max_windows": 10_000_000, "radius": 0, "candidate_nms": 1.0, **FP32}


@pytest.fixture(scope="module")
def setup():
    scenes, classes = example_files()
    det = Detector.load("default", score_threshold=float("-inf"), max_detections=40, scales=[480, 640],
                        scores="raw", one_label=False)
    return det, scenes[0], det.prepare_classes(classes)


def _real_among_noise(det, scene, *, big_cascade: dict, seed: int, top: int) -> None:
    """The real classes' best ``top`` fast detections among 20 noise classes equal those without them."""
    rng = np.random.default_rng(seed)
    noise = {f"noise{i}": rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for i in range(20)}
    _, real = example_files()
    fast = det.with_settings(method="fast", cascade=FP32)
    big_det = det.with_settings(method="fast", cascade={**big_cascade, **FP32})
    small = fast.detect(scene, fast.prepare_classes(real))
    big = big_det.detect(scene, big_det.prepare_classes({**noise, **real}))
    for name in real:
        mine = small.scores[[n == name for n in small.names]]
        theirs = big.scores[[n == name for n in big.names]]
        torch.testing.assert_close(theirs[:top], mine[:top], rtol=0, atol=1e-5)


def test_without_cut_offs_fast_equals_exact(setup):
    det, scene, bank = setup
    exact = det.detect(scene, bank)
    fast = det.with_settings(method="fast", cascade=NO_CUTS).detect(scene, bank)
    assert fast.labels.tolist() == exact.labels.tolist()
    torch.testing.assert_close(fast.scores, exact.scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast.boxes, exact.boxes, rtol=0, atol=1e-2)


@pytest.mark.parametrize("dense_locations", [10_000_000, 800])
def test_dense_small_levels_are_exact_mode_there(setup, dense_locations):
    """Levels of at most ``dense_locations`` cells get the dense head: every level (one candidate
    elsewhere is then irrelevant), or only the 480 px level (~660 cells) next to uncut windows."""
    det, scene, bank = setup
    exact = det.detect(scene, bank)
    cuts = {"candidates": 1} if dense_locations > 10**6 else NO_CUTS
    fast = det.with_settings(method="fast", cascade={**cuts, **FP32, "dense_locations": dense_locations})
    assert sum(fast.scene(scene).features(lv).shape[-2:].numel() <= dense_locations for lv in range(2)) == \
        (2 if dense_locations > 10**6 else 1)
    got = fast.detect(scene, bank)
    assert got.labels.tolist() == exact.labels.tolist()
    torch.testing.assert_close(got.scores, exact.scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.boxes, exact.boxes, rtol=0, atol=1e-2)


def test_last_stage_outputs_are_the_exact_head_outputs(setup):
    """Every fast candidate carries the dense head's score at its level and location."""
    det, scene_path, bank = setup
    fast = det.with_settings(method="fast", cascade={"candidates": 4, "radius": 1, **FP32})
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
    _real_among_noise(det, scene, big_cascade={}, seed=0, top=3)


def test_max_windows_bounds_the_candidates(setup):
    """Two entries, room for one: both are probed (one location each), only the better one gets its
    candidates."""
    det, scene_path, bank = setup
    fast = det.with_settings(method="fast", nms_iou=1.0, cascade={"candidates": 50, "max_windows": 50, "radius": 0,
                                                                   "candidate_nms": 1.0, **FP32})
    scene = fast.scene(scene_path)
    cands = cascade_candidates(fast, scene, bank)
    _, order = probe_ranking(fast, scene, bank, fast.settings.cascade, stride=16, anchor=fast.model.head.anchor_size)
    counts = torch.bincount(cands.entries, minlength=2)
    assert int(counts[order[1]]) == 1 and 1 < int(counts[order[0]]) <= 50 + 1  # + its probe


def test_probe_ranks_entries_by_their_margin_above_the_background_tail(setup):
    det, scene_path, bank = setup
    fast = det.with_settings(method="fast", cascade=FP32)
    scene = fast.scene(scene_path)
    probed, order = probe_ranking(fast, scene, bank, fast.settings.cascade, stride=16,
                                  anchor=fast.model.head.anchor_size)
    assert sorted(probed.entries.tolist()) == [0, 1]  # one probe each (threshold -inf)
    margin = probed.scores - bank.extras["calibration"][probed.entries, 1]
    assert order.tolist() == probed.entries[torch.argsort(margin, descending=True)].tolist()


def test_real_classes_keep_their_best_detection_in_a_catalog_too_big_for_the_budget(setup):
    """22 entries, room for 2: the probe puts the real classes first, so their best detections stay."""
    det, scene, _ = setup
    _real_among_noise(det, scene, big_cascade={"max_windows": 32}, seed=1, top=1)


def test_bfloat16_transform_stays_close_to_float32(setup):
    det, scene_path, bank = setup
    scene = det.scene(scene_path)
    fm = scene.features(0)
    centers = torch.tensor([[0, 5, 5], [1, 8, 12], [0, 10, 3]])
    one = det.model.head.at_locations(fm, bank.features, centers, radius=1)
    low = det.model.head.at_locations(fm, bank.features, centers, radius=1, transform_dtype=torch.bfloat16)
    assert low.scores.dtype == torch.float32 and torch.equal(low.index, one.index)
    torch.testing.assert_close(low.scores, one.scores, rtol=0, atol=0.02)
    torch.testing.assert_close(low.boxes, one.boxes, rtol=0, atol=8.0)


def test_precision_setting_resolves_to_a_dtype():
    cpu = torch.device("cpu")
    assert transform_dtype("float32", cpu) == torch.float32
    assert transform_dtype("bfloat16", cpu) == torch.bfloat16
    native = any(getattr(torch.cpu, name, lambda: False)() for name in ("_is_amx_tile_supported",
                                                                        "_is_avx512_bf16_supported"))
    assert transform_dtype("auto", cpu) == (torch.bfloat16 if native else torch.float32)


def test_bfloat16_scene_backbone_stays_close_to_float32(setup):
    """Fast mode's ``backbone_precision``: float32 features close to the float32 backbone's; exact
    mode always runs the backbone in float32 (same features whatever the setting)."""
    det, scene_path, _ = setup
    ref = det.scene(scene_path).features(0)
    low = det.with_settings(method="fast", cascade={"backbone_precision": "bfloat16"}).scene(scene_path).features(0)
    assert low.dtype == torch.float32 and low.shape == ref.shape
    cosine = (low * ref).sum(dim=1)  # both L2-normalised over channels
    # [1, H, W]
    assert cosine.min() > 0.97 and cosine.mean() > 0.99
    same = det.with_settings(cascade={"backbone_precision": "bfloat16"}).scene(scene_path).features(0)
    assert torch.equal(same, ref)


def test_coarse_score_is_the_mean_cosine_over_the_template_cells():
    g = torch.Generator().manual_seed(0)
    feats = l2_normalize(torch.randn(2, 6, 15, 15, generator=g), dim=1)
    templates = class_templates(feats)
    assert templates.shape == (2, 6, 5, 5)
    torch.testing.assert_close(templates.norm(dim=1), torch.ones(2, 5, 5))
    # a scene that is the class feature map itself, at the anchor scale: the coarse score at its centre
    scene = torch.zeros(1, 6, 25, 25)
    scene[0, :, 5:20, 5:20] = feats[0]
    score = coarse_scores(pooled_scene(scene), templates)
    assert score.shape == (2, 25, 25)
    assert int(score[0].argmax()) == 12 * 25 + 12 and float(score[0, 12, 12]) > 0.99


def test_coarse_score_leaves_the_template_ring_out():
    g = torch.Generator().manual_seed(1)
    templates = class_templates(l2_normalize(torch.randn(2, 6, 15, 15, generator=g), dim=1))
    pooled = pooled_scene(l2_normalize(torch.randn(1, 6, 20, 24, generator=g), dim=1))
    ringless = templates.clone()
    ringless[..., 0, :] = ringless[..., -1, :] = 0
    ringless[..., :, 0] = ringless[..., :, -1] = 0
    torch.testing.assert_close(coarse_scores(pooled, ringless), coarse_scores(pooled, templates))
    # the known answer: the mean of the 9 inner cells' cosines at one location
    row, col = 10, 12
    want = sum(float(templates[0, :, 2 + i, 2 + j] @ pooled[0, :, row + 3 * i, col + 3 * j])
               for i in (-1, 0, 1) for j in (-1, 0, 1)) / 9
    assert abs(float(coarse_scores(pooled, templates)[0, row, col]) - want) < 1e-5
