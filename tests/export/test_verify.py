"""The export's own checks: missing packages refused, a graph that differs from the model refused."""
from __future__ import annotations

import importlib.util

import pytest

from os2d.errors import InvalidInputError
from os2d.export import verify
from os2d.model.checkpoint import build_model
from os2d.zoo import untrained_config


def test_missing_packages_named_with_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(verify.importlib.util, "find_spec", lambda name: None if name == "onnxscript" else real(name))
    with pytest.raises(InvalidInputError, match=r"onnxscript.*pip install 'os2d\[export\]'"):
        verify.require_packages()


def test_graphs_of_another_model_fail_the_check(default_export):
    other = build_model(untrained_config())  # same architecture, other weights
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        verify.verify_graphs(other, default_export.out)


def test_graphs_pass_the_check_for_their_model(default_export):
    from os2d.zoo import load_model

    model, _ = load_model("default")
    verify.verify_graphs(model, default_export.out)
