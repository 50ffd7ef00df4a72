"""What the benchmark suite records: figures with their spread, turn-taking timers, and the machine they came from."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("EDGE_FACENET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
LFW_DIR = SHARED / "data" / "lfw"
YUNET = SHARED / "models" / "face_detection_yunet_2023mar.onnx"
# CPU features that decide how fast the INT8 and FP32 kernels run (x86 and Arm names).
SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")


@dataclass(frozen=True)
class Figure:
    """One measured figure: the median (or a single value) and, for repeated runs, its 10th-90th percentile range."""

    value: float
    unit: str
    p10: float | None = None
    p90: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "unit": self.unit, "p10": self.p10, "p90": self.p90}


def summarise(values: list[float], unit: str) -> Figure:
    """Median and 10th/90th percentiles of repeated measurements."""
    p10, median, p90 = np.percentile(np.asarray(values, dtype=np.float64), [10, 50, 90])
    return Figure(float(median), unit, float(p10), float(p90))


def scaled(figure: Figure, factor: float, unit: str) -> Figure:
    """The same figure in another unit (or per item), spread included."""
    return Figure(
        figure.value * factor,
        unit,
        None if figure.p10 is None else figure.p10 * factor,
        None if figure.p90 is None else figure.p90 * factor,
    )


def rate(times_ms: Figure, items: float, unit: str) -> Figure:
    """Items per second from a time per call in ms; the slow end of the times is the low end of the rate."""
    return Figure(
        1000.0 * items / times_ms.value,
        unit,
        None if times_ms.p90 is None else 1000.0 * items / times_ms.p90,
        None if times_ms.p10 is None else 1000.0 * items / times_ms.p10,
    )


def take_turns(calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, Figure]:
    """Time several calls in turn, one call of each per round, so that load changes on the machine hit all alike.

    Returns:
        Name -> wall time per call in ms (median, p10, p90).
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: summarise(values, "ms") for name, values in times.items()}


def in_fresh_process(command: list[str]) -> list[str]:
    """Wrap a command so that its ru_maxrss is its own peak resident memory.

    Linux keeps a process's peak RSS across fork and exec: a child started straight from this (large) process reports
    this process's peak as its own. Run through a shell that forks it, the command starts from the shell's few MB.
    """
    return ["/bin/sh", "-c", '"$@"; exit $?', "sh", *command]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), which is what "all threads" means here."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine_info() -> dict[str, str]:
    """CPU model, cores, memory, operating system and the load when the run started."""
    cpu = _first_field(Path("/proc/cpuinfo"), "model name") or platform.processor() or platform.machine()
    mem_kib = _first_field(Path("/proc/meminfo"), "MemTotal")
    memory = f"{int(mem_kib.split()[0]) / 2**20:.1f} GiB" if mem_kib else "unknown"
    os_name = _os_release() or platform.platform()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    return {
        "cpu": cpu,
        "cpu_features": _simd_features(),
        "cores": f"{usable_cores()} usable of {os.cpu_count()} logical",
        "memory": memory,
        "os": f"{os_name} ({platform.system()} {platform.release()}, {platform.machine()})",
        "load_average_at_start": load,
    }


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries the figures depend on."""
    import cv2
    import onnxruntime

    from edge_facenet import __version__

    found = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opencv": cv2.__version__,
        "edge_facenet": __version__,
    }
    for label, distribution in (("torch", "torch"), ("faiss", "faiss-cpu")):
        try:
            found[label] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            found[label] = "not installed"
    return found


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, or None where there is no such file."""
    field = _first_field(Path("/proc/meminfo"), "MemAvailable")
    return int(field.split()[0]) * 1024 if field else None


def _first_field(path: Path, key: str) -> str | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def _os_release() -> str | None:
    try:
        lines = Path("/etc/os-release").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition("=")
        if name == "PRETTY_NAME":
            return value.strip().strip('"')
    return None


def _simd_features() -> str:
    flags = (
        _first_field(Path("/proc/cpuinfo"), "flags") or _first_field(Path("/proc/cpuinfo"), "Features") or ""
    ).split()
    found = [flag for flag in SIMD_FLAGS if flag in flags]
    return ", ".join(found) or "none of " + ", ".join(SIMD_FLAGS)
