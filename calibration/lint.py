"""Check an INT8 Q/DQ ONNX model against the rules of TensorRT's explicit quantization (no TensorRT needed).

Examples:
    python calibration/lint.py nn4_small2_int8.onnx
    python calibration/lint.py nn4_small2_int8.onnx --target tensorrt11 --json

Exit status: 0 when the model passes, 1 when it breaks a rule (each violation is printed, one a line, as
"<rule>: <node>: <message>"), 2 on bad input. The rules are listed in edge_facenet/quantization/lint.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="INT8 ONNX model in QDQ format")
    parser.add_argument(
        "--target",
        default="tensorrt10",
        help="parser to check for: tensorrt10 (TensorRT 10.3 of JetPack 6, the default) or tensorrt11",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    try:
        from edge_facenet.quantization.lint import DEQUANTIZE, QUANTIZE, lint_qdq_model, load_model
    except ImportError as error:
        print(f"error: {error}; the Q/DQ lint needs onnx: pip install 'edge-facenet[calibrate]'", file=sys.stderr)
        return 2

    try:
        model = load_model(args.model)
        violations = lint_qdq_model(model, args.target)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.json:
        result = {
            "path": str(args.model),
            "target": args.target,
            "passed": not violations,
            "violations": [asdict(violation) for violation in violations],
        }
        print(json.dumps(result))
    elif violations:
        for violation in violations:
            print(f"{violation.rule}: {violation.node}: {violation.message}")
        plural = "" if len(violations) == 1 else "s"
        print(f"{args.model}: {len(violations)} violation{plural} of the {args.target} Q/DQ rules")
    else:
        op_types = [node.op_type for node in model.graph.node]
        print(
            f"OK: {args.model} passes the {args.target} Q/DQ rules ({op_types.count(QUANTIZE)} QuantizeLinear, "
            f"{op_types.count(DEQUANTIZE)} DequantizeLinear)"
        )
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
