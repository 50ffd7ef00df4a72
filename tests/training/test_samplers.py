import math
from collections import Counter

import numpy as np
import pytest
import torch

from edge_facenet.training.samplers import IdentitySampler

P, K, S = 4, 3, 2


def make_labels(seed: int = 0) -> np.ndarray:
    # 20 identities with 3 to 8 images (at least K), 6 with 2 images (fewer than K: drawn with repeats) and 10 with
    # a single image; labels are sparse and shuffled, as a real dataset's might be.
    rng = np.random.default_rng(seed)
    counts = [int(rng.integers(3, 9)) for _ in range(20)] + [2] * 6 + [1] * 10
    labels = np.repeat(np.arange(len(counts)) * 7 + 100, counts)
    return labels[rng.permutation(len(labels))]


LABELS = make_labels()
COUNTS = Counter(LABELS.tolist())
ELIGIBLE = {label for label, count in COUNTS.items() if count >= 2}
SINGLES = {label for label, count in COUNTS.items() if count == 1}


def epoch_batches(sampler: IdentitySampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def check_batch(batch: list[int]) -> list[int]:
    """Check the P x K + S contract of one batch; return its P identities."""
    assert len(batch) == P * K + S
    assert all(isinstance(index, int) and 0 <= index < len(LABELS) for index in batch)
    grouped, extras = batch[: P * K], batch[P * K :]

    by_identity: dict[int, list[int]] = {}
    for index in grouped:
        by_identity.setdefault(int(LABELS[index]), []).append(index)
    assert len(by_identity) == P
    for label, images in by_identity.items():
        assert label in ELIGIBLE
        assert len(images) == K
        if COUNTS[label] >= K:
            assert len(set(images)) == K  # distinct images when the identity has enough
        else:
            assert len(set(images)) == COUNTS[label]  # all of its images, then repeats

    extra_labels = [int(LABELS[index]) for index in extras]
    assert len(set(extras)) == S
    assert set(extra_labels) <= SINGLES
    return sorted(by_identity)


def test_batches_follow_the_p_by_k_contract_over_many_epochs():
    sampler = IdentitySampler(LABELS, P, K, singletons_per_batch=S, seed=5)
    assert len(sampler) == math.ceil(len(ELIGIBLE) / P) == 7
    seen_short_identities = set()
    for epoch in range(30):
        batches = epoch_batches(sampler, epoch)
        assert len(batches) == len(sampler)
        identities = [check_batch(batch) for batch in batches]
        assert set().union(*identities) == ELIGIBLE  # the default length covers every identity each epoch
        seen_short_identities |= {label for batch in identities for label in batch if COUNTS[label] < K}
    assert seen_short_identities == {label for label in ELIGIBLE if COUNTS[label] < K}


def test_works_as_a_dataloader_batch_sampler():
    dataset = torch.utils.data.TensorDataset(torch.as_tensor(LABELS))
    sampler = IdentitySampler(LABELS, P, K, batches_per_epoch=3)
    batches = [labels.tolist() for (labels,) in torch.utils.data.DataLoader(dataset, batch_sampler=sampler)]
    assert len(batches) == 3
    assert all(sorted(Counter(batch).values()) == [K] * P for batch in batches)


def test_same_seed_and_epoch_give_the_same_batches():
    first = IdentitySampler(LABELS, P, K, singletons_per_batch=S, seed=3)
    second = IdentitySampler(LABELS, P, K, singletons_per_batch=S, seed=3)
    assert epoch_batches(first, 4) == epoch_batches(second, 4)
    assert epoch_batches(first, 4) == epoch_batches(first, 4)  # iterating twice repeats the epoch
    assert epoch_batches(first, 4) != epoch_batches(first, 5)

    def identity_order(epoch: int) -> list[list[int]]:
        return [check_batch(batch) for batch in epoch_batches(first, epoch)]

    assert identity_order(4) != identity_order(5)  # the identities move between epochs, not only the images
    assert epoch_batches(first, 4) != epoch_batches(IdentitySampler(LABELS, P, K, singletons_per_batch=S, seed=4), 4)


def test_replicas_get_disjoint_identities_and_equal_lengths():
    ranks = [IdentitySampler(LABELS, P, K, singletons_per_batch=S, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == math.ceil(len(ELIGIBLE) / (2 * P)) == 4
    for epoch in range(10):
        rank0, rank1 = (epoch_batches(sampler, epoch) for sampler in ranks)
        assert len(rank0) == len(rank1)
        covered = set()
        for batch0, batch1 in zip(rank0, rank1, strict=True):
            identities0, identities1 = set(check_batch(batch0)), set(check_batch(batch1))
            assert not identities0 & identities1
            assert not set(batch0[P * K :]) & set(batch1[P * K :])  # extras differ too
            covered |= identities0 | identities1
        assert covered == ELIGIBLE


def test_identities_repeat_only_after_all_have_appeared():
    # 26 eligible identities in groups of 4: the first 6 batches show 24 distinct ones, the 7th the last 2 plus 2
    # from the next permutation.
    batches = epoch_batches(IdentitySampler(LABELS, P, K, batches_per_epoch=13, seed=2), 0)
    identities = [sorted({int(LABELS[i]) for i in batch}) for batch in batches]
    first_cycle = [label for batch in identities[:6] for label in batch]
    assert len(first_cycle) == len(set(first_cycle)) == 24
    assert set(first_cycle) | set(identities[6]) == ELIGIBLE
    assert all(len(batch) == P for batch in identities)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="identities_per_batch should be >= 2"):
        IdentitySampler(LABELS, 1, K)
    with pytest.raises(ValueError, match="images_per_identity should be >= 2"):
        IdentitySampler(LABELS, P, 1)
    with pytest.raises(ValueError, match=r"need at least 27 identities with >= 2 images .* found 26"):
        IdentitySampler(LABELS, 27, K)
    with pytest.raises(ValueError, match=r"need at least 28 identities"):
        IdentitySampler(LABELS, 14, K, num_replicas=2)
    with pytest.raises(ValueError, match=r"rank should be in \[0, 2\) instead of 2"):
        IdentitySampler(LABELS, P, K, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="rank should be in"):
        IdentitySampler(LABELS, P, K, num_replicas=2, rank=-1)
    with pytest.raises(ValueError, match="need at least 12 single-image identities"):
        IdentitySampler(LABELS, P, K, singletons_per_batch=6, num_replicas=2)
    with pytest.raises(ValueError, match="batches_per_epoch"):
        IdentitySampler(LABELS, P, K, batches_per_epoch=0)
    with pytest.raises(ValueError, match="labels should be 1-D"):
        IdentitySampler(np.stack([LABELS, LABELS]), P, K)
    with pytest.raises(ValueError, match="epoch"):
        IdentitySampler(LABELS, P, K).set_epoch(-1)
