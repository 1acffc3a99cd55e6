"""Class preparation with trimmed margins: a padded packshot gives the features of its crop with the kept margin."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from shared_data import shared_path
from os2d.detector import Detector


@pytest.fixture(scope="module")
def tight_and_padded():
    with Image.open(shared_path("data", "grocery-store", "iconic", "Arla-Sour-Milk.jpg")) as image:
        tight = image.convert("RGB").crop((70, 20, 130, 180))  # inside the carton: print up to every edge
    padded = np.full((tight.height + 80, tight.width + 140, 3), 255, dtype=np.uint8)
    padded[40:40 + tight.height, 70:70 + tight.width] = np.asarray(tight)
    return tight, Image.fromarray(padded)


def test_trimmed_padded_packshot_matches_its_crop_with_the_kept_margin(tight_and_padded):
    tight, padded = tight_and_padded
    plain = Detector.load("untrained", trim_class_images=False)
    trimming = Detector.load("untrained", trim_class_images=True)
    kept = padded.crop((70 - 6, 40 - 16, 70 + 60 + 6, 40 + 160 + 16))  # 60 x 160 carton, 10 % kept each side
    want = plain.prepare_classes({"milk": kept}).entry_features(torch.arange(1))
    got = trimming.prepare_classes({"milk": padded}).entry_features(torch.arange(1))
    # [1, C, 15, 15]
    torch.testing.assert_close(got, want)
    untrimmed = plain.prepare_classes({"milk": padded}).entry_features(torch.arange(1))
    assert (untrimmed - want).abs().max() > 0.1


def test_trim_is_part_of_the_bank_key(tight_and_padded):
    tight, _ = tight_and_padded
    plain = Detector.load("untrained", trim_class_images=False)
    bank = plain.prepare_classes({"milk": tight})
    with pytest.raises(ValueError, match="trim: False"):
        Detector.load("untrained", trim_class_images=True).detect(tight, bank)


def test_the_default_model_trims_and_reference_style_defaults_do_not():
    assert Detector.load("default").settings.trim_class_images is True
    assert Detector.load("untrained").settings.trim_class_images is False
