"""Evaluate an embedder on a face-verification benchmark (LFW's 10-fold protocol).

Usage:
    python -m edge_facenet.evaluate lfw --lfw-dir ../shared/data/lfw --model model.onnx [--folds 6-10] [--json]
    python -m edge_facenet.evaluate lfw --lfw-dir ../shared/data/lfw --embeddings dlib_resnet_embeddings.npz
    python -m edge_facenet.evaluate combine A/eval.json B/eval.json

``combine`` joins reports on disjoint folds (``--json`` output of ``lfw``), such as two models that each left out the
people of the folds they are measured on, into one k-fold figure: mean ± std over all their folds; AUC is the
pair-weighted mean of the reports' AUCs, since scores of different models do not share one scale.

Each image is detected, aligned and embedded once; aligned crops are cached per detector and crop geometry in
``$EDGE_FACENET_HOME/cache`` so that several models (FP32 and INT8, say) are compared on the same crops. In LFW the
labelled person is the face nearest the image centre; where YuNet finds no face, the fixed centre crop is used and
counted as a detection failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from edge_facenet._files import atomic_output
from edge_facenet.aligner import FaceAligner
from edge_facenet.detector import FaceDetector, central_face
from edge_facenet.embedder import Embedder
from edge_facenet.images import read_image
from edge_facenet.lfw import IMAGES_FOLDER, Pair, pair_images, read_pairs
from edge_facenet.metrics import VerificationReport, evaluate_verification, roc_curve
from edge_facenet.plot import line_chart, write_png
from edge_facenet.resolve import cache_dir

logger = logging.getLogger(__name__)

SPLITS_FOR_ONE_FOLD = 10


@dataclass(frozen=True)
class AlignedImages:
    """Aligned crops of a set of images.

    Attributes:
        keys: Image keys (paths relative to the dataset's images folder).
        crops: (N, height, width, 3) uint8 BGR crops, in the order of ``keys``.
        detected: (N,) bool, False where the centre crop stood in for a detection.
    """

    keys: list[str]
    crops: np.ndarray
    detected: np.ndarray


def align_images(
    images_dir: Path,
    keys: list[str],
    detector: FaceDetector,
    aligner: FaceAligner,
    cache: Path | None = None,
    progress: bool = True,
) -> AlignedImages:
    """Detect and align the central face of each image, reusing and extending a crop cache.

    Raises:
        FileNotFoundError: When an image is missing.
        ValueError: When an image cannot be decoded.
    """
    cached: dict[str, tuple[np.ndarray, bool]] = {}
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            cached = {
                k: (c, bool(d)) for k, c, d in zip(data["keys"].tolist(), data["crops"], data["detected"], strict=True)
            }

    missing = [key for key in keys if key not in cached]
    for key in _progress(missing, "aligning", progress):
        image = read_image(images_dir / key)
        face = central_face(detector.detect(image), image.shape[1], image.shape[0])
        if face is not None:
            cached[key] = (aligner.align(image, face.landmarks), True)
        else:
            cached[key] = (aligner.centre_crop(image), False)

    if cache is not None and missing:
        all_keys = sorted(cached)
        with atomic_output(cache) as temporary, open(temporary, "wb") as file:
            np.savez(
                file,
                keys=np.array(all_keys),
                crops=np.stack([cached[k][0] for k in all_keys]),
                detected=np.array([cached[k][1] for k in all_keys]),
            )
    return AlignedImages(
        keys=list(keys),
        crops=np.stack([cached[k][0] for k in keys]) if keys else np.zeros((0, *aligner.size, 3), np.uint8),
        detected=np.array([cached[k][1] for k in keys], dtype=bool),
    )


def embed_crops(embedder: Embedder, crops: np.ndarray, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Embed many crops in batches; returns (N, D) float32."""
    batches = range(0, len(crops), batch_size)
    parts = [embedder.embed(crops[start : start + batch_size]) for start in _progress(batches, "embedding", progress)]
    return np.concatenate(parts) if parts else np.zeros((0, embedder.embedding_size), np.float32)


def pair_similarities(pairs: list[Pair], keys: list[str], embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair, from unit embeddings indexed like ``keys``."""
    index = {key: i for i, key in enumerate(keys)}
    left = embeddings[[index[p.left] for p in pairs]]
    right = embeddings[[index[p.right] for p in pairs]]
    return np.einsum("ij,ij->i", left, right)


def parse_folds(text: str, available: set[int], option: str = "--folds") -> list[int]:
    """Parse a fold list such as ``"1-10"``, ``"6-10"`` or ``"1,3,5"``.

    Raises:
        ValueError: For malformed text or folds the protocol file does not have.
    """
    folds: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            folds.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise ValueError(f"{option} expects numbers and ranges such as 1-10 or 1,3,5; got {text!r}") from None
    unknown = sorted(folds - available)
    if not folds or unknown:
        raise ValueError(f"{option} {text!r}: the protocol has folds {min(available)}-{max(available)}, not {unknown}")
    return sorted(folds)


def crop_cache_path(detector: FaceDetector, aligner: FaceAligner, dataset: str) -> Path:
    """Cache file of aligned crops for one dataset, detector configuration and crop geometry."""
    settings = [detector.model_path.name, detector.score_threshold, detector.nms_threshold, detector.max_side]
    settings += [aligner.template.name, aligner.template.points, aligner.size]
    digest = hashlib.sha256(repr(settings).encode()).hexdigest()[:16]
    return cache_dir() / "cache" / f"{dataset}_crops_{digest}.npz"


def evaluate_lfw(
    lfw_dir: str | PathLike[str],
    embedder: Embedder,
    detector: FaceDetector,
    folds: list[int] | None = None,
    pairs_file: str = "pairs.txt",
    use_cache: bool = True,
    progress: bool = True,
) -> tuple[VerificationReport, dict[str, object]]:
    """Run LFW's verification protocol on the chosen folds.

    The threshold for each fold is chosen on the other chosen folds, so a model is measured only on folds whose
    people it never saw when ``folds`` excludes its training folds. A single fold is split into ten parts of its
    pairs for the same purpose.

    Returns:
        The verification report and extra facts (images, detection failures, the pairs' similarities).

    Raises:
        FileNotFoundError: When the protocol file or an image is missing.
        ValueError: For unknown folds.
    """
    lfw_dir = Path(lfw_dir)
    pairs, chosen = chosen_pairs(lfw_dir / pairs_file, folds)
    aligner = FaceAligner.from_metadata(embedder.metadata)
    cache = crop_cache_path(detector, aligner, f"lfw_{Path(pairs_file).stem}") if use_cache else None
    aligned = align_images(lfw_dir / IMAGES_FOLDER, pair_images(pairs), detector, aligner, cache, progress)
    embeddings = embed_crops(embedder, aligned.crops, progress=progress)

    report, facts = verify_pairs(pairs, chosen, pair_similarities(pairs, aligned.keys, embeddings))
    return report, {**facts, "images": len(aligned.keys), "detect_failures": int((~aligned.detected).sum())}


def evaluate_lfw_embeddings(
    lfw_dir: str | PathLike[str],
    embeddings_file: str | PathLike[str],
    folds: list[int] | None = None,
    pairs_file: str = "pairs.txt",
) -> tuple[VerificationReport, dict[str, object]]:
    """Run LFW's verification protocol on precomputed embeddings, such as another model's, under the same rules.

    Args:
        embeddings_file: An ``.npz`` with ``names`` (image keys, ``Name/Name_NNNN.jpg``) and ``embeddings`` (N, D);
            the embeddings are L2-normalised here and compared by cosine similarity.

    Raises:
        FileNotFoundError: When a file is missing.
        ValueError: For unknown folds, or a file without the arrays or without an image of the pairs.
    """
    embeddings_file = Path(embeddings_file)
    pairs, chosen = chosen_pairs(Path(lfw_dir) / pairs_file, folds)
    if not embeddings_file.is_file():
        raise FileNotFoundError(f"embeddings file not found: {embeddings_file}")
    with np.load(embeddings_file, allow_pickle=False) as stored:
        if not {"names", "embeddings"} <= set(stored.files):
            raise ValueError(f"{embeddings_file} needs arrays 'names' and 'embeddings', it has {stored.files}")
        keys = [str(name) for name in stored["names"]]
        embeddings = stored["embeddings"].astype(np.float32)
    images = pair_images(pairs)
    missing = sorted(set(images) - set(keys))
    if missing:
        raise ValueError(f"{embeddings_file} lacks {len(missing)} images of the pairs, e.g. {missing[0]}")
    embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    report, facts = verify_pairs(pairs, chosen, pair_similarities(pairs, keys, embeddings))
    return report, {**facts, "images": len(images)}


def chosen_pairs(path: Path, folds: list[int] | None) -> tuple[list[Pair], list[int]]:
    """The pairs of the chosen folds (all folds for None) and the fold numbers."""
    pairs = read_pairs(path)
    chosen = folds or sorted({p.fold for p in pairs})
    return [p for p in pairs if p.fold in chosen], chosen


def verify_pairs(pairs: list[Pair], chosen: list[int], similarities: np.ndarray) -> tuple[VerificationReport, dict]:
    """The protocol's report; each fold's threshold comes from the other chosen folds (one fold: ten splits)."""
    same = np.array([p.same for p in pairs])
    labels = np.array([p.fold for p in pairs]) if len(chosen) > 1 else np.arange(len(pairs)) % SPLITS_FOR_ONE_FOLD
    facts = {"folds": chosen, "similarities": similarities, "same": same}
    return evaluate_verification(similarities, same, labels), facts


def draw_roc(similarities: np.ndarray, same: np.ndarray, path: Path, title: str) -> None:
    """Write the ROC curve (verification rate against log false-accept rate) as a PNG."""
    far, tar, _ = roc_curve(similarities, same)
    chart = line_chart(
        {"ROC": (far, tar)},
        title,
        "false accept rate",
        "verification rate",
        log_x=True,
        x_range=(1e-4, 1.0),
        y_range=(0.0, 1.0),
    )
    write_png(path, chart)


def _progress(items, description: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="batch" if description == "embedding" else "image", leave=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_facenet.evaluate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="benchmark", required=True)
    lfw = commands.add_parser("lfw", help="LFW 10-fold verification (pairs.txt)")
    lfw.add_argument("--lfw-dir", type=Path, required=True, help="LFW folder with images/ and pairs.txt")
    lfw.add_argument("--model", type=Path, help="embedder ONNX (default: $EDGE_FACENET_MODEL or the package's)")
    lfw.add_argument("--embeddings", type=Path, help="score precomputed embeddings (.npz: names, embeddings) instead")
    lfw.add_argument("--detector", type=Path, help="YuNet ONNX (default: $EDGE_FACENET_DETECTOR, cache, download)")
    lfw.add_argument("--backend", default="auto", help="embedder backend (default auto)")
    lfw.add_argument("--folds", default="1-10", help="folds to evaluate, e.g. 1-10, 6-10, 1 (default 1-10)")
    lfw.add_argument("--pairs", default="pairs.txt", help="protocol file inside --lfw-dir (default pairs.txt)")
    lfw.add_argument("--plot", type=Path, help="write the ROC curve to this PNG")
    lfw.add_argument("--no-cache", action="store_true", help="do not read or write the aligned-crop cache")
    lfw.add_argument("--json", action="store_true", help="print one JSON object")
    combine = commands.add_parser("combine", help="join lfw --json reports on disjoint folds into one figure")
    combine.add_argument("reports", type=Path, nargs="+", help="JSON files written by lfw --json")
    combine.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.benchmark == "combine":
        try:
            return _report_combined(args.reports, args.json)
        except (FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    start = time.perf_counter()
    try:
        pairs = read_pairs(args.lfw_dir / args.pairs)
        folds = parse_folds(args.folds, {p.fold for p in pairs})
        if args.embeddings is not None:
            if args.model is not None:
                raise ValueError("give --model or --embeddings, not both")
            report, facts = evaluate_lfw_embeddings(args.lfw_dir, args.embeddings, folds, args.pairs)
            source: dict[str, object] = {"embeddings": str(args.embeddings)}
            label, random_weights = f"embeddings of {args.embeddings.name}", False
        else:
            embedder = Embedder(args.model, backend=args.backend)
            detector = FaceDetector(args.detector)
            report, facts = evaluate_lfw(
                args.lfw_dir, embedder, detector, folds, args.pairs, use_cache=not args.no_cache, progress=not args.json
            )
            source = {
                "detect_failures": facts["detect_failures"],
                "model": str(embedder.model_path),
                "arch": embedder.metadata.arch,
                "precision": embedder.metadata.precision,
            }
            label, random_weights = embedder.metadata.arch, embedder.metadata.is_random
        if args.plot:
            draw_roc(
                facts["similarities"],
                facts["same"],
                args.plot,
                f"{label} on LFW folds {args.folds}: AUC {report.auc:.4f}",
            )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    result = {
        **report.to_dict(),
        "images": facts["images"],
        "folds": facts["folds"],
        **source,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"LFW folds {args.folds} ({report.pairs} pairs, {facts['images']} images), {label}:")
    print(f"  accuracy        {report.accuracy:.4f} ± {report.accuracy_std:.4f}")
    print(f"  VAL @ FAR=1e-3  {report.val:.4f} ± {report.val_std:.4f} (achieved FAR {report.far:.5f})")
    print(f"  AUC             {report.auc:.4f}")
    print(f"  threshold       {report.threshold:.4f} (best accuracy, all pairs)")
    if "detect_failures" in source:
        print(f"  detect failures {source['detect_failures']} (centre crop used)")
    if random_weights:
        print("  note: this model has random weights; these figures only show that the pipeline runs")
    return 0


def combine_reports(reports: list[dict[str, object]]) -> dict[str, object]:
    """Join ``lfw --json`` reports on disjoint folds into one k-fold figure (see the module notes).

    Raises:
        ValueError: When reports share a fold, lack per-fold figures, or use different FAR targets.
    """
    folds = [fold for report in reports for fold in report.get("folds", [])]
    if len(folds) != len(set(folds)):
        raise ValueError(f"reports to combine must be on disjoint folds, got folds {folds}")
    val_keys = {key for report in reports for key in report if key.startswith("fold_val_at_far_")}
    if len(val_keys) != 1 or any("fold_accuracies" not in report for report in reports):
        raise ValueError("reports to combine need fold_accuracies and one fold_val_at_far_* list each")
    val_key = val_keys.pop()
    accuracies = np.array([value for report in reports for value in report["fold_accuracies"]])
    vals = np.array([value for report in reports for value in report.get(val_key, [])])
    if len(vals) != len(accuracies):
        raise ValueError(f"reports to combine must all have {val_key}")
    pairs = np.array([report["pairs"] for report in reports], dtype=float)
    aucs = np.array([report["auc"] for report in reports], dtype=float)
    name = val_key.removeprefix("fold_")
    return {
        "accuracy": float(accuracies.mean()),
        "std": float(accuracies.std()),
        name: float(vals.mean()),
        f"{name}_std": float(vals.std()),
        "auc": float(np.sum(aucs * pairs) / pairs.sum()),
        "pairs": int(pairs.sum()),
        "folds": sorted(folds),
        "fold_accuracies": accuracies.tolist(),
        val_key: vals.tolist(),
    }


def _report_combined(paths: list[Path], as_json: bool) -> int:
    reports = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"report not found: {path}")
        try:
            reports.append(json.loads(path.read_text()))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a JSON report: {error}") from None
    combined = combine_reports(reports)
    if as_json:
        print(json.dumps(combined))
        return 0
    val_name = next(key for key in combined if key.startswith("val_at_far_"))
    print(f"LFW folds {','.join(map(str, combined['folds']))} ({combined['pairs']} pairs) from {len(reports)} reports:")
    print(f"  accuracy        {combined['accuracy']:.4f} ± {combined['std']:.4f}")
    far, val, val_std = val_name.removeprefix("val_at_far_"), combined[val_name], combined[f"{val_name}_std"]
    print(f"  VAL @ FAR={far}  {val:.4f} ± {val_std:.4f}")
    print(f"  AUC             {combined['auc']:.4f} (pair-weighted mean of the reports')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
