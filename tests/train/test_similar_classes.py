"""Similar classes (hard negatives): ranking known answers, file round trip, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from os2d.train.similar_classes import (find_similar_classes, rank_similar_classes, read_similar_classes,
                                        similar_classes_path, write_similar_classes)


def test_rank_puts_same_group_first_then_nearest_by_cosine():
    names = ["a1", "a2", "b1", "b2"]
    desc = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [10.0, 9.0]])  # scale does not matter
    ranked = rank_similar_classes(names, desc, groups={"a1": "A", "a2": "A", "b1": "B", "b2": "B"}, top=3)
    assert ranked["a1"] == ["a2", "b1", "b2"]      # a2 is the same brand although least similar
    assert ranked["b1"] == ["b2", "a1", "a2"]
    plain = rank_similar_classes(names, desc, top=2)
    assert plain["a1"] == ["b1", "b2"] and plain["a2"] == ["b2", "b1"]
    with pytest.raises(ValueError, match="descriptors must be"):
        rank_similar_classes(names, desc[:3])
    with pytest.raises(ValueError, match="unique"):
        rank_similar_classes(["a", "a"], desc[:2])
    with pytest.raises(ValueError, match="top must be"):
        rank_similar_classes(names, desc, top=0)


def test_file_round_trip_and_lookup_next_to_class_images(tmp_path):
    images = tmp_path / "classes" / "images"
    images.mkdir(parents=True)
    class_images = {n: [images / f"{n}.jpg"] for n in ("x", "y", "z")}
    assert similar_classes_path(class_images) == tmp_path / "classes" / "similar_classes.json"
    assert find_similar_classes(class_images) == {}  # no file: no hard negatives
    write_similar_classes(tmp_path / "classes" / "similar_classes.json", {"x": ["y", "w"], "w": ["x"]}, how="test")
    assert read_similar_classes(tmp_path / "classes" / "similar_classes.json") == {"w": ["x"], "x": ["y", "w"]}
    assert find_similar_classes(class_images) == {"x": ["y"]}


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_similar_classes(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="not a similar-classes JSON"):
        read_similar_classes(bad)
    bad.write_text(json.dumps({"format": "other", "similar": {}}))
    with pytest.raises(ValueError, match="not a similar-classes file"):
        read_similar_classes(bad)
    bad.write_text(json.dumps({"format": "os2d-similar-classes", "similar": {"x": "y"}}))
    with pytest.raises(ValueError, match="must be a list"):
        read_similar_classes(bad)
