"""TransformNet (Rocco et al.; OS2D appendix B.1), applied fully-convolutionally or in windows."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from os2d.ops.grid import identity_params

#: Half the receptive field of TransformNet on the correlation map: (7 + 5 + 5 - 3) / 2 = 7.
RECEPTIVE_HALF = 7


class TransformNet(nn.Module):
    """ReLU, channel L2-norm, conv7x7 S->128, BN, ReLU, conv5x5 128->64, BN, ReLU, conv5x5 64->P.

    Args:
        in_channels: S = h*w correlation channels (225 for 15x15 class maps).
        variant: ``"v1"`` (P=4) or ``"v2"`` (P=6).
        norm_eps: epsilon inside the square root of the input L2 normalisation.

    The last convolution is identity-initialised (zero weights, identity-transform bias). The same
    layers run densely (:meth:`forward`, zero padding at the map border) or on windows cut out of
    the map (:meth:`forward_windows`), which gives the dense output at the windows' centres.
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
        return self._layers(corr, pad=True, inside=None)

    def forward_windows(self, windows: torch.Tensor, inside: Sequence[torch.Tensor]) -> torch.Tensor:
        """The dense output at the centres of windows of the correlation map.

        Args:
            windows: ``Tensor[L, S, 2q+1, 2q+1]`` with ``q = 7 + r``: the correlation map around
                L centres, zero outside the map.
            inside: masks ``Tensor[L, 1, 2(r+4)+1, 2(r+4)+1]`` and ``Tensor[L, 1, 2(r+2)+1, 2(r+2)+1]``
                of the positions of the first two layers' outputs that lie inside the map (outside it
                the dense network reads zero padding).

        Returns:
            ``Tensor[L, P, 2r+1, 2r+1]``: the parameters of the locations within ``r`` of each centre.
        """
        return self._layers(windows, pad=False, inside=inside)

    def _layers(self, corr: torch.Tensor, *, pad: bool, inside: Optional[Sequence[torch.Tensor]]) -> torch.Tensor:
        x = F.relu(corr)
        x = x / torch.sqrt((x * x).sum(dim=1, keepdim=True) + self.norm_eps)
        for i, (conv, bn) in enumerate(((self.conv1, self.bn1), (self.conv2, self.bn2))):
            x = F.relu(bn(F.conv2d(x, conv.weight, conv.bias, padding=conv.padding if pad else 0)))
            if inside is not None:
                x = x * inside[i]
        return F.conv2d(x, self.conv3.weight, self.conv3.bias, padding=self.conv3.padding if pad else 0)
