"""Training checkpoints: model + optimizer + scheduler + RNG states + iteration, written atomically.

The file holds only tensors, numbers, strings and plain containers, and is read with
``torch.load(weights_only=True)``: a crafted checkpoint cannot run code on ``--resume``.

One file, ``RUN_DIR/checkpoint.pt``, replaced with ``os.replace`` after a complete write to a
temporary file in the same folder, so a run killed at any moment leaves the previous checkpoint
intact (it loses at most one checkpoint interval).
"""
from __future__ import annotations

import contextlib
import csv
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from os2d.backbones.torch_files import load_tensor_file
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.fileio import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "os2d-train-checkpoint"
FORMAT_VERSION = 2  # 2: random states as tensors/tuples (weights_only loading)


def capture_rng_state() -> Dict[str, Any]:
    """States of Python's ``random``, NumPy's global generator and torch (CPU, and CUDA if used),
    as tensors, numbers and tuples only (loadable with ``weights_only=True``)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state = {
        "python": {"version": int(py_version), "state": tuple(int(v) for v in py_state),
                   "gauss": None if py_gauss is None else float(py_gauss)},
        "numpy": {"name": str(np_name), "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_checkpoint(run_dir: Path, *, iteration: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, sampler_state: Optional[dict], extra: Optional[dict] = None) -> Path:
    """Write ``run_dir/checkpoint.pt`` atomically; ``iteration`` = optimizer steps done."""
    schedule = dict(scheduler.state_dict())
    if isinstance(schedule.get("milestones"), Counter):  # a plain dict for every torch's weights-only loader
        schedule["milestones"] = dict(schedule["milestones"])
    blob = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "iteration": int(iteration),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(), "scheduler": schedule,
        "sampler": sampler_state, "rng": capture_rng_state(), "extra": extra or {},
    }
    path = Path(run_dir) / CHECKPOINT_FILE
    atomic_torch_save(blob, path)
    return path


def load_checkpoint(run_dir: Path) -> Dict[str, Any]:
    """Read ``run_dir/checkpoint.pt`` with ``weights_only=True`` (a file that needs anything but
    tensors and plain containers is refused unread) and check its layout."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise InputNotFoundError(f"no training checkpoint to resume from: {path}")
    with contextlib.ExitStack() as stack:
        if hasattr(torch.serialization, "safe_globals"):  # format 1 held NumPy arrays (data only)
            stack.enter_context(torch.serialization.safe_globals(_numpy_array_globals()))
        blob = load_tensor_file(path, what="training checkpoint")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InvalidInputError(f"{path} is not an os2d training checkpoint")
    if blob.get("format_version") == 1:
        blob = _upgrade_v1(blob)
    if blob.get("format_version") != FORMAT_VERSION:
        raise InvalidInputError(f"{path} has checkpoint version {blob.get('format_version')!r}, "
                                f"expected {FORMAT_VERSION}")
    if isinstance(blob.get("scheduler"), dict) and isinstance(blob["scheduler"].get("milestones"), dict):
        blob["scheduler"]["milestones"] = Counter(blob["scheduler"]["milestones"])
    problem = _layout_problem(blob)
    if problem:
        raise InvalidInputError(f"training checkpoint {path} is damaged: {problem}")
    return blob


def _numpy_array_globals() -> list:
    """What unpickling a NumPy array needs (reconstructor, ndarray, dtypes): data, never code."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _upgrade_v1(blob: Dict[str, Any]) -> Dict[str, Any]:
    """Format 1 (random states as Python/NumPy tuples) -> format 2."""
    rng = dict(blob.get("rng") or {})
    try:
        py_version, py_state, py_gauss = rng["python"]
        np_name, np_keys, np_pos, np_has_gauss, np_cached = rng["numpy"]
        rng["python"] = {"version": int(py_version), "state": tuple(int(v) for v in py_state), "gauss": py_gauss}
        rng["numpy"] = {"name": str(np_name), "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                        "pos": int(np_pos), "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_cached)}
    except (KeyError, TypeError, ValueError):
        return blob  # left as it is: the layout check reports it
    return {**blob, "rng": rng, "format_version": FORMAT_VERSION}


def _layout_problem(blob: Dict[str, Any]) -> Optional[str]:
    """What is wrong with a checkpoint's entries (None when they have the expected types)."""
    if isinstance(blob.get("iteration"), bool) or not isinstance(blob.get("iteration"), int) or blob["iteration"] < 0:
        return f"'iteration' is {blob.get('iteration')!r}"
    model = blob.get("model")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        return "'model' is not a dict of tensors"
    for key in ("optimizer", "scheduler", "rng", "extra"):
        if not isinstance(blob.get(key), dict):
            return f"{key!r} is missing or not a dict"
    if blob.get("sampler") is not None and not isinstance(blob["sampler"], dict):
        return "'sampler' is not a dict"
    rng = blob["rng"]
    try:
        ok = (isinstance(rng["torch"], torch.Tensor) and isinstance(rng["numpy"]["keys"], torch.Tensor)
              and len(rng["python"]["state"]) > 0)
    except (KeyError, TypeError):
        ok = False
    return None if ok else "'rng' does not hold the random generator states"


#: Folders of a run where ``atomic_write`` leaves ``.<name>.<random>.tmp`` files when killed.
RUN_SUBDIRS = ("", "best", "last", "val")


def remove_stale_temporaries(run_dir: Path) -> List[Path]:
    """Remove the temporary files (``.<name>.<random>.tmp``, e.g. a half-written
    ``.checkpoint.pt.x8f2.tmp``) that a killed run left in ``run_dir`` and its ``best/``,
    ``last/``, ``val/`` folders; return them. Only hidden ``*.tmp`` regular files are touched."""
    removed = []
    for sub in RUN_SUBDIRS:
        folder = Path(run_dir) / sub
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp"):
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
    if removed:
        logger.warning("removed %d temporary files left by an interrupted run in %s", len(removed), run_dir)
    return removed


class CsvLog:
    """Append-only CSV with a fixed header; ``truncate_after(i)`` drops rows past iteration ``i``."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)

    def truncate_after(self, iteration: int) -> None:
        """Keep only rows with ``iteration <= iteration`` (rows a killed run wrote after its checkpoint)."""
        if not self.path.is_file():
            return
        rows = self.read()
        kept = [r for r in rows if int(float(r["iteration"])) <= iteration]
        if len(kept) != len(rows):
            lines = [",".join(self.columns)] + [",".join(str(r.get(c, "")) for c in self.columns) for r in kept]
            atomic_write_text(self.path, "\n".join(lines) + "\n")

    def append(self, row: Dict[str, Any]) -> None:
        new = not self.path.is_file()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({c: _fmt(row.get(c, "")) for c in self.columns})

    def read(self) -> List[Dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # exact round trip
    return value
