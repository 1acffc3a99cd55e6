"""``TrainConfig``: every training setting, read from YAML with ``--set key=value`` overrides.

The YAML mirrors the nested pydantic models below (``model``, ``data``, ``batch``, ``loss``,
``optim``, ``eval``, ``checkpoint`` sections plus a few top-level keys). Every field is checked
(type, range, choices); an error names the key, the value and the file
(``configs/x.yaml: batch.patch_size='big' must be an integer``). Unknown keys are errors that
name the closest known key (``difflib.get_close_matches``). Numbers may be written as YAML
strings (``1e-3``, which YAML 1.1 reads as a string, is the number 0.001).
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Type, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from os2d.errors import InputNotFoundError, InvalidInputError

TRAIN_BACKBONE_MODES = ("none", "last_blocks", "all")
OPTIMIZERS = ("sgd", "adam")
DEFAULT_BACKBONE = "efficientnet-lite0"
DEFAULT_VARIANT = "v1"
DEFAULT_BACKBONE_WEIGHTS = "package"
#: Eval pyramid levels (scene longer side, px) must lie in this range.
SCALE_RANGE = (32.0, 4096.0)
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


class _Section(BaseModel):
    """A config section: unknown keys, wrong types, NaN/inf and out-of-range values are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True,
                              validate_assignment=True)


class DatasetSpec(_Section):
    """One dataset: a folder / CSV / paper name (see ``resolve_dataset``), optional split.

    ``weight``: relative probability that a training patch comes from this dataset.
    ``max_images``: use only the first N scenes (after the split), e.g. for quick runs/tests.
    """

    path: str = ""
    split: Optional[str] = None
    weight: float = Field(1.0, gt=0)
    max_images: Optional[int] = Field(None, ge=1)


class ModelSection(_Section):
    """The model to train: ``init`` is a built-in name (``untrained``) or a saved model folder.

    ``backbone`` / ``variant`` (default efficientnet-lite0 / v1) and ``backbone_weights`` apply
    to ``init: untrained``. With a saved model its architecture and weights are used; setting
    ``backbone`` or ``variant`` to something else, or ``backbone_weights`` at all, is refused.
    """

    init: str = Field("untrained", min_length=1)
    backbone: Optional[str] = None
    variant: Optional[Literal["v1", "v2"]] = None
    backbone_weights: Optional[str] = DEFAULT_BACKBONE_WEIGHTS  # see ModelConfig.backbone_weights
    seed: int = Field(0, ge=0)  # TransformNet initialisation (when init is 'untrained')


class DataSection(_Section):
    train: List[DatasetSpec] = Field(default_factory=list)
    val: Optional[DatasetSpec] = None
    data_root: Optional[str] = None  # for paper dataset names / folder names under it


class BatchSection(_Section):
    """Training batches (paper section 4): random scale/crop patches and class batches.

    ``object_scale``: the chosen object's size ``sqrt(w*h)`` lands in
    ``anchor_size * [lo, hi]`` (log-uniform) unless ``max_upscale``/``min_scale`` clamp it.
    Boxes keeping ``>= keep_coverage`` of their area inside the patch stay as annotated, those
    with ``< remove_coverage`` are dropped, the rest become difficult (ignored).
    """

    batch_size: int = Field(4, ge=1, le=1024)
    patch_size: int = Field(600, ge=64, le=4096)
    class_batch: int = Field(15, ge=1, le=1000)
    class_size: int = Field(240, ge=16, le=1024)
    object_scale: List[float] = Field(default_factory=lambda: [0.5, 1.6])
    max_upscale: float = Field(4.0, gt=0)
    min_scale: float = Field(0.05, gt=0)
    keep_coverage: float = Field(0.7, ge=0, le=1)
    remove_coverage: float = Field(0.3, ge=0, le=1)
    min_box_side: float = Field(4.0, ge=0)  # boxes thinner than this (px, in the patch) are dropped
    hard_patch_mining: bool = False
    hard_pool_size: int = Field(32, ge=1)
    hard_prob: float = Field(0.25, ge=0, le=1)

    @field_validator("object_scale")
    @classmethod
    def _scale_pair(cls, value: List[float]) -> List[float]:
        if len(value) != 2 or not 0 < value[0] <= value[1]:
            raise ValueError("must be [lo, hi] with 0 < lo <= hi")
        return value

    @model_validator(mode="after")
    def _coverage(self) -> "BatchSection":
        if self.remove_coverage > self.keep_coverage:
            raise ValueError(f"keep_coverage={self.keep_coverage!r} must be >= remove_coverage "
                             f"({self.remove_coverage!r})")
        return self


class LossSection(_Section):
    kind: Literal["contrastive", "rll"] = "rll"
    loc_weight: float = Field(0.2, ge=0)
    pos_margin: float = 0.6
    neg_margin: float = 0.5
    neg_to_pos_ratio: Optional[float] = Field(3.0, gt=0)
    max_weight_ratio: float = Field(1000.0, gt=0)
    anchor_pos_iou: float = Field(0.5, ge=0, le=1)
    anchor_neg_iou: float = Field(0.1, ge=0, le=1)
    remap: bool = True
    remap_pos_iou: float = Field(0.8, ge=0, le=1)
    remap_neg_iou: float = Field(0.4, ge=0, le=1)

    @model_validator(mode="after")
    def _thresholds(self) -> "LossSection":
        for prefix in ("anchor", "remap"):
            neg, pos = getattr(self, f"{prefix}_neg_iou"), getattr(self, f"{prefix}_pos_iou")
            if neg > pos:
                raise ValueError(f"{prefix}_neg_iou={neg!r} must be <= {prefix}_pos_iou ({pos!r})")
        return self


class OptimSection(_Section):
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    lr_steps: List[int] = Field(default_factory=list)
    lr_gamma: float = Field(0.1, gt=0)
    iterations: int = Field(1000, ge=0, le=10**9)
    grad_clip: Optional[float] = Field(None, gt=0)  # max gradient norm (None: no clipping)

    @field_validator("lr_steps")
    @classmethod
    def _increasing(cls, value: List[int]) -> List[int]:
        if any(v < 1 for v in value) or sorted(value) != list(value):
            raise ValueError("must be increasing iteration numbers >= 1")
        return value


class EvalSection(_Section):
    """Periodic validation with the Detector (pyramid restricted to ``scales`` for speed)."""

    every: int = Field(0, ge=0)  # iterations between evaluations (0: only at the end)
    at_start: bool = True
    at_end: bool = True
    scales: Optional[List[float]] = None  # scene longer side per level (None: model default pyramid)
    max_images: Optional[int] = Field(None, ge=1)
    score_threshold: float = -1.0
    max_detections: int = Field(100, ge=1)
    nms_iou: float = Field(0.3, ge=0, le=1)
    class_batch: int = Field(8, ge=1)
    iou_thresh: float = Field(0.5, gt=0, le=1)

    @field_validator("scales")
    @classmethod
    def _scales(cls, value: Optional[List[float]]) -> Optional[List[float]]:
        lo, hi = SCALE_RANGE
        if value is not None and (not value or not all(lo <= v <= hi for v in value)):
            raise ValueError(f"must be a non-empty list of pixel sizes in [{lo:g}, {hi:g}]")
        return value


class CheckpointSection(_Section):
    every: int = Field(100, ge=1)  # iterations between checkpoints (a killed run loses at most this many)


class TrainConfig(_Section):
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    batch: BatchSection = Field(default_factory=BatchSection)
    loss: LossSection = Field(default_factory=LossSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    train_backbone: Literal["none", "last_blocks", "all"] = "none"
    last_blocks: int = Field(1, ge=1)  # backbone stages trained with train_backbone=last_blocks
    seed: int = Field(0, ge=0)
    log_every: int = Field(10, ge=1)
    device: str = "cpu"
    threads: Optional[int] = Field(None, ge=1)  # torch.set_num_threads (None: torch default)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("must be cpu, cuda, cuda:N or mps")
        return value

    @model_validator(mode="after")
    def _datasets(self) -> "TrainConfig":
        for i, spec in enumerate(self.data.train):
            if not spec.path:
                raise ValueError(f"data.train[{i}].path={spec.path!r} must name a dataset")
        return self

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> Dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "config") -> "TrainConfig":
        """Validate a nested dict (e.g. parsed YAML); errors name the key and ``source``."""
        if not isinstance(data, dict):
            raise InvalidInputError(f"{source}: the train config must be a mapping of settings, got {data!r}")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise InvalidInputError(f"{source}: {describe_error(err, root=cls)}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------- errors
_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
               "list": "a list", "model": "a mapping", "dict": "a mapping", "literal": None}


def _dotted(loc: Sequence[Union[str, int]]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _section_at(loc: Sequence[Union[str, int]], root: Type[BaseModel]) -> Optional[Type[BaseModel]]:
    """The model class that holds the last key of ``loc`` (for 'did you mean' hints)."""
    cls: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if field is None:
            return None
        cls = _model_in(field.annotation)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _close(key: str, known: Sequence[str], prefix: str) -> str:
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    if match:
        return f" (did you mean '{prefix}{match[0]}'?)"
    return f" (known: {', '.join(prefix + k for k in sorted(known))})"


def _message(error: dict, root: Type[BaseModel]) -> str:
    loc = [p for p in error["loc"] if not (isinstance(p, str) and "[" in p)]  # drop union tags
    key = _dotted(loc)
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        section = _section_at(loc, root)
        prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
        hint = _close(str(loc[-1]), list(section.model_fields), prefix) if section else ""
        return f"unknown setting '{key}'{hint}"
    if kind in ("value_error", "assertion_error"):
        text = str(error["ctx"].get("error", error["msg"])) if error.get("ctx") else error["msg"]
        if isinstance(value, dict) or not key:  # a check across the fields of a section
            return f"{key}.{text}" if key else text
        return f"{key}={value!r} {text}"
    head = kind.split("_", 1)[0]
    word = _TYPE_WORDS.get(head) if head != "literal" else None
    if word and kind.endswith(("_type", "_parsing", "_from_float", "attributes_type")):
        return f"{key} must be {word}, got {value!r}"
    if kind == "invalid_key":
        where = _dotted(loc[:-1])
        return f"setting names must be strings, got {loc[-1]!r}" + (f" in {where}" if where else "")
    if kind == "finite_number":
        return f"{key} must be a finite number, got {value!r}"
    return f"{key}={value!r}: {error['msg'][0].lower()}{error['msg'][1:]}"


def describe_error(err: ValidationError, *, root: Type[BaseModel]) -> str:
    """One line for a pydantic ``ValidationError`` of ``root`` (first problem + count)."""
    errors = err.errors(include_url=False)
    text = _message(errors[0], root)
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return text


# ---------------------------------------------------------------------------------------- overrides
_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?$")


def _set_path(tree: Dict[str, Any], dotted: str, value: Any) -> None:
    """Assign ``value`` at ``a.b.c`` (``a.b[1].c`` indexes a list) in a nested dict."""
    parts = dotted.split(".")
    node: Any = tree
    for i, part in enumerate(parts):
        match = _PART.match(part)
        if not match:
            raise InvalidInputError(f"--set {dotted}: {part!r} is not a setting name (NAME or NAME[INDEX])")
        name, index = match.group(1), match.group(2)
        last = i == len(parts) - 1
        if not isinstance(node, dict):
            raise InvalidInputError(f"--set {dotted}: {'.'.join(parts[:i])} is not a section")
        if index is None:
            if last:
                node[name] = value
            else:
                node = node.setdefault(name, {})
                if node is None:
                    raise InvalidInputError(f"--set {dotted}: {name} is empty")
        else:
            seq = node.get(name)
            if not isinstance(seq, list) or int(index) >= len(seq):
                raise InvalidInputError(f"--set {dotted}: {name} has no item {index}")
            if last:
                seq[int(index)] = value
            else:
                node = seq[int(index)]


def apply_overrides(tree: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``key=value`` strings (values parsed as YAML) to a nested config dict, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise InvalidInputError(f"--set {item!r}: value is not valid YAML ({_yaml_problem(err)})") from None
        _set_path(tree, key.strip(), value)
    return tree


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).split("\n", 1)[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def read_yaml_file(path: Path, *, what: str) -> Any:
    """Parse a YAML file with errors naming it (missing, not a regular file, not UTF-8, bad YAML)."""
    if not path.exists():
        raise InputNotFoundError(f"{what} not found: {path}")
    if not path.is_file():
        raise InvalidInputError(f"{what} is not a regular file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"{what} {path} is not UTF-8 text (byte {err.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InvalidInputError(f"{what} {path} is not valid YAML ({_yaml_problem(err)})") from None


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (or defaults) plus ``key=value`` overrides."""
    tree: Any = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        tree = read_yaml_file(path, what="train config")
        tree = {} if tree is None else tree
        source = str(path)
    if not isinstance(tree, dict):
        raise InvalidInputError(f"train config {source} must be a mapping of settings, got {type(tree).__name__}")
    apply_overrides(tree, overrides)
    return TrainConfig.from_dict(tree, source=source)


__all__: Tuple[str, ...] = (
    "BatchSection", "CheckpointSection", "DataSection", "DatasetSpec", "EvalSection", "LossSection",
    "ModelSection", "OptimSection", "TrainConfig", "apply_overrides", "load_config", "read_yaml_file",
)
