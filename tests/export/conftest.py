"""Fixtures of the export tests: the default model exported once per session, through the CLI."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from export_helpers import run_os2d


@dataclass(frozen=True)
class CliExport:
    out: Path
    result: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def default_export(tmp_path_factory) -> CliExport:
    """``os2d export --format onnx --out DIR`` of the default model (run once)."""
    out = tmp_path_factory.mktemp("export") / "default"
    result = run_os2d(["export", "--format", "onnx", "--out", out])
    assert result.returncode == 0, result.stderr
    return CliExport(out=out, result=result)
