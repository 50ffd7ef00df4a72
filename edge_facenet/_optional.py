"""Imports of optional dependencies that name the extra to install when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency.

    Args:
        module: Name of the module to import, e.g. ``"torch"``.
        extra: The edge-facenet extra that provides it, e.g. ``"train"``.

    Returns:
        The imported module.

    Raises:
        ImportError: When the module is not installed; the message names the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module} is needed for this part of edge_facenet but is not installed; "
            f"install it with: pip install 'edge-facenet[{extra}]'"
        ) from error
