"""Dataset writing: OS2D CSV layout, round trips, determinism, output-folder safety, errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from os2d.synth import CSV_COLUMNS, BackgroundPool, SynthConfig, compose_scene, generate_dataset
from os2d.synth.writer import collect_images, load_classes


def _cfg(**kw) -> SynthConfig:
    base = dict(num_scenes=4, seed=3, scene_size=256, max_objects=4)
    base.update(kw)
    return SynthConfig(**base)


def _rows(out: Path, name: str = "synth"):
    with open(out / "classes" / f"{name}.csv", newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _tree(out: Path):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_layout_columns_and_ranges(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    out = tmp_path / "out"
    summary = generate_dataset([classes], [backgrounds], out, _cfg(split="val-synth", name="toy"))
    header, rows = _rows(out, "toy")
    assert tuple(header) == CSV_COLUMNS
    assert len(rows) == summary.num_boxes > 0
    assert sorted(p.name for p in (out / "classes" / "images").iterdir()) == ["green.png", "logo.jpg", "red.png"]
    assert (out / "classes" / "images" / "red.png").read_bytes() == (classes / "red.png").read_bytes()
    class_ids = {"green": 0, "logo": 1, "red": 2}  # sorted names
    assert [int(r["gtbboxid"]) for r in rows] == list(range(len(rows)))
    for r in rows:
        assert r["split"] == "val-synth"
        assert class_ids[r["classname"]] == int(r["classid"])
        assert r["classfilename"].rsplit(".", 1)[0] == r["classname"]
        assert r["difficult"] in ("0", "1")
        assert r["imagefilename"] == f"toy_{int(r['imageid']):06d}.jpg"
        lx, ty, rx, by = (float(r[k]) for k in ("lx", "ty", "rx", "by"))
        assert 0 <= lx < rx <= 1 and 0 <= ty < by <= 1
        with Image.open(out / "src" / r["imagefilename"]) as im:
            assert im.format == "JPEG" and max(im.size) == 256
            assert (rx - lx) * im.width >= 16 - 1e-6 and (by - ty) * im.height >= 16 - 1e-6
    manifest = json.loads((out / "synth_config.json").read_text())
    assert manifest["complete"] and manifest["seed"] == 3
    assert SynthConfig.from_dict(manifest["config"]) == _cfg(split="val-synth", name="toy")
    assert set(manifest["files"]) == set(_tree(out))


def test_relative_boxes_round_trip(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    out = tmp_path / "out"
    cfg = _cfg()
    generate_dataset([classes], [backgrounds], out, cfg)
    _, rows = _rows(out)
    loaded = load_classes(collect_images([classes], what="class image"), mask=cfg.mask)
    pool = BackgroundPool(collect_images([backgrounds], what="background image"), cfg.scene_size)
    expected = []
    for i in range(cfg.num_scenes):
        scene = compose_scene(i, loaded, pool, cfg)
        w, h = scene.size
        expected += [(i, o.class_name, o.box, w, h) for o in scene.objects]
    assert len(expected) == len(rows)
    for (i, name, box, w, h), r in zip(expected, rows):
        assert int(r["imageid"]) == i and r["classname"] == name
        back = (float(r["lx"]) * w, float(r["ty"]) * h, float(r["rx"]) * w, float(r["by"]) * h)
        assert np.allclose(back, box, atol=1e-6)


def test_deterministic_and_prefix_stable(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    a, b, c, d = (tmp_path / n for n in "abcd")
    generate_dataset([classes], [backgrounds], a, _cfg())
    generate_dataset([classes], [backgrounds], b, _cfg())
    ta, tb = _tree(a), _tree(b)
    assert ta == tb  # identical CSV, JSON and image bytes
    generate_dataset([classes], [backgrounds], c, _cfg(seed=4))
    assert _tree(c)["classes/synth.csv"] != ta["classes/synth.csv"]
    # scene i does not depend on how many scenes are generated
    generate_dataset([classes], [backgrounds], d, _cfg(num_scenes=2))
    td = _tree(d)
    for rel in td:
        if rel.startswith("src/"):
            assert td[rel] == ta[rel]
    _, rows_a = _rows(a)
    _, rows_d = _rows(d)
    assert rows_d == rows_a[:len(rows_d)]


def test_refuses_non_empty_output(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    out = tmp_path / "out"
    out.mkdir()
    user_file = out / "notes.txt"
    user_file.write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        generate_dataset([classes], [backgrounds], out, _cfg())
    with pytest.raises(ValueError, match="refusing to overwrite"):
        generate_dataset([classes], [backgrounds], out, _cfg(), overwrite=True)
    assert user_file.read_text() == "mine" and sorted(out.iterdir()) == [user_file]


def test_overwrite_removes_only_own_files(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    out = tmp_path / "out"
    generate_dataset([classes], [backgrounds], out, _cfg(num_scenes=4))
    (out / "src" / "user.jpg").write_bytes(b"user data")
    (out / "readme.md").write_text("user")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    manifest = json.loads((out / "synth_config.json").read_text())
    manifest["files"] += ["../outside.txt", str(outside), "src/../../outside.txt"]
    (out / "synth_config.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="not empty"):
        generate_dataset([classes], [backgrounds], out, _cfg(num_scenes=2))
    generate_dataset([classes], [backgrounds], out, _cfg(num_scenes=2), overwrite=True)
    assert outside.read_text() == "keep"
    assert (out / "src" / "user.jpg").read_bytes() == b"user data"
    assert (out / "readme.md").read_text() == "user"
    scenes = sorted(p.name for p in (out / "src").iterdir() if p.name.startswith("synth_"))
    assert scenes == ["synth_000000.jpg", "synth_000001.jpg"]


def test_overwrite_refuses_to_clobber_unlisted_file(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    out = tmp_path / "out"
    generate_dataset([classes], [backgrounds], out, _cfg(num_scenes=1))
    stranger = out / "src" / "synth_000003.jpg"  # not written by the first run
    stranger.write_bytes(b"precious")
    with pytest.raises(ValueError, match="not written by"):
        generate_dataset([classes], [backgrounds], out, _cfg(num_scenes=4), overwrite=True)
    assert stranger.read_bytes() == b"precious"
    assert (out / "src" / "synth_000000.jpg").exists()  # nothing removed before the refusal


def test_input_errors_leave_output_untouched(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class images found"):
        generate_dataset([empty], [backgrounds], out, _cfg())
    with pytest.raises(ValueError, match="no background images found"):
        generate_dataset([classes], [empty], out, _cfg())
    with pytest.raises(FileNotFoundError, match="missing"):
        generate_dataset([classes / "missing.png"], [backgrounds], out, _cfg())
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="broken.jpg"):
        generate_dataset([broken], [backgrounds], out, _cfg())
    with pytest.raises(ValueError, match="background image is not a readable image.*broken.jpg"):
        generate_dataset([classes], [backgrounds, broken], out, _cfg())
    dup = tmp_path / "dup"
    dup.mkdir()
    (dup / "red.jpg").write_bytes((backgrounds / "bg0.jpg").read_bytes())
    with pytest.raises(ValueError, match="same name 'red'"):
        generate_dataset([classes, dup], [backgrounds], out, _cfg())
    assert not out.exists()
