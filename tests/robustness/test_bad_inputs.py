"""Every case of ``bad_inputs.CASES`` must end as a clean user error, changing nothing.

CLI cases run together in one fork server (see ``robust_harness.py``); API cases run in this
process; ``fresh_process`` cases each start their own interpreter.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bad_inputs import CASES
from robust_harness import Outcome, changes, cli_problems, run_forked, run_fresh, snapshot
from robust_inputs import Assets, synth_inputs
from os2d.errors import UserError

FORKED = [c for c in CASES if c.argv is not None and not c.fresh_process]
FRESH = [c for c in CASES if c.argv is not None and c.fresh_process]
API = [c for c in CASES if c.api is not None]


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    return Assets(tmp_path_factory.mktemp("robustness-assets"))


@pytest.fixture(scope="session")
def forked_outcomes(tmp_path_factory, assets):
    """Set up every forked CLI case, run them all in one fork server, snapshot before/after."""
    root = tmp_path_factory.mktemp("robustness-cli")
    folders, before = {}, {}
    for case in FORKED:
        folder = root / case.id
        folder.mkdir()
        case.setup(folder, assets)
        folders[case.id], before[case.id] = folder, snapshot(folder)
    jobs = [{"id": c.id, "argv": c.args(folders[c.id]), "cwd": str(folders[c.id]), "timeout": c.timeout}
            for c in FORKED]
    outcomes = run_forked(jobs, tmp_path_factory.mktemp("robustness-forkserver"))
    for case in FORKED:
        outcome = outcomes[case.id]
        outcome.before, outcome.after = before[case.id], snapshot(folders[case.id])
    return {c.id: (folders[c.id], outcomes[c.id]) for c in FORKED}


def test_the_table():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert len(CASES) >= 40
    assert all((c.argv is None) != (c.api is None) for c in CASES)


@pytest.mark.parametrize("case", FORKED, ids=lambda c: c.id)
def test_cli_case(case, forked_outcomes):
    folder, outcome = forked_outcomes[case.id]
    problems = cli_problems(case, folder, outcome)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", FRESH, ids=lambda c: c.id)
def test_fresh_cli_case(case, tmp_path, assets):
    case.setup(tmp_path, assets)
    before = snapshot(tmp_path)
    outcome = run_fresh(case.args(tmp_path), cwd=tmp_path, timeout=case.timeout)
    outcome.before, outcome.after = before, snapshot(tmp_path)
    problems = cli_problems(case, tmp_path, outcome)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", API, ids=lambda c: c.id)
def test_api_case(case, tmp_path, assets):
    case.setup(tmp_path, assets)
    before = snapshot(tmp_path)
    with pytest.raises(UserError) as info:
        case.api(tmp_path, assets)
    message = str(info.value)
    assert "\n" not in message, message
    assert case.expected(tmp_path) in message, message
    assert not changes(before, snapshot(tmp_path))
    assert case.forbidden is None or not (tmp_path / case.forbidden).exists()


def test_ctrl_c_exits_130_with_one_line_and_leaves_nothing(tmp_path):
    synth_inputs(tmp_path)
    before = snapshot(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "os2d.cli.main", "synth", "--classes", "classes", "--backgrounds", "bgs",
         "--out", "out", "--num-scenes", "100000", "--scene-size", "128"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # also from a nohup shell
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".out.synth-") for p in tmp_path.iterdir()):  # writing has begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    outcome = Outcome(proc.returncode, stdout, stderr)
    assert outcome.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "os2d: interrupted" and "Traceback" not in stderr
    assert not changes(before, snapshot(tmp_path))  # no dataset, no staging folder left
