"""``TrainConfig``: every training setting, read from YAML with ``--set key=value`` overrides.

The YAML mirrors the nested dataclasses below (``model``, ``data``, ``batch``, ``loss``,
``optim``, ``eval``, ``checkpoint`` sections plus a few top-level keys). Unknown keys are errors
that name the closest known key (``difflib.get_close_matches``).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml

from os2d.errors import InputNotFoundError, InvalidInputError

TRAIN_BACKBONE_MODES = ("none", "last_blocks", "all")
OPTIMIZERS = ("sgd", "adam")


@dataclass
class DatasetSpec:
    """One dataset: a folder / CSV / paper name (see ``resolve_dataset``), optional split.

    ``weight``: relative probability that a training patch comes from this dataset.
    ``max_images``: use only the first N scenes (after the split), e.g. for quick runs/tests.
    """

    path: str = ""
    split: Optional[str] = None
    weight: float = 1.0
    max_images: Optional[int] = None


@dataclass
class ModelSection:
    """The model to train: ``init`` is a built-in name (``untrained``) or a checkpoint folder."""

    init: str = "untrained"
    backbone: str = "efficientnet-lite0"
    variant: str = "v1"
    backbone_weights: Optional[str] = "package"  # see ModelConfig.backbone_weights
    seed: int = 0  # TransformNet initialisation (when init is 'untrained')


@dataclass
class DataSection:
    train: List[DatasetSpec] = field(default_factory=list)
    val: Optional[DatasetSpec] = None
    data_root: Optional[str] = None  # for paper dataset names / folder names under it


@dataclass
class BatchSection:
    """Training batches (paper section 4): random scale/crop patches and class batches.

    ``object_scale``: the chosen object's size ``sqrt(w*h)`` lands in
    ``anchor_size * [lo, hi]`` (log-uniform) unless ``max_upscale``/``min_scale`` clamp it.
    Boxes keeping ``>= keep_coverage`` of their area inside the patch stay as annotated, those
    with ``< remove_coverage`` are dropped, the rest become difficult (ignored).
    """

    batch_size: int = 4
    patch_size: int = 600
    class_batch: int = 15
    class_size: int = 240
    object_scale: List[float] = field(default_factory=lambda: [0.5, 1.6])
    max_upscale: float = 4.0
    min_scale: float = 0.05
    keep_coverage: float = 0.7
    remove_coverage: float = 0.3
    min_box_side: float = 4.0  # boxes thinner than this (px, in the patch) are dropped
    hard_patch_mining: bool = False
    hard_pool_size: int = 32
    hard_prob: float = 0.25


@dataclass
class LossSection:
    kind: str = "rll"
    loc_weight: float = 0.2
    pos_margin: float = 0.6
    neg_margin: float = 0.5
    neg_to_pos_ratio: Optional[float] = 3.0
    max_weight_ratio: float = 1000.0
    anchor_pos_iou: float = 0.5
    anchor_neg_iou: float = 0.1
    remap: bool = True
    remap_pos_iou: float = 0.8
    remap_neg_iou: float = 0.4


@dataclass
class OptimSection:
    optimizer: str = "sgd"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9
    lr_steps: List[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    iterations: int = 1000
    grad_clip: Optional[float] = None  # max gradient norm (None: no clipping)


@dataclass
class EvalSection:
    """Periodic validation with the Detector (pyramid restricted to ``scales`` for speed)."""

    every: int = 0  # iterations between evaluations (0: only at the end)
    at_start: bool = True
    at_end: bool = True
    scales: Optional[List[float]] = None  # scene longer side per level (None: model default pyramid)
    max_images: Optional[int] = None
    score_threshold: float = -1.0
    max_detections: int = 100
    nms_iou: float = 0.3
    class_batch: int = 8
    iou_thresh: float = 0.5


@dataclass
class CheckpointSection:
    every: int = 100  # iterations between checkpoints (a killed run loses at most this many)


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    batch: BatchSection = field(default_factory=BatchSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    eval: EvalSection = field(default_factory=EvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    train_backbone: str = "none"
    last_blocks: int = 1  # backbone stages trained with train_backbone=last_blocks
    seed: int = 0
    log_every: int = 10
    device: str = "cpu"
    threads: Optional[int] = None  # torch.set_num_threads (None: torch default)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting."""
        def bad(key: str, value: Any, why: str) -> ValueError:
            return ValueError(f"train config: {key}={value!r} {why}")

        if self.train_backbone not in TRAIN_BACKBONE_MODES:
            raise bad("train_backbone", self.train_backbone, f"must be one of {', '.join(TRAIN_BACKBONE_MODES)}")
        if self.last_blocks < 1:
            raise bad("last_blocks", self.last_blocks, "must be >= 1")
        b = self.batch
        for key in ("batch_size", "class_batch"):
            if getattr(b, key) < 1:
                raise bad(f"batch.{key}", getattr(b, key), "must be >= 1")
        if b.patch_size < 64:
            raise bad("batch.patch_size", b.patch_size, "must be >= 64")
        if b.class_size < 16:
            raise bad("batch.class_size", b.class_size, "must be >= 16")
        if len(b.object_scale) != 2 or not 0 < b.object_scale[0] <= b.object_scale[1]:
            raise bad("batch.object_scale", b.object_scale, "must be [lo, hi] with 0 < lo <= hi")
        if not 0 <= b.remove_coverage <= b.keep_coverage <= 1:
            raise bad("batch.keep_coverage", b.keep_coverage, "must satisfy 0 <= remove_coverage <= keep_coverage <= 1")
        if not 0 <= b.hard_prob <= 1:
            raise bad("batch.hard_prob", b.hard_prob, "must be in [0, 1]")
        if b.max_upscale <= 0 or b.min_scale <= 0:
            raise bad("batch.max_upscale", b.max_upscale, "and batch.min_scale must be > 0")
        if self.loss.kind not in ("contrastive", "rll"):
            raise bad("loss.kind", self.loss.kind, "must be contrastive or rll")
        o = self.optim
        if o.optimizer not in OPTIMIZERS:
            raise bad("optim.optimizer", o.optimizer, f"must be one of {', '.join(OPTIMIZERS)}")
        if not (o.lr > 0 and math.isfinite(o.lr)):
            raise bad("optim.lr", o.lr, "must be a positive number")
        if o.iterations < 0:
            raise bad("optim.iterations", o.iterations, "must be >= 0")
        if sorted(o.lr_steps) != list(o.lr_steps):
            raise bad("optim.lr_steps", o.lr_steps, "must be increasing")
        if self.checkpoint.every < 1:
            raise bad("checkpoint.every", self.checkpoint.every, "must be >= 1")
        if self.eval.every < 0:
            raise bad("eval.every", self.eval.every, "must be >= 0")
        if self.log_every < 1:
            raise bad("log_every", self.log_every, "must be >= 1")
        for i, spec in enumerate(self.data.train):
            if not spec.path:
                raise bad(f"data.train[{i}].path", spec.path, "must name a dataset")
            if not spec.weight > 0:
                raise bad(f"data.train[{i}].weight", spec.weight, "must be > 0")

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], *, source: str = "config") -> "TrainConfig":
        return _build(cls, data, prefix="", source=source)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _close(key: str, known: Sequence[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    if match:
        return f" (did you mean '{prefix}{match[0]}'?)"
    return f" (known: {', '.join(prefix + k for k in sorted(known))})"


def _hints(cls) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(tp, value: Any, *, key: str, source: str):
    """Check/convert a YAML value to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key=key, source=source)
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise InvalidInputError(f"{source}: {key} must be a mapping, got {value!r}")
        return _build(tp, value, prefix=f"{key}.", source=source)
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise InvalidInputError(f"{source}: {key} must be a list, got {value!r}")
        return [_convert(args[0], v, key=f"{key}[{i}]", source=source) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise InvalidInputError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise InvalidInputError(f"{source}: {key} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInputError(f"{source}: {key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise InvalidInputError(f"{source}: {key} must be a string, got {value!r}")
        return str(value)
    return value


def _build(cls, data: Dict[str, Any], *, prefix: str, source: str):
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = _hints(cls)
    known = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise InvalidInputError(f"{source}: unknown setting '{prefix}{key}'{_close(str(key), known, prefix)}")
        kwargs[key] = _convert(hints[key], value, key=f"{prefix}{key}", source=source)
    return cls(**kwargs)


def _set_path(tree: Dict[str, Any], dotted: str, value: Any) -> None:
    """Assign ``value`` at ``a.b.c`` (``a.b[1].c`` indexes a list) in a nested dict."""
    parts = dotted.split(".")
    node: Any = tree
    for i, part in enumerate(parts):
        name, index = part, None
        if part.endswith("]") and "[" in part:
            name, _, idx = part[:-1].partition("[")
            index = int(idx)
        last = i == len(parts) - 1
        if index is None:
            if last:
                node[name] = value
            else:
                node = node.setdefault(name, {})
                if node is None:
                    raise InvalidInputError(f"--set {dotted}: {name} is empty")
        else:
            seq = node.get(name)
            if not isinstance(seq, list) or index >= len(seq):
                raise InvalidInputError(f"--set {dotted}: {name} has no item {index}")
            if last:
                seq[index] = value
            else:
                node = seq[index]


def apply_overrides(tree: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``key=value`` strings (values parsed as YAML) to a nested config dict, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise InvalidInputError(f"--set {item!r}: value is not valid YAML ({err})") from err
        _set_path(tree, key.strip(), value)
    return tree


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (or defaults) plus ``key=value`` overrides."""
    tree: Dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputNotFoundError(f"train config not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise InvalidInputError(f"train config {path} is not valid YAML ({err})") from err
        source = str(path)
    if not isinstance(tree, dict):
        raise InvalidInputError(f"train config {source} must be a mapping of settings")
    apply_overrides(tree, overrides)
    return TrainConfig.from_dict(tree, source=source)
