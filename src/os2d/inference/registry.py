"""The detection methods, by name: one registry instead of string switches.

================  ===============================================================================
``exact``         OS2D at every location and level (the default; the reference's detections)
``fast``          a cascade whose last stage is the exact OS2D head (:mod:`os2d.inference.cascade`)
``sliding-window-square``  OS2D with the identity transform (paper, section 6.2)
``sliding-window-ar``      the class feature map at its own aspect ratio, matched by convolution
``sift``          SIFT + RANSAC homographies (OpenCV; no model, no pyramid)
================  ===============================================================================

The command line's ``--method os2d --mode exact|fast`` names ``exact`` / ``fast``.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Optional

from os2d.errors import InvalidInputError


def _exact(detector, scene, bank):
    from os2d.inference.exact import exact_candidates

    return exact_candidates(detector, scene, bank)


def _fast(detector, scene, bank):
    from os2d.inference.cascade import cascade_candidates

    return cascade_candidates(detector, scene, bank)


def _fast_scene_dtype(detector):
    from os2d.inference.cascade import transform_dtype

    return transform_dtype(detector.settings.cascade.backbone_precision, detector.device)


def _square(detector, scene, bank):
    from os2d.inference.baselines import square_candidates

    return square_candidates(detector, scene, bank)


def _aspect_ratio(detector, scene, bank):
    from os2d.inference.baselines import aspect_ratio_candidates

    return aspect_ratio_candidates(detector, scene, bank)


@dataclass(frozen=True)
class Method:
    """A detection method.

    Attributes:
        name: registry name.
        description: one line for help texts.
        candidates: ``(detector, scene, bank) -> Candidates`` for the methods built on the OS2D model;
            ``None`` for methods that do not use it (``sift``).
        needs_raw_features: class banks must keep the unresampled class feature maps.
        scene_dtype: ``detector -> torch.dtype`` of the scene backbone; ``None``: float32.
    """

    name: str
    description: str
    candidates: Optional[Callable] = None
    needs_raw_features: bool = False
    scene_dtype: Optional[Callable] = None

    @property
    def uses_model(self) -> bool:
        return self.candidates is not None


METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in (
    Method("exact", "OS2D at every location and pyramid level (default)", _exact),
    Method("fast", "cascade: class shortlist, identity-transform score, exact head at the best candidates", _fast,
           scene_dtype=_fast_scene_dtype),
    Method("sliding-window-square", "baseline: OS2D with the identity transform", _square),
    Method("sliding-window-ar", "baseline: class feature map at its aspect ratio, by convolution", _aspect_ratio,
           needs_raw_features=True),
    Method("sift", "baseline: SIFT keypoints + RANSAC homographies (no model)"),
)})

#: What ``--method`` accepts on the command line (``os2d`` = ``exact`` or ``fast`` by ``--mode``).
CLI_METHODS = ("os2d", "sliding-window-square", "sliding-window-ar", "sift")
MODES = ("exact", "fast")


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise InvalidInputError(f"unknown method {name!r}; expected one of {list(METHODS)}")
    return METHODS[name]


def resolve_method(method: str = "os2d", mode: str = "exact") -> str:
    """Registry name for the command line's ``--method`` and ``--mode``."""
    if mode not in MODES:
        raise InvalidInputError(f"unknown --mode {mode!r}; expected one of {list(MODES)}")
    if method == "os2d":
        return mode
    if method not in METHODS or method in MODES:
        raise InvalidInputError(f"unknown --method {method!r}; expected one of {list(CLI_METHODS)}")
    if mode != "exact":
        raise InvalidInputError(f"--mode {mode} applies to --method os2d only, not to {method!r}")
    return method
