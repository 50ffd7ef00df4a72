"""What decides a training run, and what it reports: :class:`TrainConfig`, :class:`EpochMetrics`, :class:`TrainResult`.

Plain dataclasses (no torch), stored in every checkpoint and read back to resume.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPTIMIZERS = ("adagrad", "sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (stored in every checkpoint).

    Attributes:
        arch: Architecture name (see ``edge_facenet.training.list_models``).
        embedding_size: Embedding length.
        epochs: Epochs to train.
        identities_per_batch: P, identities per batch (per process under torchrun).
        images_per_identity: K, images of each identity per batch.
        singletons_per_batch: Extra single-image identities per batch, as negatives only.
        batches_per_epoch: Batches per epoch; None lets the sampler cover each identity about once.
        optimizer: ``adagrad`` (the FaceNet paper's), ``sgd`` or ``adam``.
        lr: Learning rate (the paper's AdaGrad rate is 0.05, meant for training from scratch).
        weight_decay: L2 weight decay.
        lr_decay_start: Fraction of the run after which the rate falls (cosine) towards ``lr * lr_final``.
        lr_final: Final rate as a fraction of ``lr``.
        margin: Triplet margin alpha on squared distances of unit embeddings.
        mining: ``semihard``, ``hard`` or ``all``.
        augment: Random flips, small shifts and colour changes.
        seed: Seed of initialisation, identity split, batches, augmentation and mining.
        amp: Mixed precision on CUDA (ignored on the CPU).
        channels_last: NHWC memory layout (faster on CPUs and tensor cores).
        init_openface: Path of OpenFace's partial nn4.small2.v1 weights to start from (nn4_small2 only).
        teachers: Teacher-embedding npz files for distillation.
        distill_weight: Weight of the distillation term (0: off).
        val_fraction: Fraction of the identities with two or more images held out for verification.
        val_pairs: Verification pairs built from the held-out identities (half same, half different).
    """

    arch: str = "nn4_small2"
    embedding_size: int = 128
    epochs: int = 10
    identities_per_batch: int = 32
    images_per_identity: int = 4
    singletons_per_batch: int = 0
    batches_per_epoch: int | None = None
    optimizer: str = "adagrad"
    lr: float = 0.05
    weight_decay: float = 0.0
    lr_decay_start: float = 0.75
    lr_final: float = 0.01
    margin: float = 0.2
    mining: str = "semihard"
    augment: bool = True
    seed: int = 0
    amp: bool = True
    channels_last: bool = True
    init_openface: str | None = None
    teachers: tuple[str, ...] = ()
    distill_weight: float = 0.0
    val_fraction: float = 0.1
    val_pairs: int = 2000

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
        if self.epochs < 1 or self.lr <= 0:
            raise ValueError(f"epochs must be at least 1 and lr positive, got {self.epochs} and {self.lr}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.distill_weight < 0 or (self.distill_weight > 0 and not self.teachers):
            raise ValueError("distillation needs teachers (teacher .npz files) and a non-negative distill_weight")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), as stored in checkpoints."""
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild a config stored by :meth:`to_dict`."""
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {key: tuple(value) if key == "teachers" else value for key, value in values.items() if key in known}
        return cls(**fields)


@dataclass
class EpochMetrics:
    """One row of ``metrics.csv``."""

    epoch: int
    steps: int
    loss: float
    triplet_loss: float
    distill_loss: float
    active_fraction: float
    lr: float
    images_per_s: float
    val_accuracy: float = float("nan")
    val_std: float = float("nan")
    val_auc: float = float("nan")
    val_at_far: float = float("nan")
    val_threshold: float = float("nan")
    seconds: float = 0.0


@dataclass
class TrainResult:
    """What a finished run produced."""

    out_dir: Path
    history: list[EpochMetrics] = field(default_factory=list)
    best_accuracy: float = float("nan")
