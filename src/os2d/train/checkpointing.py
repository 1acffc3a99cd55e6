"""Training checkpoints: model + optimizer + scheduler + RNG states + iteration, written atomically.

One file, ``RUN_DIR/checkpoint.pt``, replaced with ``os.replace`` after a complete write to a
temporary file in the same folder, so a run killed at any moment leaves the previous checkpoint
intact (it loses at most one checkpoint interval).
"""
from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.fileio import atomic_write, atomic_write_text

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "os2d-train-checkpoint"
FORMAT_VERSION = 1


def capture_rng_state() -> Dict[str, Any]:
    """States of Python's ``random``, NumPy's global generator and torch (CPU, and CUDA if used)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
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
    blob = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "iteration": int(iteration),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "sampler": sampler_state, "rng": capture_rng_state(), "extra": extra or {},
    }
    path = Path(run_dir) / CHECKPOINT_FILE
    atomic_torch_save(blob, path)
    return path


def load_checkpoint(run_dir: Path) -> Dict[str, Any]:
    """Read ``run_dir/checkpoint.pt`` (``FileNotFoundError`` / ``ValueError`` with the path)."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise InputNotFoundError(f"no training checkpoint to resume from: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # pickle / zip errors of a corrupt file
        raise InvalidInputError(f"cannot read training checkpoint {path} ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InvalidInputError(f"{path} is not an os2d training checkpoint")
    if blob.get("format_version") != FORMAT_VERSION:
        raise InvalidInputError(f"{path} has checkpoint version {blob.get('format_version')}, expected {FORMAT_VERSION}")
    return blob


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
