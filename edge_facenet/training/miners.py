"""Online triplet mining: choose (anchor, positive, negative) index triplets inside a batch of embeddings.

FaceNet (Schroff et al. 2015) trains on batches of P identities with K images each, uses every anchor-positive pair
of the batch and picks a negative for each pair online. Distances are squared L2, d(a, b) = ||a - b||², as in the
paper. Pairs are ordered: (i, j) and (j, i) are both used when i != j share a label. An identity with a single image
in the batch forms no pair but serves as a negative for every other identity.

The work is done with masks over the B x B distance matrix, restricted to the rows of the anchors of the pairs
(pairs x B), with no Python loop over anchors.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)


class MiningStrategy(str, enum.Enum):
    """How a negative is chosen for each anchor-positive pair.

    Attributes:
        SEMIHARD: A negative farther than the positive but inside the margin, d_ap < d_an < d_ap + margin
            (FaceNet's choice).
        HARD: The nearest negative (smallest d_an). The paper reports that it collapses training early; it is here
            for that ablation.
        ALL: Every negative with a positive loss, d_ap - d_an + margin > 0 ("batch all").
    """

    SEMIHARD = "semihard"
    HARD = "hard"
    ALL = "all"


@dataclass(frozen=True, eq=False)
class Triplets:
    """Mined triplets as index tensors into the batch, with figures about the mining.

    Attributes:
        anchor_idx: Anchor indices, int64 (T,).
        positive_idx: Positive indices, int64 (T,).
        negative_idx: Negative indices, int64 (T,).
        pairs: Ordered anchor-positive pairs in the batch.
        active_fraction: Share of all the batch's valid triplets (every pair with every negative) whose loss is
            positive at mining time, whatever the strategy returns: it falls as the batch gets separated by the
            margin (0.0 for a batch without triplets).
        fallback_pairs: Semi-hard mining only: pairs that had no semi-hard negative and used the fallback.
    """

    anchor_idx: torch.Tensor
    positive_idx: torch.Tensor
    negative_idx: torch.Tensor
    pairs: int
    active_fraction: float
    fallback_pairs: int

    def __len__(self) -> int:
        return int(self.anchor_idx.numel())


class TripletMiner:
    """Mines triplets from a labelled batch of embeddings with one of the :class:`MiningStrategy` rules.

    Semi-hard mining draws one negative uniformly at random among a pair's semi-hard negatives (the paper does not
    say which one to take; a random one keeps the same nearest few from being used for every pair). A pair with no
    semi-hard negative falls back to the negative with the largest d_an that still violates the margin
    (d_an < d_ap + margin, so d_an <= d_ap here): the least hard of its hard negatives. A pair with no negative inside
    the margin contributes no triplet, as its loss would be zero whatever the choice.

    Hard mining keeps one triplet per pair (ties go to the lowest index), whatever its loss; all-mining keeps every
    triplet with a positive loss. Both are deterministic.

    Args:
        strategy: A :class:`MiningStrategy` or its value (``"semihard"``, ``"hard"``, ``"all"``).
        margin: The triplet loss margin alpha, > 0; use the loss's margin.
        seed: Seed of the generator behind the random semi-hard choice; the sequence of choices is then reproducible
            for a given device and call order. None uses torch's default generator (set by ``torch.manual_seed``).

    Raises:
        ValueError: For an unknown strategy or a margin that is not positive.
    """

    def __init__(
        self, strategy: MiningStrategy | str = "semihard", margin: float = 0.2, seed: int | None = None
    ) -> None:
        try:
            self.strategy = MiningStrategy(strategy)
        except ValueError:
            valid = ", ".join(member.value for member in MiningStrategy)
            raise ValueError(f"unknown mining strategy {strategy!r}; valid strategies: {valid}") from None
        if not margin > 0:
            raise ValueError(f"margin should be > 0 instead of {margin}")
        self.margin = float(margin)
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(strategy={self.strategy.value!r}, margin={self.margin}, seed={self.seed})"

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Triplets:
        """Mine the triplets of a batch.

        Args:
            embeddings: (B, D) floating-point embeddings; gradients are not tracked through mining.
            labels: (B,) identity labels.

        Returns:
            The triplets, with indices on the embeddings' device, ordered by anchor, then positive, then negative.
            A batch without pairs or without negatives gives empty index tensors.

        Raises:
            ValueError: When embeddings is not 2-D or labels does not hold one label per embedding.
        """
        if embeddings.dim() != 2:
            raise ValueError(f"embeddings should be 2-D (B, D) instead of shape {tuple(embeddings.shape)}")
        labels = torch.as_tensor(labels, device=embeddings.device)
        if labels.shape != embeddings.shape[:1]:
            raise ValueError(
                f"labels should have shape ({embeddings.shape[0]},) to match the embeddings "
                f"instead of {tuple(labels.shape)}"
            )

        with torch.no_grad():
            work_dtype = torch.promote_types(embeddings.dtype, torch.float32)
            distances = squared_distances(embeddings.detach().to(work_dtype))
            same_label = labels[:, None] == labels[None, :]
            not_self = ~torch.eye(len(labels), dtype=torch.bool, device=embeddings.device)
            anchor_idx, positive_idx = torch.nonzero(same_label & not_self, as_tuple=True)
            pairs = int(anchor_idx.numel())
            if pairs == 0:
                return _empty_triplets(embeddings.device)

            ap_dists = distances[anchor_idx, positive_idx]
            an_dists = distances[anchor_idx]
            negative_mask = ~same_label[anchor_idx]
            fallback_pairs = 0
            if self.strategy is MiningStrategy.SEMIHARD:
                rows, negative_idx, fallback_pairs = self._semihard(ap_dists, an_dists, negative_mask)
            elif self.strategy is MiningStrategy.HARD:
                rows, negative_idx = _hardest(an_dists, negative_mask)
            else:
                rows, negative_idx = torch.nonzero(
                    negative_mask & (ap_dists[:, None] - an_dists + self.margin > 0), as_tuple=True
                )

            violating = negative_mask & (ap_dists[:, None] - an_dists + self.margin > 0)
            valid = int(negative_mask.sum())
            active_fraction = float(violating.sum()) / valid if valid else 0.0
            logger.debug(
                "%s mining: %d pairs, %d triplets, %d fallbacks",
                self.strategy.value,
                pairs,
                rows.numel(),
                fallback_pairs,
            )
            return Triplets(
                anchor_idx=anchor_idx[rows],
                positive_idx=positive_idx[rows],
                negative_idx=negative_idx,
                pairs=pairs,
                active_fraction=active_fraction,
                fallback_pairs=fallback_pairs,
            )

    def _semihard(
        self, ap_dists: torch.Tensor, an_dists: torch.Tensor, negative_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        inside_margin = negative_mask & (an_dists < ap_dists[:, None] + self.margin)
        semihard = inside_margin & (an_dists > ap_dists[:, None])

        # A uniform random pick among the semi-hard negatives: the argmax of random scores, non-candidates scored -1.
        scores = torch.rand(an_dists.shape, generator=self._generator(an_dists.device), device=an_dists.device)
        random_semihard = scores.masked_fill(~semihard, -1.0).argmax(dim=1)
        least_hard_violating = an_dists.masked_fill(~inside_margin, -torch.inf).argmax(dim=1)

        has_semihard = semihard.any(dim=1)
        uses_fallback = ~has_semihard & inside_margin.any(dim=1)
        rows = torch.nonzero(has_semihard | uses_fallback).squeeze(1)
        negative_idx = torch.where(has_semihard, random_semihard, least_hard_violating)[rows]
        return rows, negative_idx, int(uses_fallback.sum())

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]


def squared_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances between all rows, (B, D) -> (B, B), differentiable.

    Computed as ||a||² + ||b||² - 2 a·b with one matrix product and clamped at zero against rounding; the miner and
    the loss share it, so both see the same distances.
    """
    squared_norms = embeddings.pow(2).sum(dim=1)
    distances = squared_norms[:, None] + squared_norms[None, :] - 2.0 * embeddings @ embeddings.T
    return distances.clamp_min(0.0)


def _hardest(an_dists: torch.Tensor, negative_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    nearest = an_dists.masked_fill(~negative_mask, torch.inf).argmin(dim=1)
    rows = torch.nonzero(negative_mask.any(dim=1)).squeeze(1)
    return rows, nearest[rows]


def _empty_triplets(device: torch.device) -> Triplets:
    empty = torch.empty(0, dtype=torch.int64, device=device)
    return Triplets(empty, empty.clone(), empty.clone(), pairs=0, active_fraction=0.0, fallback_pairs=0)
