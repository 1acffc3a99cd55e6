"""Batch ``os2d detect`` on real photos: folders, JSON lines, --workers, --resume after SIGKILL, Ray.

One uninterrupted single-process run (module fixture) is the reference every other way of running
the same job is compared with: same images, same detections (as sets per image, scores to 1e-5).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from shared_data import shared_path
from os2d.cli.main import _register_commands, app
from os2d.draw.crops import crop_box

_register_commands()
RUNNER = CliRunner()
PHOTOS = ("1075391489.jpg", "108232382.jpg", "108232417.jpg", "109950015.jpg", "1107796028.jpg",
          "1111800334.jpg", "117933049.jpg", "1201452086.jpg", "1230939811.jpg", "123937306.jpg")
LOGOS = ("Adidas", "Pepsi", "Google")
JOB = ("--scales", "320,400", "--threshold", "-inf", "--max-dets", "5", "--threads", "1")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_DISABLE_USAGE_STATS": "1"}


def os2d(*args, cwd=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "os2d", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=timeout)


def read_lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def detection_sets(lines, *, key=lambda image: Path(image).name) -> dict:
    """{image name: sorted (class, score to 1e-5, bbox to 0.01 px)}; each image must appear once."""
    names = [key(line["image"]) for line in lines]
    assert len(names) == len(set(names)), f"an image appears twice: {sorted(names)}"
    return {key(line["image"]): sorted((d["class"], round(d["score"], 5), tuple(round(v, 2) for v in d["bbox"]))
                                       for d in line["detections"]) for line in lines}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    scenes, classes = root / "scenes", root / "classes"
    scenes.mkdir()
    classes.mkdir()
    src = shared_path("data", "flickrlogos27")
    for name in PHOTOS:
        shutil.copy(src / "src" / name, scenes / name)
    for logo in LOGOS:
        shutil.copy(src / "classes" / "images" / f"{logo}.jpg", classes / f"{logo}.jpg")
    return root


@pytest.fixture(scope="module")
def reference(data):
    """The single-process run over the folder, with every output."""
    out = data / "reference"
    out.mkdir()
    result = RUNNER.invoke(app, ["detect", "--image", str(data / "scenes"), "--classes", str(data / "classes"), *JOB,
                                 "--jsonl", str(out / "r.jsonl"), "--json", str(out / "r.json"),
                                 "--coco", str(out / "coco.json"), "--draw", str(out / "drawn"),
                                 "--crops", str(out / "crops")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_folder_gives_one_line_per_image_as_the_api(data, reference):
    from os2d.detector import Detector

    lines = read_lines(reference / "r.jsonl")
    assert sorted(Path(line["image"]).name for line in lines) == sorted(PHOTOS)
    for line in lines:
        assert set(line) == {"image", "width", "height", "seconds", "detections"}
        with Image.open(line["image"]) as img:
            assert (line["width"], line["height"]) == img.size
        # each class keeps its best 5 after its NMS, then one label per object may drop some of them
        assert 1 <= len(line["detections"]) <= 5
        for det in line["detections"]:
            x1, y1, x2, y2 = det["bbox"]
            assert det["class"] in LOGOS and 0 <= x1 < x2 <= line["width"] and 0 <= y1 < y2 <= line["height"]
    detector = Detector.load("default", scales=(320.0, 400.0), score_threshold=float("-inf"), max_detections=5)
    bank = detector.prepare_classes({logo: [data / "classes" / f"{logo}.jpg"] for logo in LOGOS})
    for name in PHOTOS:
        records = detector.detect(data / "scenes" / name, bank).to_records()
        assert detection_sets([{"image": name, "detections": records}]) == \
            {k: v for k, v in detection_sets(lines).items() if k == name}


def test_json_coco_drawings_and_crops_agree_with_the_jsonl(reference):
    from pycocotools.coco import COCO

    lines = {Path(line["image"]).name: line for line in read_lines(reference / "r.jsonl")}
    records = json.loads((reference / "r.json").read_text())
    assert detection_sets([{"image": n, "detections": [r for r in records if r["image"] == n]} for n in lines]) == \
        detection_sets(list(lines.values()))
    coco = COCO(str(reference / "coco.json"))
    assert sorted(img["file_name"] for img in coco.dataset["images"]) == sorted(PHOTOS)
    assert sorted(c["name"] for c in coco.dataset["categories"]) == sorted(LOGOS)
    assert len(coco.getAnnIds()) == sum(len(line["detections"]) for line in lines.values())
    for img in coco.dataset["images"]:
        line = lines[img["file_name"]]
        assert (img["width"], img["height"]) == (line["width"], line["height"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        got = sorted((coco.cats[a["category_id"]]["name"], round(a["score"], 5),
                      tuple(round(v, 2) for v in (a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                                  a["bbox"][1] + a["bbox"][3]))) for a in anns)
        assert got == detection_sets([line])[img["file_name"]]
    for name, line in lines.items():
        with Image.open(reference / "drawn" / f"{Path(name).stem}_detections.png") as drawn:
            assert drawn.width == line["width"] and drawn.height >= line["height"]
        crops = sorted((reference / "crops").glob(f"{Path(name).stem}_*.png"))
        assert len(crops) == len(line["detections"])
        best = max(line["detections"], key=lambda d: d["score"])
        first = next(c for c in crops if c.name.startswith(f"{Path(name).stem}_001_"))
        left, top, right, bottom = crop_box(best["bbox"], (line["width"], line["height"]))
        with Image.open(first) as crop:
            assert crop.size == (right - left, bottom - top)


def test_two_workers_give_the_same_detections(data, reference, tmp_path):
    out = tmp_path / "w2.jsonl"
    result = os2d("detect", "--image", data / "scenes", "--classes", data / "classes", *JOB, "--jsonl", out,
                  "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert detection_sets(read_lines(out)) == detection_sets(read_lines(reference / "r.jsonl"))


def _children(pid: int) -> list:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_resume_after_sigkill_finishes_every_image_once(data, reference, tmp_path):
    out = tmp_path / "killed.jsonl"
    args = ["detect", "--image", str(data / "scenes"), "--classes", str(data / "classes"), *JOB, "--jsonl", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "os2d", *args, "--workers", "2"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while (not out.exists() or out.read_bytes().count(b"\n") < 2) and proc.poll() is None:
        assert time.monotonic() < deadline, "the batch run wrote no 2 lines in 10 minutes"
        time.sleep(0.02)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = out.read_bytes().count(b"\n")
    assert 2 <= done < len(PHOTOS), f"{done} lines: the run was not killed midway"
    assert workers, "the run had no worker processes"
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "worker processes outlived their killed parent"

    result = os2d(*args, "--resume")
    assert result.returncode == 0, result.stderr
    assert f"{done} of {len(PHOTOS)} scenes are already in" in result.stderr
    lines = read_lines(out)
    assert len(lines) == len(PHOTOS)
    assert detection_sets(lines) == detection_sets(read_lines(reference / "r.jsonl"))


def test_corrupt_image_in_a_folder_gives_an_error_line_and_exit_2(data, reference, tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for name in PHOTOS[:3]:
        shutil.copy(data / "scenes" / name, scenes / name)
    (scenes / "0000-broken.jpg").write_bytes((data / "scenes" / PHOTOS[0]).read_bytes()[:300])
    out = tmp_path / "r.jsonl"
    result = os2d("detect", "--image", scenes, "--classes", data / "classes", *JOB, "--jsonl", out)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert [line for line in lines if line.startswith("os2d: error:")] == [lines[-1]]
    assert "1 of 4 scene images could not be read" in lines[-1] and "0000-broken.jpg" in lines[-1]
    records = read_lines(out)
    errors = [r for r in records if "error" in r]
    assert len(records) == 4 and len(errors) == 1 and errors[0]["image"].endswith("0000-broken.jpg")
    good = [r for r in records if "error" not in r]
    expected = detection_sets(read_lines(reference / "r.jsonl"))
    assert detection_sets(good) == {name: expected[name] for name in PHOTOS[:3]}


# --------------------------------------------------------------------------------- Ray
@pytest.fixture
def ray_cluster():
    """A local Ray cluster of 2 CPUs (``ray start --head --block`` in its own process group)."""
    pytest.importorskip("ray")
    temp = Path(tempfile.mkdtemp(prefix="os2d-ray-", dir="/tmp"))  # short: Ray's socket paths have a limit
    log = temp / "start.log"
    ray_bin = Path(sys.executable).with_name("ray")
    command = [str(ray_bin) if ray_bin.exists() else "ray", "start", "--head", "--block", "--num-cpus", "2",
               "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp), "--port", "0",
               "--object-store-memory", str(100 * 1024 * 1024)]
    with open(log, "w") as handle:
        head = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=ENV, cwd=temp,
                                start_new_session=True)
    try:
        address = None
        deadline = time.monotonic() + 180
        while address is None:
            assert head.poll() is None, f"ray start failed:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the Ray cluster did not start:\n{log.read_text()}"
            for line in log.read_text().splitlines():
                if "ray start --address=" in line:
                    address = line.split("--address=")[1].strip().strip("'\"")
            time.sleep(0.5)
        yield address
    finally:
        _stop_cluster(head)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_cluster(head: subprocess.Popen) -> None:
    """SIGTERM to ``ray start --block`` (it stops its processes in order), then SIGKILL what is left of
    its process group (only the processes this test started)."""
    head.terminate()
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(head.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait(timeout=10)


def test_ray_auto_on_a_local_cluster_gives_the_same_detections(data, reference, ray_cluster, tmp_path):
    # relative paths from another folder than the cluster's: workers must still find the files
    out = tmp_path / "ray.jsonl"
    result = subprocess.run([sys.executable, "-m", "os2d", "detect", "--image", "scenes", "--classes", "classes",
                             *JOB, "--jsonl", str(out), "--ray", "auto"], capture_output=True, text=True,
                            env={**ENV, "RAY_ADDRESS": ray_cluster}, cwd=data, timeout=900)
    assert result.returncode == 0, result.stderr
    lines = read_lines(out)
    assert sorted(line["image"] for line in lines) == sorted(f"scenes/{name}" for name in PHOTOS)
    assert detection_sets(lines) == detection_sets(read_lines(reference / "r.jsonl"))
