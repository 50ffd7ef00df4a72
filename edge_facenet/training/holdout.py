"""Held-out identities for verification during training, and the open-set threshold they set.

numpy only: the trainer embeds the held-out crops and hands the embeddings here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_facenet.metrics import threshold_at_far
from edge_facenet.training.data import CropDataset

FAR_TARGET = 1e-3
THRESHOLD_IMAGES = 4000  # at most this many held-out images (8M pairs) set the threshold


def open_set_threshold(
    embeddings: np.ndarray, labels: np.ndarray, far_target: float = FAR_TARGET, seed: int = 0
) -> tuple[float, float, int]:
    """The cosine threshold that accepts at most ``far_target`` of all different-identity pairs of these images.

    Every pair counts, not a sample: at FAR 1e-3 a few thousand sampled pairs would leave the threshold to the
    one or two most alike strangers. Above :data:`THRESHOLD_IMAGES` images, a seeded subset is used.

    Returns:
        (threshold, share of the same-identity pairs it accepts, number of different-identity pairs).
    """
    if len(embeddings) > THRESHOLD_IMAGES:
        keep = np.sort(np.random.default_rng(seed).choice(len(embeddings), THRESHOLD_IMAGES, replace=False))
        embeddings, labels = embeddings[keep], labels[keep]
    first, second = np.triu_indices(len(embeddings), k=1)
    similarities = (embeddings @ embeddings.T)[first, second]  # (N, N) floats, not two (pairs, D) copies
    same = labels[first] == labels[second]
    threshold = float(np.clip(threshold_at_far(similarities, same, far_target), -1.0, 1.0))
    accepted = float(np.mean(similarities[same] >= threshold)) if same.any() else float("nan")
    return threshold, accepted, int((~same).sum())


@dataclass(frozen=True)
class HeldOut:
    """The training identities, the held-out ones, and verification pairs among the held-out crops."""

    train: CropDataset
    val: CropDataset
    pairs: np.ndarray  # (P, 2) indices into val
    same: np.ndarray  # (P,) bool


def split_identities(dataset: CropDataset, fraction: float, pairs: int, seed: int) -> HeldOut:
    """Hold out a fraction of the multi-image identities and build balanced verification pairs among them."""
    rng = np.random.default_rng([seed, 7])
    counts = np.bincount(dataset.labels, minlength=len(dataset.identities))
    eligible = np.flatnonzero(counts >= 2)
    held = rng.choice(eligible, size=round(fraction * len(eligible)), replace=False) if fraction else []
    is_val = np.isin(dataset.labels, held)
    train, val = dataset.subset(np.flatnonzero(~is_val)), dataset.subset(np.flatnonzero(is_val))
    if len(val) == 0:
        return HeldOut(train, val, np.zeros((0, 2), np.int64), np.zeros(0, bool))

    by_identity = [np.flatnonzero(val.labels == label) for label in range(len(val.identities))]
    same_pairs = []
    for _ in range(pairs // 2):
        members = by_identity[rng.integers(len(by_identity))]
        same_pairs.append(rng.choice(members, size=2, replace=False))
    different_pairs = []
    while len(different_pairs) < pairs - pairs // 2:
        a, b = rng.integers(len(val), size=2)
        if val.labels[a] != val.labels[b]:
            different_pairs.append((a, b))
    all_pairs = np.array(same_pairs + different_pairs, dtype=np.int64).reshape(-1, 2)
    same = np.arange(len(all_pairs)) < len(same_pairs)
    return HeldOut(train, val, all_pairs, same)
