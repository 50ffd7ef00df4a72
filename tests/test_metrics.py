import itertools
import json

import numpy as np
import pytest

from edge_facenet.lfw import read_pairs
from edge_facenet.metrics import (
    auc,
    best_threshold,
    evaluate_verification,
    kfold_accuracy,
    roc_curve,
    threshold_at_far,
    val_at_far,
)

# Five pairs with a tie across the classes at 0.4; worked out by hand in the tests below.
SIMILARITIES = np.array([0.1, 0.4, 0.4, 0.7, 0.9])
SAME = np.array([False, False, True, True, True])


def brute_candidates(similarities):
    """Every threshold worth trying, by plain Python: each score, each midpoint, and one above the top."""
    scores = sorted(set(similarities.tolist()))
    midpoints = [(low + high) / 2 for low, high in itertools.pairwise(scores)]
    return sorted([*scores, *midpoints, scores[-1] + 1.0])


def brute_accuracy(similarities, same, threshold):
    return sum((score >= threshold) == truth for score, truth in zip(similarities, same, strict=True)) / len(same)


def brute_rates(similarities, same, threshold):
    accepted = [score >= threshold for score in similarities]
    tar = sum(a for a, truth in zip(accepted, same, strict=True) if truth) / sum(same)
    far = sum(a for a, truth in zip(accepted, same, strict=True) if not truth) / (len(same) - sum(same))
    return far, tar


def brute_auc(similarities, same):
    positives = similarities[same]
    negatives = similarities[~same]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def random_pairs(seed, count=80, folds=4):
    rng = np.random.default_rng(seed)
    same = rng.random(count) < 0.5
    same[:: count // folds], same[1 :: count // folds] = True, False  # both kinds in every fold
    # Coarse scores, so ties within and across the classes are common.
    similarities = np.round(rng.normal(0.3, 0.3, count) + 0.4 * same, 1)
    return similarities, same, np.repeat(np.arange(1, folds + 1), count // folds)


def test_hand_case_best_threshold_prefers_the_strictest_tie():
    # >=0.4 (t=0.25) and >=0.7 (t=0.55) are both 4/5 right; the stricter one wins.
    assert best_threshold(SIMILARITIES, SAME) == pytest.approx(0.55)


def test_hand_case_roc_and_auc():
    far, tar, thresholds = roc_curve(SIMILARITIES, SAME)
    np.testing.assert_allclose(thresholds[1:], [0.8, 0.55, 0.25, 0.1])
    assert thresholds[0] > 0.9
    np.testing.assert_allclose(far, [0, 0, 0, 0.5, 1])
    np.testing.assert_allclose(tar, [0, 1 / 3, 2 / 3, 1, 1])
    assert auc(SIMILARITIES, SAME) == pytest.approx(11 / 12)


@pytest.mark.parametrize(
    ("far_target", "threshold", "val", "far"),
    [(0.5, 0.25, 1.0, 0.5), (0.49, 0.55, 2 / 3, 0.0), (0.0, 0.55, 2 / 3, 0.0), (1.0, 0.1, 1.0, 1.0)],
)
def test_hand_case_val_at_far(far_target, threshold, val, far):
    assert threshold_at_far(SIMILARITIES, SAME, far_target) == pytest.approx(threshold)
    result = val_at_far(SIMILARITIES, SAME, far_target)
    assert (result.val, result.far, result.val_std) == (pytest.approx(val), pytest.approx(far), 0.0)
    assert result.vals == (result.val,) and result.folds == ()


def test_no_threshold_but_rejecting_all_meets_the_target():
    similarities, same = np.array([0.1, 0.2, 0.8, 0.9]), np.array([True, True, False, False])
    threshold = threshold_at_far(similarities, same, 0.0)
    assert threshold > 0.9
    result = val_at_far(similarities, same, 0.0)
    assert (result.val, result.far) == (0.0, 0.0)


def test_perfectly_separable_scores():
    rng = np.random.default_rng(0)
    same = np.tile([True, False], 50)
    similarities = np.where(same, rng.uniform(0.5, 1.0, 100), rng.uniform(-1.0, 0.4, 100))
    folds = np.repeat(np.arange(1, 6), 20)
    report = evaluate_verification(similarities, same, folds)
    assert (report.accuracy, report.accuracy_std, report.auc, report.val, report.far) == (1.0, 0.0, 1.0, 1.0, 0.0)
    assert similarities[~same].max() < report.threshold <= similarities[same].min()
    assert auc(-similarities, same) == 0.0


def test_kfold_chooses_each_threshold_without_the_held_out_fold():
    # Fold 2's same pair at 0.45 is only accepted if fold 2 helps choose the threshold.
    similarities = np.array([0.9, 0.8, 0.1, 0.2, 0.45, 0.9, 0.1, 0.2])
    same = np.array([True, True, False, False, True, True, False, False])
    folds = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    result = kfold_accuracy(similarities, same, folds)
    assert result.folds == (1, 2)
    assert result.accuracies == (1.0, 0.75)
    assert result.thresholds == pytest.approx((0.325, 0.5))
    assert result.threshold == pytest.approx(0.325)
    assert (result.mean, result.std) == (pytest.approx(0.875), pytest.approx(0.125))

    validation = val_at_far(similarities, same, 0.0, folds)
    assert validation.thresholds == pytest.approx((0.325, 0.5))
    assert validation.vals == (1.0, 0.5)


@pytest.mark.parametrize("seed", range(6))
def test_threshold_searches_match_brute_force(seed):
    similarities, same, _ = random_pairs(seed)
    candidates = brute_candidates(similarities)
    accuracies = [brute_accuracy(similarities, same, t) for t in candidates]
    chosen = best_threshold(similarities, same)
    assert brute_accuracy(similarities, same, chosen) == pytest.approx(max(accuracies))
    # Among equally accurate splits, the one that accepts fewest pairs.
    accepted = np.count_nonzero(similarities >= chosen)
    stricter = [
        a for t, a in zip(candidates, accuracies, strict=True) if np.count_nonzero(similarities >= t) < accepted
    ]
    assert all(a < max(accuracies) for a in stricter)

    for far_target in (0.0, 0.05, 0.2, 0.5):
        meeting = [t for t in candidates if brute_rates(similarities, same, t)[0] <= far_target]
        chosen = threshold_at_far(similarities, same, far_target)
        assert brute_rates(similarities, same, chosen) == brute_rates(similarities, same, min(meeting))


@pytest.mark.parametrize("seed", range(6))
def test_roc_and_auc_match_brute_force(seed):
    similarities, same, _ = random_pairs(seed)
    far, tar, thresholds = roc_curve(similarities, same)
    assert np.all(np.diff(thresholds) < 0) and np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)
    for point in zip(far, tar, thresholds, strict=True):
        assert brute_rates(similarities, same, point[2]) == pytest.approx(point[:2])
    brute_points = sorted({brute_rates(similarities, same, t) for t in brute_candidates(similarities)})
    assert np.column_stack([far, tar]) == pytest.approx(np.array(brute_points))
    assert auc(similarities, same) == pytest.approx(brute_auc(similarities, same))


@pytest.mark.parametrize("seed", range(4))
def test_kfold_matches_brute_force(seed):
    similarities, same, folds = random_pairs(seed)
    result = kfold_accuracy(similarities, same, folds)
    expected = []
    for fold in range(1, 5):
        train, test = folds != fold, folds == fold
        best = max(brute_accuracy(similarities[train], same[train], t) for t in brute_candidates(similarities[train]))
        assert brute_accuracy(similarities[train], same[train], result.thresholds[fold - 1]) == pytest.approx(best)
        expected.append(brute_accuracy(similarities[test], same[test], result.thresholds[fold - 1]))
    assert result.accuracies == pytest.approx(expected)
    assert result.std == pytest.approx(np.std(expected, ddof=0))


def test_float32_thresholds_split_neighbouring_floats():
    low = np.float32(0.5)
    similarities = np.array([low, np.nextafter(low, np.float32(1))], dtype=np.float32)
    same = np.array([False, True])
    threshold = best_threshold(similarities, same)
    assert list(similarities >= threshold) == [False, True]
    assert list(similarities >= threshold_at_far(similarities, same, 0.0)) == [False, True]


def test_report_dict_is_json_ready_and_names_the_target():
    similarities, same, folds = random_pairs(1)
    as_dict = evaluate_verification(similarities, same, folds, far_target=1e-2).to_dict()
    assert list(as_dict) == [
        "accuracy",
        "std",
        "val_at_far_1e-2",
        "val_at_far_1e-2_std",
        "far",
        "auc",
        "threshold",
        "pairs",
        "fold_accuracies",
        "fold_val_at_far_1e-2",
    ]
    assert len(as_dict["fold_accuracies"]) == len(as_dict["fold_val_at_far_1e-2"]) == len(set(folds))
    assert np.mean(as_dict["fold_accuracies"]) == pytest.approx(as_dict["accuracy"])
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert "val_at_far_1e-3" in evaluate_verification(similarities, same, folds).to_dict()
    assert "val_at_far_2.5e-4" in evaluate_verification(similarities, same, folds, far_target=2.5e-4).to_dict()


@pytest.mark.parametrize(
    ("similarities", "same", "folds", "error", "message"),
    [
        ([0.1, 0.2], [True], [1, 2], ValueError, "one entry per similarity"),
        ([0.1, 0.2], [True, False], [1], ValueError, "one entry per similarity"),
        ([], [], [], ValueError, "non-empty"),
        ([[0.1, 0.2]], [[True, False]], [[1, 2]], ValueError, "1-D"),
        ([0.1, np.nan], [True, False], [1, 2], ValueError, "finite"),
        ([0.1, np.inf], [True, False], [1, 2], ValueError, "finite"),
        ([0.1, 0.2], [True, True], [1, 2], ValueError, "both same- and different-person"),
        ([0.1, 0.2, 0.3, 0.4], [True, False, True, True], [1, 1, 2, 2], ValueError, "fold 2 has only one kind"),
        ([0.1, 0.2], [True, False], [1, 1], ValueError, "at least two folds"),
        (["a", "b"], [True, False], [1, 2], TypeError, "numeric"),
        ([0.1, 0.2], [0.5, 1.0], [1, 2], TypeError, "boolean"),
        ([0.1, 0.2], [True, False], [1.0, 2.0], TypeError, "integer"),
        ([0.1, 0.2], [True, False], None, TypeError, "needs folds"),
    ],
)
def test_bad_input_raises_one_clear_error(similarities, same, folds, error, message):
    with pytest.raises(error, match=message):
        evaluate_verification(similarities, same, folds)


@pytest.mark.parametrize("far_target", [-0.1, 1.5, float("nan")])
def test_far_target_outside_zero_to_one_is_rejected(far_target):
    with pytest.raises(ValueError, match="far_target"):
        threshold_at_far(SIMILARITIES, SAME, far_target)


def test_integer_labels_are_accepted():
    assert best_threshold(SIMILARITIES, SAME.astype(int)) == best_threshold(SIMILARITIES, SAME)


@pytest.fixture(scope="module")
def dlib_pairs(lfw_dir):
    """dlib's LFW descriptors for every pairs.txt pair: (left, right, same, folds)."""
    stored = np.load(lfw_dir / "dlib_resnet_embeddings.npz", allow_pickle=False)
    row = {name: index for index, name in enumerate(stored["names"].tolist())}
    pairs = read_pairs(lfw_dir / "pairs.txt")
    embeddings = stored["embeddings"]
    left = embeddings[[row[pair.left] for pair in pairs]]
    right = embeddings[[row[pair.right] for pair in pairs]]
    same = np.array([pair.same for pair in pairs])
    folds = np.array([pair.fold for pair in pairs])
    return left, right, same, folds


def test_dlib_cosine_similarity_on_lfw(dlib_pairs):
    left, right, same, folds = dlib_pairs
    similarities = np.sum(left * right, axis=1) / (np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1))
    report = evaluate_verification(similarities, same, folds)
    assert report.pairs == 6000
    assert report.accuracy >= 0.98 and report.auc >= 0.99
    assert report.val >= 0.9 and report.far <= 2e-3


def test_dlib_euclidean_figures_match_the_published_notes(dlib_pairs):
    # dlib_resnet_embeddings.md reports these for distance < threshold, the same rule as -distance >= -threshold.
    left, right, same, folds = dlib_pairs
    report = evaluate_verification(-np.linalg.norm(left - right, axis=1), same, folds)
    assert (round(report.accuracy * 100, 2), round(report.accuracy_std * 100, 2)) == (98.75, 0.45)
    assert (round(report.val * 100, 2), round(report.val_std * 100, 2)) == (94.0, 1.90)
    assert (round(report.far, 4), round(report.auc, 4)) == (0.001, 0.998)
    per_fold = kfold_accuracy(-np.linalg.norm(left - right, axis=1), same, folds)
    expected = [98.67, 97.83, 99.00, 98.50, 98.33, 99.33, 98.67, 98.67, 99.33, 99.17]
    assert [round(accuracy * 100, 2) for accuracy in per_fold.accuracies] == expected
