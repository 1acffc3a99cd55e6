"""Class sources: alpha cut-outs, class tables (class image vs paste images, groups), errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from os2d.synth.sources import (ClassSource, alpha_mask, load_appearance, pick_appearance, read_class_table,
                                sources_from_images)
from synth_helpers import solid_packshot


def _rgba_cutout(path, size=(40, 30)):
    """A red ellipse, opaque, on a transparent canvas with a 5 px transparent border."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx - w / 2 + 0.5) / (w / 2 - 5)) ** 2 + ((yy - h / 2 + 0.5) / (h / 2 - 5)) ** 2 <= 1
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 1] = 255  # transparent pixels carry green: it must never be pasted
    rgba[inside, 1] = 0
    rgba[..., 3] = np.where(inside, 255, 0)
    Image.fromarray(rgba, "RGBA").save(path)
    return inside


def test_rgba_cutout_is_cut_by_its_alpha(tmp_path):
    inside = _rgba_cutout(tmp_path / "cut.png")
    assert (alpha_mask(tmp_path / "cut.png") == inside).all()
    app = load_appearance(tmp_path / "cut.png", name="cut")
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    assert app.mask.shape == (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    assert (app.mask == inside[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]).all() and app.masked
    assert (app.image[app.mask] == [200, 0, 0]).all()
    whole = load_appearance(tmp_path / "cut.png", name="cut", mask="none")
    assert whole.mask.all() and whole.mask.shape == (30, 40)
    Image.fromarray(solid_packshot()).save(tmp_path / "plain.png")
    assert alpha_mask(tmp_path / "plain.png") is None
    with pytest.raises(ValueError, match="mask mode"):
        load_appearance(tmp_path / "cut.png", name="cut", mask="alpha")


def test_sources_from_images_one_appearance_each(tmp_path):
    for name in ("b", "a"):
        Image.fromarray(solid_packshot()).save(tmp_path / f"{name}.png")
    sources = sources_from_images([tmp_path / "b.png", tmp_path / "a.png"], mask="auto")
    assert [s.name for s in sources] == ["a", "b"] and all(len(s.appearances) == 1 for s in sources)
    assert sources[0].class_file == tmp_path / "a.png" and sources[0].output_name == "a.png"
    (tmp_path / "sub").mkdir()
    Image.fromarray(solid_packshot()).save(tmp_path / "sub" / "a.png")
    with pytest.raises(ValueError, match="same name 'a'"):
        sources_from_images([tmp_path / "a.png", tmp_path / "sub" / "a.png"], mask="auto")


def _table(tmp_path, text):
    (tmp_path / "t.csv").write_text(text)
    return tmp_path / "t.csv"


def test_class_table_separates_class_image_and_paste_images(tmp_path):
    _rgba_cutout(tmp_path / "cut.png")
    Image.fromarray(solid_packshot()).save(tmp_path / "icon.jpg")
    for k in (1, 2):
        Image.fromarray(np.full((20, 12, 3), 60 * k, np.uint8)).save(tmp_path / f"crop{k}.jpg")
    table = _table(tmp_path, "name,class_image,paste_image,group,mask\n"
                             "chips-1,cut.png,,Brand,\n"
                             "prod,icon.jpg,crop1.jpg,,none\n"
                             "prod,icon.jpg,crop2.jpg,,none\n")
    chips, prod = read_class_table(table)
    assert chips.name == "chips-1" and chips.group == "Brand" and chips.class_file == tmp_path / "cut.png"
    assert len(chips.appearances) == 1 and chips.appearances[0].masked
    assert prod.group is None and prod.class_file == tmp_path / "icon.jpg" and prod.output_name == "prod.jpg"
    assert [a.image.shape for a in prod.appearances] == [(20, 12, 3), (20, 12, 3)]
    assert all(a.mask.all() for a in prod.appearances)  # mask none: the whole crop


def test_class_table_errors(tmp_path):
    Image.fromarray(solid_packshot()).save(tmp_path / "icon.jpg")
    Image.fromarray(solid_packshot()).save(tmp_path / "other.jpg")
    with pytest.raises(FileNotFoundError, match="class table not found"):
        read_class_table(tmp_path / "none.csv")
    with pytest.raises(ValueError, match="missing columns"):
        read_class_table(_table(tmp_path, "label,file\nx,icon.jpg\n"))
    with pytest.raises(ValueError, match="no classes"):
        read_class_table(_table(tmp_path, "name,class_image\n"))
    with pytest.raises(FileNotFoundError, match="line 2: class image not found"):
        read_class_table(_table(tmp_path, "name,class_image\nx,missing.jpg\n"))
    with pytest.raises(FileNotFoundError, match="paste image not found"):
        read_class_table(_table(tmp_path, "name,class_image,paste_image\nx,icon.jpg,gone.jpg\n"))
    with pytest.raises(ValueError, match="bad class name"):
        read_class_table(_table(tmp_path, "name,class_image\na/b,icon.jpg\n"))
    with pytest.raises(ValueError, match="line 3: class 'x' has another class image"):
        read_class_table(_table(tmp_path, "name,class_image\nx,icon.jpg\nx,other.jpg\n"))


def test_pick_appearance_draws_only_when_there_is_a_choice(tmp_path):
    Image.fromarray(solid_packshot()).save(tmp_path / "icon.png")
    one = sources_from_images([tmp_path / "icon.png"], mask="auto")[0]
    rng = np.random.default_rng(5)
    assert pick_appearance(one, rng) is one.appearances[0]
    assert rng.random() == np.random.default_rng(5).random()  # no number was drawn
    Image.fromarray(solid_packshot((10, 10, 200))).save(tmp_path / "blue.png")
    other = sources_from_images([tmp_path / "blue.png"], mask="auto")[0].appearances[0]
    two = ClassSource("two", tmp_path / "icon.png", [one.appearances[0], other])
    picks = [pick_appearance(two, np.random.default_rng(s)) for s in range(20)]
    assert {id(p) for p in picks} == {id(one.appearances[0]), id(other)}
