"""``os2d serve`` as a real process: one-line errors for bad options, graceful shutdown."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from serve_helpers import FAST, ServerProcess, image_bytes

from os2d.cli.main import _register_commands, run
from os2d.serve.catalog import prepare_catalog

_register_commands()

UNTRAINED = ["--model", "untrained", "--scales", "256", "--class-size", "64", "--threshold", "-1", "--max-dets", "5"]


def run_serve(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "os2d.cli.main", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("os2d: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in errors[0]


def test_port_in_use_is_one_line_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_serve("--catalog", str(tmp_path / "cat"), "--port", str(port), *UNTRAINED)
    assert_one_line_error(result, f"port {port}", "in use")
    assert not (tmp_path / "cat").exists()  # nothing was created


def test_catalog_of_another_model_is_refused_then_rebuilt(tmp_path, untrained):
    folder = tmp_path / "cat"
    prepare_catalog(folder, untrained.with_settings(**{**FAST, "class_size": 80}))
    result = run_serve("--catalog", str(folder), "--port", "0", *UNTRAINED)
    assert_one_line_error(result, "--rebuild", "class_size")
    with ServerProcess(["--catalog", str(folder), "--rebuild", *UNTRAINED]) as server:
        assert server.client().get("/health").json()["classes"] == 0
        assert server.stop() == 0


def test_bad_option_is_one_line_error_from_the_script(tmp_path):
    assert_one_line_error(run_serve("--catalog", str(tmp_path / "cat"), "--mode", "turbo", *UNTRAINED), "mode")


@pytest.mark.parametrize("args, needle", [
    (["--workers", "0"], "workers"),
    (["--port", "70000"], "--port"),
    (["--max-upload-mb", "-1"], "--max-upload-mb"),
    (["--threads", "many"], "--threads"),
    (["--host", "no such host"], "--host"),
    (["--request-timeout", "0"], "request_timeout"),
])
def test_bad_options_are_refused_before_anything_starts(tmp_path, capsys, args, needle):
    """The same command in this process (options are checked before the model loads)."""
    code = run(["serve", "--catalog", str(tmp_path / "cat"), "--port", "0", *UNTRAINED, *args])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("os2d: error:")]
    assert code == 2 and len(errors) == 1 and needle in errors[0]
    assert not (tmp_path / "cat").exists()


def test_folder_that_is_not_a_catalog_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    assert_one_line_error(run_serve("--catalog", str(tmp_path), "--port", "0", *UNTRAINED), "not empty")
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_request_in_flight_and_exits_0(tmp_path, sig):
    slow = ["--model", "untrained", "--scales", "1024,1280,1600,2048,2560", "--threshold", "-1"]
    with ServerProcess(["--catalog", str(tmp_path / "cat"), *slow]) as server:
        client = server.client()
        assert client.post("/classes", data={"name": "a"},
                           files=[("images", ("a.png", image_bytes(seed=1), "image/png"))]).status_code == 201
        answers = []
        thread = threading.Thread(target=lambda: answers.append(client.post(
            "/detect", files={"image": ("s.jpg", image_bytes((900, 700), "JPEG", seed=3), "image/jpeg")})))
        thread.start()
        time.sleep(1.0)  # the request is sent and its detection (several seconds) is running
        assert thread.is_alive()
        code = server.stop(sig)
        thread.join(timeout=120)
    assert code == 0, "\n".join(server.lines)
    assert answers and answers[0].status_code == 200 and "detections" in answers[0].json()
    assert any("os2d serve: stopped" in line for line in server.lines)
