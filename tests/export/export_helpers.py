"""Helpers of the export tests (importable as ``export_helpers``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional, Tuple

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "os2d" / "assets" / "example"


def run_os2d(args, *, cwd: Optional[Path] = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m os2d.cli.main ARGS`` in a subprocess (one thread), output captured."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "os2d.cli.main", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout)


def ort_sessions(folder: Path, files: Tuple[str, ...] = ("scene_features.onnx", "class_features.onnx", "head.onnx")):
    """onnxruntime sessions (CPU, one thread) of the files in ``folder``, by file stem."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return {Path(f).stem: ort.InferenceSession(str(folder / f), options, providers=["CPUExecutionProvider"])
            for f in files}
