"""Face-verification metrics: accuracy with a learned threshold, ROC and AUC, VAL at a fixed FAR.

Every function takes one score per pair, ``similarities`` (higher means more alike, such as the cosine similarity of
two unit embeddings), and the truth ``same`` (True when both faces show one person). The rule evaluated is always
"same iff similarity >= threshold". Terms as in FaceNet (Schroff et al. 2015): VAL, or TAR, is the share of
same-person pairs accepted; FAR is the share of different-person pairs accepted.

Thresholds are searched exactly, with no grid. The candidates are the lowest score (everything accepted), the
midpoint between each two neighbouring distinct scores, and the next float above the highest score (nothing
accepted). Each candidate is one way to split the sorted scores, so pairs with tied scores always land on the same
side. Counts for all candidates come from one sort and cumulative sums, so training can run these every epoch.

Choices that move reported figures: the accuracy threshold is the highest of equally accurate candidates; the VAL
threshold is the lowest candidate that meets the FAR target; a ± is the population standard deviation (ddof=0)
over the folds. With these, dlib's LFW descriptors scored by negative Euclidean distance give the figures their
notes report (98.75% ± 0.45, VAL 94.00% ± 1.90 at FAR 1e-3, AUC 0.9980);
tests/test_metrics.py checks it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldResult:
    """Accuracy under k-fold cross-validation (the LFW protocol).

    Attributes:
        folds: Fold labels, ascending.
        accuracies: Accuracy on each held-out fold, with the threshold chosen on the other folds.
        thresholds: The threshold used for each fold.
        threshold: The threshold chosen on all folds together.
    """

    folds: tuple[int, ...]
    accuracies: tuple[float, ...]
    thresholds: tuple[float, ...]
    threshold: float

    @property
    def mean(self) -> float:
        """Mean accuracy over the folds."""
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0) of the fold accuracies, the ± that LFW papers usually quote."""
        return float(np.std(self.accuracies))


@dataclass(frozen=True)
class ValResult:
    """VAL (true accept rate) at a target FAR, per fold or on all pairs.

    Attributes:
        far_target: The largest FAR a threshold may have on the pairs it is chosen on.
        folds: Fold labels, ascending; empty when measured on all pairs without folds.
        vals: VAL on each held-out fold (a single entry when there are no folds).
        fars: FAR achieved on each held-out fold (a single entry when there are no folds).
        thresholds: The threshold used for each entry, chosen on the other folds (or on all pairs).
        threshold: The threshold chosen on all pairs.
    """

    far_target: float
    folds: tuple[int, ...]
    vals: tuple[float, ...]
    fars: tuple[float, ...]
    thresholds: tuple[float, ...]
    threshold: float

    @property
    def val(self) -> float:
        """Mean VAL over the folds."""
        return float(np.mean(self.vals))

    @property
    def val_std(self) -> float:
        """Population standard deviation (ddof=0) of VAL over the folds."""
        return float(np.std(self.vals))

    @property
    def far(self) -> float:
        """Mean FAR achieved over the folds."""
        return float(np.mean(self.fars))


@dataclass(frozen=True)
class VerificationReport:
    """The figures of a verification benchmark such as LFW.

    Attributes:
        accuracy: Mean k-fold accuracy (threshold chosen on the other folds).
        accuracy_std: Population standard deviation of the fold accuracies.
        val: Mean VAL on the held-out folds at ``far_target``.
        val_std: Population standard deviation of VAL over the folds.
        far: Mean FAR achieved on the held-out folds by the VAL thresholds.
        far_target: The FAR the VAL thresholds were chosen for.
        auc: Area under the ROC curve of all pairs.
        threshold: Accuracy-maximising threshold on all pairs.
        val_threshold: Threshold at ``far_target`` on all pairs.
        pairs: Number of pairs.
        fold_accuracies: Accuracy on each fold, in ascending fold order.
        fold_vals: VAL on each fold, in ascending fold order.
    """

    accuracy: float
    accuracy_std: float
    val: float
    val_std: float
    far: float
    far_target: float
    auc: float
    threshold: float
    val_threshold: float
    pairs: int
    fold_accuracies: tuple[float, ...] = ()
    fold_vals: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, float | int | list[float]]:
        """Return the figures with JSON-friendly keys; VAL's key names the target, e.g. ``val_at_far_1e-3``."""
        val_key = f"val_at_far_{_far_label(self.far_target)}"
        return {
            "accuracy": self.accuracy,
            "std": self.accuracy_std,
            val_key: self.val,
            f"{val_key}_std": self.val_std,
            "far": self.far,
            "auc": self.auc,
            "threshold": self.threshold,
            "pairs": self.pairs,
            "fold_accuracies": list(self.fold_accuracies),
            f"fold_{val_key}": list(self.fold_vals),
        }


def best_threshold(similarities: np.ndarray, same: np.ndarray) -> float:
    """Find the threshold that maximises the accuracy of "same iff similarity >= threshold".

    Args:
        similarities: One score per pair, higher for more alike.
        same: True for same-person pairs.

    Returns:
        The best candidate threshold (see the module docstring). Among equally accurate ones, the highest: in doubt,
        reject, as a false accept costs more than a false reject in recognition.

    Raises:
        TypeError: When the arrays have the wrong kind of values.
        ValueError: When they are empty, differ in length, hold NaN or infinity, or lack one class of pair.
    """
    similarities, same, _ = _check_pairs(similarities, same)
    return _best_threshold(similarities, same)


def kfold_accuracy(similarities: np.ndarray, same: np.ndarray, folds: np.ndarray) -> FoldResult:
    """Accuracy by k-fold cross-validation: each fold is scored with the best threshold of the other folds.

    Args:
        similarities: One score per pair, higher for more alike.
        same: True for same-person pairs.
        folds: Integer fold label of each pair; at least two distinct labels.

    Returns:
        Per-fold accuracies and thresholds; ``mean`` and ``std`` summarise them.

    Raises:
        TypeError: When the arrays have the wrong kind of values.
        ValueError: As :func:`best_threshold`, or when there are fewer than two folds or a fold lacks one class.
    """
    if folds is None:
        raise TypeError("kfold_accuracy needs folds: an integer fold label for each pair, got None")
    return _kfold_accuracy(*_check_pairs(similarities, same, folds))


def roc_curve(similarities: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact ROC curve: one point for every candidate threshold.

    Args:
        similarities: One score per pair, higher for more alike.
        same: True for same-person pairs.

    Returns:
        ``(far, tar, thresholds)``, float64 arrays of equal length, thresholds descending, so the curve runs from
        (0, 0) (nothing accepted) to (1, 1) (everything accepted).

    Raises:
        TypeError, ValueError: As :func:`best_threshold`.
    """
    similarities, same, _ = _check_pairs(similarities, same)
    return _roc_curve(similarities, same)


def auc(similarities: np.ndarray, same: np.ndarray) -> float:
    """Area under the exact ROC curve by the trapezoidal rule (a tie between classes counts one half).

    Raises:
        TypeError, ValueError: As :func:`best_threshold`.
    """
    similarities, same, _ = _check_pairs(similarities, same)
    return _auc(similarities, same)


def threshold_at_far(similarities: np.ndarray, same: np.ndarray, far_target: float) -> float:
    """The most permissive threshold whose FAR on these pairs is at most ``far_target``.

    FAR is compared as a count: at most ``floor(far_target * different_pairs)`` different-person pairs may reach the
    threshold. Of the candidates that meet it, the lowest is returned, so VAL is as high as the target allows. Pairs
    with tied scores are accepted or rejected together, so the FAR reached can lie well below the target. Some
    candidate always meets it: above the highest score nothing is accepted (FAR 0, and VAL 0 too).

    Args:
        similarities: One score per pair, higher for more alike.
        same: True for same-person pairs.
        far_target: Largest false accept rate allowed, in [0, 1].

    Returns:
        The threshold.

    Raises:
        TypeError, ValueError: As :func:`best_threshold`, or when ``far_target`` is outside [0, 1].
    """
    similarities, same, _ = _check_pairs(similarities, same)
    return _threshold_at_far(similarities, same, _check_far_target(far_target))


def val_at_far(
    similarities: np.ndarray, same: np.ndarray, far_target: float = 1e-3, folds: np.ndarray | None = None
) -> ValResult:
    """VAL at a target FAR, as in FaceNet: the share of same-person pairs accepted at a threshold picked for FAR.

    With ``folds``, each fold is held out in turn: the threshold is :func:`threshold_at_far` of the other folds, and
    VAL and FAR are measured on the held-out fold. Without, the threshold is picked and measured on all pairs.

    Args:
        similarities: One score per pair, higher for more alike.
        same: True for same-person pairs.
        far_target: Largest FAR allowed where the threshold is picked, in [0, 1].
        folds: Integer fold label of each pair, or None.

    Returns:
        Per-fold VAL, FAR and thresholds; ``val``, ``val_std`` and ``far`` summarise them.

    Raises:
        TypeError, ValueError: As :func:`kfold_accuracy` and :func:`threshold_at_far`.
    """
    similarities, same, folds = _check_pairs(similarities, same, folds)
    return _val_at_far(similarities, same, _check_far_target(far_target), folds)


def evaluate_verification(
    similarities: np.ndarray, same: np.ndarray, folds: np.ndarray, far_target: float = 1e-3
) -> VerificationReport:
    """All the verification figures of a k-fold benchmark: accuracy, VAL at FAR, AUC.

    Args:
        similarities: One score per pair, higher for more alike.
        same: True for same-person pairs.
        folds: Integer fold label of each pair; at least two distinct labels.
        far_target: FAR for VAL, in [0, 1].

    Returns:
        The report; ``to_dict()`` gives its JSON form.

    Raises:
        TypeError, ValueError: As :func:`kfold_accuracy` and :func:`val_at_far`.
    """
    if folds is None:
        raise TypeError("evaluate_verification needs folds: an integer fold label for each pair, got None")
    similarities, same, folds = _check_pairs(similarities, same, folds)
    accuracy = _kfold_accuracy(similarities, same, folds)
    validation = _val_at_far(similarities, same, _check_far_target(far_target), folds)
    report = VerificationReport(
        accuracy=accuracy.mean,
        accuracy_std=accuracy.std,
        val=validation.val,
        val_std=validation.val_std,
        far=validation.far,
        far_target=validation.far_target,
        auc=_auc(similarities, same),
        threshold=accuracy.threshold,
        val_threshold=validation.threshold,
        pairs=int(similarities.size),
        fold_accuracies=accuracy.accuracies,
        fold_vals=validation.vals,
    )
    logger.debug("verification on %d pairs: %s", report.pairs, report.to_dict())
    return report


def _kfold_accuracy(similarities: np.ndarray, same: np.ndarray, folds: np.ndarray) -> FoldResult:
    labels = np.unique(folds)
    accuracies, thresholds = [], []
    for label in labels:
        held_out = folds == label
        threshold = _best_threshold(similarities[~held_out], same[~held_out])
        accuracies.append(float(np.mean((similarities[held_out] >= threshold) == same[held_out])))
        thresholds.append(threshold)
    return FoldResult(
        folds=tuple(int(label) for label in labels),
        accuracies=tuple(accuracies),
        thresholds=tuple(thresholds),
        threshold=_best_threshold(similarities, same),
    )


def _roc_curve(similarities: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    thresholds, true_accepts, false_accepts = _operating_points(similarities, same)
    far = false_accepts[::-1] / np.count_nonzero(~same)
    tar = true_accepts[::-1] / np.count_nonzero(same)
    return far, tar, thresholds[::-1].copy()


def _auc(similarities: np.ndarray, same: np.ndarray) -> float:
    far, tar, _ = _roc_curve(similarities, same)
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1])) / 2)


def _val_at_far(similarities: np.ndarray, same: np.ndarray, far_target: float, folds: np.ndarray | None) -> ValResult:
    threshold = _threshold_at_far(similarities, same, far_target)
    if folds is None:
        accepted = similarities >= threshold
        val, far = float(np.mean(accepted[same])), float(np.mean(accepted[~same]))
        return ValResult(far_target, folds=(), vals=(val,), fars=(far,), thresholds=(threshold,), threshold=threshold)

    labels = np.unique(folds)
    vals, fars, thresholds = [], [], []
    for label in labels:
        held_out = folds == label
        fold_threshold = _threshold_at_far(similarities[~held_out], same[~held_out], far_target)
        accepted = similarities[held_out] >= fold_threshold
        vals.append(float(np.mean(accepted[same[held_out]])))
        fars.append(float(np.mean(accepted[~same[held_out]])))
        thresholds.append(fold_threshold)
    return ValResult(
        far_target,
        folds=tuple(int(label) for label in labels),
        vals=tuple(vals),
        fars=tuple(fars),
        thresholds=tuple(thresholds),
        threshold=threshold,
    )


def _operating_points(similarities: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds, ascending, with the same- and different-person pairs each one accepts."""
    scores, score_index = np.unique(similarities, return_inverse=True)
    same_per_score = np.bincount(score_index[same], minlength=scores.size)
    different_per_score = np.bincount(score_index[~same], minlength=scores.size)

    # Candidate i accepts the scores from scores[i] up; the last candidate accepts none.
    true_accepts = same_per_score.sum() - np.concatenate(([0], np.cumsum(same_per_score)))
    false_accepts = different_per_score.sum() - np.concatenate(([0], np.cumsum(different_per_score)))

    # Thresholds keep the scores' float type, so the caller's own "similarities >= threshold" splits the same way.
    thresholds = np.empty(scores.size + 1, dtype=scores.dtype)
    thresholds[0] = scores[0]
    lower, upper = scores[:-1], scores[1:]
    midpoints = lower / 2 + upper / 2
    # Between two neighbouring floats the midpoint rounds onto one of them; the upper one splits them instead.
    thresholds[1:-1] = np.where((midpoints > lower) & (midpoints <= upper), midpoints, upper)
    thresholds[-1] = np.nextafter(scores[-1], np.inf)
    return thresholds, true_accepts, false_accepts


def _best_threshold(similarities: np.ndarray, same: np.ndarray) -> float:
    thresholds, true_accepts, false_accepts = _operating_points(similarities, same)
    correct = true_accepts + (np.count_nonzero(~same) - false_accepts)
    # The last maximum: among equally accurate thresholds, the strictest.
    return float(thresholds[correct.size - 1 - np.argmax(correct[::-1])])


def _threshold_at_far(similarities: np.ndarray, same: np.ndarray, far_target: float) -> float:
    thresholds, _, false_accepts = _operating_points(similarities, same)
    # The slack keeps products such as 1e-3 * 3000 from rounding below a whole count.
    allowed = math.floor(far_target * np.count_nonzero(~same) + 1e-9)
    # false_accepts never rises along the ascending thresholds, and its last entry is 0.
    return float(thresholds[np.argmax(false_accepts <= allowed)])


def _check_far_target(far_target: float) -> float:
    if not (isinstance(far_target, (int, float, np.floating, np.integer)) and 0.0 <= far_target <= 1.0):
        raise ValueError(f"far_target must be a rate in [0, 1], got {far_target!r}")
    return float(far_target)


def _far_label(far_target: float) -> str:
    mantissa, exponent = f"{far_target:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _check_pairs(
    similarities: np.ndarray, same: np.ndarray, folds: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    similarities = np.asarray(similarities)
    if similarities.dtype.kind not in "fiu":
        raise TypeError(f"similarities must be a numeric array, got dtype {similarities.dtype}")
    if similarities.dtype.kind != "f":
        similarities = similarities.astype(np.float64)
    if similarities.ndim != 1 or similarities.size == 0:
        raise ValueError(f"similarities must be a non-empty 1-D array, got shape {similarities.shape}")
    finite = np.isfinite(similarities)
    if not finite.all():
        first = int(np.argmin(finite))
        raise ValueError(f"similarities must be finite, got {similarities[first]} at index {first}")

    same = np.asarray(same)
    if same.dtype.kind in "iu" and np.isin(same, (0, 1)).all():
        same = same.astype(bool)
    if same.dtype != np.bool_:
        raise TypeError(f"same must be a boolean array (or integers 0/1), got dtype {same.dtype}")
    if same.shape != similarities.shape:
        raise ValueError(f"same must have one entry per similarity ({similarities.size}), got shape {same.shape}")
    same_count = int(np.count_nonzero(same))
    if same_count in (0, same.size):
        raise ValueError(f"need both same- and different-person pairs, got {same_count} same of {same.size}")

    if folds is None:
        return similarities, same, None
    folds = np.asarray(folds)
    if folds.dtype.kind not in "iu":
        raise TypeError(f"folds must be an integer array of fold labels, got dtype {folds.dtype}")
    if folds.shape != similarities.shape:
        raise ValueError(f"folds must have one entry per similarity ({similarities.size}), got shape {folds.shape}")
    labels, fold_index = np.unique(folds, return_inverse=True)
    if labels.size < 2:
        raise ValueError(f"need at least two folds to hold one out, got only fold {labels[0]}")
    same_per_fold = np.bincount(fold_index, weights=same, minlength=labels.size)
    pairs_per_fold = np.bincount(fold_index, minlength=labels.size)
    lacking = (same_per_fold == 0) | (same_per_fold == pairs_per_fold)
    if lacking.any():
        label = labels[np.argmax(lacking)]
        raise ValueError(f"every fold needs both same- and different-person pairs; fold {label} has only one kind")
    return similarities, same, folds
