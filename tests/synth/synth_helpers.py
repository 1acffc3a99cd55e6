"""Helpers shared by the synth tests (imported by name: tests/synth is on sys.path)."""
from __future__ import annotations

import numpy as np


def solid_packshot(colour=(220, 30, 30), size=(90, 70), obj=(50, 36)) -> np.ndarray:
    """A solid-colour rectangle of ``obj`` (w, h) centred on a white ``size`` (w, h) image."""
    w, h = size
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    x0, y0 = (w - obj[0]) // 2, (h - obj[1]) // 2
    img[y0:y0 + obj[1], x0:x0 + obj[0]] = colour
    return img
