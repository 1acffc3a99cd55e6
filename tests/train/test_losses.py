"""Tests of os2d.train.losses: known answers, gradients, hard-negative mining, RLL weights."""
from __future__ import annotations

import math

import pytest
import torch

from os2d.train.losses import (
    LossOutput,
    contrastive_loss,
    localization_loss,
    os2d_loss,
    ranked_list_loss,
    smooth_l1,
)
from os2d.train.targets import AnchorTargets, assign_targets_batch


def _labels(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int8).view(1, 1, -1)


def _scores(*values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).view(1, 1, -1).requires_grad_(True)


# ------------------------------------------------------------------------------------------ smooth L1
def test_smooth_l1_known_answer():
    x = torch.tensor([0.5, 2.0, -3.0, 0.0])
    assert smooth_l1(x, torch.zeros(4)).item() == pytest.approx(0.125 + 1.5 + 2.5)
    assert smooth_l1(x, torch.zeros(4), beta=2.0).item() == pytest.approx(0.0625 + 1.0 + 2.0)
    xb = x.view(1, 1, 4, 1).expand(2, 3, 4, 5)  # [B, K, 4, N]: sum over dim 2
    out = smooth_l1(xb, torch.zeros_like(xb), dim=2)
    assert out.shape == (2, 3, 5)
    torch.testing.assert_close(out, torch.full((2, 3, 5), 4.125))


def _loc_inputs(dtype=torch.float32):
    loc_pred = torch.zeros(1, 2, 4, 3, dtype=dtype, requires_grad=True)
    loc_targets = torch.full((1, 2, 4, 3), float("nan"), dtype=dtype)  # garbage off the mask
    loc_targets[0, 0, :, 0] = torch.tensor([0.5, 0.0, 0.0, 0.0])
    loc_targets[0, 1, :, 2] = torch.tensor([2.0, 0.0, 0.0, 0.0])
    loc_mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    loc_mask[0, 0, 0] = loc_mask[0, 1, 2] = True
    return loc_pred, loc_targets, loc_mask


def test_localization_loss_known_answer_and_gradient():
    loc_pred, loc_targets, loc_mask = _loc_inputs()
    loss = localization_loss(loc_pred, loc_targets, loc_mask)
    assert loss.shape == ()
    assert loss.item() == pytest.approx((0.125 + 1.5) / 2)
    loss.backward()
    expected = torch.zeros(1, 2, 4, 3)
    expected[0, 0, 0, 0] = -0.5 / 2  # d/dx 0.5 (x - 0.5)^2 at 0, / num_pos
    expected[0, 1, 0, 2] = -1.0 / 2  # linear part: -sign / num_pos
    torch.testing.assert_close(loc_pred.grad, expected)  # NaN targets off the mask do not leak
    assert localization_loss(loc_pred, loc_targets, loc_mask, num_pos=4).item() == pytest.approx(1.625 / 4)


def test_localization_loss_no_positives_is_grad_safe_zero():
    loc_pred, loc_targets, _ = _loc_inputs()
    loss = localization_loss(loc_pred, loc_targets, torch.zeros(1, 2, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(loc_pred.grad, torch.zeros_like(loc_pred))


def test_localization_loss_gradcheck_and_shape_errors():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 2, 4, 3, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 2, 3, generator=g) > 0.4
    assert torch.autograd.gradcheck(lambda p: localization_loss(p, target, mask), (pred,))
    with pytest.raises(ValueError, match="loc_mask"):
        localization_loss(pred, target, mask[0])


# ------------------------------------------------------------------------------------------ contrastive
def test_contrastive_known_answer_and_mining():
    # 1 positive, 5 negatives, 1 ignored; ratio 3 keeps the negatives at 0.9, 0.8, 0.7
    scores = _scores(0.2, 0.9, 0.8, 0.7, 0.6, 0.55, 0.95)
    labels = _labels(1, 0, 0, 0, 0, 0, -1)
    loss, extras = contrastive_loss(scores, labels)
    pos = 0.4 ** 2
    neg = 0.4 ** 2 + 0.3 ** 2 + 0.2 ** 2
    assert loss.item() == pytest.approx(pos + neg)
    assert extras["num_pos"] == 1 and extras["num_neg"] == 5 and extras["num_hard_neg"] == 3
    assert extras["hard_neg_mask"].view(-1).tolist() == [False, True, True, True, False, False, False]
    loss.backward()
    expected = torch.tensor([-2 * 0.4, 2 * 0.4, 2 * 0.3, 2 * 0.2, 0.0, 0.0, 0.0]).view(1, 1, -1)
    torch.testing.assert_close(scores.grad, expected)
    # no mining: all negatives
    loss_all, extras = contrastive_loss(scores, labels, neg_to_pos_ratio=None)
    assert loss_all.item() == pytest.approx(pos + neg + 0.1 ** 2 + 0.05 ** 2)
    assert extras["num_hard_neg"] == 5
    # margins are parameters (m_pos = 1 is the paper's "never active" variant)
    loss_m, _ = contrastive_loss(scores, labels, pos_margin=1.0, neg_margin=0.0)
    assert loss_m.item() == pytest.approx(0.8 ** 2 + 0.9 ** 2 + 0.8 ** 2 + 0.7 ** 2)


def test_contrastive_hard_negative_count_is_three_per_positive_over_the_batch():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(2, 3, 40, generator=g) * 1.8 - 1  # in [-1, 0.8)
    labels = torch.zeros(2, 3, 40, dtype=torch.int8)
    labels[0, 0, :3] = 1
    labels[1, 2, 5:9] = 1  # 7 positives in total
    labels[1, 1, 10:20] = -1
    # the 21 highest-scoring negatives all live in image 1, class 0: mining is batch-wide
    scores[1, 0, :25] = torch.linspace(0.99, 0.9, 25)
    loss, extras = contrastive_loss(scores, labels)
    mask = extras["hard_neg_mask"]
    assert extras["num_pos"] == 7 and extras["num_hard_neg"] == 21 and int(mask.sum()) == 21
    assert (labels[mask] == 0).all()
    assert mask[1, 0, :21].all() and int(mask[1, 0].sum()) == 21
    expected = ((0.6 - scores[labels == 1]).clamp(min=0) ** 2).sum() + ((scores[mask] - 0.5) ** 2).sum()
    assert loss.item() == pytest.approx(expected.item() / 7, rel=1e-6)
    # ratio 1:1
    _, extras = contrastive_loss(scores, labels, neg_to_pos_ratio=1)
    assert extras["num_hard_neg"] == 7


def test_contrastive_no_positives_and_all_ignored():
    scores = _scores(0.9, 0.8, 0.1)
    loss, extras = contrastive_loss(scores, _labels(0, 0, 0))
    assert loss.item() == 0.0 and extras["num_hard_neg"] == 0
    loss.backward()
    assert torch.equal(scores.grad, torch.zeros_like(scores))
    # hard_neg_min keeps some negatives even without positives (normalised by max(num_pos, 1) = 1)
    loss, extras = contrastive_loss(scores, _labels(0, 0, 0), hard_neg_min=2)
    assert extras["num_hard_neg"] == 2 and loss.item() == pytest.approx(0.4 ** 2 + 0.3 ** 2)
    scores = _scores(0.9, -0.8, 0.1)
    loss, _ = contrastive_loss(scores, _labels(-1, -1, -1))
    assert loss.item() == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert torch.equal(scores.grad, torch.zeros_like(scores))


def test_contrastive_gradcheck():
    g = torch.Generator().manual_seed(3)
    scores = (torch.rand(2, 2, 10, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    labels = torch.randint(-1, 2, (2, 2, 10), generator=g).to(torch.int8)
    labels[0, 0, 0] = 1
    assert torch.autograd.gradcheck(lambda s: contrastive_loss(s, labels)[0], (scores,))


# ------------------------------------------------------------------------------------------ RLL
def test_rll_known_answer():
    # positives: losses 0.4, 0.1, 0 (inactive) -> 0.5 / 2 active
    # negatives: losses 0.4, 0.2, 0 (inactive); one ignored entry
    scores = _scores(0.2, 0.5, 0.7, 0.9, 0.7, 0.3, 0.99, dtype=torch.float64)
    labels = _labels(1, 1, 1, 0, 0, 0, -1)
    loss, extras = ranked_list_loss(scores, labels)
    r = 1.0 / math.sqrt(1000.0)  # exp(T * 0.2) / exp(T * 0.4) with T = ln(1000) / 0.4
    w1, w2 = 1.0 / (1.0 + r), r / (1.0 + r)
    assert loss.item() == pytest.approx(0.5 / 2 + w1 * 0.4 + w2 * 0.2, rel=1e-12)
    assert extras["num_pos"] == 3 and extras["num_active_pos"] == 2
    assert extras["num_neg"] == 3 and extras["num_active_neg"] == 2 and extras["num_active_pairs"] == 1
    weights = extras["neg_weights"].view(-1)
    torch.testing.assert_close(weights, torch.tensor([0, 0, 0, w1, w2, 0, 0], dtype=torch.float64))
    assert extras["temperature"].item() == pytest.approx(math.log(1000.0) / 0.4)
    # the highest-loss negative weighs 1e3 x a negative at the margin: w ∝ exp(T l)
    t = extras["temperature"].item()
    assert math.exp(t * 0.4) / math.exp(t * 0.0) == pytest.approx(1e3)
    assert (weights[3] / weights[4]).item() == pytest.approx(math.sqrt(1000.0))
    # a uniform weighting for max_weight_ratio = 1
    loss1, extras1 = ranked_list_loss(scores, labels, max_weight_ratio=1.0)
    assert loss1.item() == pytest.approx(0.25 + 0.3)


def test_rll_gradient_uses_detached_weights():
    g = torch.Generator().manual_seed(1)
    scores = (torch.rand(2, 2, 12, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    labels = torch.randint(-1, 2, (2, 2, 12), generator=g).to(torch.int8)
    labels[:, 0, 0] = 0
    labels[:, 1] = -1  # class 1 is ignored in both images
    labels[0, 0, 1] = 1
    with torch.no_grad():
        scores[:, 0, 0] = 0.95  # every class-0 pair has an active negative
        scores[0, 0, 1] = 0.1
    loss, extras = ranked_list_loss(scores, labels)
    loss.backward()
    n_pairs = extras["num_active_pairs"]
    assert n_pairs == 2
    neg = labels == 0
    active_neg = neg & (scores.detach() > 0.5)
    weights = extras["neg_weights"]
    assert not weights.requires_grad
    # d loss / d s_i = w_i * (hinge derivative 1) / num_active_pairs, exactly
    assert torch.equal(scores.grad[active_neg], weights[active_neg] / n_pairs)
    assert (scores.grad[neg & ~active_neg] == 0).all()
    assert (scores.grad[labels == -1] == 0).all()
    active_pos = (labels == 1) & (scores.detach() < 0.6)
    torch.testing.assert_close(scores.grad[active_pos],
                               torch.full((int(active_pos.sum()),), -1.0 / extras["num_active_pos"],
                                          dtype=torch.float64))
    # weights sum to one within every image-class pair with active negatives, 0 elsewhere
    sums = weights.sum(dim=2)
    torch.testing.assert_close(sums, torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64))


def test_rll_no_positives_and_all_ignored():
    scores = _scores(0.9, 0.8, 0.1)
    loss, extras = ranked_list_loss(scores, _labels(0, 0, 0))
    assert extras["num_pos"] == 0 and extras["num_active_pairs"] == 1
    r = math.exp(-math.log(1000.0) * 0.1 / 0.4)
    assert loss.item() == pytest.approx((0.4 + r * 0.3) / (1 + r), rel=1e-5)
    scores = _scores(0.9, -0.8, 0.1)
    loss, extras = ranked_list_loss(scores, _labels(-1, -1, -1))
    assert loss.item() == 0.0 and extras["num_active_pairs"] == 0
    loss.backward()
    assert torch.equal(scores.grad, torch.zeros_like(scores))
    # nothing active: zero loss, finite
    scores = _scores(0.9, -0.8, 0.1)
    loss, _ = ranked_list_loss(scores, _labels(1, 0, 0))
    assert loss.item() == 0.0


def test_rll_gradcheck_with_locally_constant_weights():
    # with max_weight_ratio = 1 the (detached) weights are 1 / #active per pair, locally constant,
    # so the analytic gradient equals the numerical one
    g = torch.Generator().manual_seed(5)
    scores = (torch.rand(2, 3, 8, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    labels = torch.randint(-1, 2, (2, 3, 8), generator=g).to(torch.int8)
    assert torch.autograd.gradcheck(lambda s: ranked_list_loss(s, labels, max_weight_ratio=1.0)[0], (scores,))


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_weight_ratio"):
        ranked_list_loss(_scores(0.1), _labels(0), max_weight_ratio=0.5)
    with pytest.raises(ValueError, match="labels"):
        contrastive_loss(_scores(0.1, 0.2), _labels(0))
    with pytest.raises(ValueError, match="scores"):
        contrastive_loss(torch.zeros(3), torch.zeros(3, dtype=torch.int8))


# ------------------------------------------------------------------------------------------ os2d_loss
def _batch():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], [0.0, 10.0, 10.0, 20.0]])
    targets = assign_targets_batch(anchors, [torch.tensor([[0.0, 0.0, 10.0, 10.0]])], [torch.tensor([1])],
                                   None, 2)  # [B=1, K=2, ...]; positive: class 1, anchor 0
    scores = torch.tensor([[[0.7, 0.1, 0.8], [0.2, 0.9, -0.5]]], requires_grad=True)
    loc_pred = torch.zeros(1, 2, 4, 3, requires_grad=True)
    loc_pred.data[0, 1, 0, 0] = 0.5
    return targets, scores, loc_pred


def test_os2d_loss_combines_terms():
    targets, scores, loc_pred = _batch()
    assert targets.labels.tolist() == [[[0, 0, 0], [1, 0, 0]]]
    out = os2d_loss(scores, loc_pred, targets, kind="contrastive")
    assert isinstance(out, LossOutput) and out.num_pos == 1
    # positive 0.2 -> 0.16; 3 hard negatives of 5: 0.9, 0.8, 0.7 -> 0.16 + 0.09 + 0.04
    assert out.recognition.item() == pytest.approx(0.16 + 0.29)
    assert out.localization.item() == pytest.approx(0.125)
    assert out.total.item() == pytest.approx(0.45 + 0.2 * 0.125)
    assert out.extras["kind"] == "contrastive" and out.extras["num_loc_pos"] == 1
    assert set(out.as_floats()) >= {"total", "recognition", "localization", "num_pos", "num_hard_neg"}
    out.total.backward()
    assert scores.grad is not None and loc_pred.grad[0, 1, 0, 0].item() == pytest.approx(0.2 * 0.5)

    out = os2d_loss(scores, loc_pred, targets, kind="RLL", loc_weight=0.0)
    rll, _ = ranked_list_loss(scores, targets.labels)
    assert out.total.item() == pytest.approx(rll.item()) and out.extras["kind"] == "rll"
    out = os2d_loss(scores, None, targets, kind="rll")
    assert out.localization.item() == 0.0


def test_os2d_loss_remapped_labels_and_negative_scores():
    targets, scores, loc_pred = _batch()
    remapped = torch.tensor([[[0, -1, 0], [-1, 1, 0]]], dtype=torch.int8)
    scores_neg = torch.zeros(1, 2, 3, requires_grad=True)
    with torch.no_grad():
        scores_neg += 0.9
    out = os2d_loss(scores, loc_pred, targets, recognition_labels=remapped, scores_for_negatives=scores_neg)
    # recognition uses the remapped labels (positive at class 1, anchor 1: score 0.9 -> no loss) and the
    # negative scores (all 0.9 -> 0.16 each, 3 kept); localization still uses targets.loc_mask
    assert out.num_pos == 1
    assert out.recognition.item() == pytest.approx(3 * 0.16)
    assert out.localization.item() == pytest.approx(0.125)
    out.recognition.backward()
    assert torch.equal(scores.grad, torch.zeros_like(scores))  # positive is beyond its margin
    assert int((scores_neg.grad != 0).sum()) == 3


def test_os2d_loss_unknown_kind():
    targets, scores, loc_pred = _batch()
    with pytest.raises(ValueError, match="'focal'"):
        os2d_loss(scores, loc_pred, targets, kind="focal")
    with pytest.raises(ValueError, match="loc_pred"):
        os2d_loss(scores, loc_pred[:, :1], targets)
    assert isinstance(targets, AnchorTargets)
