"""Calibrated scores: one meaning for every class, whatever its raw score range.

A raw OS2D score is a cosine similarity whose typical values depend on the class: a plain,
textureless packshot matches clutter better than a detailed logo. Calibration maps each class's raw
score to an estimate of the probability that a detection is correct, in two steps:

1. **Per class** (when its features are prepared): the class is matched, with the exact head, at every
   location of a fixed *background bank* (feature maps of photos without objects of interest, shipped
   with the model). The upper tail of that score distribution -- its quantiles ``q_lo`` (99 %) and
   ``q_hi`` (99.9 %) -- says how high the class scores on things that are not it. The class's
   standardised score is ``z = (raw - w * q_hi) / max(q_hi - q_lo, min_spread)`` (``w`` =
   ``offset_weight``; with ``per_class_spread=False`` the divisor is ``min_spread`` for every class).
   ``benchmarks/calibrate.py`` chooses ``w`` and the divisor by the log-loss on training classes.
2. **Globally**: ``p = sigmoid(alpha * z + beta)``, with ``alpha > 0`` and ``beta`` fitted once per
   model by logistic regression on detections of the training classes labelled correct / wrong
   (``benchmarks/calibrate.py``).

So ``p`` is monotone in the raw score for every class, and equal ``p`` means equal "how far above the
class's own background tail", which is the same for every class. A detection with ``p >= 0.5`` is
estimated to be right at least half of the time; that is the default threshold of calibrated models.
The stored per-entry statistics are ``Tensor[K, 2]`` ``(q_lo, q_hi)`` in the bank's ``calibration``
extra; catalogs keep them with the features.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from os2d.errors import InvalidInputError
from os2d.fileio import atomic_write

CALIBRATION_FILE = "calibration.safetensors"
QUANTILES = (0.99, 0.999)
#: Smallest spread ``q_hi - q_lo`` used to standardise (classes with a very narrow tail).
MIN_SPREAD = 0.01


@dataclass(frozen=True)
class Calibrator:
    """The global logistic map ``p = sigmoid(alpha * z + beta)`` and how ``z`` is made."""

    alpha: float
    beta: float
    quantiles: Tuple[float, float] = QUANTILES
    min_spread: float = MIN_SPREAD
    description: str = ""
    #: how much of the class's background tail ``q_hi`` is subtracted (1: all of it; 0: none, a global map)
    offset_weight: float = 1.0
    #: divide by each class's tail spread (floored at ``min_spread``) or by ``min_spread`` for every class
    per_class_spread: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.offset_weight) and 0 <= self.offset_weight <= 1 and self.min_spread > 0):
            raise InvalidInputError(f"calibration needs offset_weight in [0, 1] and min_spread > 0, got "
                                    f"{self.offset_weight}, {self.min_spread}")
        if not (math.isfinite(self.alpha) and self.alpha > 0 and math.isfinite(self.beta)):
            raise InvalidInputError(f"calibration needs a finite alpha > 0 and a finite beta, got {self.alpha}, {self.beta}")

    def standardise(self, raw: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """``z`` of raw scores ``Tensor[N]`` with their entries' statistics ``Tensor[N, 2]``."""
        return (raw - self.offset_weight * stats[:, 1]) / self._spread(stats)

    def _spread(self, stats: torch.Tensor):
        """The divisor of ``z``: each entry's floored tail spread, or ``min_spread`` for every entry."""
        return (stats[:, 1] - stats[:, 0]).clamp(min=self.min_spread) if self.per_class_spread else self.min_spread

    def raw_for(self, z: float, stats: torch.Tensor) -> torch.Tensor:
        """The raw score of each entry (statistics ``Tensor[K, 2]``) whose ``z`` is ``z``: ``Tensor[K]``."""
        return self.offset_weight * stats[:, 1] + z * self._spread(stats)

    def z_for(self, p: float) -> float:
        """The ``z`` whose calibrated score is ``p`` (-inf for p <= 0, inf for p >= 1)."""
        if not 0 < p < 1:
            return -math.inf if p <= 0 else math.inf
        return (math.log(p / (1 - p)) - self.beta) / self.alpha

    def global_raw_threshold(self, p: float) -> Optional[float]:
        """The raw score whose calibrated score is ``p``, when that is the same for every class (a global
        map: ``offset_weight`` 0 and one spread); ``None`` when it depends on the class's statistics."""
        if self.offset_weight != 0 or self.per_class_spread:
            return None
        return self.z_for(p) * self.min_spread

    def __call__(self, raw: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """Calibrated scores in (0, 1), ``Tensor[N]``."""
        return torch.sigmoid(self.alpha * self.standardise(raw.float(), stats.float()) + self.beta)


@dataclass
class BackgroundBank:
    """Scene feature maps of background photos: ``maps[i]`` is ``Tensor[C, H_i, W_i]`` (L2-normalised)."""

    maps: List[torch.Tensor]
    calibrator: Optional[Calibrator] = None

    @property
    def cells(self) -> int:
        return sum(int(m.shape[1] * m.shape[2]) for m in self.maps)

    def save(self, folder: Path, *, model_identity: str) -> Path:
        """Write ``folder/calibration.safetensors`` (maps as float16, calibrator in the metadata)."""
        tensors = {f"map_{i:04d}": m.to(torch.float16).contiguous() for i, m in enumerate(self.maps)}
        meta = {"model_identity": model_identity,
                "calibrator": json.dumps(asdict(self.calibrator)) if self.calibrator else ""}
        path = Path(folder) / CALIBRATION_FILE
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        return path

    @classmethod
    def load(cls, folder: Path) -> Optional["BackgroundBank"]:
        """The bank of a model folder, or ``None`` when it has none."""
        path = Path(folder) / CALIBRATION_FILE
        if not path.is_file():
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        maps = load_file(str(path))
        calibrator = Calibrator(**_tuples(json.loads(meta["calibrator"]))) if meta.get("calibrator") else None
        return cls(maps=[maps[k].float() for k in sorted(maps)], calibrator=calibrator)


def _tuples(blob: dict) -> dict:
    blob["quantiles"] = tuple(blob.get("quantiles", QUANTILES))
    return blob


@torch.no_grad()
def background_stats(head, features: torch.Tensor, bank: BackgroundBank, *, chunk: int = 8,
                     quantiles: Sequence[float] = QUANTILES) -> torch.Tensor:
    """Per entry, the quantiles of its exact scores over every background cell: ``Tensor[K, 2]``.

    Args:
        head: the OS2D head; features: ``Tensor[K, C, g, g]`` class features; bank: the backgrounds.
    """
    out = []
    q = torch.tensor(list(quantiles), dtype=torch.float32)
    for start in range(0, features.shape[0], chunk):
        part = features[start:start + chunk]
        scores = torch.cat([head(fm.unsqueeze(0).to(part.dtype), part).scores[0].reshape(part.shape[0], -1)
                            for fm in bank.maps], 1)
        # [k, cells]
        out.append(torch.quantile(scores.float(), q, dim=1).T)
    return torch.cat(out) if out else torch.zeros(0, len(quantiles))


def fit_calibrator(z: np.ndarray, correct: np.ndarray, *, iterations: int = 50, l2: float = 1e-3,
                   description: str = "") -> Calibrator:
    """Logistic regression ``P(correct) = sigmoid(alpha * z + beta)`` by Newton's method (IRLS)."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if z.size < 10 or y.min() == y.max():
        raise InvalidInputError(f"calibration needs at least 10 detections with both outcomes, got {z.size} "
                                f"({int(y.sum())} correct)")
    x = np.stack([z, np.ones_like(z)], 1)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return Calibrator(alpha=float(w[0]), beta=float(w[1]), description=description)
