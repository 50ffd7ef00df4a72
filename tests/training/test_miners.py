import itertools

import pytest
import torch

from edge_facenet.training.miners import MiningStrategy, TripletMiner, Triplets

MARGIN = 0.2

# A batch on a line, so every squared distance is a square of a difference. In units of 0.1 for positions and 0.01
# for squared distances (margin 20):
#   A: a0=0, a1=4        B: b0=9, b1=12       G: g0=30, g1=36
#   single images (negatives only): c0=-5, c1=-4.5, e0=6.5, h0=26, h1=28
# Positions of the batch indices, with each identity's label:
#   0 a0, 1 b0, 2 c0, 3 a1, 4 g0, 5 e0, 6 b1, 7 h0, 8 c1, 9 g1, 10 h1
POSITIONS = [0.0, 0.9, -0.5, 0.4, 3.0, 0.65, 1.2, 2.6, -0.45, 3.6, 2.8]
LABELS = [0, 1, 2, 0, 5, 4, 1, 6, 3, 5, 7]
A0, B0, C0, A1, G0, E0, B1, H0, C1, G1, H1 = range(11)

# Each ordered pair, d_ap, and the d_an of its negatives that matter (all others are far beyond the margin):
#   (a0, a1) d_ap 16, window (16, 36): c1 20.25, c0 25 semi-hard; e0 42.25, b0 81    -> two semi-hard candidates
#   (a1, a0) d_ap 16, window (16, 36): e0 6.25 hard, b0 25 semi-hard; b1 64           -> one semi-hard
#   (b0, b1) d_ap 9,  window (9, 29):  e0 6.25 hard, a1 25 semi-hard; a0 81           -> one semi-hard
#   (b1, b0) d_ap 9,  window (9, 29):  e0 30.25, a1 64                                -> no negative inside the margin
#   (g0, g1) d_ap 36, window (36, 56): h1 4, h0 16 both hard; none semi-hard          -> fallback to h0 (largest)
#   (g1, g0) d_ap 36, window (36, 56): h1 64, h0 100                                  -> no negative inside the margin
HAND_DISTANCES = {
    (A0, A1): 0.16, (A0, C1): 0.2025, (A0, C0): 0.25, (A0, E0): 0.4225,
    (A1, E0): 0.0625, (A1, B0): 0.25, (A1, B1): 0.64,
    (B0, B1): 0.09, (B0, E0): 0.0625, (B0, A1): 0.25,
    (B1, E0): 0.3025, (B1, A1): 0.64,
    (G0, G1): 0.36, (G0, H1): 0.04, (G0, H0): 0.16,
    (G1, H1): 0.64, (G1, H0): 1.0,
}  # fmt: skip
SEMIHARD_FIXED = {(A1, A0, B0), (B0, B1, A1), (G0, G1, H0)}
SEMIHARD_CHOICES_A0_A1 = {C0, C1}
HARD = {(A0, A1, C1), (A1, A0, E0), (B0, B1, E0), (B1, B0, E0), (G0, G1, H1), (G1, G0, H1)}
ALL = {(A0, A1, C0), (A0, A1, C1), (A1, A0, B0), (A1, A0, E0), (B0, B1, A1), (B0, B1, E0), (G0, G1, H0), (G0, G1, H1)}
VALID_TRIPLETS = 54  # 3 identities with two images: 6 ordered pairs, each with the 9 images of other identities


def line_batch(dtype=torch.float32):
    embeddings = torch.zeros(len(POSITIONS), 2, dtype=dtype)
    embeddings[:, 0] = torch.tensor(POSITIONS, dtype=dtype)
    return embeddings, torch.tensor(LABELS)


def as_set(triplets: Triplets) -> set[tuple[int, int, int]]:
    columns = (triplets.anchor_idx.tolist(), triplets.positive_idx.tolist(), triplets.negative_idx.tolist())
    found = list(zip(*columns, strict=True))
    assert len(found) == len(set(found)), "a triplet was returned twice"
    return set(found)


def test_hand_distances_match_the_positions():
    for (i, j), distance in HAND_DISTANCES.items():
        assert (POSITIONS[i] - POSITIONS[j]) ** 2 == pytest.approx(distance)


def test_semihard_picks_inside_the_window_and_falls_back():
    embeddings, labels = line_batch()
    triplets = TripletMiner("semihard", MARGIN, seed=0).mine(embeddings, labels)

    found = as_set(triplets)
    assert found - SEMIHARD_FIXED in ({(A0, A1, C0)}, {(A0, A1, C1)})
    assert found >= SEMIHARD_FIXED
    assert triplets.pairs == 6
    assert triplets.fallback_pairs == 1
    assert triplets.active_fraction == pytest.approx(len(ALL) / VALID_TRIPLETS)
    for tensor in (triplets.anchor_idx, triplets.positive_idx, triplets.negative_idx):
        assert tensor.dtype == torch.int64 and tensor.device == embeddings.device


def test_semihard_choice_is_random_among_candidates_and_seeded():
    embeddings, labels = line_batch()

    def choice(miner):
        triplets = miner.mine(embeddings, labels)
        return next(n for a, p, n in as_set(triplets) if (a, p) == (A0, A1))

    by_seed = [choice(TripletMiner("semihard", MARGIN, seed=seed)) for seed in range(20)]
    assert set(by_seed) == SEMIHARD_CHOICES_A0_A1
    assert by_seed == [choice(TripletMiner("semihard", MARGIN, seed=seed)) for seed in range(20)]

    one_miner = TripletMiner("semihard", MARGIN, seed=3)
    assert {choice(one_miner) for _ in range(20)} == SEMIHARD_CHOICES_A0_A1  # the generator advances between calls

    torch.manual_seed(7)
    global_draws = [choice(TripletMiner("semihard", MARGIN)) for _ in range(10)]
    torch.manual_seed(7)
    assert global_draws == [choice(TripletMiner("semihard", MARGIN)) for _ in range(10)]


def test_hard_takes_the_nearest_negative_of_every_pair():
    embeddings, labels = line_batch()
    triplets = TripletMiner(MiningStrategy.HARD, MARGIN).mine(embeddings, labels)

    assert as_set(triplets) == HARD
    assert triplets.pairs == 6
    assert triplets.fallback_pairs == 0
    # The share of all valid triplets that violate the margin, whatever the strategy returns.
    assert triplets.active_fraction == pytest.approx(len(ALL) / VALID_TRIPLETS)


def test_all_keeps_every_triplet_with_positive_loss():
    embeddings, labels = line_batch()
    triplets = TripletMiner("all", MARGIN).mine(embeddings, labels)

    assert as_set(triplets) == ALL
    assert triplets.pairs == 6
    assert triplets.fallback_pairs == 0
    assert len(ALL) == 8 and VALID_TRIPLETS == 54  # 6 ordered pairs x 9 negatives each
    assert triplets.active_fraction == pytest.approx(8 / 54)


def test_a_smaller_margin_changes_the_triplets():
    # With margin 0.1 the window of (a0, a1) is (0.16, 0.26): still c0 and c1; (a1, a0) keeps b0 (0.25 < 0.26);
    # (b0, b1) has window (0.09, 0.19): a1 at 0.25 is out, so it falls back to e0; (g0, g1) window (0.36, 0.46): none,
    # falls back to h0.
    embeddings, labels = line_batch()
    triplets = TripletMiner("semihard", 0.1, seed=0).mine(embeddings, labels)
    assert {(a, p, n) for a, p, n in as_set(triplets) if (a, p) != (A0, A1)} == {
        (A1, A0, B0),
        (B0, B1, E0),
        (G0, G1, H0),
    }
    assert triplets.fallback_pairs == 2


def reference_triplets(embeddings, labels, margin, strategy):
    # Loops over every pair and negative: slow but plain. Semi-hard returns the candidate sets instead of a choice.
    distances = torch.cdist(embeddings, embeddings).pow(2).tolist()
    labels = labels.tolist()
    found = {}
    for a, p in itertools.permutations(range(len(labels)), 2):
        if labels[a] != labels[p]:
            continue
        ap = distances[a][p]
        negatives = [n for n in range(len(labels)) if labels[n] != labels[a]]
        if not negatives:
            continue
        if strategy == "hard":
            found[(a, p)] = {min(negatives, key=lambda n: (distances[a][n], n))}
        elif strategy == "all":
            found[(a, p)] = {n for n in negatives if ap - distances[a][n] + margin > 0}
        else:
            semihard = {n for n in negatives if ap < distances[a][n] < ap + margin}
            violating = [n for n in negatives if distances[a][n] < ap + margin]
            if semihard:
                found[(a, p)] = semihard
            elif violating:
                found[(a, p)] = {max(violating, key=lambda n: distances[a][n])}
    return {pair: negatives for pair, negatives in found.items() if negatives}


@pytest.mark.parametrize("strategy", ["semihard", "hard", "all"])
def test_matches_a_loop_reference_on_a_random_batch(strategy):
    generator = torch.Generator().manual_seed(11)
    labels = torch.cat([torch.arange(16).repeat_interleave(4), torch.arange(100, 108)])  # 16 x 4 and 8 singles
    permutation = torch.randperm(len(labels), generator=generator)
    labels = labels[permutation]
    embeddings = torch.nn.functional.normalize(torch.randn(len(labels), 8, generator=generator, dtype=torch.float64))
    triplets = TripletMiner(strategy, MARGIN, seed=0).mine(embeddings, labels)

    expected = reference_triplets(embeddings, labels, MARGIN, strategy)
    found = as_set(triplets)
    assert triplets.pairs == 16 * 4 * 3
    if strategy == "semihard":
        assert {(a, p) for a, p, _ in found} == set(expected)
        assert len(found) == len(expected)  # one triplet per pair
        assert all(n in expected[(a, p)] for a, p, n in found)
    else:
        assert found == {(a, p, n) for (a, p), negatives in expected.items() for n in negatives}
    assert len(found) > 0


def test_single_images_are_negatives_only_and_empty_batches_give_empty_triplets():
    embeddings = torch.nn.functional.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)))
    for strategy in MiningStrategy:
        miner = TripletMiner(strategy, MARGIN, seed=0)
        no_pairs = miner.mine(embeddings, torch.arange(5))
        no_negatives = miner.mine(embeddings, torch.zeros(5, dtype=torch.int64))
        nothing = miner.mine(embeddings[:0], torch.zeros(0, dtype=torch.int64))
        for triplets, pairs in ((no_pairs, 0), (no_negatives, 20), (nothing, 0)):
            assert len(triplets) == 0 and triplets.pairs == pairs
            assert triplets.anchor_idx.dtype == torch.int64 and triplets.anchor_idx.shape == (0,)
            assert triplets.active_fraction == 0.0

        one_pair = miner.mine(embeddings, torch.tensor([0, 0, 1, 2, 3]))
        assert one_pair.pairs == 2
        assert set(one_pair.anchor_idx.tolist()) <= {0, 1} and set(one_pair.negative_idx.tolist()) <= {2, 3, 4}


def test_mining_tracks_no_gradients():
    embeddings, labels = line_batch()
    embeddings.requires_grad_(True)
    triplets = TripletMiner("hard", MARGIN).mine(embeddings, labels)
    assert not triplets.anchor_idx.requires_grad
    assert as_set(triplets) == HARD


def test_half_precision_embeddings_are_mined_in_float32():
    embeddings, labels = line_batch(torch.float16)
    assert as_set(TripletMiner("all", MARGIN).mine(embeddings, labels)) == ALL


def test_invalid_arguments():
    with pytest.raises(ValueError, match="semihard, hard, all"):
        TripletMiner("batch_hard")
    with pytest.raises(ValueError, match="margin"):
        TripletMiner("hard", margin=0.0)
    miner = TripletMiner()
    with pytest.raises(ValueError, match="2-D"):
        miner.mine(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="labels"):
        miner.mine(torch.zeros(4, 2), torch.zeros(3))
