"""The NN4 family of Inception face embedders (FaceNet, Schroff et al. 2015; OpenFace's nn4.small2).

All members take a 96x96 RGB face and return an L2-normalised embedding:

- ``nn4``: the FaceNet paper's NN4, the NN2 Inception layout at 96x96 input with no 5x5 convolutions in the top
  modules (as in OpenFace's nn4 definition).
- ``nn4_small2``: OpenFace's nn4.small2, NN4 without modules 4b-4d and with a narrower module 5 (3.73 M parameters).
- ``nns2``: a tiny member for very small devices, nn4_small2 at a quarter of the width. The paper gives only the
  budget of its NNS2 (about 20 M multiply-adds), not its layers, so this layout is ours.

Differences from OpenFace's Torch definition, none of which changes a weight shape:

- the L2 pooling and the stride-1 max pooling are zero-padded to keep the spatial size (OpenFace pads the smaller
  branch outputs after the fact);
- global average pooling replaces the fixed 3x3 average pool, so other input sizes work too;
- no local response normalisation (LRN) after the two stem stages. After batch normalisation the activations are
  so small that OpenFace's LRN (size 5, alpha 1e-4, beta 0.75, k 1) is close to the identity: with the published
  nn4.small2.v1 stem weights on 64 LFW faces it scaled activations down by 5e-5 on average and 1.5e-3 at most.
  Leaving it out keeps the ONNX graph to operators that every runtime and INT8 toolchain handles.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
from torch import nn

from edge_facenet.training.layers import ConvBNReLU, Inception, InceptionSpec, L2Norm
from edge_facenet.training.registry import register_model


@dataclass(frozen=True)
class NN4Config:
    """Layout of an NN4-family network.

    Attributes:
        stem: Output channels of the 7x7/2 convolution, the 1x1 convolution and the 3x3 convolution.
        blocks: Inception modules in order, as (name, spec) pairs.
        input_size: (height, width) the network is designed for.
    """

    stem: tuple[int, int, int]
    blocks: tuple[tuple[str, InceptionSpec], ...]
    input_size: tuple[int, int] = (96, 96)


def _spec(conv1x1, reduce3x3, conv3x3, reduce5x5, conv5x5, stride, pool, pool_proj) -> InceptionSpec:
    return InceptionSpec(conv1x1, reduce3x3, conv3x3, reduce5x5, conv5x5, stride, pool, pool_proj)


# Columns as in the FaceNet paper's table: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, stride, pool, pool proj.
_BLOCK_3A = ("inception_3a", _spec(64, 96, 128, 16, 32, 1, "max", 32))
_BLOCK_3B = ("inception_3b", _spec(64, 96, 128, 32, 64, 1, "l2", 64))
_BLOCK_3C = ("inception_3c", _spec(0, 128, 256, 32, 64, 2, "max", 0))
_BLOCK_4A = ("inception_4a", _spec(256, 96, 192, 32, 64, 1, "l2", 128))
_BLOCK_4E = ("inception_4e", _spec(0, 160, 256, 64, 128, 2, "max", 0))

NN4 = NN4Config(
    stem=(64, 64, 192),
    blocks=(
        _BLOCK_3A,
        _BLOCK_3B,
        _BLOCK_3C,
        _BLOCK_4A,
        ("inception_4b", _spec(224, 112, 224, 32, 64, 1, "l2", 128)),
        ("inception_4c", _spec(192, 128, 256, 32, 64, 1, "l2", 128)),
        ("inception_4d", _spec(160, 144, 288, 32, 64, 1, "l2", 128)),
        _BLOCK_4E,
        ("inception_5a", _spec(384, 192, 384, 0, 0, 1, "l2", 128)),
        ("inception_5b", _spec(384, 192, 384, 0, 0, 1, "max", 128)),
    ),
)

NN4_SMALL2 = NN4Config(
    stem=(64, 64, 192),
    blocks=(
        _BLOCK_3A,
        _BLOCK_3B,
        _BLOCK_3C,
        _BLOCK_4A,
        _BLOCK_4E,
        ("inception_5a", _spec(256, 96, 384, 0, 0, 1, "l2", 96)),
        ("inception_5b", _spec(256, 96, 384, 0, 0, 1, "max", 96)),
    ),
)


def _narrow(config: NN4Config, divisor: int) -> NN4Config:
    def width(channels: int) -> int:
        return max(8, channels // divisor) if channels else 0

    blocks = tuple(
        (
            name,
            replace(
                spec,
                conv1x1=width(spec.conv1x1),
                reduce3x3=width(spec.reduce3x3),
                conv3x3=width(spec.conv3x3),
                reduce5x5=width(spec.reduce5x5),
                conv5x5=width(spec.conv5x5),
                pool_proj=width(spec.pool_proj),
            ),
        )
        for name, spec in config.blocks
    )
    return replace(config, stem=tuple(width(c) for c in config.stem), blocks=blocks)


NNS2 = _narrow(NN4_SMALL2, 4)


class NN4Embedder(nn.Module):
    """Inception face embedder of the NN4 family.

    Args:
        config: The network layout.
        embedding_size: Length of the output embedding.
    """

    def __init__(self, config: NN4Config, embedding_size: int = 128) -> None:
        super().__init__()
        self.config = config
        self.embedding_size = embedding_size
        stem1, stem2, stem3 = config.stem

        layers: list[tuple[str, nn.Module]] = [
            ("conv1", ConvBNReLU(3, stem1, 7, stride=2)),  # N x 64 x 48 x 48 (at 96x96 input)
            ("pool1", nn.MaxPool2d(3, stride=2, padding=1)),  # N x 64 x 24 x 24
            ("conv2", ConvBNReLU(stem1, stem2, 1)),  # N x 64 x 24 x 24
            ("conv3", ConvBNReLU(stem2, stem3, 3)),  # N x 192 x 24 x 24
            ("pool2", nn.MaxPool2d(3, stride=2, padding=1)),  # N x 192 x 12 x 12
        ]

        channels = stem3
        for name, spec in config.blocks:
            block = Inception(channels, spec)
            layers.append((name, block))
            channels = block.out_channels
        # nn4_small2 at 96x96: 3a 256x12x12, 3b 320x12x12, 3c 640x6x6, 4a 640x6x6, 4e 1024x3x3, 5a/5b 736x3x3

        self.features = nn.Sequential(OrderedDict(layers))
        self.num_features = channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding = nn.Linear(channels, embedding_size)
        self.l2norm = L2Norm()
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation keeps the activation scale through the ~20 convolutions; with PyTorch's default the
        # signal fades with depth and an untrained model maps every face to nearly the same embedding.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=module.in_features**-0.5)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last Inception module's feature map, N x C x h x w."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Pool a feature map, project it to the embedding and (by default) L2-normalise it."""
        x = torch.flatten(self.pool(x), 1)
        x = self.embedding(x)
        return self.l2norm(x) if normalize else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def nn4(embedding_size: int = 128) -> NN4Embedder:
    """FaceNet's NN4: the NN2 Inception layout at 96x96 input, without 5x5 convolutions in modules 5a and 5b."""
    return NN4Embedder(NN4, embedding_size)


@register_model
def nn4_small2(embedding_size: int = 128) -> NN4Embedder:
    """OpenFace's nn4.small2: NN4 without modules 4b-4d and with a narrower module 5; 3.73 M parameters."""
    return NN4Embedder(NN4_SMALL2, embedding_size)


@register_model
def nns2(embedding_size: int = 128) -> NN4Embedder:
    """A tiny embedder for very small devices: the nn4_small2 layout at a quarter of the width."""
    return NN4Embedder(NNS2, embedding_size)
