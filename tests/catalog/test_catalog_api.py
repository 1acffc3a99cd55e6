"""Catalog: build, extend, remove, identity checks, rebuild and damage, on real packshots."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from shared_data import shared_path
from os2d.catalog import Catalog, CatalogMismatchError, store
from os2d.detector import Detector
from os2d.errors import InvalidInputError

PACKSHOTS = ("Alpro-Fresh-Soy-Milk", "Arla-Sour-Milk", "Bravo-Apple-Juice", "Oatly-Natural-Oatghurt")
SCENE = ("photos", "test", "Arla-Sour-Milk", "Arla-Sour-Milk_001.jpg")
SETTINGS = {"scales": (320.0,), "score_threshold": float("-inf"), "max_detections": 20}


def packshot(name):
    return shared_path("data", "grocery-store", "iconic", f"{name}.jpg")


@pytest.fixture(scope="module")
def untrained():
    return Detector.load("untrained", **SETTINGS)


@pytest.fixture
def catalog(tmp_path, untrained):
    cat = Catalog.create(tmp_path / "cat", untrained)
    cat.add({n: [packshot(n)] for n in PACKSHOTS[:3]}, detector=untrained)
    return cat


def detection_set(dets):
    return sorted((r["class"], round(r["score"], 5), tuple(round(v, 2) for v in r["bbox"])) for r in dets.to_records())


def test_catalog_bank_detects_like_class_images(catalog, untrained):
    scene = shared_path("data", "grocery-store", *SCENE)
    direct = untrained.detect(scene, {n: [packshot(n)] for n in PACKSHOTS[:3]})
    from_disk = untrained.detect(scene, Catalog.open(catalog.folder, untrained).bank())
    assert len(direct) >= 10 and len(set(direct.names)) == 3
    assert detection_set(from_disk) == detection_set(direct)


def test_index_records_model_classes_and_copies_of_the_images(catalog, untrained):
    index = json.loads((catalog.folder / store.INDEX_FILE).read_text())
    assert index["format"] == "os2d-catalog" and index["key"]["model_identity"] == untrained.model_identity
    assert [c["name"] for c in index["classes"]] == list(PACKSHOTS[:3]) and index["version"] == 1
    for entry in index["classes"]:
        image = catalog.folder / entry["images"][0]
        assert image.read_bytes() == packshot(entry["name"]).read_bytes()
        assert (catalog.folder / entry["features"]).is_file() and entry["entries"] == 1


def test_add_new_class_and_extend_a_class(catalog, untrained):
    before = {c.name: c.features for c in catalog.index.classes}
    catalog.add({PACKSHOTS[3]: [packshot(PACKSHOTS[3])], PACKSHOTS[0]: [packshot(PACKSHOTS[1])]}, detector=untrained)
    again = Catalog.open(catalog.folder, untrained)
    assert again.names == list(PACKSHOTS) and again.version == 2
    extended = again.index.find(PACKSHOTS[0])
    assert extended.entries == 2 and len(extended.images) == 2
    assert not (catalog.folder / before[PACKSHOTS[0]]).exists()  # the replaced class file is gone
    # the extended class holds the features of both images, in order
    stored = store.read_class_file(catalog.folder, extended.features)["features"]
    fresh = untrained.prepare_classes({"a": [packshot(PACKSHOTS[0]), packshot(PACKSHOTS[1])]})
    torch.testing.assert_close(stored, fresh.entry_features(torch.arange(2)), rtol=0, atol=1e-6)
    assert again.bank().entry_labels.tolist() == [0, 0, 1, 2, 3]


def test_remove_deletes_files_and_unknown_names_change_nothing(catalog):
    gone = catalog.index.find(PACKSHOTS[1])
    catalog.remove([PACKSHOTS[1]])
    assert catalog.names == [PACKSHOTS[0], PACKSHOTS[2]]
    assert not (catalog.folder / gone.features).exists() and not (catalog.folder / gone.images[0]).exists()
    index_before = (catalog.folder / store.INDEX_FILE).read_bytes()
    with pytest.raises(InvalidInputError, match="'nope'.* not in catalog"):
        catalog.remove([PACKSHOTS[0], "nope"])
    assert (catalog.folder / store.INDEX_FILE).read_bytes() == index_before


def test_other_model_is_refused_naming_both_then_rebuild_matches_fresh_features(catalog, untrained):
    default = Detector.load("default", **SETTINGS)
    with pytest.raises(CatalogMismatchError) as info:
        Catalog.open(catalog.folder, default)
    message = str(info.value)
    assert untrained.model_identity in message and default.model_identity in message and "rebuild" in message
    rebuilt = Catalog.open(catalog.folder, default, rebuild=True)
    assert rebuilt.key == default.bank_key and rebuilt.names == list(PACKSHOTS[:3])
    fresh = default.prepare_classes({n: [packshot(n)] for n in PACKSHOTS[:3]})
    bank = rebuilt.bank()
    torch.testing.assert_close(bank.entry_features(torch.arange(3)), fresh.entry_features(torch.arange(3)),
                               rtol=0, atol=1e-6)
    with pytest.raises(CatalogMismatchError):
        Catalog.open(catalog.folder, untrained)
    files = sorted(p.name for p in (catalog.folder / store.FEATURES_DIR).iterdir())
    assert len(files) == 3  # the old class files are removed


def test_rebuild_with_the_same_model_recomputes(catalog, untrained):
    old = [c.features for c in catalog.index.classes]
    catalog.rebuild(untrained)
    assert [c.features for c in catalog.index.classes] != old and catalog.version == 2
    assert all(not (catalog.folder / rel).exists() for rel in old)


def test_class_settings_are_part_of_the_identity(catalog):
    bigger = Detector.load("untrained", class_size=256)
    with pytest.raises(CatalogMismatchError, match="class_size is 240, the detector's is 256"):
        Catalog.open(catalog.folder, bigger)


def test_margin_trimming_is_part_of_the_identity(catalog):
    trimming = Detector.load("untrained", trim_class_images=True, **SETTINGS)
    with pytest.raises(CatalogMismatchError, match="its trim is False, the detector's is True"):
        Catalog.open(catalog.folder, trimming)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_damaged_class_file_gives_a_clear_error(catalog, untrained, damage):
    path = catalog.folder / catalog.index.find(PACKSHOTS[1]).features
    if damage == "garbage":
        path.write_bytes(b"\x00\x01 not safetensors" * 20)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    else:
        path.unlink()
    with pytest.raises(InvalidInputError, match=f"{PACKSHOTS[1]}.*(corrupt or truncated|missing)"):
        Catalog.open(catalog.folder, untrained).bank()


def test_failed_add_leaves_the_catalog_as_it_was(catalog, untrained, tmp_path):
    from PIL import Image

    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (10, 40), "red").save(tiny)  # readable, but too small to give class features
    files_before = sorted(p.relative_to(catalog.folder) for p in catalog.folder.rglob("*"))
    with pytest.raises(InvalidInputError, match="too small"):
        catalog.add({"new": [packshot(PACKSHOTS[3])], "tiny": [tiny]}, detector=untrained)
    assert sorted(p.relative_to(catalog.folder) for p in catalog.folder.rglob("*")) == files_before
    assert Catalog.open(catalog.folder, untrained).names == list(PACKSHOTS[:3])


def test_create_refuses_a_folder_that_is_not_empty(tmp_path, untrained):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not empty"):
        Catalog.create(tmp_path / "busy", untrained)
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]


def test_empty_catalog_has_no_bank(tmp_path, untrained):
    with pytest.raises(InvalidInputError, match="has no classes"):
        Catalog.create(tmp_path / "empty", untrained).bank()


def test_copy_of_a_catalog_folder_still_opens(catalog, untrained, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(catalog.folder, moved)
    assert Catalog.open(moved, untrained).names == list(PACKSHOTS[:3])
