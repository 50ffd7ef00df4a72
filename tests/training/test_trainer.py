"""Trainer tests on a few dozen LFW identities (real aligned crops, CPU, small enough for CI)."""

import dataclasses
import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch

from edge_facenet.aligner import FaceAligner
from edge_facenet.detector import FaceDetector
from edge_facenet.metrics import evaluate_verification
from edge_facenet.templates import DEFAULT_TEMPLATE
from edge_facenet.training.checkpoint import load_checkpoint, save_checkpoint
from edge_facenet.training.data import CropDataset, prepare_crops
from edge_facenet.training.trainer import TrainConfig, Trainer, open_set_threshold
from tests.conftest import REPO_ROOT

IDENTITIES = 36
IMAGES_EACH = 8


@pytest.fixture(scope="module")
def crops_dir(tmp_path_factory, lfw_dir, detector_path):
    """Aligned crops of the first LFW people (by name) with at least eight photos, eight photos each."""
    names = []
    for line in (lfw_dir / "lfw-names.txt").read_text().splitlines():
        name, count = line.split("\t")
        if int(count) >= IMAGES_EACH:
            names.append(name)
    images = tmp_path_factory.mktemp("lfw_subset")
    for name in names[:IDENTITIES]:
        (images / name).mkdir()
        for number in range(1, IMAGES_EACH + 1):
            source = lfw_dir / "images" / name / f"{name}_{number:04d}.jpg"
            (images / name / source.name).symlink_to(source)
    out = tmp_path_factory.mktemp("crops")
    prepare_crops(images, out, FaceDetector(detector_path), FaceAligner(DEFAULT_TEMPLATE, (96, 96)), progress=False)
    return out


@pytest.fixture(scope="module")
def dataset(crops_dir):
    return CropDataset.load(crops_dir)


def small_config(**changes):
    base = TrainConfig(
        arch="nns2",
        epochs=2,
        identities_per_batch=4,
        images_per_identity=3,
        batches_per_epoch=2,
        optimizer="adam",
        lr=1e-3,
        seed=3,
        val_fraction=0.25,
        val_pairs=60,
    )
    return dataclasses.replace(base, **changes)


def test_resume_gives_the_parameters_of_an_uninterrupted_run(dataset, tmp_path):
    config = small_config()
    straight = Trainer(config, dataset, tmp_path / "straight", progress=False)
    straight.fit()

    Trainer(config, dataset, tmp_path / "resumed", progress=False).fit(stop_after_epoch=1)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt").extra["epoch"] == 1
    resumed = Trainer(config, dataset, tmp_path / "resumed", progress=False)
    resumed.fit(resume=True)

    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert [row.loss for row in straight.history] == [row.loss for row in resumed.history]
    assert len(resumed.history) == 2


def batch_objective(trainer, crops, labels, margin=0.2):
    """Mean triplet loss over every valid triplet of a fixed batch: the objective that mining samples from."""
    embeddings = torch.from_numpy(trainer.embed(crops))
    distances = torch.cdist(embeddings, embeddings).pow(2)
    labels = torch.from_numpy(labels)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool)
    losses = (distances[:, :, None] - distances[:, None, :] + margin).clamp(min=0)  # [a, p, n]
    valid = positive[:, :, None] & ~same[:, None, :]
    return float(losses[valid].mean())


def held_out_pairs(held):
    """All same-person pairs of the held-out photos and as many different-person pairs."""
    rng = np.random.default_rng(0)
    same = [
        pair
        for label in range(len(held.identities))
        for pair in itertools.combinations(np.flatnonzero(held.labels == label), 2)
    ]
    different = []
    while len(different) < len(same):
        a, b = rng.integers(len(held), size=2)
        if held.labels[a] != held.labels[b]:
            different.append((a, b))
    return np.array(same + different), np.arange(len(same) + len(different)) < len(same)


def verification(trainer, held, pairs, same):
    embeddings = trainer.embed(held.crops)
    similarities = np.einsum("ij,ij->i", embeddings[pairs[:, 0]], embeddings[pairs[:, 1]])
    return evaluate_verification(similarities, same, np.arange(len(similarities)) % 10)


def test_training_lowers_the_loss_and_raises_accuracy_on_held_out_photos(dataset, openface_path, tmp_path):
    # Five photos of each person train, the other three make the verification pairs. Starting from OpenFace's
    # published layers keeps this short enough for CI (from a random start the gain takes far longer to show).
    train_rows = np.concatenate([np.flatnonzero(dataset.labels == label)[:5] for label in range(IDENTITIES)])
    held_rows = np.concatenate([np.flatnonzero(dataset.labels == label)[5:] for label in range(IDENTITIES)])
    train, held = dataset.subset(train_rows), dataset.subset(held_rows)
    pairs, same = held_out_pairs(held)
    config = small_config(
        arch="nn4_small2",
        init_openface=str(openface_path),
        epochs=6,
        identities_per_batch=8,
        images_per_identity=4,
        batches_per_epoch=6,
        val_fraction=0.0,
    )
    trainer = Trainer(config, train, tmp_path / "run", progress=False)
    fixed = np.arange(48)  # the first photos of the first people, in a fixed order
    crops, labels = np.asarray(train.crops[fixed]), train.labels[fixed]

    objective_before, before = batch_objective(trainer, crops, labels), verification(trainer, held, pairs, same)
    result = trainer.fit()
    objective_after, after = batch_objective(trainer, crops, labels), verification(trainer, held, pairs, same)

    assert objective_after < 0.8 * objective_before, (objective_before, objective_after)
    assert after.accuracy > before.accuracy + 0.08, (before, after)
    assert after.auc > before.auc + 0.05, (before, after)
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 1 + config.epochs and metrics[0].startswith("epoch,steps,loss")
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    assert len(result.history) == config.epochs


def test_held_out_identities_are_evaluated_and_the_best_checkpoint_kept(dataset, tmp_path):
    trainer = Trainer(small_config(epochs=2), dataset, tmp_path / "run", progress=False)
    assert not set(trainer.split.val.identities) & set(trainer.split.train.identities)
    result = trainer.fit()
    accuracies = [row.val_accuracy for row in result.history]
    assert all(0.0 <= a <= 1.0 for a in accuracies) and result.best_accuracy == max(accuracies)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best.extra["best_accuracy"] == pytest.approx(result.best_accuracy)
    assert -1.0 <= best.metadata["threshold"] <= 1.0


def test_open_set_threshold_counts_every_stranger_pair():
    labels = np.repeat(np.arange(20), 5)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    embeddings = centres[labels] + 0.3 * rng.normal(size=(100, 16))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    threshold, accepted, strangers = open_set_threshold(embeddings.astype(np.float32), labels, far_target=0.01)
    assert strangers == 100 * 99 // 2 - 20 * 10
    similarities = embeddings @ embeddings.T
    different = labels[:, None] != labels[None, :]
    assert np.sum(similarities[np.triu(different, 1)] >= threshold) <= 0.01 * strangers
    assert 0.5 < accepted <= 1.0


def test_a_finished_run_records_the_threshold_of_its_best_weights(dataset, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(small_config(epochs=1), dataset, run, progress=False)
    trainer.fit()
    best = load_checkpoint(run / "best.pt")
    trainer.model.load_state_dict(best.state_dict)
    expected = open_set_threshold(trainer.embed(trainer.split.val.crops), trainer.split.val.labels, seed=3)[0]
    assert best.metadata["threshold"] == pytest.approx(expected)

    # A run finished under an older rule gets its threshold replaced when resumed; its weights stay.
    save_checkpoint(run / "best.pt", trainer.model, best.arch, {**best.metadata, "threshold": 0.99}, **best.extra)
    Trainer(small_config(epochs=1), dataset, run, progress=False).fit(resume=True)
    again = load_checkpoint(run / "best.pt")
    assert again.metadata["threshold"] == pytest.approx(expected)
    for name, tensor in best.state_dict.items():
        assert torch.equal(tensor, again.state_dict[name]), name


def test_resume_refuses_other_settings_and_missing_checkpoints(dataset, tmp_path):
    Trainer(small_config(epochs=1), dataset, tmp_path / "run", progress=False).fit()
    with pytest.raises(ValueError, match=r"other settings .*margin"):
        Trainer(small_config(margin=0.3), dataset, tmp_path / "run", progress=False).fit(resume=True)
    with pytest.raises(FileNotFoundError):
        Trainer(small_config(), dataset, tmp_path / "empty", progress=False).fit(resume=True)


def test_distillation_and_hard_mining_run(dataset, lfw_dir, tmp_path):
    config = small_config(
        epochs=1, mining="hard", teachers=(str(lfw_dir / "dlib_resnet_embeddings.npz"),), distill_weight=1.0
    )
    result = Trainer(config, dataset, tmp_path / "run", progress=False).fit()
    assert result.history[0].distill_loss > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
        ({"epochs": 0}, "epochs"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"distill_weight": 1.0}, "teachers"),
    ],
)
def test_invalid_settings_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        small_config(**changes)


def test_two_process_distributed_training_with_gloo(crops_dir, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["train/train.py", "--data", str(crops_dir), "--out", str(out), "--arch", "nns2", "--epochs", "1"]
    command += ["--batches-per-epoch", "2", "-P", "4", "-K", "3", "--device", "cpu", "--no-progress"]
    command += ["--optimizer", "adam", "--lr", "1e-3", "--val-fraction", "0.25", "--val-pairs", "60", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint.extra["epoch"] == 1 and len(checkpoint.extra["history"]) == 1
    assert "DistributedDataParallel" not in str(list(checkpoint.state_dict)[:3])  # the plain model's weights


def test_cli_reports_bad_input_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "train/train.py", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error:") and "Traceback" not in result.stderr
