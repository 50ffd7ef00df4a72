"""FaceNet's triplet loss on mined triplets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_facenet.training.miners import Triplets, squared_distances


class TripletMarginLoss(nn.Module):
    """Triplet loss with squared L2 distances: the mean over triplets of relu(d(a, p) - d(a, n) + margin).

    The mean runs over all the triplets it is given, inactive ones (zero loss) included, so the loss of a batch falls
    as more of its triplets are satisfied. Distances are recomputed from the embeddings as one (B, B) matrix, so
    gradients flow into all three members of each triplet and the cost does not grow with D per triplet (batch-all
    mining can return 10^5 triplets); half-precision embeddings are promoted to float32 first.

    Args:
        margin: The margin alpha, > 0 (FaceNet uses 0.2 on unit embeddings); use the miner's margin.

    Raises:
        ValueError: When the margin is not positive.
    """

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        if not margin > 0:
            raise ValueError(f"margin should be > 0 instead of {margin}")
        self.margin = float(margin)

    def forward(self, embeddings: torch.Tensor, triplets: Triplets) -> torch.Tensor:
        """Compute the loss of a batch.

        Args:
            embeddings: (B, D) embeddings the triplets index into.
            triplets: Triplets mined from these embeddings.

        Returns:
            A scalar. With no triplets it is a zero still connected to the embeddings, so ``backward()`` works (and
            gives zero gradients).

        Raises:
            ValueError: When embeddings is not 2-D.
        """
        if embeddings.dim() != 2:
            raise ValueError(f"embeddings should be 2-D (B, D) instead of shape {tuple(embeddings.shape)}")
        embeddings = embeddings.to(torch.promote_types(embeddings.dtype, torch.float32))
        if len(triplets) == 0:
            return embeddings[:0].sum()

        distances = squared_distances(embeddings)
        ap_dists = distances[triplets.anchor_idx, triplets.positive_idx]
        an_dists = distances[triplets.anchor_idx, triplets.negative_idx]
        return F.relu(ap_dists - an_dists + self.margin).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
