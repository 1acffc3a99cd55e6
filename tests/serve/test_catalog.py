"""The service catalog: SQLite mirror of an os2d catalog folder, crash recovery, deferred deletion,
foreign writers and several processes writing at once."""
from __future__ import annotations

import multiprocessing
import time

import pytest
from serve_helpers import FAST, image_bytes

from os2d.catalog import Catalog, CatalogMismatchError, store
from os2d.serve import db
from os2d.serve.catalog import ServiceCatalog, prepare_catalog
from os2d.serve.errors import EmptyCatalogError, UnknownClassError
from os2d.serve.uploads import decode_image


def decoded(seed: int):
    return decode_image(image_bytes(seed=seed), what="test image", max_pixels=10 ** 6)


@pytest.fixture
def detector(untrained):
    return untrained.with_settings(**FAST)


@pytest.fixture
def folder(tmp_path, detector):
    path = tmp_path / "cat"
    prepare_catalog(path, detector)
    return path


def opened(folder, detector, **kwargs) -> ServiceCatalog:
    return ServiceCatalog(folder, detector.bank_key, **kwargs)


def test_add_extend_remove_keep_database_and_index_in_step(folder, detector):
    cat = opened(folder, detector)
    cat.add("a", [decoded(1)], detector=detector)
    cat.add("b", [decoded(2)], detector=detector)
    cat.add("a", [decoded(3), decoded(4)], detector=detector)
    index = store.read_index(folder)
    assert [(c.name, c.entries, len(c.images)) for c in index.classes] == [("a", 3, 3), ("b", 1, 1)]
    assert [(r.name, r.entries, r.images) for r in cat.classes()] == [("a", 3, 3), ("b", 1, 1)]
    assert cat.version() == index.version == 3
    cat.remove("a")
    assert [c.name for c in store.read_index(folder).classes] == ["b"] == [r.name for r in cat.classes()]
    images = cat.images("b")
    assert images[0].bytes == len(image_bytes(seed=2)) and (images[0].width, images[0].height) == (64, 48)


def test_extended_class_keeps_its_first_features(folder, detector):
    cat = opened(folder, detector)
    cat.add("a", [decoded(1)], detector=detector)
    first = cat.bank(["a"]).features.clone()
    cat.add("a", [decoded(2)], detector=detector)
    both = cat.bank(["a"]).features
    assert both.shape[0] == 2 and bool((both[0] == first[0]).all())


def test_bank_raises_for_empty_catalog_and_unknown_names(folder, detector):
    cat = opened(folder, detector)
    with pytest.raises(EmptyCatalogError):
        cat.bank()
    cat.add("a", [decoded(1)], detector=detector)
    with pytest.raises(UnknownClassError, match="ghost"):
        cat.bank(["a", "ghost"])


def test_a_worker_sees_changes_made_by_another(folder, detector):
    mine, theirs = opened(folder, detector), opened(folder, detector)
    mine.add("a", [decoded(1)], detector=detector)
    assert theirs.bank().names == ["a"]
    mine.add("b", [decoded(2)], detector=detector)
    mine.remove("a")
    assert theirs.bank().names == ["b"]


def test_replaced_files_stay_readable_for_the_grace_period(folder, detector):
    cat = opened(folder, detector, trash_grace_s=3600)
    cat.add("a", [decoded(1)], detector=detector)
    old_bank = cat.bank()  # a detection that started before the change
    cat.remove("a")
    cat.add("b", [decoded(2)], detector=detector)
    assert old_bank.features.shape[0] == 1  # its class file is still there


def test_expired_trash_is_deleted_at_the_next_change(folder, detector):
    cat = opened(folder, detector, trash_grace_s=0)
    cat.add("a", [decoded(1)], detector=detector)
    files = [folder / rel for rel in (store.read_index(folder).classes[0].features,
                                      *store.read_index(folder).classes[0].images)]
    cat.remove("a")
    time.sleep(0.01)
    cat.add("b", [decoded(2)], detector=detector)
    assert not any(path.exists() for path in files)


def test_index_ahead_of_database_is_recovered_from_the_index(folder, detector):
    """A crash after catalog.json was replaced but before COMMIT: the index wins at the next start."""
    cat = opened(folder, detector)
    cat.add("a", [decoded(1)], detector=detector)
    foreign = Catalog.open(folder, detector)
    foreign.add({"b": [image_bytes(seed=2)]}, detector=detector)  # the index moves on without the database
    assert [r.name for r in cat.classes()] == ["a"]
    prepare_catalog(folder, detector)
    assert [r.name for r in cat.classes()] == ["a", "b"] and cat.bank().names == ["a", "b"]


def test_changes_by_os2d_catalog_are_picked_up_at_the_next_write(folder, detector):
    cat = opened(folder, detector)
    cat.add("a", [decoded(1)], detector=detector)
    Catalog.open(folder, detector).add({"a": [image_bytes(seed=5)]}, detector=detector)  # replaces a's file
    cat.add("c", [decoded(3)], detector=detector)
    assert [(r.name, r.entries) for r in cat.classes()] == [("a", 2), ("c", 1)]
    assert cat.bank().features.shape[0] == 3


def test_orphans_of_a_crashed_writer_are_collected(folder, detector):
    stray = folder / store.FEATURES_DIR / "deadbeef.safetensors"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"half written")
    prepare_catalog(folder, detector)
    with db.opened(folder) as conn:
        assert f"{store.FEATURES_DIR}/deadbeef.safetensors" in db.trashed(conn)


def test_catalog_of_another_model_is_refused_or_rebuilt(folder, detector, untrained):
    opened(folder, detector).add("a", [decoded(1)], detector=detector)
    other = untrained.with_settings(**{**FAST, "class_size": 80})
    with pytest.raises(CatalogMismatchError, match="--rebuild"):
        prepare_catalog(folder, other)
    prepare_catalog(folder, other, rebuild=True)
    rebuilt = opened(folder, other)
    assert rebuilt.bank().names == ["a"] and rebuilt.bank().key == other.bank_key


def test_non_catalog_folder_is_refused(tmp_path, detector):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        prepare_catalog(tmp_path, detector)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def _writer(folder, prefix: str, count: int) -> None:
    import torch

    from os2d import Detector

    torch.set_num_threads(1)
    det = Detector.load("untrained", **FAST)
    cat = ServiceCatalog(folder, det.bank_key)
    for i in range(count):
        cat.add(f"{prefix}{i}", [decoded(i)], detector=det)
        cat.add("shared", [decoded(100 + i)], detector=det)  # every process extends the same class
        if i % 2:
            cat.remove(f"{prefix}{i}")


def test_several_processes_writing_at_once_lose_nothing(folder):
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_writer, args=(folder, p, 4)) for p in ("x", "y", "z")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    index = store.read_index(folder)
    names = sorted(c.name for c in index.classes)
    assert names == sorted(["shared"] + [f"{p}{i}" for p in "xyz" for i in (0, 2)])
    assert index.find("shared").entries == 12 and len(index.find("shared").images) == 12
    for entry in index.classes:  # every class file is whole
        assert store.read_class_file(folder, entry.features)["features"].shape[0] == entry.entries
    with db.opened(folder) as conn:
        assert db.read_version(conn) == index.version == 3 * (4 + 4 + 2)
        assert [(r.name, r.entries) for r in sorted(db.read_classes(conn), key=lambda r: r.name)] == \
            [(c.name, c.entries) for c in sorted(index.classes, key=lambda c: c.name)]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
