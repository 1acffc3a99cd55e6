"""TransformNet (Rocco et al.; OS2D appendix B.1), applied fully-convolutionally."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from os2d.ops.grid import identity_params


class TransformNet(nn.Module):
    """ReLU, channel L2-norm, conv7x7 S->128, BN, ReLU, conv5x5 128->64, BN, ReLU, conv5x5 64->P.

    Args:
        in_channels: S = h*w correlation channels (225 for 15x15 class maps).
        variant: ``"v1"`` (P=4) or ``"v2"`` (P=6).
        norm_eps: epsilon inside the square root of the input L2 normalisation.

    The last convolution is identity-initialised (zero weights, identity-transform bias).
    """

    def __init__(self, *, in_channels: int = 225, variant: str = "v1", norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.variant = variant
        self.norm_eps = norm_eps
        identity = identity_params(variant)
        self.num_params = int(identity.numel())
        self.conv1 = nn.Conv2d(in_channels, 128, kernel_size=7, padding=3)
        self.bn1 = nn.BatchNorm2d(128)
        self.conv2 = nn.Conv2d(128, 64, kernel_size=5, padding=2)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, self.num_params, kernel_size=5, padding=2)
        with torch.no_grad():
            self.conv3.weight.zero_()
            self.conv3.bias.copy_(identity)

    def forward(self, corr: torch.Tensor) -> torch.Tensor:
        """``Tensor[N, S, H, W]`` correlations -> ``Tensor[N, P, H, W]`` transform parameters."""
        x = F.relu(corr)
        x = x / torch.sqrt((x * x).sum(dim=1, keepdim=True) + self.norm_eps)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.conv3(x)
