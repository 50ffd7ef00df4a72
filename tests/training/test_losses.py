import math

import pytest
import torch

from edge_facenet.training.losses import TripletMarginLoss
from edge_facenet.training.miners import TripletMiner, Triplets

from .test_miners import A0, A1, B0, B1, C0, G0, G1, H0, line_batch


def make_triplets(rows: list[tuple[int, int, int]]) -> Triplets:
    anchor_idx, positive_idx, negative_idx = (
        torch.tensor(column, dtype=torch.int64) for column in zip(*rows, strict=True)
    )
    return Triplets(anchor_idx, positive_idx, negative_idx, pairs=0, active_fraction=0.0, fallback_pairs=0)


def test_loss_on_unit_circle_embeddings():
    # a = (1, 0), p = (0, 1): d_ap = 2. n1 at 60 degrees: d_an = 2 - 2 cos 60 = 1, loss 2 - 1 + 0.2 = 1.2.
    # n2 = (-1, 0): d_an = 4, loss relu(2 - 4 + 0.2) = 0. The mean over both triplets, the inactive one included: 0.6.
    angle = math.radians(60)
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [math.cos(angle), math.sin(angle)], [-1.0, 0.0]])
    loss = TripletMarginLoss(margin=0.2)

    assert loss(embeddings, make_triplets([(0, 1, 2)])).item() == pytest.approx(1.2, abs=1e-6)
    assert loss(embeddings, make_triplets([(0, 1, 3)])).item() == 0.0
    assert loss(embeddings, make_triplets([(0, 1, 2), (0, 1, 3)])).item() == pytest.approx(0.6, abs=1e-6)


def test_loss_on_the_mined_line_batch():
    # Hard triplets of the line batch (see test_miners), losses in units of 0.01 with margin 20:
    # (a0,a1,c1) 16-20.25+20 = 15.75, (a1,a0,e0) 16-6.25+20 = 29.75, (b0,b1,e0) 9-6.25+20 = 22.75,
    # (b1,b0,e0) 9-30.25+20 < 0 -> 0, (g0,g1,h1) 36-4+20 = 52, (g1,g0,h1) 36-64+20 < 0 -> 0; mean 120.25 / 6.
    embeddings, labels = line_batch(torch.float64)
    triplets = TripletMiner("hard", margin=0.2).mine(embeddings, labels)
    assert len(triplets) == 6
    assert TripletMarginLoss(0.2)(embeddings, triplets).item() == pytest.approx(1.2025 / 6, abs=1e-12)

    by_hand = make_triplets([(A0, A1, C0), (A1, A0, B0), (B0, B1, A1), (G0, G1, H0)])  # 11, 11, 4, 40
    assert TripletMarginLoss(0.2)(embeddings, by_hand).item() == pytest.approx(0.66 / 4, abs=1e-12)
    assert TripletMarginLoss(0.1)(embeddings, by_hand).item() == pytest.approx(0.32 / 4, abs=1e-12)  # 1, 1, 0, 30


def test_zero_triplets_give_a_zero_that_backpropagates():
    embeddings = torch.randn(6, 4, requires_grad=True)
    empty = TripletMiner("semihard").mine(embeddings, torch.arange(6))
    assert len(empty) == 0

    loss = TripletMarginLoss()(embeddings, empty)
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert embeddings.grad is not None
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))


def test_gradient_of_one_triplet_pulls_the_positive_and_pushes_the_negative():
    # For one active triplet, dL/da = 2(n - p), dL/dp = 2(p - a), dL/dn = 2(a - n).
    a, p, n = [0.6, 0.8], [0.0, 1.0], [1.0, 0.0]  # d_ap = 0.4, d_an = 0.8, loss 0.4 - 0.8 + 0.5 = 0.1
    embeddings = torch.tensor([a, p, n], dtype=torch.float64, requires_grad=True)
    loss = TripletMarginLoss(0.5)(embeddings, make_triplets([(0, 1, 2)]))
    assert loss.item() == pytest.approx(0.1, abs=1e-12)
    loss.backward()
    expected = torch.tensor(
        [[2 * (1.0 - 0.0), 2 * (0.0 - 1.0)], [2 * (0.0 - 0.6), 2 * (1.0 - 0.8)], [2 * (0.6 - 1.0), 2 * 0.8]]
    )
    torch.testing.assert_close(embeddings.grad, expected.double())

    with torch.no_grad():
        stepped = embeddings - 0.1 * embeddings.grad
        assert (stepped[0] - stepped[1]).pow(2).sum() < 0.4
        assert (stepped[0] - stepped[2]).pow(2).sum() > 0.8


def test_one_sgd_step_lowers_the_loss_of_a_batch():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(4)
    embeddings = torch.nn.functional.normalize(torch.randn(32, 16, generator=generator)).requires_grad_(True)
    loss_fn = TripletMarginLoss(0.2)
    for strategy in ("semihard", "hard", "all"):
        triplets = TripletMiner(strategy, margin=0.2, seed=0).mine(embeddings, labels)
        assert len(triplets) > 0
        embeddings.grad = None
        loss = loss_fn(embeddings, triplets)
        loss.backward()
        with torch.no_grad():
            assert loss_fn(embeddings - 0.05 * embeddings.grad, triplets).item() < loss.item() - 1e-3


def test_matches_the_per_triplet_formula_and_its_gradient():
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(8).repeat_interleave(4)
    embeddings = torch.nn.functional.normalize(torch.randn(32, 16, generator=generator, dtype=torch.float64))
    embeddings.requires_grad_(True)
    triplets = TripletMiner("all", margin=0.2).mine(embeddings, labels)

    loss = TripletMarginLoss(0.2)(embeddings, triplets)
    (gradient,) = torch.autograd.grad(loss, embeddings)
    anchors = embeddings[triplets.anchor_idx]
    ap_dists = (anchors - embeddings[triplets.positive_idx]).pow(2).sum(1)
    an_dists = (anchors - embeddings[triplets.negative_idx]).pow(2).sum(1)
    direct = torch.relu(ap_dists - an_dists + 0.2).mean()
    (direct_gradient,) = torch.autograd.grad(direct, embeddings)
    torch.testing.assert_close(loss, direct)
    torch.testing.assert_close(gradient, direct_gradient)


def test_half_precision_loss_is_computed_in_float32():
    embeddings, labels = line_batch(torch.float16)
    triplets = TripletMiner("hard", margin=0.2).mine(embeddings, labels)
    loss = TripletMarginLoss(0.2)(embeddings, triplets)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(1.2025 / 6, abs=2e-3)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="margin"):
        TripletMarginLoss(-0.1)
    with pytest.raises(ValueError, match="2-D"):
        TripletMarginLoss()(torch.zeros(3), make_triplets([(0, 1, 2)]))
