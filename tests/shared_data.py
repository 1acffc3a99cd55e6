"""Locating the project's ../shared folder from tests (importable as ``shared_data``)."""
from __future__ import annotations

from pathlib import Path

import pytest
from torchvision.ops import box_iou

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """Path under ../shared; fails the test with a clear message when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"shared test data not found: {path} (tests expect the project's shared/ folder "
            f"beside the project root, i.e. {SHARED})",
            pytrace=False,
        )
    return path


def assert_same_detection_sets(boxes, scores, labels, ref_boxes, ref_scores, ref_labels):
    """Per class, every reference detection has a match with IoU >= 0.99 and |score diff| <= 1e-4."""
    for label in sorted(set(ref_labels.tolist())):
        mine = labels == label
        theirs = ref_labels == label
        assert int(mine.sum()) == int(theirs.sum()), f"class {label}: {int(mine.sum())} vs {int(theirs.sum())}"
        iou = box_iou(ref_boxes[theirs], boxes[mine])
        close = (ref_scores[theirs][:, None] - scores[mine][None, :]).abs() <= 1e-4
        matched = ((iou >= 0.99) & close).any(dim=1)
        assert bool(matched.all()), f"class {label}: {int((~matched).sum())} reference detections unmatched"
