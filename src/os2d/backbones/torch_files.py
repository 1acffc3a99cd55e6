"""Reading ``torch.save`` files safely: plain tensors and containers only, one-line errors.

Every ``.pt``/``.pth`` file os2d reads (backbone weights, reference checkpoints, training
checkpoints) goes through :func:`load_tensor_file`, which uses ``torch.load(weights_only=True)``:
a file whose unpickling would create arbitrary objects or call functions (a malicious pickle)
is refused before anything in it runs.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from os2d.errors import InputNotFoundError, InvalidInputError

_DETAIL = re.compile(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", re.S)


def _short(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def not_plain_detail(err: BaseException) -> str:
    """The useful part of PyTorch's weights-only refusal (the rest is advice text)."""
    match = _DETAIL.search(str(err))
    detail = match.group(1) if match else str(err).split("\n", 1)[0]
    return _short(detail.split(" was not an allowed global")[0])


def load_tensor_file(path: Path, *, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU with os2d's errors.

    Raises:
        InputNotFoundError: ``path`` is not a file.
        InvalidInputError: the file needs more than tensors and plain containers (it was not
            loaded, nothing in it ran), or it is corrupt, truncated or not a PyTorch file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # also PyTorch's weights-only refusal
        raise InvalidInputError(
            f"{what} {path} is not a plain tensor checkpoint and was not loaded "
            f"({not_plain_detail(err)})") from None
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, ... for bad files
        raise InvalidInputError(f"cannot read {what} {path}: corrupt, truncated or not a PyTorch file "
                                f"({type(err).__name__}: {_short(err)})") from None
