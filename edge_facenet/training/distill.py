"""Distillation from a teacher's precomputed embeddings: pull the student's in-batch geometry towards the teacher's.

The teacher here is dlib's face-recognition ResNet, whose descriptors are stored per image in npz files
(``names``: paths relative to a dataset's ``images/`` folder, ``embeddings``: float32 (N, 128), not normalised).

Why centre, and why standardise. dlib's descriptors share a large common component: the norm of their mean is 1.30
against a mean norm of 1.42, so once L2-normalised they sit in a narrow cone. On LFW's 6,000 ``pairs.txt`` pairs the
cosine similarity is 0.952 ± 0.018 for same-person pairs and 0.832 ± 0.035 for different-person pairs (random pairs
0.77-0.89, 5th-95th percentile): a squared-L2 gap of only 0.24 between the two means. A student trained to reproduce
these cosines puts its own same and different pairs almost as close, under a triplet margin of 0.2, and the two
losses fight. Subtracting the mean teacher embedding before normalising opens the cone: same-person 0.703 ± 0.129,
different-person -0.002 ± 0.168 (random pairs -0.26..0.30), a squared-L2 gap of 1.41, and the pairs separate a little
better too (d' 4.29 uncentred, 4.71 centred). :class:`SimilarityDistillationLoss` then compares standardised
similarities by default, so it transfers which pairs are closer than which, and how much relative to the batch's
spread, but leaves the absolute scale of the student's distances to the triplet loss.

A short pilot (nn4_small2 from the partial OpenFace weights, 145 steps of 32 x 4 LFW fold 1-5 crops, semi-hard
triplets with margin 0.2, evaluated on pairs.txt folds 6-10) kept the margin intact: mean squared distances of
same / different pairs 0.60 / 1.99 without distillation, 0.55 / 2.00 with weight 0.5 and 0.53 / 1.99 with weight 2
(plain matching of uncentred dlib cosines had squeezed them to 0.10 / 0.31). Accuracy did not change beyond the
noise (0.904, 0.905, 0.893, each ± 0.02): in such a run every image already has a triplet, so the term is expected to
pay off, if at all, on people with a single image, which only it can use.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

_STD_EPS = 1e-6


class TeacherEmbeddings:
    """A teacher's embeddings of training images, looked up by image name.

    Build it with :meth:`load`. Rows are unit vectors (float32); with ``centre=True`` the mean embedding over all
    loaded images was subtracted before normalising.

    Args:
        names: One name per row, unique.
        embeddings: (N, D) unit vectors.
        mean: The embedding subtracted before normalising, or None when nothing was.

    Attributes:
        mean: As given.

    Raises:
        ValueError: When the shapes disagree or a name repeats.
    """

    def __init__(self, names: Sequence[str], embeddings: np.ndarray, mean: np.ndarray | None = None) -> None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(names):
            raise ValueError(f"embeddings should be ({len(names)}, D) for {len(names)} names, got {embeddings.shape}")
        index = {name: row for row, name in enumerate(names)}
        if len(index) != len(names):
            repeated = next(name for row, name in enumerate(names) if index[name] != row)
            raise ValueError(f"teacher image names must be unique; {repeated!r} appears more than once")
        self._index = index
        self._embeddings = embeddings
        self.mean = mean

    @classmethod
    def load(cls, paths: Sequence[str | PathLike[str]], centre: bool = True) -> TeacherEmbeddings:
        """Read one or more npz files of teacher embeddings (e.g. LFW's and CelebA's dlib descriptors).

        Args:
            paths: npz files holding ``names`` (N,) and ``embeddings`` (N, D); names are the lookup keys.
            centre: Subtract the mean embedding over all loaded images before L2-normalising (see the module
                docstring for why).

        Returns:
            The embeddings of all files together.

        Raises:
            TypeError: When ``paths`` is a single path rather than a sequence of them.
            FileNotFoundError: When a file does not exist.
            ValueError: When no path is given, a file lacks the arrays or has inconsistent shapes, the files
                disagree on the dimension, or a name appears twice (within a file or across files).
        """
        if isinstance(paths, (str, PathLike)):
            raise TypeError(
                f"paths should be a sequence of npz files, got the single path {paths!r}; wrap it in a list"
            )
        if not paths:
            raise ValueError("paths is empty: give at least one npz of teacher embeddings")

        names: list[str] = []
        blocks: list[np.ndarray] = []
        origin: dict[str, Path] = {}
        for path in map(Path, paths):
            file_names, file_embeddings = _read_npz(path)
            if blocks and file_embeddings.shape[1] != blocks[0].shape[1]:
                raise ValueError(
                    f"{path}: embeddings have dimension {file_embeddings.shape[1]}, expected {blocks[0].shape[1]} "
                    f"as in {Path(paths[0])}"
                )
            for name in file_names:
                if name in origin:
                    raise ValueError(f"teacher image name {name!r} appears in both {origin[name]} and {path}")
                origin[name] = path
            names += file_names
            blocks.append(file_embeddings)
            logger.info("read %d teacher embeddings from %s", len(file_names), path)

        embeddings = np.concatenate(blocks).astype(np.float64)
        mean = embeddings.mean(axis=0) if centre else None
        if mean is not None:
            embeddings -= mean
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        return cls(names, embeddings / np.maximum(norms, 1e-12), mean)

    @property
    def dimension(self) -> int:
        """Length of a teacher embedding."""
        return self._embeddings.shape[1]

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def lookup(self, sources: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return the teacher embeddings of a batch of images.

        Args:
            sources: Image names as in the npz ``names`` (``Name/Name_0001.jpg``, relative to ``images/``).

        Returns:
            (B, D) float32 unit vectors, zero rows where an image has no teacher embedding, and the (B,) bool mask
            of the rows that have one.

        Raises:
            TypeError: When ``sources`` is a single string rather than a sequence of them.
        """
        if isinstance(sources, str):
            raise TypeError(f"sources should be a sequence of image names, got the single string {sources!r}")
        rows = np.array([self._index.get(source, -1) for source in sources], dtype=np.int64)
        mask = rows >= 0
        found = np.zeros((len(rows), self.dimension), dtype=np.float32)
        found[mask] = self._embeddings[rows[mask]]
        return found, mask


def _read_npz(path: Path) -> tuple[list[str], np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"teacher embeddings not found: {path}")
    with np.load(path, allow_pickle=False) as archive:
        if "names" not in archive.files or "embeddings" not in archive.files:
            raise ValueError(f"{path}: expected arrays 'names' and 'embeddings', found {', '.join(archive.files)}")
        names = [str(name) for name in archive["names"]]
        embeddings = archive["embeddings"]
    if embeddings.ndim != 2 or embeddings.shape[0] != len(names):
        raise ValueError(
            f"{path}: embeddings should be ({len(names)}, D) for {len(names)} names, got {embeddings.shape}"
        )
    if not np.isfinite(embeddings).all():
        raise ValueError(f"{path}: embeddings hold non-finite values")
    return names, embeddings


class SimilarityDistillationLoss(nn.Module):
    """Match the student's in-batch cosine-similarity matrix to the teacher's, over images that have a teacher.

    For the n valid images (mask true) it takes the n(n-1)/2 cosine similarities of distinct pairs on each side and
    returns the mean squared difference:

    - ``scale="auto"`` (default): each side's similarities are standardised first (minus their mean, over their
      standard deviation), so the loss is 2 (1 - r) with r their Pearson correlation. It is unchanged when the
      student's similarities are shifted or stretched, so it never pulls the student's distances towards the
      teacher's absolute scale and cannot squeeze them under the triplet margin; only the relative geometry is
      transferred. In 32 x 4 batches of LFW people, the centred dlib similarities standardise to 3.4 for
      same-person pairs and -0.08 for different-person pairs (raw spread 0.20). Centring still matters here: it is
      not an affine change of the similarities (their correlation with the uncentred ones is 0.88 in such batches).
    - ``scale=s`` (a positive number): the student's cosines are matched to s times the teacher's, as they are.
      Use it only with centred teacher embeddings (see the module docstring); s=1 is plain matching.

    Images without a teacher embedding contribute nothing and get no gradient; with fewer than two valid images the
    loss is a zero that still belongs to the graph. The teacher side is never differentiated, and the two
    embeddings may differ in length (the similarities are compared, not the vectors). Both sides are L2-normalised
    here.

    Args:
        scale: ``"auto"`` or a positive number, as above.

    Raises:
        ValueError: When ``scale`` is neither ``"auto"`` nor a positive finite number.
    """

    def __init__(self, scale: float | str = "auto") -> None:
        super().__init__()
        if isinstance(scale, str):
            if scale != "auto":
                raise ValueError(f"scale should be 'auto' or a positive number, got {scale!r}")
        elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale should be 'auto' or a positive number, got {scale!r}")
        self.scale = scale

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Return the loss of one batch.

        Args:
            student: (B, D) student embeddings.
            teacher: (B, D') teacher embeddings; rows where ``mask`` is false are ignored (a numpy array from
                :meth:`TeacherEmbeddings.lookup` works too).
            mask: (B,) bool, true where the image has a teacher embedding (tensor or numpy array).

        Returns:
            A scalar tensor.

        Raises:
            ValueError: When the shapes do not agree.
            TypeError: When ``mask`` is not boolean.
        """
        teacher = torch.as_tensor(teacher, device=student.device)
        mask = torch.as_tensor(mask, device=student.device)
        if student.ndim != 2 or teacher.ndim != 2 or teacher.shape[0] != student.shape[0]:
            shapes = f"{tuple(student.shape)} and {tuple(teacher.shape)}"
            raise ValueError(f"student and teacher should be (B, D) and (B, D') with the same B, got {shapes}")
        if mask.shape != (student.shape[0],):
            raise ValueError(f"mask should have shape ({student.shape[0]},), got {tuple(mask.shape)}")
        if mask.dtype != torch.bool:
            raise TypeError(f"mask should be boolean, got {mask.dtype}")

        valid = torch.nonzero(mask).squeeze(1)
        if valid.numel() < 2:
            return student.sum() * 0.0

        student_unit = F.normalize(student[valid], dim=1)
        teacher_unit = F.normalize(teacher[valid].to(student.dtype), dim=1).detach()
        first, second = torch.triu_indices(len(valid), len(valid), offset=1, device=student.device)
        student_similarity = (student_unit @ student_unit.T)[first, second]
        teacher_similarity = (teacher_unit @ teacher_unit.T)[first, second]

        if self.scale == "auto":
            student_similarity = _standardise(student_similarity)
            teacher_similarity = _standardise(teacher_similarity)
        else:
            teacher_similarity = teacher_similarity * float(self.scale)
        return F.mse_loss(student_similarity, teacher_similarity)

    def extra_repr(self) -> str:
        return f"scale={self.scale!r}"


def _standardise(values: torch.Tensor) -> torch.Tensor:
    centred = values - values.mean()
    return centred / (centred.pow(2).mean().sqrt() + _STD_EPS)
