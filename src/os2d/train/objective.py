"""Wiring of the training objective: features (backbone modes), targets, remapping, loss.

``train_backbone``:

* ``none`` -- the backbone is frozen (TransformNet-only training): scene features are computed
  under ``torch.no_grad`` and class features are cached per class image;
* ``last_blocks`` -- only the last ``last_blocks`` stages of the backbone are trained; the frozen
  part runs under ``no_grad`` and its output is cached for class images;
* ``all`` -- everything is trained (batch norm stays frozen, ``Backbone.frozen_bn``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Hashable, List, Optional, Sequence

import torch
from torch import nn

from os2d.errors import InvalidInputError
from os2d.model.os2d import OS2DModel
from os2d.ops.boxes import encode_boxes, make_anchors
from os2d.train.batching import TrainBatch
from os2d.train.config import LossSection
from os2d.train.losses import LossOutput, os2d_loss
from os2d.train.targets import assign_targets_batch, remap_recognition_targets_batch

logger = logging.getLogger(__name__)


def _stages(backbone: nn.Module) -> Optional[List[nn.Module]]:
    """The sequential blocks whose last ones ``last_blocks`` trains (None: unknown backbone)."""
    if hasattr(backbone, "stages") and hasattr(backbone, "stem"):  # EfficientNet-Lite
        return list(backbone.stages)
    if all(hasattr(backbone, n) for n in ("layer1", "layer2", "layer3")):  # ResNet
        return [backbone.layer1, backbone.layer2, backbone.layer3]
    return None


class TrainFeatures:
    """Scene and class features of a model for training, honouring ``train_backbone``.

    Args:
        model: the model; its backbone parameters' ``requires_grad`` are set here.
        mode: ``none`` / ``last_blocks`` / ``all``.
        last_blocks: number of trailing backbone stages trained in ``last_blocks`` mode.
    """

    def __init__(self, model: OS2DModel, mode: str = "none", last_blocks: int = 1) -> None:
        self.model = model
        self.mode = mode
        self.cache: Dict[Hashable, torch.Tensor] = {}
        backbone = model.backbone
        for p in backbone.parameters():
            p.requires_grad_(mode == "all")
        self.suffix: List[nn.Module] = []
        if mode == "last_blocks":
            stages = _stages(backbone)
            if stages is None:
                raise InvalidInputError(f"train_backbone=last_blocks is not supported for {type(backbone).__name__}")
            if not 1 <= last_blocks <= len(stages):
                raise InvalidInputError(f"last_blocks={last_blocks} must be in 1..{len(stages)} for this backbone")
            self.suffix = stages[-last_blocks:]
            for module in self.suffix:
                for p in module.parameters():
                    p.requires_grad_(True)
        elif mode not in ("none", "all"):
            raise InvalidInputError(f"unknown train_backbone mode {mode!r}")

    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ backbone pieces
    def _prefix(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen part of the backbone (``last_blocks`` mode)."""
        b = self.model.backbone
        if hasattr(b, "stem"):
            x = b.stem(x)
        else:
            x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        for stage in (_stages(b) or [])[:-len(self.suffix)]:
            x = stage(x)
        return x

    def _suffix(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.suffix:
            x = stage(x)
        return x

    def raw_features(self, images: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, 3, Hi, Wi]`` -> backbone output ``Tensor[B, C, H, W]`` (not normalised)."""
        if self.mode == "all":
            return self.model.backbone(images)
        if self.mode == "none":
            with torch.no_grad():
                return self.model.backbone(images)
        with torch.no_grad():
            x = self._prefix(images)
        return self._suffix(x)

    # ------------------------------------------------------------------ public
    def scene_features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised scenes ``Tensor[B, 3, P, P]`` -> L2-normalised ``Tensor[B, C, H, W]`` (the model's
        :meth:`~os2d.model.os2d.OS2DModel.embed_scene` of the backbone parts this mode trains)."""
        return self.model.embed_scene(self.raw_features(images))

    def class_features(self, ids: Sequence[Hashable], images: Sequence[torch.Tensor]) -> torch.Tensor:
        """K class images -> ``Tensor[K, C, g, g]`` (resampled, L2-normalised); cached by id when frozen."""
        out = []
        for key, image in zip(ids, images):
            x = image.unsqueeze(0)
            if self.mode == "none":
                if key not in self.cache:
                    with torch.no_grad():
                        self.cache[key] = self.model.embed_class(self.model.backbone(x))
                out.append(self.cache[key])
                continue
            if self.mode == "last_blocks":
                if key not in self.cache:
                    with torch.no_grad():
                        self.cache[key] = self._prefix(x)
                fm = self._suffix(self.cache[key])
            else:
                fm = self.model.backbone(x)
            out.append(self.model.embed_class(fm))
        return torch.cat(out, 0)  # [K, C, g, g]

    def set_train_mode(self) -> None:
        """``model.train()`` (TransformNet batch norm in training mode, backbone BN frozen)."""
        self.model.train()
        if self.mode == "none":
            self.model.backbone.eval()


@dataclass
class BatchLoss:
    """The loss of a batch plus what the trainer logs."""

    loss: LossOutput
    patch_losses: Optional[List[float]] = None  # per patch (hard patch mining)

    def as_floats(self) -> Dict[str, float]:
        out = self.loss.as_floats()
        return {k: out[k] for k in ("total", "recognition", "localization", "num_pos") if k in out} | {
            "num_loc_pos": float(self.loss.extras.get("num_loc_pos", 0))}


def loss_kwargs(cfg: LossSection) -> dict:
    return dict(kind=cfg.kind, loc_weight=cfg.loc_weight, pos_margin=cfg.pos_margin, neg_margin=cfg.neg_margin,
                neg_to_pos_ratio=cfg.neg_to_pos_ratio, max_weight_ratio=cfg.max_weight_ratio)


def compute_batch_loss(features: TrainFeatures, batch: TrainBatch, cfg: LossSection, *,
                       device: torch.device = torch.device("cpu"), per_patch: bool = False) -> BatchLoss:
    """Forward one batch (``detached_scores=True``) and evaluate the OS2D objective.

    Localization targets come from the anchors (IoU ``>= anchor_pos_iou``); recognition targets
    from the output boxes (target remapping, ``remap_pos_iou`` / ``remap_neg_iou``) when
    ``cfg.remap``. Positives use ``scores``, negatives ``scores_detached`` (TransformNet is
    trained on positives only, appendix B.2).
    """
    model = features.model
    images = batch.images.to(device)
    scene_fm = features.scene_features(images)
    class_fm = features.class_features(batch.class_image_ids, [im.to(device) for im in batch.class_images])
    out = model.head(scene_fm, class_fm, detached_scores=True)  # the same head forward as inference
    b, k, height, width = out.scores.shape
    anchors = make_anchors(height, width, stride=model.backbone.stride, size=model.head.anchor_size,
                           dtype=out.boxes.dtype, device=device)
    gt_boxes = [g.to(device) for g in batch.gt_boxes]
    gt_labels = [g.to(device) for g in batch.gt_labels]
    gt_difficult = [g.to(device) for g in batch.gt_difficult]
    targets = assign_targets_batch(anchors, gt_boxes, gt_labels, gt_difficult, k,
                                   pos_iou=cfg.anchor_pos_iou, neg_iou=cfg.anchor_neg_iou)
    boxes = out.boxes.reshape(b, k, height * width, 4)
    # [B, K, N, 4]
    loc_pred = encode_boxes(boxes, anchors).permute(0, 1, 3, 2)
    # [B, K, 4, N]
    labels = None
    if cfg.remap:
        labels = remap_recognition_targets_batch(boxes.detach(), gt_boxes, gt_labels, gt_difficult, k,
                                                 pos_iou=cfg.remap_pos_iou, neg_iou=cfg.remap_neg_iou)
    scores = out.scores.reshape(b, k, height * width)
    # [B, K, N]
    detached = out.scores_detached.reshape(b, k, height * width)
    loss = os2d_loss(scores, loc_pred, targets, recognition_labels=labels, scores_for_negatives=detached,
                     **loss_kwargs(cfg))
    patch_losses = None
    if per_patch:
        with torch.no_grad():
            patch_losses = []
            for i in range(b):
                sub = _slice_targets(targets, i)
                li = os2d_loss(scores[i:i + 1].detach(), loc_pred[i:i + 1].detach(), sub,
                               recognition_labels=None if labels is None else labels[i:i + 1],
                               scores_for_negatives=detached[i:i + 1].detach(), **loss_kwargs(cfg))
                patch_losses.append(float(li.total))
    return BatchLoss(loss=loss, patch_losses=patch_losses)


def _slice_targets(targets, i: int):
    from os2d.train.targets import AnchorTargets

    return AnchorTargets(loc_targets=targets.loc_targets[i:i + 1], loc_mask=targets.loc_mask[i:i + 1],
                         labels=targets.labels[i:i + 1], matched_gt=targets.matched_gt[i:i + 1])
