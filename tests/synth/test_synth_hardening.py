"""Issue 11 regressions for ``os2d synth``: FIFOs, truncated and huge backgrounds, empty
datasets, no partial output (staging folder), docs example."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from os2d.data.datasets import read_os2d_csv
from os2d.errors import InputTooLargeError, InvalidInputError
from os2d.synth import SynthConfig, generate_dataset
from os2d.synth.output import remove_stale_staging

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _cfg(**kw) -> SynthConfig:
    base = dict(num_scenes=3, seed=3, scene_size=256, max_objects=3)
    base.update(kw)
    return SynthConfig(**base)


def _listing(folder: Path):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _truncated_jpeg(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def test_fifo_background_is_refused_without_blocking(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    outcome = {}

    def run():
        try:
            generate_dataset([classes], [backgrounds, fifo], tmp_path / "out", _cfg())
        except InvalidInputError as err:
            outcome["error"] = str(err)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # unblock the reader so the thread can end, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("a FIFO background blocked generate_dataset")
    assert "not a regular file" in outcome["error"] and "pipe.jpg" in outcome["error"]
    assert not (tmp_path / "out").exists()


def test_fifo_class_image_is_refused(tiny_inputs, tmp_path):
    _, backgrounds = tiny_inputs
    fifo = tmp_path / "logo.png"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        generate_dataset([fifo], [backgrounds], tmp_path / "out", _cfg())


def test_truncated_background_leaves_no_output(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    bgs = tmp_path / "bgs"
    bgs.mkdir()
    _truncated_jpeg(backgrounds / "bg0.jpg", bgs / "cut.jpg")  # the header is fine, the pixels end early
    out = tmp_path / "new" / "deeper" / "out"
    before = _listing(tmp_path)
    with pytest.raises(InvalidInputError, match="corrupt or truncated.*cut.jpg"):
        generate_dataset([classes], [bgs], out, _cfg())
    assert _listing(tmp_path) == before  # no output, no parents it created, no staging folder


def test_failed_overwrite_keeps_previous_dataset(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    out = tmp_path / "out"
    generate_dataset([classes], [backgrounds], out, _cfg())
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bgs = tmp_path / "bgs"
    bgs.mkdir()
    _truncated_jpeg(backgrounds / "bg0.jpg", bgs / "cut.jpg")
    with pytest.raises(InvalidInputError, match="truncated"):
        generate_dataset([classes], [bgs], out, _cfg(seed=9), overwrite=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bgs", "in_backgrounds", "in_classes", "out"]


def test_interrupt_leaves_no_output(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    out = tmp_path / "out"

    def interrupt(_n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_dataset([classes], [backgrounds], out, _cfg(), progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in_backgrounds", "in_classes"]


def test_stale_staging_of_dead_run_is_removed(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.synth-{dead.pid}-abc.tmp"
    (stale / "src").mkdir(parents=True)
    (stale / "src" / "synth_000000.jpg").write_bytes(b"partial")
    alive = tmp_path / f".out.synth-{os.getppid()}-xyz.tmp"  # a running process: kept
    alive.mkdir()
    other = tmp_path / f".other.synth-{dead.pid}-abc.tmp"  # another output's staging: kept
    other.mkdir()
    generate_dataset([classes], [backgrounds], tmp_path / "out", _cfg())
    assert not stale.exists() and alive.is_dir() and other.is_dir()
    remove_stale_staging(tmp_path / "out")
    assert alive.is_dir()


def test_written_dataset_has_normal_permissions(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    out = tmp_path / "out"
    generate_dataset([classes], [backgrounds], out, _cfg())
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask


def test_huge_background_is_too_large_not_unreadable(tiny_inputs, tmp_path):
    classes, _ = tiny_inputs
    huge = tmp_path / "huge.ppm"
    huge.write_bytes(b"P6\n30000 30000\n255\n" + bytes(300))  # header only: never decoded
    with pytest.raises(InputTooLargeError, match=r"too large.*huge.ppm"):
        generate_dataset([classes], [huge], tmp_path / "out", _cfg())
    assert not (tmp_path / "out").exists()


def test_zero_scenes_refused():
    with pytest.raises(InvalidInputError, match="num_scenes=0 must be >= 1"):
        SynthConfig(num_scenes=0)


def test_no_object_fits_is_an_error(tiny_inputs, tmp_path):
    classes, backgrounds = tiny_inputs
    cfg = _cfg(scene_size=64, object_size=(0.05, 0.2), min_box_size=12)
    with pytest.raises(InvalidInputError, match="no object could be placed in any of the 3 scenes"):
        generate_dataset([classes], [backgrounds], tmp_path / "out", cfg)
    assert not (tmp_path / "out").exists()


def test_config_type_errors_are_user_errors():
    with pytest.raises(InvalidInputError, match="object_size='ab' must be a pair"):
        SynthConfig(object_size="ab")
    with pytest.raises(InvalidInputError, match="max_iou='x' must be a number"):
        SynthConfig(max_iou="x")


def _docs_commands():
    text = (PROJECT_ROOT / "docs" / "synth.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).replace("\\\n", " ")
    return [shlex.split(line) for line in block.splitlines() if line.strip().startswith("os2d synth")]


def test_docs_examples_run_from_the_project_root(tmp_path):
    commands = _docs_commands()
    assert len(commands) == 2
    for argv in commands:
        out_index = argv.index("--out") + 1
        out = tmp_path / argv[out_index]
        argv[out_index] = str(out)  # keep the project tree clean
        argv[argv.index("--num-scenes") + 1] = "2"
        argv += ["--scene-size", "160"]
        argv[0:2] = [sys.executable, "-m", "os2d.cli.main", "synth"]
        proc = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr
        dataset = read_os2d_csv(out / "classes" / "synth.csv")
        assert len(dataset.images) >= 1
        assert json.loads((out / "synth_config.json").read_text())["complete"]
