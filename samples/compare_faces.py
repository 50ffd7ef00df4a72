"""Embed face images with an edge_facenet ONNX model and print how similar they are.

The images should show one face each, already cropped around it; ``--box`` crops every image first (for LFW's
deep-funneled 250x250 photos, ``--box 65 68 120 120`` gives the framing of the model's alignment template).
Preprocessing (crop size, channel order, mean and std) comes from the model's own metadata.

Example:
    python samples/compare_faces.py --model nn4_small2.onnx --box 65 68 120 120 a.jpg b.jpg c.jpg
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime

from edge_facenet import blob_from_crops, read_metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cosine similarity between face images under an ONNX embedder.")
    parser.add_argument("--model", type=Path, required=True, help="edge_facenet ONNX embedder")
    parser.add_argument("--box", type=int, nargs=4, metavar=("X", "Y", "W", "H"), help="crop box applied first")
    parser.add_argument("images", type=Path, nargs="+", help="face images (at least two)")
    args = parser.parse_args(argv)
    if len(args.images) < 2:
        parser.error("give at least two images to compare")

    # 1. The model says how to feed it.
    try:
        metadata = read_metadata(args.model)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    height, width = metadata.input_size
    print(f"model: {metadata.arch}, {width}x{height} {metadata.channel_order} -> {metadata.embedding_size}-D")
    if metadata.is_random:
        print("note: this model has RANDOM weights, so the similarities below say nothing about identity")

    # 2. Read, crop and resize every face.
    crops = []
    for path in args.images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"error: cannot read an image from {path}", file=sys.stderr)
            return 1
        if args.box:
            x, y, w, h = args.box
            image = image[y : y + h, x : x + w]
            if image.size == 0:
                print(f"error: --box {x} {y} {w} {h} lies outside {path}", file=sys.stderr)
                return 1
        crops.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))

    # 3. One batched call embeds them all.
    session = onnxruntime.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    blob = blob_from_crops(crops, metadata)
    start = time.perf_counter()
    (embeddings,) = session.run(["embedding"], {"input": blob})
    elapsed_ms = (time.perf_counter() - start) * 1000
    print(f"embedded {len(crops)} faces in {elapsed_ms:.1f} ms (one batch, ONNX Runtime CPU)")

    # 4. Embeddings are unit vectors, so the dot product is the cosine similarity.
    similarity = embeddings @ embeddings.T
    names = [path.stem for path in args.images]
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
