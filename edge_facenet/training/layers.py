"""Building blocks of the Inception embedders: convolution units, L2 pooling and the Inception module."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Convolution, batch normalisation and ReLU.

    The convolution keeps its bias, as OpenFace's layers do, so that published weights load one to one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class L2Pool2d(nn.Module):
    """L2 (power-2 Lp) pooling: the square root of the sum of squares over each window.

    Written as square, average pool, scale and square root so that it exports to plain ONNX operators that every
    runtime (TensorRT included) supports. Zero padding keeps the spatial size for stride 1. The epsilon inside the
    root keeps the gradient finite on all-zero windows, which are common after a ReLU.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 1, padding: int = 1, eps: float = 1e-6) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean_square = F.avg_pool2d(x * x, self.kernel_size, self.stride, self.padding, count_include_pad=True)
        return torch.sqrt(mean_square * float(self.kernel_size**2) + self.eps)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@dataclass(frozen=True)
class InceptionSpec:
    """One Inception module as a row of the FaceNet paper's table.

    Attributes:
        conv1x1: Output channels of the 1x1 branch (0: no such branch).
        reduce3x3: Channels of the 1x1 reduction before the 3x3 convolution.
        conv3x3: Output channels of the 3x3 branch.
        reduce5x5: Channels of the 1x1 reduction before the 5x5 convolution (0 with conv5x5 0: no 5x5 branch).
        conv5x5: Output channels of the 5x5 branch.
        stride: 1, or 2 for a module that halves the resolution (then it has no 1x1 branch).
        pool: ``"max"`` or ``"l2"``: the pooling of the pool branch.
        pool_proj: Channels of the 1x1 projection after pooling (0: the pooled input passes through).
    """

    conv1x1: int
    reduce3x3: int
    conv3x3: int
    reduce5x5: int
    conv5x5: int
    stride: int
    pool: str
    pool_proj: int

    def out_channels(self, in_channels: int) -> int:
        """Channels that the module outputs for ``in_channels`` input channels."""
        return self.conv1x1 + self.conv3x3 + self.conv5x5 + (self.pool_proj or in_channels)


class Inception(nn.Module):
    """Inception module with 1x1 reductions: 1x1, 3x3 and 5x5 branches and a pooling branch, concatenated."""

    def __init__(self, in_channels: int, spec: InceptionSpec) -> None:
        super().__init__()
        if spec.stride not in (1, 2):
            raise ValueError(f"Inception stride should be 1 or 2 instead of {spec.stride}")
        if spec.pool not in ("max", "l2"):
            raise ValueError(f"Inception pool should be 'max' or 'l2' instead of {spec.pool!r}")
        if spec.stride == 2 and spec.conv1x1:
            raise ValueError("a stride-2 Inception module has no 1x1 branch (conv1x1 must be 0)")
        self.out_channels = spec.out_channels(in_channels)

        self.branch1x1 = ConvBNReLU(in_channels, spec.conv1x1, 1) if spec.conv1x1 else None

        self.branch3x3 = nn.Sequential(
            ConvBNReLU(in_channels, spec.reduce3x3, 1),
            ConvBNReLU(spec.reduce3x3, spec.conv3x3, 3, stride=spec.stride),
        )

        self.branch5x5 = None
        if spec.conv5x5:
            self.branch5x5 = nn.Sequential(
                ConvBNReLU(in_channels, spec.reduce5x5, 1),
                ConvBNReLU(spec.reduce5x5, spec.conv5x5, 5, stride=spec.stride),
            )

        if spec.pool == "max":
            pool: nn.Module = nn.MaxPool2d(3, stride=spec.stride, padding=1)
        else:
            pool = L2Pool2d(3, stride=spec.stride, padding=1)
        projection = ConvBNReLU(in_channels, spec.pool_proj, 1) if spec.pool_proj else nn.Identity()
        self.branch_pool = nn.Sequential(pool, projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [branch(x) for branch in (self.branch1x1, self.branch3x3, self.branch5x5) if branch is not None]
        branches.append(self.branch_pool(x))
        return torch.cat(branches, dim=1)


class L2Norm(nn.Module):
    """Scale each row to unit L2 norm (the embedding lies on the hypersphere)."""

    def __init__(self, eps: float = 1e-10) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.clamp(torch.sum(x * x, dim=1, keepdim=True), min=self.eps))
