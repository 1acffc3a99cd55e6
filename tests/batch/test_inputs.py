"""expand_images: files, folders, glob patterns, duplicates and the error paths."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from os2d.batch.inputs import expand_images
from os2d.errors import InputNotFoundError, InvalidInputError


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(path)
    return path


@pytest.fixture
def tree(tmp_path):
    """scenes/{b.jpg, a.png, c.JPEG, notes.txt, sub/d.jpg, sub/deeper/e.webp}."""
    root = tmp_path / "scenes"
    for rel in ("b.jpg", "a.png", "c.JPEG", "sub/d.jpg", "sub/deeper/e.webp"):
        _image(root / rel)
    (root / "notes.txt").write_text("not an image")
    return root


def test_explicit_file_is_taken_whatever_its_suffix(tmp_path):
    odd = tmp_path / "scene.data"
    odd.write_bytes(b"checked when read")
    assert expand_images([odd]) == [odd]


def test_folder_gives_its_images_sorted_by_suffix_filter(tree):
    assert [p.name for p in expand_images([tree])] == ["a.png", "b.jpg", "c.JPEG"]


def test_recursive_folder_adds_subfolders(tree):
    found = expand_images([tree], recursive=True)
    assert [str(p.relative_to(tree)) for p in found] == ["a.png", "b.jpg", "c.JPEG", "sub/d.jpg",
                                                        "sub/deeper/e.webp"]


def test_glob_patterns_sorted_and_recursive_with_double_star(tree):
    assert [p.name for p in expand_images([str(tree / "*.jpg")])] == ["b.jpg"]
    assert [p.name for p in expand_images([str(tree / "[ab].*")])] == ["a.png", "b.jpg"]
    deep = expand_images([str(tree / "**" / "*.jpg")])
    assert [str(p.relative_to(tree)) for p in deep] == ["b.jpg", "sub/d.jpg"]
    # a pattern never yields files that are not images, nor folders
    assert [p.name for p in expand_images([str(tree / "*")])] == ["a.png", "b.jpg", "c.JPEG"]


def test_file_whose_name_looks_like_a_pattern_is_a_file(tmp_path):
    literal = _image(tmp_path / "shelf[1].jpg")
    _image(tmp_path / "shelf1.jpg")
    assert expand_images([literal]) == [literal]


def test_duplicates_removed_first_spelling_kept_in_order(tree, monkeypatch):
    monkeypatch.chdir(tree)
    found = expand_images(["b.jpg", str(tree), str(tree / "b.jpg"), "./a.png", "*.png"])
    assert [str(p) for p in found] == ["b.jpg", str(tree / "a.png"), str(tree / "c.JPEG")]


def test_order_of_specs_is_kept(tree):
    found = expand_images([tree / "sub" / "d.jpg", tree / "a.png"])
    assert [p.name for p in found] == ["d.jpg", "a.png"]


def test_missing_path_is_not_found(tmp_path):
    with pytest.raises(InputNotFoundError, match="missing.jpg"):
        expand_images([tmp_path / "missing.jpg"])


def test_folder_without_images_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="no images .* in folder .*empty"):
        expand_images([tmp_path / "empty"])


def test_folder_with_images_only_in_subfolders_needs_recursive(tmp_path):
    inner = _image(tmp_path / "outer" / "inner" / "x.jpg")
    with pytest.raises(InvalidInputError, match="no images"):
        expand_images([tmp_path / "outer"])
    assert expand_images([tmp_path / "outer"], recursive=True) == [inner]


def test_pattern_matching_nothing_is_not_found(tree):
    with pytest.raises(InputNotFoundError, match="no image matches the pattern"):
        expand_images([str(tree / "*.gif")])


def test_pattern_matching_only_non_images_is_not_found(tree):
    with pytest.raises(InputNotFoundError, match="notes"):
        expand_images([str(tree / "notes*")])


def test_nothing_given_is_refused():
    with pytest.raises(InvalidInputError, match="no scene image given"):
        expand_images([])


def test_empty_string_is_refused_not_the_current_folder(tree, monkeypatch):
    monkeypatch.chdir(tree)  # "" must not silently mean "every image here"
    with pytest.raises(InvalidInputError, match="empty"):
        expand_images([""])
