"""Detect, align and embed the main face of each image, and print how similar the faces are.

Example:
    python samples/compare_faces.py --model nn4_small2.onnx a.jpg b.jpg c.jpg

The detector is found through --detector, $EDGE_FACENET_DETECTOR, the cache or a verified download.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from edge_facenet import Recognizer, read_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cosine similarity between the main faces of some images.")
    parser.add_argument("--model", type=Path, help="embedder ONNX (default: $EDGE_FACENET_MODEL or the package's)")
    parser.add_argument("--detector", type=Path, help="YuNet ONNX (default: $EDGE_FACENET_DETECTOR, cache, download)")
    parser.add_argument("images", type=Path, nargs="+", help="images with a face each (at least two)")
    args = parser.parse_args(argv)
    if len(args.images) < 2:
        parser.error("give at least two images to compare")

    # 1. The recogniser reads the crop size, preprocessing and template from the model's own metadata.
    try:
        recognizer = Recognizer(model=args.model, detector=args.detector)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    metadata = recognizer.embedder.metadata
    height, width = metadata.input_size
    print(
        f"model: {metadata.arch} {metadata.precision.upper()}, {width}x{height} {metadata.channel_order} "
        f"-> {metadata.embedding_size}-D"
    )
    if metadata.is_random:
        print("note: this model has RANDOM weights, so the similarities below say nothing about identity")

    # 2. Embed the largest face of every image.
    embeddings, names = [], []
    start = time.perf_counter()
    for path in args.images:
        try:
            image = read_image(path)
        except (OSError, ValueError):
            print(f"error: cannot read an image from {path}", file=sys.stderr)
            return 1
        embedding = recognizer.embed_largest_face(image)
        if embedding is None:
            print(f"skipped {path}: no face found")
            continue
        embeddings.append(embedding)
        names.append(path.stem)
    elapsed_ms = (time.perf_counter() - start) * 1000
    print(f"detected, aligned and embedded {len(names)} faces in {elapsed_ms:.0f} ms")
    if len(names) < 2:
        print("error: fewer than two faces to compare", file=sys.stderr)
        return 1

    # 3. Embeddings are unit vectors, so the dot product is the cosine similarity.
    similarity = np.stack(embeddings) @ np.stack(embeddings).T
    column = max(len(name) for name in names) + 2
    print(" " * column + "".join(f"{i:>8}" for i in range(len(names))))
    for i, name in enumerate(names):
        print(f"{name:<{column}}" + "".join(f"{value:>8.3f}" for value in similarity[i]) + f"   [{i}]")
    if metadata.threshold is not None:
        same = np.argwhere(np.triu(similarity >= metadata.threshold, k=1))
        print(f"pairs at or above the model's threshold {metadata.threshold:.3f}: {same.tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
