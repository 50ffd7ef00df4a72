"""Reading image files into the BGR uint8 arrays the runtime works on.

Files are read as bytes and decoded from memory: any path works (unicode, spaces), and a file OpenCV cannot decode
completely is refused. Unlike ``cv2.imread``, which hands back the decodable top of a truncated JPEG (grey below),
``cv2.imdecode`` returns nothing for it; it also never prints a warning for a missing file.
16-bit, float, palette, grey, CMYK and alpha images come back as 8-bit BGR.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import cv2
import numpy as np


def decode_image(data: bytes | np.ndarray) -> np.ndarray | None:
    """Decode image file bytes into a BGR uint8 image.

    Args:
        data: The bytes of a JPEG, PNG, BMP, WebP or other file OpenCV reads.

    Returns:
        The (H, W, 3) image; None for empty bytes or bytes that are not a complete image.
    """
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buffer.size == 0:
        return None
    try:
        return cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error:  # some decoders raise where most return None
        return None


def read_image(path: str | PathLike[str]) -> np.ndarray:
    """Read an image file into a BGR uint8 image.

    Args:
        path: The file.

    Returns:
        The (H, W, 3) image.

    Raises:
        FileNotFoundError: When there is no file at ``path``.
        ValueError: When the file is empty or not a complete image OpenCV can decode.
        PermissionError: When the file cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ValueError(f"cannot decode an image from {path}: the file is empty")
    image = decode_image(data)
    if image is None:
        raise ValueError(f"cannot decode an image from {path}")
    return image
