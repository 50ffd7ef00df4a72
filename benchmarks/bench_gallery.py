"""Gallery at scale: top-5 search latency, memory and load time of one SQLite gallery file, in a fresh process.

Usage:
    python benchmarks/bench_gallery.py GALLERY.sqlite3 --queries QUERIES.npy [--repeats 50] [--option dtype=float16]

This is the per-file measurement benchmarks/run.py starts once per gallery (so memory figures are the gallery's
own): it opens the file, runs the first search (which loads the in-memory matrix), then times single top-5 queries
and prints one JSON object: ``load_s`` (open + first search), ``rss_growth_bytes`` and ``peak_rss_growth_bytes``
(resident memory after the load and at its peak, less the memory before opening), ``matrix_bytes`` (the in-memory
search matrix), ``search_ms`` (median, p10, p90), ``top1`` (the best identity of each query, for recall) and
``add_then_search_ms`` (one identity added, then one search, 8 times) and ``remove_then_search_ms`` (those 8
removed again, each followed by a search; not for an IVF index, which each removal makes be built again); the last
three are empty with --repeats 0.
The galleries are synthetic: one unit vector per identity (the identity's centre), and queries
``normalise(centre + noise)`` whose cosine with their own identity is about 0.8.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import Figure, available_memory_bytes, in_fresh_process, rate, summarise, take_turns
from scenes import lfw_photos

SYNTHETIC_FINGERPRINT = hashlib.sha256(b"edge_facenet benchmarks: synthetic gallery").hexdigest()
EMBEDDING_SIZE = 128
QUERY_COSINE = 0.8
ADD_REPEATS = 8  # identities added one at a time after the timed searches
BUILD_CHUNK = 100_000
# Gallery options other than the exact float32 default, measured at the largest size, and the Gallery() arguments
# that turn each on; one that fails (the IVF index without faiss) is reported in the facts and left out.
VARIANTS = {"float16": {"dtype": "float16"}, "ann": {"index": "ivf"}}


def size_label(count: int) -> str:
    """10000 -> "10k", 1000000 -> "1M"."""
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count % 1000 == 0:
        return f"{count // 1000}k"
    return str(count)


def build_gallery_file(path: Path, count: int, query_count: int, seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Write a gallery of ``count`` synthetic identities, one random unit vector each.

    Returns:
        Seconds the enrolment took, (Q, D) float32 queries near the centres of Q random identities, and their indices.
    """
    from edge_facenet.gallery import Gallery

    rng = np.random.default_rng(seed)
    query_ids = np.sort(rng.choice(count, size=min(query_count, count), replace=False))
    centres_of_queries = np.zeros((len(query_ids), EMBEDDING_SIZE), dtype=np.float32)
    seconds = 0.0
    with Gallery(path, SYNTHETIC_FINGERPRINT, EMBEDDING_SIZE) as gallery:
        for start in range(0, count, BUILD_CHUNK):
            stop = min(start + BUILD_CHUNK, count)
            centres = rng.standard_normal((stop - start, EMBEDDING_SIZE), dtype=np.float32)
            centres /= np.linalg.norm(centres, axis=1, keepdims=True)
            chosen = query_ids[(query_ids >= start) & (query_ids < stop)]
            centres_of_queries[np.searchsorted(query_ids, chosen)] = centres[chosen - start]
            names = [f"id{index:07d}" for index in range(start, stop)]
            began = time.perf_counter()
            gallery.add_many(names, centres)
            seconds += time.perf_counter() - began

    # |noise| = tan(arccos(0.8)) = 0.75 makes cos(centre, normalise(centre + noise)) = 0.8.
    sigma = np.tan(np.arccos(QUERY_COSINE)) / np.sqrt(EMBEDDING_SIZE)
    queries = centres_of_queries + rng.normal(0.0, sigma, centres_of_queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return seconds, queries, query_ids


def load_in_subprocess(
    path: Path, queries_path: Path, repeats: int, warmup: int, options: dict[str, str] | None = None
) -> dict[str, object]:
    """Run this file's measurement on one gallery file in a fresh interpreter and return its JSON."""
    command = [sys.executable, __file__, str(path), "--queries", str(queries_path), "--repeats", str(repeats)]
    command += ["--warmup", str(warmup)]
    for key, value in (options or {}).items():
        command += ["--option", f"{key}={value}"]
    done = subprocess.run(in_fresh_process(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"gallery measurement failed on {path.name} with {options or 'no options'}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_gallery_sizes(
    workdir: Path,
    sizes: tuple[int, ...],
    search_repeats: int,
    load_runs: int,
    query_count: int,
    build_budget_s: float | None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Figure], dict[str, object]]:
    """Exact top-5 search, memory and load time per gallery size; float16 and ANN rows at the largest size.

    Args:
        workdir: Where the gallery files go (each is deleted after use).
        sizes: Identity counts, ascending.
        search_repeats: Timed single-query searches per gallery.
        load_runs: Fresh processes per gallery file (load time and memory are their median).
        query_count: Queries for the timings and for recall.
        build_budget_s: Skip a size whose enrolment is predicted (from the previous size) to take longer.
        log: Where progress lines go.

    Returns:
        Figures keyed ``gallery.<exact|float16|ann>.<size>.<figure>``, and facts (sizes measured, skips, variants
        left out).
    """
    figures: dict[str, Figure] = {}
    skipped: dict[str, str] = {}
    missing: dict[str, str] = {}
    facts: dict[str, object] = {"skipped": skipped, "variants_missing": missing, "build_s": {}, "exact_accuracy": {}}
    seconds_per_identity = None
    for index, count in enumerate(sizes):
        label = size_label(count)
        reason = _reason_to_skip(count, seconds_per_identity, build_budget_s)
        if reason:
            skipped[label] = reason
            log(f"  gallery {label}: skipped, {reason}")
            continue

        path = workdir / f"gallery_{label}.sqlite3"
        build_s, queries, query_ids = build_gallery_file(path, count, query_count, seed=count)
        seconds_per_identity = build_s / count
        facts["build_s"][label] = round(build_s, 2)
        queries_path = workdir / f"queries_{label}.npy"
        np.save(queries_path, queries)

        kinds = {"exact": {}, **(VARIANTS if index == len(sizes) - 1 else {})}
        top1: dict[str, list[str]] = {}
        for kind, options in kinds.items():
            try:
                runs = [
                    load_in_subprocess(path, queries_path, search_repeats if run == 0 else 0, 3, options)
                    for run in range(load_runs)
                ]
            except RuntimeError as error:
                if kind == "exact":
                    raise
                missing[kind] = str(error)  # such as the IVF index without faiss: reported, not fatal
                log(f"  gallery {kind} {label}: {error}")
                continue
            key = f"gallery.{kind}.{label}"
            figures.update({f"{key}.{name}": figure for name, figure in _file_figures(runs).items()})
            top1[kind] = runs[0]["top1"]
            search, load = figures[f"{key}.search_top5_ms"].value, figures[f"{key}.load_s"].value
            growth = figures[f"{key}.rss_growth_bytes"].value / 2**20
            log(f"  gallery {kind} {label}: top-5 search {search:.2f} ms, load {load:.2f} s, RSS +{growth:.0f} MB")

        facts["exact_accuracy"][label] = _agreement(top1["exact"], [f"id{i:07d}" for i in query_ids])
        for kind in top1.keys() - {"exact"}:  # how often each variant's top-1 is exact search's top-1
            figures[f"gallery.{kind}.{label}.recall_at_1"] = Figure(_agreement(top1[kind], top1["exact"]), "of exact")
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            file.unlink(missing_ok=True)
    facts["sizes"] = [size_label(count) for count in sizes if size_label(count) not in skipped]
    return figures, facts


def _reason_to_skip(count: int, seconds_per_identity: float | None, build_budget_s: float | None) -> str | None:
    need = 3 * count * EMBEDDING_SIZE * 4 + 500 * 2**20
    available = available_memory_bytes()
    if available is not None and need > available:
        return f"needs about {need / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available"
    if build_budget_s is not None and seconds_per_identity is not None:
        predicted = seconds_per_identity * count
        if predicted > build_budget_s:
            return f"enrolling it would take about {predicted:.0f} s, over the {build_budget_s:.0f} s budget"
    return None


def _file_figures(runs: list[dict[str, object]]) -> dict[str, Figure]:
    search = runs[0]["search_ms"]
    figures = {
        "search_top5_ms": Figure(search["ms"], "ms", search["p10"], search["p90"]),
        "load_s": summarise([run["load_s"] for run in runs], "s"),
        "rss_growth_bytes": summarise([run["rss_growth_bytes"] for run in runs], "bytes"),
        "peak_rss_growth_bytes": summarise([run["peak_rss_growth_bytes"] for run in runs], "bytes"),
    }
    if runs[0].get("add_then_search_ms"):
        first, *later = runs[0]["add_then_search_ms"]
        figures["add_first_ms"] = Figure(first, "ms")
        figures["add_later_ms"] = summarise(later, "ms")
    if runs[0].get("remove_then_search_ms"):
        figures["remove_ms"] = summarise(runs[0]["remove_then_search_ms"], "ms")
    if runs[0]["matrix_bytes"]:
        figures["matrix_bytes"] = Figure(float(runs[0]["matrix_bytes"]), "bytes")
    return figures


def measure_enrolment(lfw_dir: Path, detector_path: Path, workdir: Path, images: int) -> Figure:
    """Images per second through ``Recognizer.enroll`` (read, detect, align, embed, one SQLite write), one per call."""
    from edge_facenet.detector import FaceDetector
    from edge_facenet.recognizer import Recognizer

    photos = lfw_photos(lfw_dir, images + 1, seed=7)
    recognizer = Recognizer(detector=FaceDetector(detector_path), gallery=workdir / "enrolment.sqlite3")
    recognizer.enroll("warm-up", [photos[0]])
    times = []
    for photo in photos[1:]:
        start = time.perf_counter()
        recognizer.enroll(photo.parent.name, [photo])
        times.append((time.perf_counter() - start) * 1000.0)
    recognizer.gallery.close()
    return rate(summarise(times, "ms"), 1, "images/s")


def _agreement(names: list[str], reference: list[str]) -> float:
    return float(np.mean([a == b for a, b in zip(names, reference, strict=True)]))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gallery", type=Path)
    parser.add_argument("--queries", type=Path, required=True, help=".npy of (Q, D) query embeddings")
    parser.add_argument("--repeats", type=int, default=50, help="timed top-5 searches (0: time the load only)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE passed to Gallery(), repeatable")
    parser.add_argument("--fingerprint", default=SYNTHETIC_FINGERPRINT)
    parser.add_argument("--embedding-size", type=int, default=EMBEDDING_SIZE)
    args = parser.parse_args(argv)
    options = dict(option.split("=", 1) for option in args.option)
    if not args.gallery.is_file():
        print(f"error: gallery file not found: {args.gallery}", file=sys.stderr)
        return 2

    from edge_facenet.gallery import Gallery

    queries = np.load(args.queries)
    rss_before = _rss_bytes()
    start = time.perf_counter()
    gallery = Gallery(args.gallery, args.fingerprint, args.embedding_size, **options)
    gallery.search(queries[0], k=5)
    load_s = time.perf_counter() - start
    rss_after = _rss_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    search = {"ms": 0.0, "p10": 0.0, "p90": 0.0}
    if args.repeats > 0:
        cycle = itertools.cycle(queries)
        timing = take_turns({"search": lambda: gallery.search(next(cycle), k=5)}, args.repeats, args.warmup)["search"]
        search = {"ms": timing.value, "p10": timing.p10, "p90": timing.p90}
    # The best identity of each query, for recall: only in the run that times searches, not in the repeated loads.
    top1 = []
    for first in range(0, len(queries) if args.repeats > 0 else 0, 32):
        top1 += [hits[0].name if hits else "" for hits in gallery.search(queries[first : first + 32], k=1)]
    # Enrolling while the gallery is in use: add one identity, then search (which reads only the added row); then
    # remove them again, one at a time, each followed by a search (the removal is applied to the loaded matrix).
    added, removed = [], []
    if args.repeats > 0:
        rng = np.random.default_rng(0)
        names = [f"benchmark-added-{step}" for step in range(ADD_REPEATS)]
        for name, query in zip(names, itertools.cycle(queries)):
            start = time.perf_counter()
            gallery.add(name, rng.standard_normal(args.embedding_size))
            gallery.search(query, k=5)
            added.append((time.perf_counter() - start) * 1000.0)
        rebuilds = options.get("index", "exact") != "exact"  # an IVF index is built again after each removal
        for name, query in zip(names, itertools.cycle(queries)):
            start = time.perf_counter()
            gallery.remove(name)
            if not rebuilds:
                gallery.search(query, k=5)
                removed.append((time.perf_counter() - start) * 1000.0)
    result = {
        "add_then_search_ms": added,
        "remove_then_search_ms": removed,
        "load_s": load_s,
        "rss_growth_bytes": rss_after - rss_before,
        "peak_rss_growth_bytes": max(0, peak - rss_before),
        "matrix_bytes": gallery.memory_bytes,
        "search_ms": search,
        "top1": top1,
    }
    gallery.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
