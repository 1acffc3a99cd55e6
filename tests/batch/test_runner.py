"""The batch runner's pieces: records, Ray addresses, paths sent to Ray workers, the worker count."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from shared_data import shared_path
from os2d.batch.runner import BatchJob, _absolute, _endpoint, check_ray_address, detect_record, run_batch
from os2d.errors import InvalidInputError

LOGO = ("data", "flickrlogos27", "classes", "images", "Pepsi.jpg")


@pytest.fixture(scope="module")
def job_and_built():
    job = BatchJob(method="exact", model="untrained", classes={"Pepsi": [str(shared_path(*LOGO))]},
                   settings={"scales": [320.0], "score_threshold": float("-inf"), "max_detections": 4})
    return job, job.build()


def test_record_of_a_scene_and_of_an_unreadable_one(job_and_built, tmp_path):
    _, (runner, bank) = job_and_built
    scene = shared_path("data", "flickrlogos27", "src", "108232382.jpg")
    record = detect_record(runner, bank, scene)
    assert (record["width"], record["height"]) == (500, 332) and record["image"] == str(scene)
    scores = [d["score"] for d in record["detections"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    error = detect_record(runner, bank, broken)
    assert set(error) == {"image", "error"} and "broken.jpg" in error["error"] and "\n" not in error["error"]
    with pytest.raises(InvalidInputError, match="broken.jpg"):
        detect_record(runner, bank, broken, keep_going=False)


def test_run_batch_in_this_process_keeps_the_order(job_and_built):
    job, built = job_and_built
    scenes = [shared_path("data", "flickrlogos27", "src", n) for n in ("108232417.jpg", "108232382.jpg")]
    records = list(run_batch(job, scenes, local=built))
    assert [r["image"] for r in records] == [str(s) for s in scenes]
    assert records[1]["detections"] == detect_record(*built, scenes[1])["detections"]


def test_run_batch_refuses_no_workers(job_and_built):
    with pytest.raises(InvalidInputError, match="--workers must be at least 1, got 0"):
        run_batch(job_and_built[0], [Path("a.jpg")], workers=0)


def test_ray_workers_get_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    job = BatchJob(method="exact", model="model", classes={"a": ["cls/a.png"]}, catalog="cat")
    moved = _absolute(job)
    assert moved.classes == {"a": [str(tmp_path / "cls" / "a.png")]}
    assert moved.catalog == str(tmp_path / "cat") and moved.model == str(tmp_path / "model")
    assert _absolute(BatchJob(method="exact", model="default")).model == "default"  # a built-in name


@pytest.mark.parametrize("address, endpoint", [("10.0.0.5:6379", ("10.0.0.5", 6379)),
                                               ("ray://head:10001", ("head", 10001)),
                                               ("ray://head", ("head", 10001)),
                                               ("[::1]:6379", ("::1", 6379))])
def test_addresses(address, endpoint):
    assert _endpoint(address) == endpoint


@pytest.mark.parametrize("address", ["", "head", "head:port", "head:0", "head:70000", ":6379"])
def test_bad_addresses(address):
    with pytest.raises(InvalidInputError, match="--ray must be auto, HOST:PORT or ray://HOST:PORT"):
        _endpoint(address)


def test_unreachable_cluster_fails_fast_and_clearly():
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(InvalidInputError, match=f"nothing answers at 127.0.0.1:{port}"):
        check_ray_address(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 30  # not Ray's minutes of retries


def test_auto_without_a_cluster_names_the_problem(monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # RAY_ADDRESS is what 'auto' uses first
    with pytest.raises(InvalidInputError, match="cannot connect to the Ray cluster at 'auto'"):
        check_ray_address("auto")


def test_worker_threads_default_one_per_ray_actor(monkeypatch):
    from os2d.cli import detect

    monkeypatch.setattr(detect, "available_cores", lambda: 8)
    assert detect._worker_threads(None, workers=1, ray="auto") == 1
    assert detect._worker_threads(None, workers=2, ray=None) == 4
    assert detect._worker_threads("3", workers=2, ray="auto") == 3
