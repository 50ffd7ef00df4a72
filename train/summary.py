"""Print parameters, multiply-adds and input size of every edge_facenet architecture.

Example:
    python train/summary.py
    python train/summary.py --embedding-size 256 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Size and cost of the edge_facenet architectures.")
    parser.add_argument("--embedding-size", type=int, default=128, help="embedding length (64, 128, 256 or 512)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per architecture")
    args = parser.parse_args(argv)

    try:
        from edge_facenet.training.summary import summarize_all

        summaries = summarize_all(args.embedding_size)
    except (ImportError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.json:
        for summary in summaries:
            print(json.dumps(dataclasses.asdict(summary)))
        return 0
    print(f"{'arch':<12} {'parameters':>12} {'multiply-adds':>14} {'input':>8} {'embedding':>10}")
    for s in summaries:
        size = f"{s.input_size[0]}x{s.input_size[1]}"
        print(f"{s.arch:<12} {s.parameters:>12,} {s.multiply_adds / 1e6:>12.1f} M {size:>8} {s.embedding_size:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
