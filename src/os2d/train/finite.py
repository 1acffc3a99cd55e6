"""Stopping a training run at the first non-finite (or exploded) value, before anything crashes.

A too-large learning rate first makes the TransformNet output huge or NaN; the grid sampling and
box coding that follow then see coordinates far outside any image (undefined behaviour in
native code, up to a segmentation fault). :class:`FiniteGuard` checks the head's inputs and the
TransformNet's outputs during the forward pass and raises :class:`NonFiniteValue` before the
next operation runs; the trainer also checks the loss, the gradient norm and the parameters
after every step.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterable, Iterator, List, Optional, Tuple

import torch
from torch import nn

from os2d.errors import UserError

#: TransformNet outputs (affine parameters in feature-map units) beyond this are an explosion.
MAX_TRANSFORM_MAGNITUDE = 1e4


class NonFiniteLossError(UserError, RuntimeError):
    """The loss, a gradient, a parameter or an activation became NaN/inf (or exploded); the run
    stops and keeps its last checkpoint (usually: the learning rate is too high)."""


class NonFiniteValue(Exception):
    """Raised inside a forward pass by :class:`FiniteGuard`; the message says what was bad."""


def _tensors(value) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def describe_nonfinite(tensor: torch.Tensor, *, limit: float = math.inf) -> Optional[str]:
    """None when every value is finite and ``|value| <= limit``; else a short description."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return None
    data = tensor.detach()
    finite = torch.isfinite(data)
    if not bool(finite.all()):
        return f"{int((~finite).sum())} non-finite values of {data.numel()}"
    top = float(data.abs().max())
    if top > limit:
        return f"values up to {top:.3g} (limit {limit:g})"
    return None


def first_nonfinite_parameter(named: Iterable[Tuple[str, torch.Tensor]]) -> Optional[str]:
    """``"name (what)"`` of the first parameter holding NaN/inf, or None."""
    for name, param in named:
        problem = describe_nonfinite(param)
        if problem:
            return f"{name} ({problem})"
    return None


class FiniteGuard:
    """Forward hooks on an OS2D model: the head's inputs must be finite, the TransformNet's
    outputs finite and at most :data:`MAX_TRANSFORM_MAGNITUDE`. Active only inside
    :meth:`active` (training steps), so evaluation is unaffected."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def _check_head_inputs(self, _module, args) -> None:
        for i, tensor in enumerate(_tensors(args)):
            problem = describe_nonfinite(tensor)
            if problem:
                raise NonFiniteValue(f"head input {i} (features) has {problem}")

    def _check_transform(self, _module, _args, output) -> None:
        for tensor in _tensors(output):
            problem = describe_nonfinite(tensor, limit=MAX_TRANSFORM_MAGNITUDE)
            if problem:
                raise NonFiniteValue(f"TransformNet output has {problem}")

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        handles: List[torch.utils.hooks.RemovableHandle] = []
        head = getattr(self.model, "head", None)
        if head is not None:
            handles.append(head.register_forward_pre_hook(self._check_head_inputs))
            transform_net = getattr(head, "transform_net", None)
            if isinstance(transform_net, nn.Module):
                handles.append(transform_net.register_forward_hook(self._check_transform))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
