"""The triplet-loss trainer: P x K batches, online mining, optional distillation, checkpoints that resume exactly.

One :class:`Trainer` runs on the CPU, on one CUDA GPU (with mixed precision) or as one process of several under
``torchrun`` (DistributedDataParallel; each process mines its own P x K batch). Each epoch ends with a checkpoint,
a row of metrics (CSV and a PNG of the curves) and a verification test on held-out identities, measured with the
runtime's own metric code.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import time
from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from edge_facenet._files import atomic_output
from edge_facenet.metadata import ModelMetadata
from edge_facenet.metrics import evaluate_verification
from edge_facenet.preprocess import blob_from_crops
from edge_facenet.training.augment import Augmenter
from edge_facenet.training.checkpoint import load_checkpoint, save_checkpoint
from edge_facenet.training.config import OPTIMIZERS, EpochMetrics, TrainConfig, TrainResult
from edge_facenet.training.data import CropDataset
from edge_facenet.training.holdout import FAR_TARGET, open_set_threshold, split_identities
from edge_facenet.training.losses import TripletMarginLoss
from edge_facenet.training.miners import TripletMiner
from edge_facenet.training.registry import build_model
from edge_facenet.training.samplers import IdentitySampler

logger = logging.getLogger(__name__)

__all__ = [
    "OPTIMIZERS",
    "EpochMetrics",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "open_set_threshold",
    "setup_distributed",
]


def setup_distributed() -> tuple[int, int]:
    """Join the process group when launched by ``torchrun``; returns (rank, world size), (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


class Trainer:
    """Trains an embedder with the triplet loss on aligned crops.

    Args:
        config: The run's settings.
        dataset: Aligned training crops (all of them; held-out identities are split off here).
        out_dir: Where checkpoints (``last.pt``, ``best.pt``), ``metrics.csv`` and ``curves.png`` go.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default: the local CUDA device when there is one.
        progress: Show a progress bar.
    """

    def __init__(
        self,
        config: TrainConfig,
        dataset: CropDataset,
        out_dir: str | PathLike[str],
        device: str | None = None,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if device is None:
            device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.progress = progress and self.rank == 0
        self.split = split_identities(dataset, config.val_fraction, config.val_pairs, config.seed)

        torch.manual_seed(config.seed)
        model = build_model(config.arch, config.embedding_size)
        if dataset.input_size != tuple(model.config.input_size):
            raise ValueError(f"crops are {dataset.input_size}, {config.arch} takes {tuple(model.config.input_size)}")
        self.metadata = ModelMetadata(
            arch=config.arch,
            input_size=dataset.input_size,
            embedding_size=config.embedding_size,
            alignment_template=dataset.template,
        )
        if config.init_openface:
            self._init_openface(model, Path(config.init_openface))
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=memory_format)
        self.memory_format = memory_format
        self.network: nn.Module = self.model
        if self.world > 1:
            self.network = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )

        self.sampler = IdentitySampler(
            self.split.train.labels,
            config.identities_per_batch,
            config.images_per_identity,
            batches_per_epoch=config.batches_per_epoch,
            singletons_per_batch=config.singletons_per_batch,
            seed=config.seed,
            num_replicas=self.world,
            rank=self.rank,
        )
        self.optimizer = self._make_optimizer()
        total_steps = config.epochs * len(self.sampler)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: self._lr_factor(step, total_steps)
        )
        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_fn = TripletMarginLoss(config.margin)
        self.augmenter = Augmenter() if config.augment else None
        self.teacher = None
        self.distill_fn = None
        if config.distill_weight > 0:
            from edge_facenet.training.distill import SimilarityDistillationLoss, TeacherEmbeddings

            self.teacher = TeacherEmbeddings.load(config.teachers)
            self.distill_fn = SimilarityDistillationLoss()
        self.history: list[EpochMetrics] = []
        self.best_accuracy = float("-inf")
        self.start_epoch = 0

    def fit(
        self, resume: bool = False, stop_after_epoch: int | None = None, max_seconds: float | None = None
    ) -> TrainResult:
        """Train for the configured epochs; with ``resume``, continue from ``out_dir/last.pt``.

        Args:
            resume: Continue the run in ``out_dir`` (the result equals an uninterrupted run's).
            stop_after_epoch: Return after this epoch (1-based), e.g. to fit a run into a time-boxed session.
            max_seconds: Return after the first epoch that ends later than this many seconds from now.

        Raises:
            FileNotFoundError: When resuming without a checkpoint.
            ValueError: When the checkpoint belongs to another configuration.
        """
        if resume:
            self._resume()
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max_seconds if max_seconds is not None else math.inf
        last_epoch = min(self.config.epochs, stop_after_epoch or self.config.epochs)
        for epoch in range(self.start_epoch, last_epoch):
            row = self._train_epoch(epoch)
            if self.rank == 0:
                self._evaluate(row)
                self.history.append(row)
                self._save(epoch)
                self._write_metrics()
                logger.info(
                    "epoch %d: loss %.4f, active %.2f, %.1f images/s, val accuracy %.4f",
                    epoch + 1,
                    row.loss,
                    row.active_fraction,
                    row.images_per_s,
                    row.val_accuracy,
                )
            if self.world > 1:
                dist.barrier()
            if time.monotonic() > deadline:
                logger.info("time limit reached after epoch %d; resume with --resume", epoch + 1)
                break
        if len(self.history) == self.config.epochs:  # the run is complete (now, or already when resumed)
            self._record_threshold()
        return TrainResult(self.out_dir, list(self.history), self.best_accuracy)

    def _train_epoch(self, epoch: int) -> EpochMetrics:
        config = self.config
        self.network.train()
        self.sampler.set_epoch(epoch)
        rng = np.random.default_rng([config.seed, epoch, self.rank])
        miner = TripletMiner(config.mining, config.margin, seed=config.seed * 100_003 + epoch * 101 + self.rank)
        train = self.split.train
        totals = np.zeros(4)  # loss, triplet loss, distillation loss, active fraction
        images, steps, start = 0, 0, time.perf_counter()

        batches = self.sampler
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(self.sampler), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
        for indices in batches:
            indices = np.asarray(indices)
            crops = np.asarray(train.crops[indices])
            if self.augmenter is not None:
                crops = self.augmenter(crops, rng)
            inputs = torch.from_numpy(blob_from_crops(crops, self.metadata)).to(self.device)
            inputs = inputs.contiguous(memory_format=self.memory_format)
            labels = torch.from_numpy(train.labels[indices]).to(self.device)

            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                embeddings = self.network(inputs)
            embeddings = embeddings.float()
            triplets = miner.mine(embeddings.detach(), labels)
            triplet_loss = self.loss_fn(embeddings, triplets)
            distill_loss = torch.zeros((), device=self.device)
            if self.distill_fn is not None:
                teacher, mask = self.teacher.lookup([train.sources[i] for i in indices])
                distill_loss = self.distill_fn(
                    embeddings, torch.from_numpy(teacher).to(self.device), torch.from_numpy(mask).to(self.device)
                )
            loss = triplet_loss + config.distill_weight * distill_loss

            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()

            values = (loss.item(), triplet_loss.item(), distill_loss.item(), triplets.active_fraction)
            totals += values
            steps += 1
            images += len(indices)
            if bar is not None:
                rate = images * self.world / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{values[0]:.4f}", active=f"{values[3]:.2f}", img_s=f"{rate:.0f}")
                bar.update()
        if bar is not None:
            bar.close()

        elapsed = time.perf_counter() - start
        means = totals / max(steps, 1)
        return EpochMetrics(
            epoch=epoch + 1,
            steps=steps,
            loss=float(means[0]),
            triplet_loss=float(means[1]),
            distill_loss=float(means[2]),
            active_fraction=float(means[3]),
            lr=float(self.scheduler.get_last_lr()[0]),
            images_per_s=images * self.world / elapsed,
            seconds=elapsed,
        )

    @torch.no_grad()
    def embed(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Embed aligned crops with the current model in eval mode; returns (N, D) float32."""
        was_training = self.model.training
        self.model.eval()
        parts = []
        for start in range(0, len(crops), batch_size):
            blob = blob_from_crops(np.asarray(crops[start : start + batch_size]), self.metadata)
            inputs = torch.from_numpy(blob).to(self.device).contiguous(memory_format=self.memory_format)
            parts.append(self.model(inputs).float().cpu().numpy())
        self.model.train(was_training)
        return np.concatenate(parts) if parts else np.zeros((0, self.config.embedding_size), np.float32)

    def _evaluate(self, row: EpochMetrics) -> None:
        split = self.split
        if len(split.pairs) < 20:
            return
        embeddings = self.embed(split.val.crops)
        similarities = np.einsum("ij,ij->i", embeddings[split.pairs[:, 0]], embeddings[split.pairs[:, 1]])
        report = evaluate_verification(similarities, split.same, np.arange(len(split.pairs)) % 10, FAR_TARGET)
        row.val_accuracy, row.val_std, row.val_auc, row.val_at_far = (
            report.accuracy,
            report.accuracy_std,
            report.auc,
            report.val,
        )
        row.val_threshold = open_set_threshold(embeddings, split.val.labels, FAR_TARGET, self.config.seed)[0]

    def _record_threshold(self) -> None:
        """Set best.pt's threshold from its own weights on every pair of the held-out identities.

        Runs trained before thresholds counted every pair get theirs replaced when such a run is resumed.
        """
        path = self.out_dir / "best.pt"
        if self.rank != 0 or not path.is_file() or len(self.split.pairs) < 20:
            return
        best = load_checkpoint(path)
        current = {key: value.clone() for key, value in self.model.state_dict().items()}
        self.model.load_state_dict(best.state_dict)
        try:
            embeddings = self.embed(self.split.val.crops)
            threshold, accepted, strangers = open_set_threshold(
                embeddings, self.split.val.labels, FAR_TARGET, self.config.seed
            )
            logger.info(
                "best.pt threshold %.4f: FAR %g over %d different-identity pairs of %d held-out identities, TAR %.3f",
                threshold,
                FAR_TARGET,
                strangers,
                len(np.unique(self.split.val.labels)),
                accepted,
            )
            if best.metadata.get("threshold") != threshold:
                save_checkpoint(path, self.model, best.arch, {**best.metadata, "threshold": threshold}, **best.extra)
        finally:
            self.model.load_state_dict(current)

    def _save(self, epoch: int) -> None:
        row = self.history[-1]
        state = {
            "epoch": epoch + 1,
            "config": self.config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": [dataclasses.asdict(r) for r in self.history],
            "best_accuracy": self.best_accuracy,
        }
        metadata = {"alignment_template": self.metadata.alignment_template}
        if math.isfinite(row.val_threshold):
            metadata["threshold"] = row.val_threshold
        improved = math.isfinite(row.val_accuracy) and row.val_accuracy > self.best_accuracy
        if improved:
            self.best_accuracy = row.val_accuracy
            state["best_accuracy"] = self.best_accuracy
            save_checkpoint(self.out_dir / "best.pt", self.model, self.config.arch, metadata, **state)
        save_checkpoint(self.out_dir / "last.pt", self.model, self.config.arch, metadata, **state)

    def _resume(self) -> None:
        checkpoint = load_checkpoint(self.out_dir / "last.pt")
        stored = TrainConfig.from_dict(checkpoint.extra["config"])
        if dataclasses.replace(stored, epochs=self.config.epochs) != self.config:
            changed = [
                f.name for f in dataclasses.fields(stored) if getattr(stored, f.name) != getattr(self.config, f.name)
            ]
            raise ValueError(f"cannot resume {self.out_dir}: its run had other settings ({', '.join(changed)})")
        self.model.load_state_dict(checkpoint.state_dict)
        self.optimizer.load_state_dict(checkpoint.extra["optimizer"])
        self.scheduler.load_state_dict(checkpoint.extra["scheduler"])
        self.scaler.load_state_dict(checkpoint.extra["scaler"])
        self.history = [EpochMetrics(**row) for row in checkpoint.extra["history"]]
        self.best_accuracy = float(checkpoint.extra["best_accuracy"])
        self.start_epoch = int(checkpoint.extra["epoch"])
        logger.info("resuming %s after epoch %d", self.out_dir, self.start_epoch)

    def _write_metrics(self) -> None:
        rows = [dataclasses.asdict(row) for row in self.history]
        with atomic_output(self.out_dir / "metrics.csv") as temporary, open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        from edge_facenet.plot import line_chart, write_png

        epochs = np.array([row.epoch for row in self.history], float)
        losses = line_chart(
            {
                "loss": (epochs, np.array([r.loss for r in self.history])),
                "active triplets": (epochs, np.array([r.active_fraction for r in self.history])),
            },
            f"{self.config.arch}: training",
            "epoch",
            "loss / fraction",
        )
        accuracy = line_chart(
            {
                "val accuracy": (epochs, np.array([r.val_accuracy for r in self.history])),
                "val AUC": (epochs, np.array([r.val_auc for r in self.history])),
            },
            "held-out identities",
            "epoch",
            "accuracy / AUC",
            y_range=(0.5, 1.0),
        )
        write_png(self.out_dir / "curves.png", losses, accuracy)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        config, parameters = self.config, self.model.parameters()
        if config.optimizer == "adagrad":
            return torch.optim.Adagrad(parameters, lr=config.lr, weight_decay=config.weight_decay)
        if config.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)

    def _lr_factor(self, step: int, total: int) -> float:
        start = self.config.lr_decay_start * total
        if step <= start or total <= start:
            return 1.0
        progress = min(1.0, (step - start) / (total - start))
        final = self.config.lr_final
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _init_openface(self, model: nn.Module, path: Path) -> None:
        from edge_facenet.training.openface import load_openface_weights, recalibrate_batchnorm

        report = load_openface_weights(model, path)
        random = [key for key in report.missing if not key.endswith("num_batches_tracked")]
        logger.info("OpenFace weights: %d tensors loaded, %d left at initialisation", len(report.loaded), len(random))
        # The stored BatchNorm statistics after the missing layers are wrong; re-estimate them on training crops.
        rng = np.random.default_rng([self.config.seed, 11])
        crops = self.split.train.crops
        picks = rng.choice(len(crops), size=min(len(crops), 512), replace=False)
        batches = [
            torch.from_numpy(blob_from_crops(np.asarray(crops[np.sort(chunk)]), self.metadata))
            for chunk in np.array_split(picks, max(1, len(picks) // 128))
        ]
        recalibrate_batchnorm(model, batches)
