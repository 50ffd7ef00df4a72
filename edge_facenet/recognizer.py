"""The recogniser: frame in, named faces out (detect, align, embed, match against a gallery)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import numpy as np

from edge_facenet._frames import as_bgr
from edge_facenet.aligner import FaceAligner
from edge_facenet.detector import FaceDetector
from edge_facenet.embedder import Embedder
from edge_facenet.gallery import Gallery
from edge_facenet.images import read_image
from edge_facenet.types import Face, Match

logger = logging.getLogger(__name__)


class Recognizer:
    """Identifies the faces of a frame against a gallery, with open-set "unknown" rejection.

    Args:
        model: Embedder ONNX file (or a ready :class:`Embedder`); None uses ``$EDGE_FACENET_MODEL`` or the
            package's default embedder.
        detector: A :class:`FaceDetector`, or the YuNet ONNX path; None resolves YuNet (``$EDGE_FACENET_DETECTOR``,
            the cache, a verified download).
        gallery: A :class:`Gallery`, or the path of its SQLite file (created when missing); None starts an empty
            in-memory gallery.
        backend: Embedder backend (see :class:`Embedder`).
        precision: ``"fp32"``, ``"int8"`` or ``"auto"`` (INT8 on the CPU, FP32 on a GPU): which of the package's
            embedders to use (see :class:`Embedder`).
        threshold: Cosine similarity at or above which a face takes the best identity's name; None uses the
            threshold in the model's metadata.

    Raises:
        FileNotFoundError: When a model file cannot be found.
        ValueError: For a bad backend or threshold, or a gallery enrolled with another embedder.

    Example:
        >>> recognizer = Recognizer(gallery="people.sqlite3")  # the shipped nn4_small2 (INT8 on a CPU)
        >>> for match in recognizer.identify(frame):
        ...     print(match.name or "unknown", round(match.similarity, 2), match.bbox)
    """

    def __init__(
        self,
        model: str | PathLike[str] | Embedder | None = None,
        detector: str | PathLike[str] | FaceDetector | None = None,
        gallery: str | PathLike[str] | Gallery | None = None,
        backend: str = "auto",
        threshold: float | None = None,
        precision: str = "auto",
    ) -> None:
        if isinstance(model, Embedder):
            self.embedder = model
        else:
            self.embedder = Embedder(model, backend=backend, precision=precision)
        self.detector = detector if isinstance(detector, FaceDetector) else FaceDetector(detector)
        self.aligner = FaceAligner.from_metadata(self.embedder.metadata)
        self.threshold = _check_threshold(threshold) if threshold is not None else None
        if isinstance(gallery, Gallery):
            self.gallery = gallery
        else:
            self.gallery = Gallery(gallery, self.fingerprint, self.embedding_size)
        if (self.gallery.fingerprint, self.gallery.embedding_size) != (self.fingerprint, self.embedding_size):
            raise ValueError(
                "the gallery was enrolled with another embedder "
                f"({self.gallery.fingerprint[:12]}, this one is {self.fingerprint[:12]}): re-enrol it"
            )

    @property
    def fingerprint(self) -> str:
        """The embedder's fingerprint (sha256 of its model file), as galleries record it."""
        return self.embedder.fingerprint

    @property
    def embedding_size(self) -> int:
        """Length of the embeddings."""
        return self.embedder.embedding_size

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Detect the faces of a frame (see :meth:`FaceDetector.detect`)."""
        return self.detector.detect(frame)

    def embed(self, frame: np.ndarray) -> tuple[list[Face], np.ndarray]:
        """Detect, align and embed every face of a frame in one batched call.

        Returns:
            The faces (best score first) and their (N, D) float32 embeddings.

        Raises:
            ValueError: When the frame is not a BGR, greyscale or BGRA uint8 image.
        """
        frame = as_bgr(frame)
        faces = self.detector.detect(frame)
        return faces, self.embedder.embed(self.aligner.align_faces(frame, faces))

    def embed_largest_face(self, image: np.ndarray) -> np.ndarray | None:
        """Embed the largest face of an image (for enrolment); None when the image has no face."""
        image = as_bgr(image, "image")
        faces = self.detector.detect(image)
        if not faces:
            return None
        largest = max(faces, key=lambda face: face.area)
        return self.embedder.embed(self.aligner.align_faces(image, [largest]))[0]

    def identify(self, frame: np.ndarray, threshold: float | None = None) -> list[Match]:
        """Name every face of a frame.

        Args:
            frame: BGR uint8 (H, W, 3); greyscale (H, W) and BGRA (H, W, 4) are accepted too.
            threshold: Overrides the recogniser's threshold for this call.

        Returns:
            One :class:`Match` per face, best detection first; ``name`` is None for faces whose best gallery
            similarity is below the threshold (unknown), and for every face when the gallery is empty.

        Raises:
            ValueError: For a frame of another type or shape, or when no threshold is known (the model's metadata
                has none and none was given).
        """
        faces, embeddings = self.embed(frame)
        if not faces:
            return []
        limit = self.match_threshold(threshold)
        best = self.gallery.search(embeddings, k=1)
        matches = []
        for face, embedding, candidates in zip(faces, embeddings, best, strict=True):
            similarity = candidates[0].similarity if candidates else -1.0
            name = candidates[0].name if candidates and similarity >= limit else None
            matches.append(
                Match(
                    bbox=face.bbox,
                    landmarks=face.landmarks,
                    det_score=face.det_score,
                    name=name,
                    similarity=float(similarity),
                    embedding=embedding,
                )
            )
        return matches

    def enroll(self, name: str, images: Iterable[np.ndarray | str | PathLike[str]]) -> int:
        """Add images of one person to the gallery (the largest face of each).

        Args:
            name: The identity.
            images: BGR arrays or image file paths.

        Returns:
            How many images were enrolled; images without a face are skipped with a warning.

        Raises:
            ValueError: For an empty name, or an image that is neither a readable file nor an 8-bit array; nothing is
                enrolled then.
            TypeError: When ``images`` is one path or one array instead of a list of them.
            FileNotFoundError: For a path that does not exist.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"an identity name must be a non-empty string, got {name!r}")
        # A lone path or image would otherwise be iterated: a path's characters as files, an image's rows as images.
        if isinstance(images, np.ndarray) and images.ndim < 4:
            raise TypeError(f"images must be a list of images, got one array of shape {images.shape}: put it in a list")
        if isinstance(images, (str, PathLike)):
            raise TypeError(f"images must be a list of image paths, got one path {str(images)!r}: put it in a list")
        if images is None:
            raise TypeError("images must be a list of BGR arrays or image paths, got None")
        embeddings, sources = [], []
        for image in images:
            source = None
            if isinstance(image, (str, PathLike)):
                source = Path(image)
                image = read_image(source)
            embedding = self.embed_largest_face(image)
            if embedding is None:
                logger.warning("no face found in %s; not enrolled", source or "an image")
                continue
            embeddings.append(embedding)
            sources.append(source)
        if embeddings:  # one transaction: all of them or, should the process die, none
            paths = [str(source) if source else None for source in sources]
            self.gallery.add_many([name] * len(embeddings), np.stack(embeddings), source_paths=paths)
        return len(embeddings)

    def match_threshold(self, override: float | None = None) -> float:
        """The cosine similarity :meth:`identify` requires: ``override``, else the recogniser's, else the model's.

        Raises:
            ValueError: When the value is outside [-1, 1], or none is known.
        """
        for value in (override, self.threshold, self.embedder.metadata.threshold):
            if value is not None:
                return _check_threshold(value)
        raise ValueError(
            f"{self.embedder.model_path} carries no match threshold in its metadata; pass threshold= to the "
            "Recognizer or to identify()"
        )


def _check_threshold(value: float) -> float:
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"threshold is a cosine similarity and must be in [-1, 1], got {value}")
    return float(value)
