"""Small generated inputs for the synth tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth_helpers import solid_packshot


@pytest.fixture
def tiny_inputs(tmp_path: Path):
    """(classes_dir, backgrounds_dir): 3 class images and 3 textured backgrounds."""
    rng = np.random.default_rng(123)
    classes = tmp_path / "in_classes"
    backgrounds = tmp_path / "in_backgrounds"
    classes.mkdir()
    backgrounds.mkdir()
    Image.fromarray(solid_packshot((200, 20, 20))).save(classes / "red.png")
    Image.fromarray(solid_packshot((20, 160, 40), obj=(30, 60))).save(classes / "green.png")
    logo = rng.integers(0, 255, size=(40, 64, 3), dtype=np.uint8)  # no clean background
    Image.fromarray(logo).save(classes / "logo.jpg", quality=95)
    for i, size in enumerate([(320, 240), (200, 300), (400, 260)]):
        base = rng.integers(60, 200, size=(8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize(size, Image.BILINEAR)
        img.save(backgrounds / f"bg{i}.jpg", quality=90)
    return classes, backgrounds
