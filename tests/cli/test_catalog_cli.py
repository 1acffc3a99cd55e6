"""``os2d catalog build/add/remove/rebuild/info`` and ``os2d detect --catalog`` on real packshots."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared_data import shared_path
from os2d.cli.main import _register_commands, app

_register_commands()
RUNNER = CliRunner()
PACKSHOTS = ("Alpro-Fresh-Soy-Milk", "Arla-Sour-Milk", "Bravo-Apple-Juice")
SCENES = (("Arla-Sour-Milk", "Arla-Sour-Milk_001.jpg"), ("Bravo-Apple-Juice", "Bravo-Apple-Juice_001.jpg"))
DETECT = ("--scales", "320", "--threshold", "-inf", "--max-dets", "10", "--threads", "1")
PROJECT = Path(__file__).resolve().parents[2]


def invoke(*args) -> str:
    result = RUNNER.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def flat(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


def iconic(name: str) -> Path:
    return shared_path("data", "grocery-store", "iconic", f"{name}.jpg")


def scene(cls: str, name: str) -> Path:
    return shared_path("data", "grocery-store", "photos", "test", cls, name)


@pytest.fixture
def packshots(tmp_path):
    folder = tmp_path / "packshots"
    folder.mkdir()
    for name in PACKSHOTS:
        shutil.copy(iconic(name), folder / f"{name}.jpg")
    return folder


def info(catalog: Path) -> dict:
    return json.loads(invoke("catalog", "info", catalog, "--json"))


def detections(jsonl: Path) -> dict:
    return {json.loads(line)["image"]: sorted((d["class"], round(d["score"], 5), tuple(round(v, 2) for v in d["bbox"]))
                                              for d in json.loads(line)["detections"])
            for line in jsonl.read_text().splitlines()}


def detect(tmp_path, name: str, *source) -> dict:
    out = tmp_path / f"{name}.jsonl"
    args = ["detect", *[a for s in SCENES for a in ("--image", scene(*s))], *source, "--model", "untrained",
            *DETECT, "--jsonl", out]
    invoke(*args)
    return detections(out)


def test_build_info_add_remove_and_detect_like_classes(tmp_path, packshots):
    cat = tmp_path / "cat"
    assert "3 classes" in flat(invoke("catalog", "build", packshots, "--out", cat, "--model", "untrained", "--threads", "1"))
    summary = info(cat)
    assert summary["names"] == list(PACKSHOTS) and summary["classes"] == 3
    assert summary["key"]["class_size"] == 240 and summary["model"]["identity"] == summary["key"]["model_identity"]
    text = flat(invoke("catalog", "info", cat))
    assert "3 classes" in text and PACKSHOTS[0] in text and summary["key"]["model_identity"] in text

    assert detect(tmp_path, "catalog", "--catalog", cat) == detect(tmp_path, "classes", "--classes", packshots)

    invoke("catalog", "add", cat, "--class", f"Oatly={iconic('Oatly-Natural-Oatghurt')}",
           "--class", f"{PACKSHOTS[0]}={iconic('Alpro-Blueberry-Soyghurt')}", "--model", "untrained", "--threads", "1")
    summary = info(cat)
    assert summary["names"] == [*PACKSHOTS, "Oatly"] and summary["version"] == 2
    index = json.loads((cat / "catalog.json").read_text())
    assert [c["entries"] for c in index["classes"]] == [2, 1, 1, 1]
    # the extended class matches like the same two images given as a class folder (NAME__2.jpg)
    both = tmp_path / "both"
    shutil.copytree(packshots, both)
    shutil.copy(iconic("Alpro-Blueberry-Soyghurt"), both / f"{PACKSHOTS[0]}__2.jpg")
    shutil.copy(iconic("Oatly-Natural-Oatghurt"), both / "Oatly.jpg")
    assert detect(tmp_path, "catalog2", "--catalog", cat) == detect(tmp_path, "classes2", "--classes", both)

    invoke("catalog", "remove", cat, PACKSHOTS[1], "Oatly")
    assert info(cat)["names"] == [PACKSHOTS[0], PACKSHOTS[2]]
    assert len(list((cat / "features").iterdir())) == 2 and len(list((cat / "images").iterdir())) == 3


def test_catalog_of_another_model_is_refused_then_rebuilt(tmp_path, packshots):
    cat = tmp_path / "cat"
    invoke("catalog", "build", packshots, "--out", cat, "--model", "untrained", "--threads", "1")
    built = info(cat)["key"]["model_identity"]
    before = {p: p.read_bytes() for p in cat.rglob("*") if p.is_file()}
    result = subprocess.run([sys.executable, "-m", "os2d", "detect", "--image", str(scene(*SCENES[0])), "--catalog",
                             str(cat), "--model", "default", *DETECT], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("os2d: error:"), result.stderr
    assert built in lines[0] and "untrained" in lines[0] and "os2d catalog rebuild" in lines[0]
    wanted = re.search(r"this model is (os2d-[0-9a-f-]+[0-9a-f])", lines[0]).group(1)  # weights[-calibration] hashes
    assert wanted != built
    assert {p: p.read_bytes() for p in cat.rglob("*") if p.is_file()} == before

    invoke("catalog", "rebuild", cat, "--model", "default", "--threads", "1")
    assert info(cat)["key"]["model_identity"] == wanted
    out = tmp_path / "after.jsonl"
    invoke("detect", "--image", scene(*SCENES[0]), "--catalog", cat, "--model", "default", *DETECT, "--jsonl", out)
    classes = {d["class"] for d in json.loads(out.read_text())["detections"]}
    assert classes and classes <= set(PACKSHOTS)


def test_concurrent_adds_from_two_processes_keep_both_classes(tmp_path, packshots):
    cat = tmp_path / "cat"
    invoke("catalog", "build", packshots, "--out", cat, "--model", "untrained", "--threads", "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "os2d", "catalog", "add", str(cat), "--class", f"{name}={iconic(name)}",
                               "--model", "untrained", "--threads", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for name in ("Oatly-Natural-Oatghurt", "Tropicana-Apple-Juice")]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    summary = info(cat)
    assert summary["names"][:3] == list(PACKSHOTS) and summary["version"] == 3
    assert sorted(summary["names"][3:]) == ["Oatly-Natural-Oatghurt", "Tropicana-Apple-Juice"]
    index = json.loads((cat / "catalog.json").read_text())
    named = {c["features"] for c in index["classes"]} | {i for c in index["classes"] for i in c["images"]}
    on_disk = {str(p.relative_to(cat)) for p in cat.rglob("*") if p.is_file()} - {"catalog.json", ".lock"}
    assert on_disk == named  # no file left behind by either writer, none missing


def test_layout_matches_docs(tmp_path, packshots):
    cat = tmp_path / "cat"
    shutil.copy(iconic("Oatly-Natural-Oatghurt"), packshots / f"{PACKSHOTS[0]}__2.png")
    invoke("catalog", "build", packshots, "--out", cat, "--model", "untrained", "--threads", "1")
    doc = (PROJECT / "docs" / "catalogs.md").read_text()
    block = re.search(r"<!-- layout -->\s*```text\n(.*?)```", doc, re.S).group(1)
    patterns = {}
    for line in block.splitlines()[1:]:
        entry = line.split()[0]
        regex = re.escape(entry)
        for placeholder, part in (("<id>", "[0-9a-f]{32}"), ("<n>", "[0-9]+"), ("<ext>", "[a-z]+")):
            regex = regex.replace(re.escape(placeholder), part)
        patterns[entry] = re.compile(regex + "$")
    files = [str(p.relative_to(cat)) for p in cat.rglob("*") if p.is_file()]
    for rel in files:
        assert any(p.match(rel) for p in patterns.values()), f"{rel} is not in the layout of docs/catalogs.md"
    for entry, pattern in patterns.items():
        assert any(pattern.match(rel) for rel in files), f"docs/catalogs.md lists {entry}, the catalog has none"
    index = json.loads((cat / "catalog.json").read_text())
    assert sorted(index) == sorted(re.findall(r"^\| `(\w+)` \|", doc.split("## The index")[1].split("##")[0], re.M))


def test_catalog_built_with_trimming_needs_a_trimming_detector(tmp_path, packshots):
    cat = tmp_path / "cat"
    invoke("catalog", "build", packshots, "--out", cat, "--model", "untrained", "--trim", "--threads", "1")
    assert info(cat)["key"]["trim"] is True
    result = subprocess.run([sys.executable, "-m", "os2d", "detect", "--image", str(scene(*SCENES[0])), "--catalog",
                             str(cat), "--model", "untrained", *DETECT], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "its trim is True, the detector's is False (os2d --trim/--no-trim)" in lines[0]
    assert (detect(tmp_path, "catalog", "--catalog", cat, "--trim")
            == detect(tmp_path, "classes", "--classes", packshots, "--trim")
            != detect(tmp_path, "untrimmed", "--classes", packshots))
