"""The OS2D training objective (paper, section 4, eqs. (1)-(6); appendix B.2).

Shape glossary (see ``docs/conventions.md``): B scene images, K classes in the class batch,
N anchors (= H*W feature-map locations, row-major). Recognition labels use
``1`` positive / ``0`` negative / ``-1`` ignore (see :mod:`os2d.train.targets`).

Hinge losses with margins (eq. (1)), scores ``s`` in ``[-1, 1]``::

    l_pos(s) = max(m_pos - s, 0)        l_neg(s) = max(s - m_neg, 0)

Defaults ``m_pos = 0.6``, ``m_neg = 0.5`` are the ones of appendix B.2. (The paper's first,
contrastive formulation used ``m_pos = 1``, i.e. a never-active positive margin; pass
``pos_margin=1.0`` to get it.)

Normalisation choices (all documented on the functions):

* contrastive loss (eq. (3)) and localization loss (eq. (4)) are divided by the number of
  positives in the whole batch (``max(num_pos, 1)``); hard negatives are mined jointly over the
  whole batch (all images and classes together), 3 negatives per positive;
* ranked list loss (eqs. (5)-(6)): the positive term is divided by the number of *active*
  positives in the batch; the negative weights sum to 1 within each image-class pair and the
  per-pair weighted losses are averaged over the pairs that have at least one active negative.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from os2d.errors import InvalidInputError
from os2d.train.targets import AnchorTargets

__all__ = [
    "LossOutput",
    "smooth_l1",
    "localization_loss",
    "contrastive_loss",
    "ranked_list_loss",
    "os2d_loss",
    "LOSS_KINDS",
]

LOSS_KINDS = ("contrastive", "rll")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _check_scores_labels(scores: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Validate ``scores``/``labels`` (both ``Tensor[B, K, N]``); return ``pos``, ``neg`` masks and labels."""
    if scores.dim() != 3:
        raise InvalidInputError(f"scores must be Tensor[B, K, N], got shape {tuple(scores.shape)}")
    if labels.shape != scores.shape:
        raise InvalidInputError(f"labels must have the shape of scores {tuple(scores.shape)}, "
                         f"got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise InvalidInputError(f"labels must be an integer tensor with values 1/0/-1, got dtype {labels.dtype}")
    labels = labels.to(scores.device)
    return labels == 1, labels == 0, labels


def _check_margins(pos_margin: float, neg_margin: float) -> None:
    for name, value in (("pos_margin", pos_margin), ("neg_margin", neg_margin)):
        if not math.isfinite(float(value)):
            raise InvalidInputError(f"{name} must be finite, got {value}")


# --------------------------------------------------------------------------------------------
# localization
# --------------------------------------------------------------------------------------------
def smooth_l1(x: Tensor, y: Tensor, beta: float = 1.0, dim: int = -1) -> Tensor:
    """Smoothed L1 distance of eq. (2), summed over the coordinate dimension ``dim``.

    Per coordinate ``d = x_c - y_c``: ``0.5 * d**2 / beta`` if ``|d| < beta`` else
    ``|d| - 0.5 * beta`` (``beta = 1`` is eq. (2); ``beta = 0`` is plain L1).

    Args:
        x, y: ``Tensor[..., 4, ...]`` output and target encodings (same shape).
        beta: transition point between the quadratic and the linear part.
        dim: the coordinate dimension that is summed out (``-1`` for ``[..., 4]``; ``2`` for
            ``[B, K, 4, N]``).

    Returns:
        ``x`` 's shape without ``dim``.
    """
    if x.shape != y.shape:
        raise InvalidInputError(f"smooth_l1 needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    if beta < 0:
        raise InvalidInputError(f"beta must be >= 0, got {beta}")
    return F.smooth_l1_loss(x, y.to(x.dtype), reduction="none", beta=beta).sum(dim)


def localization_loss(
    loc_pred: Tensor,
    loc_targets: Tensor,
    loc_mask: Tensor,
    num_pos: Optional[Union[int, Tensor]] = None,
    *,
    beta: float = 1.0,
) -> Tensor:
    """Localization loss of eq. (4): smoothed L1 over the positive anchors, divided by ``num_pos``.

    Args:
        loc_pred: ``Tensor[B, K, 4, N]`` predicted box encodings.
        loc_targets: ``Tensor[B, K, 4, N]`` target encodings (only read where ``loc_mask`` is set,
            so garbage elsewhere does not leak into the loss or its gradient).
        loc_mask: ``Tensor[B, K, N]`` bool, the anchors with a localization target.
        num_pos: normaliser; defaults to ``loc_mask.sum()``. ``max(num_pos, 1)`` is used.
        beta: smooth-L1 transition point.

    Returns:
        ``Tensor[]``. With no positive anchor it is an exact 0 that is still attached to the
        graph of ``loc_pred`` (backward gives zero gradients).
    """
    if loc_pred.dim() != 4 or loc_pred.shape[2] != 4:
        raise InvalidInputError(f"loc_pred must be Tensor[B, K, 4, N], got shape {tuple(loc_pred.shape)}")
    if loc_targets.shape != loc_pred.shape:
        raise InvalidInputError(f"loc_targets must have the shape of loc_pred {tuple(loc_pred.shape)}, "
                         f"got {tuple(loc_targets.shape)}")
    b, k, _, n = loc_pred.shape
    if loc_mask.shape != (b, k, n):
        raise InvalidInputError(f"loc_mask must be Tensor[B, K, N] = {(b, k, n)}, got {tuple(loc_mask.shape)}")
    mask = loc_mask.to(device=loc_pred.device, dtype=torch.bool)
    pred = loc_pred.transpose(2, 3)[mask]  # [P, 4]
    target = loc_targets.to(loc_pred.device).transpose(2, 3)[mask]  # [P, 4]
    total = smooth_l1(pred, target, beta=beta).sum()  # []
    if num_pos is None:
        num_pos = pred.shape[0]
    denom = torch.as_tensor(num_pos, device=loc_pred.device).to(total.dtype).clamp(min=1.0)
    return total / denom


# --------------------------------------------------------------------------------------------
# recognition
# --------------------------------------------------------------------------------------------
def contrastive_loss(
    scores: Tensor,
    labels: Tensor,
    *,
    pos_margin: float = 0.6,
    neg_margin: float = 0.5,
    neg_to_pos_ratio: Optional[float] = 3,
    hard_neg_min: int = 0,
) -> Tuple[Tensor, Dict[str, Any]]:
    """Contrastive recognition loss of eq. (3) with hard-negative mining.

    ``L = (sum_{pos} max(m_pos - s, 0)^2 + sum_{hard neg} max(s - m_neg, 0)^2) / max(num_pos, 1)``.

    Hard-negative mining (Faster R-CNN style, 1:3): among all negatives (label 0) of the *whole
    batch* -- all images and all classes jointly, as the reference implementation does -- only the
    ``ceil(neg_to_pos_ratio * num_pos)`` highest-scoring ones are kept (at least ``hard_neg_min``,
    at most all of them). With the default ``hard_neg_min=0`` a batch without positives has a zero
    loss. ``neg_to_pos_ratio=None`` keeps all negatives. Mining uses detached scores; ties are
    broken arbitrarily (irrelevant for the loss value, as tied negatives have equal losses).

    Args:
        scores: ``Tensor[B, K, N]`` recognition scores.
        labels: ``Tensor[B, K, N]`` int (int8) 1 / 0 / -1; -1 entries are ignored.

    Returns:
        ``(loss Tensor[], extras)``; extras: ``num_pos`` (int), ``num_neg`` (int, all negatives),
        ``num_hard_neg`` (int, kept negatives), ``loss_pos`` / ``loss_neg`` (detached normalised
        parts) and ``hard_neg_mask`` (``Tensor[B, K, N]`` bool).
    """
    pos, neg, _ = _check_scores_labels(scores, labels)
    _check_margins(pos_margin, neg_margin)
    if neg_to_pos_ratio is not None and neg_to_pos_ratio < 0:
        raise InvalidInputError(f"neg_to_pos_ratio must be >= 0 or None, got {neg_to_pos_ratio}")
    if hard_neg_min < 0:
        raise InvalidInputError(f"hard_neg_min must be >= 0, got {hard_neg_min}")

    num_pos = int(pos.sum())
    num_neg = int(neg.sum())
    if neg_to_pos_ratio is None:
        num_keep = num_neg
    else:
        num_keep = min(num_neg, max(int(math.ceil(neg_to_pos_ratio * num_pos)), int(hard_neg_min)))

    flat_scores = scores.reshape(-1)  # [B*K*N]
    search = torch.where(neg.reshape(-1), flat_scores.detach(),
                         torch.full_like(flat_scores, -math.inf))  # [B*K*N]
    hard_idx = torch.topk(search, num_keep, sorted=False).indices  # [num_keep]
    hard_neg_mask = torch.zeros_like(neg).reshape(-1)
    hard_neg_mask[hard_idx] = True
    hard_neg_mask = hard_neg_mask.view_as(neg)  # [B, K, N]

    pos_part = (pos_margin - scores[pos]).clamp(min=0).pow(2).sum()  # []
    neg_part = (flat_scores[hard_idx] - neg_margin).clamp(min=0).pow(2).sum()  # []
    denom = float(max(num_pos, 1))
    loss = (pos_part + neg_part) / denom
    extras = {
        "num_pos": num_pos,
        "num_neg": num_neg,
        "num_hard_neg": int(num_keep),
        "loss_pos": (pos_part / denom).detach(),
        "loss_neg": (neg_part / denom).detach(),
        "hard_neg_mask": hard_neg_mask,
    }
    return loss, extras


def ranked_list_loss(
    scores: Tensor,
    labels: Tensor,
    *,
    pos_margin: float = 0.6,
    neg_margin: float = 0.5,
    max_weight_ratio: float = 1e3,
) -> Tuple[Tensor, Dict[str, Any]]:
    """Ranked list loss with adaptive temperature, eqs. (5)-(6).

    ``L = sum_{pos} l_pos(s_i) / n~pos + mean_{active pairs p} sum_{neg i in p} w_i l_neg(s_i)``.

    * Positives: ``n~pos`` is the number of *active* positives (``l_pos > 0``) in the whole batch
      (``max(., 1)``); positives beyond the margin contribute nothing.
    * Negatives: within each image-class pair ``(b, k)``, active negatives (``l_neg > 0``) get
      weights ``w_i ∝ exp(T * l_neg(s_i))`` normalised to sum to 1 over the pair; inactive
      negatives get 0. The temperature is chosen per pair, ``T = ln(max_weight_ratio) / l_max``,
      so the highest-loss negative weighs ``max_weight_ratio`` times a negative exactly at the
      margin (``l_neg = 0``). Weights are computed under ``no_grad``: the gradient w.r.t. the score
      of an active negative is exactly ``w_i / num_active_pairs``.
    * Eq. (5) sums the per-pair terms; we average them over the pairs with at least one active
      negative (``num_active_pairs``) so the negative term does not grow with B*K (the reference
      implementation likewise averages over classes). No hard-negative mining is applied.

    Args:
        scores: ``Tensor[B, K, N]`` recognition scores.
        labels: ``Tensor[B, K, N]`` int (int8) 1 / 0 / -1; -1 entries are ignored.
        max_weight_ratio: ratio (>= 1) between the weights of the highest-loss negative and a
            negative at the margin (paper: 1e3; 1 gives uniform weights over active negatives).

    Returns:
        ``(loss Tensor[], extras)``; extras: ``num_pos``, ``num_active_pos``, ``num_neg``,
        ``num_active_neg``, ``num_active_pairs`` (ints), ``loss_pos`` / ``loss_neg`` (detached),
        ``neg_weights`` (``Tensor[B, K, N]``, detached, sum to 1 over each active pair) and
        ``temperature`` (``Tensor[B, K]``, 0 for pairs without active negatives).
    """
    pos, neg, _ = _check_scores_labels(scores, labels)
    _check_margins(pos_margin, neg_margin)
    if not (max_weight_ratio >= 1.0 and math.isfinite(max_weight_ratio)):
        raise InvalidInputError(f"max_weight_ratio must be a finite number >= 1, got {max_weight_ratio}")

    zeros = torch.zeros_like(scores)
    loss_pos_el = torch.where(pos, (pos_margin - scores).clamp(min=0), zeros)  # [B, K, N]
    loss_neg_el = torch.where(neg, (scores - neg_margin).clamp(min=0), zeros)  # [B, K, N]
    active_pos = pos & (loss_pos_el > 0)  # [B, K, N]
    active_neg = neg & (loss_neg_el > 0)  # [B, K, N]
    num_active_pos = int(active_pos.sum())

    log_ratio = math.log(max_weight_ratio)
    with torch.no_grad():
        l_neg = loss_neg_el.detach()  # [B, K, N]
        l_max = l_neg.amax(dim=2, keepdim=True)  # [B, K, 1]
        pair_active = l_max > 0  # [B, K, 1]
        safe_max = torch.where(pair_active, l_max, torch.ones_like(l_max))
        # exp(T * l) / exp(T * l_max) with T = log_ratio / l_max, written without T to stay finite
        weights = torch.exp(log_ratio * (l_neg / safe_max - 1.0))  # [B, K, N]
        weights = torch.where(active_neg, weights, torch.zeros_like(weights))
        norm = weights.sum(dim=2, keepdim=True)  # [B, K, 1]
        weights = weights / torch.where(norm > 0, norm, torch.ones_like(norm))  # [B, K, N]
        temperature = torch.where(pair_active, log_ratio / safe_max, torch.zeros_like(l_max))  # [B, K, 1]
        temperature = temperature.squeeze(2)  # [B, K]
    num_active_pairs = int(pair_active.sum())

    pos_part = loss_pos_el.sum() / float(max(num_active_pos, 1))  # []
    neg_part = (weights * loss_neg_el).sum() / float(max(num_active_pairs, 1))  # []
    loss = pos_part + neg_part
    extras = {
        "num_pos": int(pos.sum()),
        "num_active_pos": num_active_pos,
        "num_neg": int(neg.sum()),
        "num_active_neg": int(active_neg.sum()),
        "num_active_pairs": num_active_pairs,
        "loss_pos": pos_part.detach(),
        "loss_neg": neg_part.detach(),
        "neg_weights": weights,
        "temperature": temperature,
    }
    return loss, extras


# --------------------------------------------------------------------------------------------
# full objective
# --------------------------------------------------------------------------------------------
@dataclass
class LossOutput:
    """Result of :func:`os2d_loss`.

    Attributes:
        total: ``Tensor[]`` ``recognition + loc_weight * localization`` (backprop this).
        recognition: ``Tensor[]`` recognition loss (contrastive or RLL).
        localization: ``Tensor[]`` localization loss (eq. (4)), before ``loc_weight``.
        num_pos: number of recognition positives in the batch.
        extras: diagnostics of the recognition loss plus ``num_loc_pos`` and ``kind``.
    """

    total: Tensor
    recognition: Tensor
    localization: Tensor
    num_pos: int
    extras: Dict[str, Any] = field(default_factory=dict)

    def as_floats(self) -> Dict[str, float]:
        """Scalar summary for logging: total/recognition/localization/num_pos and scalar extras."""
        out = {
            "total": float(self.total.detach()),
            "recognition": float(self.recognition.detach()),
            "localization": float(self.localization.detach()),
            "num_pos": float(self.num_pos),
        }
        for key, value in self.extras.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = float(value)
            elif isinstance(value, Tensor) and value.dim() == 0:
                out[key] = float(value)
        return out


def os2d_loss(
    scores: Tensor,
    loc_pred: Optional[Tensor],
    targets: AnchorTargets,
    *,
    recognition_labels: Optional[Tensor] = None,
    scores_for_negatives: Optional[Tensor] = None,
    kind: str = "contrastive",
    loc_weight: float = 0.2,
    pos_margin: float = 0.6,
    neg_margin: float = 0.5,
    neg_to_pos_ratio: Optional[float] = 3,
    hard_neg_min: int = 0,
    max_weight_ratio: float = 1e3,
    loc_beta: float = 1.0,
) -> LossOutput:
    """The OS2D objective: ``recognition + loc_weight * localization``.

    Args:
        scores: ``Tensor[B, K, N]`` recognition scores.
        loc_pred: ``Tensor[B, K, 4, N]`` predicted box encodings w.r.t. the anchors, or ``None``
            (localization loss is then 0, e.g. V2 fine-tuning with ``loc_weight=0``).
        targets: batched :class:`~os2d.train.targets.AnchorTargets` (``[B, K, ...]``); its
            ``loc_targets`` / ``loc_mask`` drive the localization loss (normalised by the number of
            localization positives) and its ``labels`` the recognition loss unless
            ``recognition_labels`` is given.
        recognition_labels: ``Tensor[B, K, N]`` int8, e.g. remapped targets
            (:func:`~os2d.train.targets.remap_recognition_targets_batch`).
        scores_for_negatives: ``Tensor[B, K, N]`` optional scores used at non-positive entries
            (appendix B.2: computed with TransformNet detached, so it is trained on positives only).
        kind: ``"contrastive"`` (eq. (3), with hard-negative mining) or ``"rll"`` (eqs. (5)-(6)).
        loc_weight: weight of the localization loss (paper: 0.2 for V1, 0 for V2).
        pos_margin, neg_margin, neg_to_pos_ratio, hard_neg_min, max_weight_ratio: see
            :func:`contrastive_loss` / :func:`ranked_list_loss`.
        loc_beta: smooth-L1 transition point.

    Raises:
        ValueError: unknown ``kind`` or inconsistent shapes.
    """
    kind_norm = str(kind).lower()
    if kind_norm not in LOSS_KINDS:
        raise InvalidInputError(f"unknown loss kind {kind!r}; expected one of {', '.join(LOSS_KINDS)}")
    labels = targets.labels if recognition_labels is None else recognition_labels
    pos, _, labels = _check_scores_labels(scores, labels)

    if scores_for_negatives is not None:
        if scores_for_negatives.shape != scores.shape:
            raise InvalidInputError(f"scores_for_negatives must have the shape of scores {tuple(scores.shape)}, "
                             f"got {tuple(scores_for_negatives.shape)}")
        scores = torch.where(pos, scores, scores_for_negatives)  # [B, K, N]

    if kind_norm == "contrastive":
        recognition, extras = contrastive_loss(
            scores, labels, pos_margin=pos_margin, neg_margin=neg_margin,
            neg_to_pos_ratio=neg_to_pos_ratio, hard_neg_min=hard_neg_min)
    else:
        recognition, extras = ranked_list_loss(
            scores, labels, pos_margin=pos_margin, neg_margin=neg_margin, max_weight_ratio=max_weight_ratio)

    if loc_pred is None:
        localization = scores.new_zeros(())
        num_loc_pos = int(targets.loc_mask.sum())
    else:
        if loc_pred.shape[:2] != scores.shape[:2] or loc_pred.shape[3:] != scores.shape[2:]:
            raise InvalidInputError(f"loc_pred must be Tensor[B, K, 4, N] matching scores {tuple(scores.shape)}, "
                             f"got {tuple(loc_pred.shape)}")
        num_loc_pos = int(targets.loc_mask.sum())
        localization = localization_loss(loc_pred, targets.loc_targets, targets.loc_mask, num_loc_pos,
                                         beta=loc_beta)
    total = recognition + loc_weight * localization
    extras = dict(extras, num_loc_pos=num_loc_pos, kind=kind_norm)
    return LossOutput(total=total, recognition=recognition, localization=localization,
                      num_pos=int(extras["num_pos"]), extras=extras)
