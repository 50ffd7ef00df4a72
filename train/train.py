"""Train an edge_facenet embedder with the triplet loss.

Examples:
    python train/prepare.py --images ../shared/data/lfw/images --out crops/lfw
    python train/train.py --data crops/lfw --arch nn4_small2 --out runs/a --exclude-lfw-folds 6-10 --epochs 20
    python train/train.py --data crops/lfw --out runs/a --resume            # continue after an interruption
    torchrun --nproc-per-node 2 train/train.py --data crops/lfw --out runs/ddp ...

Every epoch writes runs/NAME/last.pt (and best.pt when held-out accuracy improves), metrics.csv and curves.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train an edge_facenet embedder (triplet loss, online mining).")
    parser.add_argument("--data", type=Path, action="append", required=True, help="prepared crops (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="run folder for checkpoints and metrics")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--max-minutes", type=float, help="stop after the epoch that ends past this many minutes")
    parser.add_argument("--arch", default="nn4_small2")
    parser.add_argument("--embedding-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--identities-per-batch", "-P", type=int, default=32)
    parser.add_argument("--images-per-identity", "-K", type=int, default=4)
    parser.add_argument("--singletons-per-batch", type=int, default=0)
    parser.add_argument("--batches-per-epoch", type=int)
    parser.add_argument("--optimizer", default="adagrad", choices=["adagrad", "sgd", "adam"])
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--lr-decay-start", type=float, default=0.75, help="fraction of the run where decay starts")
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--mining", default="semihard", choices=["semihard", "hard", "all"])
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
    parser.add_argument("--init-openface", type=Path, help="OpenFace nn4.small2.v1 partial weights (.npz)")
    parser.add_argument("--teacher", type=Path, action="append", default=[], help="teacher embeddings .npz")
    parser.add_argument("--distill-weight", type=float, default=0.0)
    parser.add_argument("--val-fraction", type=float, default=0.1, help="identities held out for verification")
    parser.add_argument("--val-pairs", type=int, default=2000)
    parser.add_argument("--exclude-lfw-folds", help="drop the people of these people.txt folds, e.g. 6-10")
    parser.add_argument("--lfw-people", type=Path, default=Path("../shared/data/lfw/people.txt"))
    parser.add_argument("--exclude-celeba-lfw", type=Path, help="lfw_nearest.tsv: drop CelebA people near LFW ones")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when present)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        from edge_facenet.evaluate import parse_folds
        from edge_facenet.training.data import CropDataset, celeba_possible_lfw, lfw_fold_people
        from edge_facenet.training.trainer import TrainConfig, Trainer, setup_distributed

        config = TrainConfig(
            arch=args.arch,
            embedding_size=args.embedding_size,
            epochs=args.epochs,
            identities_per_batch=args.identities_per_batch,
            images_per_identity=args.images_per_identity,
            singletons_per_batch=args.singletons_per_batch,
            batches_per_epoch=args.batches_per_epoch,
            optimizer=args.optimizer,
            lr=args.lr,
            weight_decay=args.weight_decay,
            lr_decay_start=args.lr_decay_start,
            margin=args.margin,
            mining=args.mining,
            augment=not args.no_augment,
            seed=args.seed,
            amp=not args.no_amp,
            init_openface=str(args.init_openface) if args.init_openface else None,
            teachers=tuple(str(path) for path in args.teacher),
            distill_weight=args.distill_weight,
            val_fraction=args.val_fraction,
            val_pairs=args.val_pairs,
        )
        dataset = CropDataset.concatenate([CropDataset.load(path) for path in args.data])
        excluded: set[str] = set()
        if args.exclude_lfw_folds:
            folds = parse_folds(args.exclude_lfw_folds, set(range(1, 11)), "--exclude-lfw-folds")
            excluded |= lfw_fold_people(args.lfw_people, folds)
        if args.exclude_celeba_lfw:
            excluded |= celeba_possible_lfw(args.exclude_celeba_lfw)
        if excluded:
            before = len(dataset.identities)
            dataset = dataset.without_identities(excluded)
            logging.info("excluded %d identities; %d remain", before - len(dataset.identities), len(dataset.identities))
        rank, _ = setup_distributed()
        trainer = Trainer(config, dataset, args.out, device=args.device, progress=not args.no_progress)
        max_seconds = args.max_minutes * 60 if args.max_minutes else None
        result = trainer.fit(resume=args.resume, max_seconds=max_seconds)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    if rank == 0 and result.history:
        last = result.history[-1]
        if args.json:
            print(json.dumps({**dataclasses.asdict(last), "best_accuracy": result.best_accuracy}))
        else:
            print(
                f"{args.out}: epoch {last.epoch}, loss {last.loss:.4f}, {last.images_per_s:.1f} images/s, "
                f"held-out accuracy {last.val_accuracy:.4f} (best {result.best_accuracy:.4f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
