"""Size and cost of the registered architectures: parameters and multiply-adds at their input size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edge_facenet.training.registry import build_model, list_models


@dataclass(frozen=True)
class ModelSummary:
    """Size and cost of one architecture.

    Attributes:
        arch: Architecture name.
        embedding_size: Length of the embedding the figures were measured with.
        input_size: (height, width) of the input.
        parameters: Number of learned parameters.
        multiply_adds: Multiply-accumulate operations of one image in the convolutions and linear layers.
    """

    arch: str
    embedding_size: int
    input_size: tuple[int, int]
    parameters: int
    multiply_adds: int


def count_multiply_adds(model: nn.Module, input_size: tuple[int, int]) -> int:
    """Count the multiply-adds of one image through the convolutions and linear layers of ``model``.

    Pooling, normalisation and activations are left out; they are a small share for this family.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kernel_h, kernel_w = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * kernel_h * kernel_w

    def linear_hook(module: nn.Linear, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += output[0].numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def summarize(arch: str, embedding_size: int = 128) -> ModelSummary:
    """Measure one architecture at its design input size."""
    model = build_model(arch, embedding_size)
    input_size = model.config.input_size
    return ModelSummary(
        arch=arch,
        embedding_size=embedding_size,
        input_size=input_size,
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        multiply_adds=count_multiply_adds(model, input_size),
    )


def summarize_all(embedding_size: int = 128) -> list[ModelSummary]:
    """Measure every registered architecture."""
    return [summarize(arch, embedding_size) for arch in list_models()]
