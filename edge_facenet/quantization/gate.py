"""The INT8 accuracy gate: an INT8 model must embed like its FP32 source and verify LFW pairs as well.

Both models embed the same aligned LFW crops. The gate compares, face by face, the cosine between the two embeddings
of each crop (mean >= 0.995), and the LFW 10-fold accuracy of each on the same folds (a drop of at most 0.5 points;
the aim is 0.3). Measure on folds whose people neither trained nor calibrated the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from edge_facenet.aligner import FaceAligner
from edge_facenet.detector import FaceDetector
from edge_facenet.embedder import Embedder
from edge_facenet.evaluate import (
    align_images,
    chosen_pairs,
    crop_cache_path,
    embed_crops,
    pair_similarities,
    verify_pairs,
)
from edge_facenet.lfw import IMAGES_FOLDER, pair_images
from edge_facenet.metrics import VerificationReport

MIN_MEAN_COSINE = 0.995
MAX_ACCURACY_DROP = 0.005
AIM_ACCURACY_DROP = 0.003
MIN_FACES = 1000


@dataclass(frozen=True)
class CosineAgreement:
    """How closely two models embed the same faces.

    Attributes:
        faces: How many faces were compared.
        mean: Mean cosine between the two embeddings of a face.
        p1: Its 1st percentile (the worst 1 % of faces lie below).
        min: The worst face.
    """

    faces: int
    mean: float
    p1: float
    min: float


@dataclass(frozen=True)
class GateResult:
    """The gate's figures and verdict.

    Attributes:
        agreement: FP32 vs INT8 embeddings of the same crops.
        fp32: LFW report of the FP32 model.
        int8: LFW report of the INT8 model.
        folds: The LFW folds measured.
        threshold: The FP32 model's match threshold (metadata), which the INT8 model carries too; None without one.
        at_threshold: ``{"fp32": (TAR, FAR), "int8": (TAR, FAR)}``: same-person pairs accepted and different-person
            pairs accepted at ``threshold`` (empty without one).
    """

    agreement: CosineAgreement
    fp32: VerificationReport
    int8: VerificationReport
    folds: list[int]
    threshold: float | None = None
    at_threshold: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def accuracy_drop(self) -> float:
        """FP32 accuracy minus INT8 accuracy (a fraction: 0.005 is half a point)."""
        return self.fp32.accuracy - self.int8.accuracy

    def failures(self) -> list[str]:
        """Why the gate fails, one line per reason; empty when it passes."""
        reasons = []
        if self.agreement.faces < MIN_FACES:
            reasons.append(f"only {self.agreement.faces} faces compared; the gate needs at least {MIN_FACES}")
        if self.agreement.mean < MIN_MEAN_COSINE:
            reasons.append(f"mean cosine {self.agreement.mean:.4f} is below {MIN_MEAN_COSINE}")
        if self.accuracy_drop > MAX_ACCURACY_DROP:
            reasons.append(f"accuracy drops {100 * self.accuracy_drop:.2f} points, more than {100 * MAX_ACCURACY_DROP}")
        return reasons

    @property
    def passed(self) -> bool:
        """True when every condition of the gate holds."""
        return not self.failures()


def cosine_agreement(reference: np.ndarray, candidate: np.ndarray) -> CosineAgreement:
    """Compare two (N, D) sets of unit embeddings of the same N faces.

    Raises:
        ValueError: When the shapes differ or there are no faces.
    """
    if reference.shape != candidate.shape or reference.ndim != 2 or len(reference) == 0:
        raise ValueError(f"expected two (N, D) arrays of the same shape, got {reference.shape} and {candidate.shape}")
    cosines = np.einsum("ij,ij->i", reference.astype(np.float64), candidate.astype(np.float64))
    return CosineAgreement(
        faces=len(cosines), mean=float(cosines.mean()), p1=float(np.percentile(cosines, 1)), min=float(cosines.min())
    )


def run_gate(
    fp32: Embedder,
    int8: Embedder,
    lfw_dir: str | PathLike[str],
    detector: FaceDetector,
    folds: list[int] | None = None,
    pairs_file: str = "pairs.txt",
    progress: bool = True,
) -> GateResult:
    """Embed the images of the chosen LFW folds with both models and apply the gate.

    Raises:
        FileNotFoundError: When the protocol file or an image is missing.
        ValueError: For unknown folds, or models that take different crops.
    """
    if (fp32.metadata.input_size, fp32.metadata.alignment_template) != (
        int8.metadata.input_size,
        int8.metadata.alignment_template,
    ):
        raise ValueError("the two models take different crops (input size or alignment template): not comparable")
    lfw_dir = Path(lfw_dir)
    pairs, chosen = chosen_pairs(lfw_dir / pairs_file, folds)
    aligner = FaceAligner.from_metadata(fp32.metadata)
    cache = crop_cache_path(detector, aligner, f"lfw_{Path(pairs_file).stem}")
    aligned = align_images(lfw_dir / IMAGES_FOLDER, pair_images(pairs), detector, aligner, cache, progress)

    same = np.array([p.same for p in pairs])
    threshold = fp32.metadata.threshold
    reports, embeddings, at_threshold = [], [], {}
    for name, embedder in (("fp32", fp32), ("int8", int8)):
        embeddings.append(embed_crops(embedder, aligned.crops, progress=progress))
        similarities = pair_similarities(pairs, aligned.keys, embeddings[-1])
        reports.append(verify_pairs(pairs, chosen, similarities)[0])
        if threshold is not None:
            accepted = similarities >= threshold
            at_threshold[name] = (float(accepted[same].mean()), float(accepted[~same].mean()))
    return GateResult(cosine_agreement(*embeddings), reports[0], reports[1], chosen, threshold, at_threshold)


def speed_side_by_side(
    embedders: dict[str, Embedder],
    crops: np.ndarray,
    batch_sizes: tuple[int, ...] = (1, 8),
    repeats: int = 100,
    warmup: int = 10,
) -> dict[str, dict[int, dict[str, float]]]:
    """Time the embedders on the same crops, taking turns call by call so that load changes hit all alike.

    Returns:
        Name -> batch size -> ``{"ms_per_face", "p10", "p90"}`` (median and 10th/90th percentiles, per face).

    Raises:
        ValueError: When there are fewer crops than the largest batch.
    """
    if len(crops) < max(batch_sizes):
        raise ValueError(f"need at least {max(batch_sizes)} crops to time batches of {max(batch_sizes)}")
    results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in embedders}
    for batch_size in batch_sizes:
        batch = np.ascontiguousarray(crops[:batch_size])
        for embedder in embedders.values():
            for _ in range(warmup):
                embedder.embed(batch)
        times: dict[str, list[float]] = {name: [] for name in embedders}
        for _ in range(repeats):
            for name, embedder in embedders.items():
                start = time.perf_counter()
                embedder.embed(batch)
                times[name].append((time.perf_counter() - start) * 1000 / batch_size)
        for name, values in times.items():
            p10, median, p90 = np.percentile(values, [10, 50, 90])
            results[name][batch_size] = {"ms_per_face": float(median), "p10": float(p10), "p90": float(p90)}
    return results
