"""Fork server for the CLI cases: ``python forkserver.py JOBS.json RESULTS.json WORKDIR``.

Imports os2d (and torch) once, then for every job forks a child that behaves like the ``os2d``
script: stdin from /dev/null, stdout/stderr to files, ``sys.argv = ["os2d", *argv]``, the job's
working directory, then ``os2d.cli.main.main()``. An exception escaping ``main()`` is printed
as the interpreter would (traceback, exit code 1). A child that runs past its timeout is killed.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path


def _child(job: dict, out_path: Path, err_path: Path) -> None:
    code = 1
    try:
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        os.dup2(os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        os.chdir(job["cwd"])
        sys.argv = ["os2d", *job["argv"]]
        from os2d.cli.main import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - the child is about to exit anyway
                pass
        os._exit(code)


def _wait(pid: int, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            return status, True
        time.sleep(0.005)


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    work = Path(sys.argv[3])
    import importlib

    import os2d.cli.main  # noqa: F401 - the expensive imports, once, before forking

    for name in ("detect", "evaluate", "synth", "train"):
        try:
            importlib.import_module(f"os2d.cli.{name}")
        except Exception:  # noqa: BLE001 - a broken module then fails in the children that use it
            pass

    results = []
    for index, job in enumerate(jobs):
        out_path, err_path = work / f"{index}.out", work / f"{index}.err"
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(job, out_path, err_path)
        status, timed_out = _wait(pid, float(job["timeout"]))
        code = os.waitstatus_to_exitcode(status)
        results.append({"id": job["id"], "returncode": None if timed_out else code, "timed_out": timed_out,
                        "stdout": out_path.read_text(errors="replace") if out_path.exists() else "",
                        "stderr": err_path.read_text(errors="replace") if err_path.exists() else ""})
    Path(sys.argv[2]).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
