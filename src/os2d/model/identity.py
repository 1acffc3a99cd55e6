"""A model's identity: one string that changes whenever its outputs could change.

Class features (catalogs, class banks) are only valid for the model that computed them; they are
stamped with :func:`model_identity` and refused (or rebuilt) when it differs.
"""
from __future__ import annotations

import hashlib
import json

import torch

from os2d.model.config import ARCHITECTURE_FIELDS, ModelConfig


def model_identity(model: torch.nn.Module, config: ModelConfig) -> str:
    """``"os2d-<16 hex>"``: SHA-256 of the architecture fields and of every tensor of the model."""
    digest = hashlib.sha256()
    arch = {name: getattr(config, name) for name in ARCHITECTURE_FIELDS}
    digest.update(json.dumps(arch, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"os2d-{digest.hexdigest()[:16]}"
