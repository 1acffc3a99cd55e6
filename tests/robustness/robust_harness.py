"""The bad-input harness: a table of cases, generated inputs, and how each case is run and judged.

A :class:`Case` is either a command line (``argv`` after ``os2d``) or an API call (``api``); its
``setup`` writes the inputs into the case's own empty folder (nothing is committed as a binary).
Every case must end as a user error: for the CLI exit code 2, exactly one ``os2d: error:`` line
on stderr and no traceback; for the API an :class:`os2d.errors.UserError` with a one-line
message. The case's folder (inputs and any output path the case names) must be byte-identical
afterwards: nothing created, changed or removed.

CLI cases run in a fork server (``forkserver.py``): one fresh interpreter imports os2d once, then
forks one child per case that runs ``os2d.cli.main.main()`` with the case's ``argv``, cwd and
stdio, exactly like the ``os2d`` script. Cases marked ``fresh_process`` run as their own
``python -m os2d.cli.main`` instead (start-up dominates, so keep those few).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FORKSERVER = Path(__file__).with_name("forkserver.py")
ERROR_PREFIX = "os2d: error:"

Setup = Callable[[Path, Any], None]


def _no_setup(_folder: Path, _assets: Any) -> None:
    return None


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        id: unique test id (``area-what``).
        argv: CLI arguments after ``os2d``; ``{d}`` is replaced by the case's folder.
        api: for API cases, ``api(folder, assets)`` must raise a :class:`~os2d.errors.UserError`.
        setup: ``setup(folder, assets)`` writes the inputs into the (empty) case folder.
        error: a substring the one-line error message must contain (``{d}`` replaced too).
        forbidden: a path relative to the folder that must never appear (e.g. a marker file that
            a malicious input would create).
        fresh_process: run the CLI case in its own interpreter instead of the fork server.
        timeout: seconds before a hanging case is killed (and fails).
    """

    id: str
    argv: Optional[Tuple[str, ...]] = None
    api: Optional[Callable[[Path, Any], Any]] = None
    setup: Setup = _no_setup
    error: str = ""
    forbidden: Optional[str] = None
    fresh_process: bool = False
    timeout: float = 120.0

    def args(self, folder: Path) -> List[str]:
        return [a.replace("{d}", str(folder)) for a in self.argv or ()]

    def expected(self, folder: Path) -> str:
        return self.error.replace("{d}", str(folder))


def cli(id: str, *argv: str, setup: Setup = _no_setup, error: str = "", **kw) -> Case:
    """A command-line case: ``os2d ARGV...`` must fail as a user error."""
    return Case(id=id, argv=tuple(argv), setup=setup, error=error, **kw)


def api(id: str, call: Callable[[Path, Any], Any], *, setup: Setup = _no_setup, error: str = "", **kw) -> Case:
    """An API case: ``call(folder, assets)`` must raise a user error."""
    return Case(id=id, api=call, setup=setup, error=error, **kw)


# ------------------------------------------------------------------------------------ snapshots
def snapshot(root: Path) -> Dict[str, str]:
    """Every entry under ``root``: regular files by SHA-256, others by type (never opened)."""
    entries: Dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            rel = path.relative_to(root).as_posix()
            if stat.S_ISREG(mode):
                entries[rel] = "file " + hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(mode):
                entries[rel] = "link " + os.readlink(path)
            elif stat.S_ISDIR(mode):
                entries[rel] = "dir"
            else:
                entries[rel] = f"special {stat.S_IFMT(mode):o}"
    return entries


def changes(before: Dict[str, str], after: Dict[str, str]) -> List[str]:
    """Human-readable differences between two snapshots (empty: nothing changed)."""
    out = [f"created {k}" for k in sorted(set(after) - set(before))]
    out += [f"removed {k}" for k in sorted(set(before) - set(after))]
    out += [f"changed {k}" for k in sorted(set(before) & set(after)) if before[k] != after[k]]
    return out


# ------------------------------------------------------------------------------------ judging
@dataclass
class Outcome:
    """What running a case gave."""

    returncode: Optional[int]
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    before: Dict[str, str] = field(default_factory=dict)
    after: Dict[str, str] = field(default_factory=dict)


def cli_problems(case: Case, folder: Path, outcome: Outcome) -> List[str]:
    """Everything wrong with a CLI case's outcome (empty: the case passes)."""
    problems = []
    if outcome.timed_out:
        problems.append(f"did not finish within {case.timeout:g} s (hang)")
    elif outcome.returncode != 2:
        problems.append(f"exit code {outcome.returncode}, expected 2")
    if "Traceback (most recent call last)" in outcome.stderr:
        problems.append("printed a traceback")
    lines = [line for line in outcome.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    if len(lines) != 1:
        problems.append(f"{len(lines)} '{ERROR_PREFIX}' lines on stderr, expected 1")
    elif case.error and case.expected(folder) not in lines[0]:
        problems.append(f"message lacks {case.expected(folder)!r}")
    problems += changes(outcome.before, outcome.after)
    if case.forbidden and (folder / case.forbidden).exists():
        problems.append(f"{case.forbidden} appeared (the input ran code)")
    if problems:
        problems.append(f"stderr was:\n{outcome.stderr[-3000:]}")
    return problems


# ------------------------------------------------------------------------------------ running
def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("XDG_CACHE_HOME", str(PROJECT_ROOT / ".pytest_cache" / "xdg"))  # never the user's cache
    return env


def run_fresh(argv: Sequence[str], *, cwd: Path, timeout: float) -> Outcome:
    """``python -m os2d.cli.main ARGV`` in a new interpreter."""
    try:
        proc = subprocess.run([sys.executable, "-m", "os2d.cli.main", *argv], cwd=cwd, env=_env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        return Outcome(None, stdout=str(err.stdout or ""), stderr=str(err.stderr or ""), timed_out=True)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def run_forked(jobs: Sequence[dict], work: Path) -> Dict[str, Outcome]:
    """Run ``jobs`` (``id``, ``argv``, ``cwd``, ``timeout``) in the fork server; outcomes by id."""
    work.mkdir(parents=True, exist_ok=True)
    request, reply = work / "jobs.json", work / "results.json"
    request.write_text(json.dumps(list(jobs)))
    total = sum(j["timeout"] for j in jobs) + 120
    subprocess.run([sys.executable, str(FORKSERVER), str(request), str(reply), str(work)], env=_env(),
                   stdin=subprocess.DEVNULL, check=True, timeout=total)
    results = json.loads(reply.read_text())
    return {r["id"]: Outcome(r["returncode"], r["stdout"], r["stderr"], r["timed_out"]) for r in results}
