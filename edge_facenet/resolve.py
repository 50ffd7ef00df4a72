"""Finding model files: an explicit path, an environment variable, the cache directory, then a verified download."""

from __future__ import annotations

import logging
import os
import urllib.request
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from edge_facenet._files import atomic_output, sha256_file

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ModelFile:
    """A model file the runtime can fetch.

    Attributes:
        description: What it is, for messages.
        filename: Its name in the cache directory.
        sha256: The published file's sha256; cached and downloaded copies must match it.
        url: Where to download it from.
        env_var: Environment variable that may name a local copy.
    """

    description: str
    filename: str
    sha256: str
    url: str
    env_var: str


YUNET_2023MAR = ModelFile(
    description="YuNet face detector (2023mar, MIT licence, OpenCV Zoo)",
    filename="face_detection_yunet_2023mar.onnx",
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
    env_var="EDGE_FACENET_DETECTOR",
)


def cache_dir() -> Path:
    """The cache directory: ``$EDGE_FACENET_HOME``, else ``~/.cache/edge_facenet``."""
    return Path(os.environ.get("EDGE_FACENET_HOME") or Path.home() / ".cache" / "edge_facenet")


def resolve_model_file(spec: ModelFile, path: str | PathLike[str] | None = None, download: bool = True) -> Path:
    """Find a model file, in order: ``path``, ``$<env_var>``, the cache directory, a download verified by sha256.

    Args:
        spec: Which model file.
        path: An explicit file; used as given (not hash-checked), and an error if it does not exist.
        download: Whether the last step may use the network.

    Returns:
        Path of a readable file.

    Raises:
        FileNotFoundError: When no step yields the file; the message names every way to provide it.
    """
    if path is not None:
        explicit = Path(path)
        if not explicit.is_file():
            raise FileNotFoundError(f"{spec.description}: file not found: {explicit}")
        return explicit

    from_env = os.environ.get(spec.env_var)
    if from_env:
        if not Path(from_env).is_file():
            raise FileNotFoundError(f"{spec.description}: ${spec.env_var} names {from_env}, which does not exist")
        return Path(from_env)

    cached = cache_dir() / "models" / spec.filename
    if cached.is_file():
        if sha256_file(cached) == spec.sha256:
            return cached
        logger.warning("%s in the cache has the wrong sha256; fetching it again", cached)

    reason = "downloads are disabled"
    if download:
        try:
            return _download(spec, cached)
        except (OSError, ValueError) as error:
            reason = f"download failed: {error}"
    raise FileNotFoundError(
        f"{spec.description} not found ({reason}). Pass its path explicitly, set ${spec.env_var}, put "
        f"{spec.filename} in {cached.parent}, or allow the download from {spec.url}"
    )


def _download(spec: ModelFile, destination: Path) -> Path:
    logger.info("downloading %s from %s", spec.filename, spec.url)
    with atomic_output(destination) as temporary:
        with urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(temporary, "wb") as file:
            while chunk := response.read(1 << 16):
                file.write(chunk)
        digest = sha256_file(temporary)
        if digest != spec.sha256:
            raise ValueError(f"sha256 of the downloaded file is {digest}, expected {spec.sha256}")
    return destination
