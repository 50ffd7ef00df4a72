"""Registry of embedder architectures: ``build_model(arch, embedding_size)`` and ``list_models()``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

EMBEDDING_SIZES = (64, 128, 256, 512)

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register_model(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name (used as a decorator)."""
    if factory.__name__ in _FACTORIES:
        raise ValueError(f"model {factory.__name__!r} is registered twice")
    _FACTORIES[factory.__name__] = factory
    return factory


def list_models() -> list[str]:
    """Return the names of the registered architectures, sorted."""
    _load_families()
    return sorted(_FACTORIES)


def build_model(arch: str, embedding_size: int = 128) -> nn.Module:
    """Build an embedder with random initialisation.

    Args:
        arch: Architecture name; see :func:`list_models`.
        embedding_size: Length of the L2-normalised embedding, one of ``EMBEDDING_SIZES``.

    Returns:
        The model, mapping (N, 3, H, W) float input to (N, embedding_size) unit vectors.

    Raises:
        ValueError: For an unknown architecture or an unsupported embedding size.

    Example:
        >>> model = build_model("nn4_small2")
        >>> model(torch.zeros(2, 3, 96, 96)).shape
        torch.Size([2, 128])
    """
    _load_families()
    if arch not in _FACTORIES:
        raise ValueError(f"unknown architecture {arch!r}; valid architectures: {', '.join(sorted(_FACTORIES))}")
    if embedding_size not in EMBEDDING_SIZES:
        raise ValueError(
            f"embedding_size should be one of {', '.join(map(str, EMBEDDING_SIZES))} instead of {embedding_size}"
        )
    return _FACTORIES[arch](embedding_size=embedding_size)


def _load_families() -> None:
    # Model files register themselves on import; importing here keeps the registry free of import cycles.
    from edge_facenet.training import nn4  # noqa: F401
