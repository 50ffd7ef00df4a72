"""Batch sampling for triplet training: P identities with K images each per batch, as online mining needs."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)


class IdentitySampler(torch.utils.data.Sampler[list[int]]):
    """Batch sampler that yields P x K batches of dataset indices (pass it as a DataLoader's ``batch_sampler``).

    Each batch holds ``identities_per_batch`` (P) distinct identities with exactly ``images_per_identity`` (K) images
    each, grouped by identity, then ``singletons_per_batch`` images of distinct single-image identities.

    - Only identities with at least 2 images are among the P. One with K or more images gives K distinct images; one
      with 2 to K-1 images gives all of its images once plus the missing ones drawn again at random (with
      replacement), so its pairs repeat images.
    - Single-image identities can never form an anchor-positive pair; the extras serve as negatives only. With
      ``singletons_per_batch=0`` they are not used.
    - Identities are drawn by walking random permutations of the eligible identities, so every identity appears
      once before any appears again. The default ``batches_per_epoch`` is ceil(E / (P * num_replicas)) for E
      eligible identities: each of them appears at least once per epoch across all replicas.
    - Batches depend only on (seed, epoch, rank); call :meth:`set_epoch` before each epoch, as with
      ``DistributedSampler``. All replicas walk the same identity permutation and rank r takes the r-th block of P in
      each step, so replicas see disjoint identities (and disjoint extras) in the same step and have the same length.

    Args:
        labels: Identity label of every dataset item, in dataset order.
        identities_per_batch: P, at least 2 (negatives come from the other identities).
        images_per_identity: K, at least 2 (an identity needs two images to form a pair).
        batches_per_epoch: Batches per epoch and replica; None for the default above.
        singletons_per_batch: Extra images of single-image identities per batch.
        seed: Non-negative seed.
        num_replicas: Number of distributed processes.
        rank: This process's rank, in [0, num_replicas).

    Raises:
        ValueError: For P or K below 2, a rank out of range, fewer than P * num_replicas identities with 2 or more
            images, fewer than singletons_per_batch * num_replicas single-image identities, or other invalid values.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        identities_per_batch: int,
        images_per_identity: int,
        batches_per_epoch: int | None = None,
        singletons_per_batch: int = 0,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels should be 1-D (one label per dataset item) instead of shape {labels.shape}")
        if identities_per_batch < 2:
            raise ValueError(
                f"identities_per_batch should be >= 2 (negatives need a 2nd identity) instead of {identities_per_batch}"
            )
        if images_per_identity < 2:
            raise ValueError(
                f"images_per_identity should be >= 2 (a pair needs two images) instead of {images_per_identity}"
            )
        if num_replicas < 1:
            raise ValueError(f"num_replicas should be >= 1 instead of {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank should be in [0, {num_replicas}) instead of {rank}")
        if singletons_per_batch < 0:
            raise ValueError(f"singletons_per_batch should be >= 0 instead of {singletons_per_batch}")
        if seed < 0:
            raise ValueError(f"seed should be >= 0 instead of {seed}")
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch should be >= 1 or None instead of {batches_per_epoch}")

        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        images_by_identity = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
        self._identity_images = [images for images in images_by_identity if len(images) >= 2]
        self._singleton_images = np.array(
            [images[0] for images in images_by_identity if len(images) == 1], dtype=np.int64
        )

        eligible = len(self._identity_images)
        if eligible < identities_per_batch * num_replicas:
            raise ValueError(
                f"need at least {identities_per_batch * num_replicas} identities with >= 2 images "
                f"(identities_per_batch {identities_per_batch} x num_replicas {num_replicas}), found {eligible}"
            )
        if len(self._singleton_images) < singletons_per_batch * num_replicas:
            raise ValueError(
                f"need at least {singletons_per_batch * num_replicas} single-image identities "
                f"(singletons_per_batch {singletons_per_batch} x num_replicas {num_replicas}), "
                f"found {len(self._singleton_images)}"
            )

        self.identities_per_batch = identities_per_batch
        self.images_per_identity = images_per_identity
        self.singletons_per_batch = singletons_per_batch
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.batches_per_epoch = batches_per_epoch or math.ceil(eligible / (identities_per_batch * num_replicas))
        logger.info(
            "IdentitySampler: %d identities with >= 2 images, %d single-image identities, %d batches of %d per epoch",
            eligible,
            len(self._singleton_images),
            self.batches_per_epoch,
            identities_per_batch * images_per_identity + singletons_per_batch,
        )

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the next iteration.

        Raises:
            ValueError: For a negative epoch.
        """
        if epoch < 0:
            raise ValueError(f"epoch should be >= 0 instead of {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        # Identity and extra orders are shared by all ranks; the image draws are each rank's own.
        identity_groups = _distinct_groups(
            np.random.default_rng([self.seed, self.epoch, 0]),
            len(self._identity_images),
            self.identities_per_batch * self.num_replicas,
        )
        singleton_groups = _distinct_groups(
            np.random.default_rng([self.seed, self.epoch, 1]),
            len(self._singleton_images),
            self.singletons_per_batch * self.num_replicas,
        )
        image_rng = np.random.default_rng([self.seed, self.epoch, 2, self.rank])
        p, s, rank = self.identities_per_batch, self.singletons_per_batch, self.rank

        for _ in range(self.batches_per_epoch):
            identities = next(identity_groups)[rank * p : (rank + 1) * p]
            batch = np.concatenate([self._draw_images(image_rng, identity) for identity in identities])
            if s:
                batch = np.concatenate(
                    [batch, self._singleton_images[next(singleton_groups)[rank * s : (rank + 1) * s]]]
                )
            yield batch.tolist()

    def _draw_images(self, rng: np.random.Generator, identity: int) -> np.ndarray:
        images = self._identity_images[identity]
        k = self.images_per_identity
        if len(images) >= k:
            return images[rng.choice(len(images), size=k, replace=False)]
        return np.concatenate([images, images[rng.integers(len(images), size=k - len(images))]])


def _distinct_groups(rng: np.random.Generator, population: int, group_size: int) -> Iterator[np.ndarray]:
    # Groups of distinct items from range(population), walking one random permutation after another. A group that
    # straddles two permutations takes the rest of the old one and fills up with new items not already in it.
    assert group_size <= population
    order = rng.permutation(population)
    cursor = 0
    while True:
        if cursor + group_size <= len(order):
            yield order[cursor : cursor + group_size]
            cursor += group_size
            continue
        head = order[cursor:]
        order = rng.permutation(population)
        tail = order[~np.isin(order, head)][: group_size - len(head)]
        order = order[~np.isin(order, tail)]
        cursor = 0
        yield np.concatenate([head, tail])
