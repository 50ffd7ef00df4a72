"""Load OpenFace's published nn4.small2.v1 weights into ``nn4_small2`` and re-estimate BatchNorm statistics.

The weights come as an npz of float32 arrays named after OpenFace's layers (``conv1_w``, ``bn1_m``,
``inception_3a_3x3_conv2_w``, ``dense_w``, ...), convolutions in [out, in, kh, kw] order. The shared copy is partial:
five convolution weights are absent (the 3x3 branches of 3c, 4e, 5a and 5b and the 1x1 branch of 5a), so those
layers keep their initialisation and the stored BatchNorm statistics of everything after them no longer describe the
activations that reach them. :func:`recalibrate_batchnorm` re-estimates them from data.

Branch order. OpenFace concatenates an Inception module's branches as 3x3, 5x5, pool, 1x1; ``nn4_small2``
concatenates them as 1x1, 3x3, 5x5, pool. The weights are the same, but the input channels of every layer that reads
a module's output (the next module's first convolutions and the dense layer) are permuted here to follow our order.
A stride-2 module's pool branch passes its input through, so the permutation carries over into the next module.

The weights expect RGB input scaled to 0..1 (no mean subtraction); BatchNorm epsilon is 1e-5, PyTorch's default.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_facenet.training.layers import InceptionSpec
from edge_facenet.training.nn4 import NN4_SMALL2, nn4_small2

logger = logging.getLogger(__name__)

# The BatchNorm of a ConvBNReLU: our suffix -> the letter that ends OpenFace's key.
_BN_SUFFIXES = (("1.weight", "w"), ("1.bias", "b"), ("1.running_mean", "m"), ("1.running_var", "v"))

# Each Inception branch as (our ConvBNReLU path inside the branch, OpenFace conv name, OpenFace BN name).
_BRANCH_LAYERS = {
    "branch1x1": (("branch1x1", "1x1_conv", "1x1_bn"),),
    "branch3x3": (("branch3x3.0", "3x3_conv1", "3x3_bn1"), ("branch3x3.1", "3x3_conv2", "3x3_bn2")),
    "branch5x5": (("branch5x5.0", "5x5_conv1", "5x5_bn1"), ("branch5x5.1", "5x5_conv2", "5x5_bn2")),
    "branch_pool": (("branch_pool.1", "pool_conv", "pool_bn"),),
}
_OUR_BRANCH_ORDER = ("branch1x1", "branch3x3", "branch5x5", "branch_pool")
_OPENFACE_BRANCH_ORDER = ("branch3x3", "branch5x5", "branch_pool", "branch1x1")


@dataclass(frozen=True)
class OpenFaceLoadReport:
    """What :func:`load_openface_weights` did.

    Attributes:
        loaded: The model's state_dict keys filled from the file.
        missing: The model's keys left as they were (the absent OpenFace tensors, ``num_batches_tracked``, ...).
        unused: The file's keys that no tensor of the model takes (such as the two stray ``..._conv2_m/_v``).
    """

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unused: tuple[str, ...]


@dataclass(frozen=True)
class _Entry:
    ours: str
    theirs: str
    input_order: np.ndarray | None = None  # for each of our input channels, the file's input channel


def _layer_entries(ours: str, conv: str, bn: str, input_order: np.ndarray | None) -> list[_Entry]:
    entries = [_Entry(f"{ours}.0.weight", f"{conv}_w", input_order), _Entry(f"{ours}.0.bias", f"{conv}_b")]
    entries += [_Entry(f"{ours}.{suffix}", f"{bn}_{letter}") for suffix, letter in _BN_SUFFIXES]
    return entries


def _branch_widths(spec: InceptionSpec, in_channels: int) -> dict[str, int]:
    return {
        "branch1x1": spec.conv1x1,
        "branch3x3": spec.conv3x3,
        "branch5x5": spec.conv5x5,
        "branch_pool": spec.pool_proj or in_channels,
    }


def _output_order(spec: InceptionSpec, input_order: np.ndarray) -> np.ndarray:
    widths = _branch_widths(spec, len(input_order))
    starts, offset = {}, 0
    for branch in _OPENFACE_BRANCH_ORDER:
        if widths[branch]:
            starts[branch] = offset
            offset += widths[branch]
    parts = []
    for branch in _OUR_BRANCH_ORDER:
        if not widths[branch]:
            continue
        passes_through = branch == "branch_pool" and not spec.pool_proj
        parts.append(starts[branch] + (input_order if passes_through else np.arange(widths[branch])))
    order = np.concatenate(parts)
    assert sorted(order.tolist()) == list(range(offset)), "channel order must be a permutation"
    return order


def _openface_entries() -> list[_Entry]:
    entries: list[_Entry] = []
    for index in (1, 2, 3):
        entries += _layer_entries(f"features.conv{index}", f"conv{index}", f"bn{index}", None)

    order = np.arange(NN4_SMALL2.stem[-1])
    for name, spec in NN4_SMALL2.blocks:
        widths = _branch_widths(spec, len(order))
        for branch in _OUR_BRANCH_ORDER:
            if not widths[branch] or (branch == "branch_pool" and not spec.pool_proj):
                continue
            for position, (ours, conv, bn) in enumerate(_BRANCH_LAYERS[branch]):
                # A branch's first convolution reads the module input; the second reads the branch's first.
                input_order = order if position == 0 else None
                entries += _layer_entries(f"features.{name}.{ours}", f"{name}_{conv}", f"{name}_{bn}", input_order)
        order = _output_order(spec, order)

    entries.append(_Entry("embedding.weight", "dense_w", order))
    entries.append(_Entry("embedding.bias", "dense_b"))
    return entries


@functools.cache
def _reference_shapes() -> dict[str, torch.Size]:
    with torch.random.fork_rng(devices=[]):  # building initialises weights; leave the caller's random state alone
        reference = nn4_small2()
    return {key: value.shape for key, value in reference.state_dict().items()}


def _check_architecture(model: nn.Module) -> dict[str, torch.Tensor]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model should be a torch.nn.Module (build_model('nn4_small2')), got {type(model).__name__}")
    reference = _reference_shapes()
    state = model.state_dict()
    absent = [key for key in reference if key not in state]
    extra = [key for key in state if key not in reference]
    reshaped = [key for key in reference if key in state and state[key].shape != reference[key]]
    if absent or extra or reshaped:
        first = (absent or extra or reshaped)[0]
        raise ValueError(
            f"expected an nn4_small2 model with a 128-D embedding (build_model('nn4_small2')), got a "
            f"{type(model).__name__} with {len(absent)} of its tensors absent, {len(extra)} extra and "
            f"{len(reshaped)} of another shape (first: {first!r})"
        )
    return state


def load_openface_weights(model: nn.Module, path: str | PathLike[str]) -> OpenFaceLoadReport:
    """Copy OpenFace nn4.small2.v1 weights from an npz into an ``nn4_small2`` model, in place.

    Convolutions, biases, BatchNorm affine parameters and running statistics, and the dense layer are loaded where
    the file has them; tensors the file lacks keep their current values. Nothing is copied unless every tensor the
    file provides has the expected shape.

    Args:
        model: A model from ``build_model("nn4_small2")`` (128-D embedding).
        path: The npz, e.g. ``shared/models/openface_nn4_small2_v1_partial.npz``.

    Returns:
        Which of the model's keys were loaded and which were not, and which of the file's keys went unused.

    Raises:
        FileNotFoundError: When the file does not exist.
        TypeError: When ``model`` is not a torch module.
        ValueError: When the model is not nn4_small2-shaped, or a tensor in the file has an unexpected shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OpenFace weights not found: {path}")
    state = _check_architecture(model)

    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}

    entries = _openface_entries()
    tensors: dict[str, torch.Tensor] = {}
    for entry in entries:
        if entry.theirs not in arrays:
            continue
        array = arrays[entry.theirs]
        expected = tuple(state[entry.ours].shape)
        if array.dtype.kind != "f":
            raise ValueError(f"{path.name}: tensor {entry.theirs!r} should hold floats, got dtype {array.dtype}")
        if array.shape != expected:
            raise ValueError(
                f"{path.name}: tensor {entry.theirs!r} has shape {array.shape}, expected {expected} for {entry.ours}"
            )
        if entry.input_order is not None:
            array = array[:, entry.input_order]
        tensors[entry.ours] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    with torch.no_grad():
        for key, tensor in tensors.items():
            state[key].copy_(tensor)

    used = {entry.theirs for entry in entries if entry.ours in tensors}
    report = OpenFaceLoadReport(
        loaded=tuple(key for key in state if key in tensors),
        missing=tuple(key for key in state if key not in tensors),
        unused=tuple(sorted(key for key in arrays if key not in used)),
    )
    loaded_layers = sorted({key.rsplit(".", 1)[0] for key in report.loaded})
    random_layers = sorted({key.rsplit(".", 1)[0] for key in report.missing if not key.endswith("num_batches_tracked")})
    logger.info("loaded %d tensors of %d layers from %s", len(report.loaded), len(loaded_layers), path.name)
    logger.debug("layers loaded from %s: %s", path.name, ", ".join(loaded_layers))
    if random_layers:
        logger.warning("%s has no weights for %s; they keep their initialisation", path.name, ", ".join(random_layers))
    if report.unused:
        logger.info("unused keys in %s: %s", path.name, ", ".join(report.unused))
    return report


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], momentum: float | None = None) -> int:
    """Re-estimate the running statistics of every BatchNorm layer from data, then leave the model in eval mode.

    Needed after a partial load: a layer after one with missing weights sees other activations than the ones its
    stored statistics describe. The BatchNorm layers run in training mode under ``no_grad`` (no weight changes);
    other layers stay in eval mode.

    Args:
        model: The model; its BatchNorm buffers are updated in place.
        batches: Input batches (N, C, H, W) as the model expects them (for OpenFace weights: RGB in 0..1); moved to
            the model's device.
        momentum: None to reset the statistics and replace them with the plain average over the batches; a number
            in (0, 1] to move the current statistics towards each batch's by that fraction instead.

    Returns:
        The number of images seen.

    Raises:
        ValueError: When the model has no BatchNorm layer, ``momentum`` is out of range or ``batches`` is empty.
        TypeError: When a batch is not a tensor.
    """
    layers = [
        module
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
    ]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer to recalibrate")
    if momentum is not None and not 0.0 < momentum <= 1.0:
        raise ValueError(f"momentum should be None or in (0, 1], got {momentum}")
    device = next(model.parameters()).device
    saved = [(layer.momentum, {k: v.clone() for k, v in layer.named_buffers()}) for layer in layers]

    model.eval()
    for layer in layers:
        if momentum is None:
            layer.reset_running_stats()
        layer.momentum = momentum
        layer.train()
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if not isinstance(batch, torch.Tensor):
                    raise TypeError(f"each batch should be a torch.Tensor, got {type(batch).__name__}")
                model(batch.to(device))
                seen += len(batch)
        if not seen:
            raise ValueError("batches is empty: recalibration needs at least one batch of images")
    except BaseException:
        for layer, (old_momentum, buffers) in zip(layers, saved, strict=True):
            layer.load_state_dict(buffers, strict=False)
            layer.momentum = old_momentum
        model.eval()
        raise

    for layer, (old_momentum, _) in zip(layers, saved, strict=True):
        layer.momentum = old_momentum
    model.eval()
    logger.info("recalibrated %d BatchNorm layers on %d images", len(layers), seen)
    return seen
