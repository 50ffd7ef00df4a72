"""Check what this machine gives edge_facenet, and say what would fail before it fails.

Usage:
    python -m edge_facenet.doctor [--model M.onnx|M.engine] [--detector YUNET.onnx] [--json]

Each line is a check: ``ok``, ``warn`` (works, but not as well as it could, or needs something on first use) or
``FAIL`` (the runtime cannot run). The checks: Python and library versions; OpenCV's video backends (FFmpeg for
files and streams, GStreamer for Jetson CSI cameras); ONNX Runtime's execution providers; the CPU's vector
instructions (AVX-512 VNNI makes the INT8 model about twice as fast); the embedder the default settings would load
(opened, and timed on one batch); the face detector (found locally, or to be downloaded on first use; nothing is
downloaded here); TensorRT and a CUDA binding for native engines; the Jetson release; faiss for large galleries.
Exit status 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_facenet import __version__
from edge_facenet.camera.sources import opencv_video_backend
from edge_facenet.resolve import YUNET_2023MAR, cache_dir, resolve_model_file

JETSON_RELEASE = Path("/etc/nv_tegra_release")


@dataclass(frozen=True)
class Check:
    """One finding.

    Attributes:
        name: What was checked.
        status: ``"ok"``, ``"warn"`` or ``"fail"``.
        detail: What was found, and what to do when it is not ok.
    """

    name: str
    status: str
    detail: str


def run_checks(model: str | None = None, detector: str | None = None) -> list[Check]:
    """Every check, in the order they are printed.

    Args:
        model: The embedder to check instead of the default one.
        detector: The YuNet file to check instead of the environment variable, cache or download.
    """
    checks = [
        Check("python", "ok", f"{platform.python_version()} ({sys.executable})"),
        Check("edge_facenet", "ok", f"{__version__} ({Path(__file__).parent})"),
        Check("numpy", "ok", np.__version__),
        *_opencv_checks(),
        *_onnxruntime_checks(),
        _cpu_check(),
        _embedder_check(model),
        _detector_check(detector),
        *_tensorrt_checks(),
        _optional("faiss", "ann", "approximate search for galleries of millions (index='ivf')"),
        _optional("torch", "train", "training and ONNX export; the runtime never imports it"),
        _cache_check(),
    ]
    return [check for check in checks if check is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_facenet.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an embedder ONNX file or TensorRT engine (default: the package's)")
    parser.add_argument("--detector", help="a YuNet ONNX file (default: $EDGE_FACENET_DETECTOR, cache, download)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)

    checks = run_checks(args.model, args.detector)
    failed = [check for check in checks if check.status == "fail"]
    if args.json:
        print(json.dumps({"checks": [asdict(check) for check in checks], "ok": not failed}))
    else:
        width = max(len(check.name) for check in checks)
        for check in checks:
            label = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[check.status]
            print(f"{label}  {check.name:<{width}}  {check.detail}")
        print(f"{len(failed)} failed" if failed else "nothing failed: the runtime can run here")
    return 1 if failed else 0


def _opencv_checks() -> list[Check]:
    ffmpeg, gstreamer = opencv_video_backend("FFMPEG"), opencv_video_backend("GStreamer")
    return [
        Check("opencv", "ok", cv2.__version__),
        Check(
            "opencv video: FFmpeg",
            "ok" if ffmpeg else "warn",
            "video files and stream URLs" if ffmpeg else "missing: video files and stream URLs may not open",
        ),
        Check(
            "opencv video: GStreamer",
            "ok" if gstreamer else "warn",
            "Jetson CSI cameras (--source csi)"
            if gstreamer
            else "missing: no Jetson CSI cameras (pip wheels lack it; JetPack's OpenCV has it)",
        ),
    ]


def _onnxruntime_checks() -> list[Check]:
    try:
        import onnxruntime
    except ImportError as error:
        return [Check("onnxruntime", "fail", f"cannot import it ({error}): pip install onnxruntime (onnxruntime-gpu)")]
    providers = onnxruntime.get_available_providers()
    gpu = [p for p in providers if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    return [
        Check("onnxruntime", "ok", onnxruntime.__version__),
        Check(
            "onnxruntime providers",
            "ok",
            ", ".join(providers) + ("" if gpu else " (CPU only: the INT8 model is the default)"),
        ),
    ]


def _cpu_check() -> Check:
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    found = [flag for flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimd", "asimddp") if flag in flags]
    detail = f"{platform.machine()}, {cores} usable cores; {', '.join(found) or 'no vector flags read'}"
    if platform.machine() in ("x86_64", "AMD64") and not {"avx512_vnni", "avx_vnni"} & flags:
        return Check("cpu", "warn", f"{detail}: no VNNI, so INT8 gains less over FP32 here")
    return Check("cpu", "ok", detail)


def _embedder_check(model: str | None) -> Check:
    from edge_facenet.embedder import Embedder

    try:
        embedder = Embedder(model)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as error:
        return Check("embedder", "fail", str(error).splitlines()[0])
    metadata = embedder.metadata
    height, width = embedder.input_size
    crops = np.zeros((8, height, width, 3), np.uint8)
    embedder.embed(crops)  # the first run allocates
    start = time.perf_counter()
    embedder.embed(crops)
    per_face = (time.perf_counter() - start) * 1000 / len(crops)
    detail = (
        f"{embedder.model_path.name}: {metadata.arch} {metadata.precision.upper()}, {metadata.embedding_size}-D; "
        f"{per_face:.1f} ms per face at batch 8"
    )
    if metadata.is_random:
        return Check("embedder", "warn", f"{detail} (RANDOM weights: it identifies nobody)")
    return Check("embedder", "ok", detail)


def _detector_check(detector: str | None) -> Check:
    try:
        path = resolve_model_file(YUNET_2023MAR, detector, download=False)
    except FileNotFoundError as error:
        if detector is not None or os.environ.get(YUNET_2023MAR.env_var):
            return Check("detector", "fail", str(error).splitlines()[0])
        return Check(
            "detector",
            "warn",
            f"not here yet: downloaded on first use from {YUNET_2023MAR.url} (sha256-checked); offline, set "
            f"${YUNET_2023MAR.env_var} or copy {YUNET_2023MAR.filename} into {cache_dir() / 'models'}",
        )
    return Check("detector", "ok", str(path))


def _tensorrt_checks() -> list[Check]:
    checks = []
    if importlib.util.find_spec("tensorrt") is None:
        checks.append(
            Check("tensorrt", "warn", "not installed: no native engines here (backend='tensorrt'); ONNX Runtime runs")
        )
    else:
        checks.append(Check("tensorrt", "ok", _version("tensorrt")))
        bindings = [name for name in ("cuda", "pycuda") if importlib.util.find_spec(name) is not None]
        checks.append(
            Check(
                "cuda binding",
                "ok" if bindings else "warn",
                ", ".join(bindings) if bindings else "neither cuda-python nor pycuda: engines cannot run",
            )
        )
    if JETSON_RELEASE.is_file():
        checks.append(Check("jetson", "ok", JETSON_RELEASE.read_text().splitlines()[0].lstrip("# ")))
    return checks


def _optional(module: str, extra: str, purpose: str) -> Check:
    if importlib.util.find_spec(module) is None:
        return Check(module, "ok", f"not installed (pip install 'edge-facenet[{extra}]' for {purpose})")
    return Check(module, "ok", f"{_version(module)}: {purpose}")


def _version(module: str) -> str:
    names = {"faiss": ("faiss-cpu", "faiss-gpu", "faiss"), "tensorrt": ("tensorrt", "tensorrt-cu12")}
    for name in names.get(module, (module,)):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "installed"


def _cache_check() -> Check:
    folder = cache_dir()
    existing = folder if folder.exists() else next((p for p in folder.parents if p.exists()), Path("/"))
    if not os.access(existing, os.W_OK):
        return Check("cache", "warn", f"{folder} is not writable: downloads will fail; set $EDGE_FACENET_HOME")
    return Check("cache", "ok", str(folder))


if __name__ == "__main__":
    sys.exit(main())
