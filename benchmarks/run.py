"""The benchmark suite: embedder, detector, recognition, gallery and process figures on this machine, into RESULTS.md.

Usage (from the repository root):
    python benchmarks/run.py                 # full run, several minutes
    python benchmarks/run.py --quick         # fewer repeats, under five minutes on a 2-core CPU
    python benchmarks/run.py --json          # one JSON object with every figure on stdout (tables go to stderr)

Every figure is the median of repeated runs with its 10th-90th percentile range; variants compared with each other
take turns call by call in the same run. Tables are printed as each part finishes, then the goals (PASS/FAIL: a
missed goal never changes the exit status), and the whole report is written to benchmarks/RESULTS.md.
LFW and YuNet come from $EDGE_FACENET_SHARED (default ../shared) unless --lfw-dir / --detector say otherwise.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_camera import run_app, write_video
from bench_embedder import BATCH_SIZES, ENGINE_LABELS, ENGINES, measure_embedders
from bench_gallery import measure_enrolment, measure_gallery_sizes
from bench_process import run_child
from figures import LFW_DIR, YUNET, Figure, machine_info, rate, summarise, take_turns, versions
from report import Goal, Table, goal_line, median_cell, number, results_markdown, spread_cell
from scenes import compose_scene, lfw_photos

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
FRAME = (640, 480)
FACE_WIDTH = 120
MB = 1e6


@dataclass(frozen=True)
class Settings:
    """How much each part repeats; the presets below are the modes."""

    embed_repeats: int
    embed_warmup: int
    frame_repeats: int
    camera_frames: int
    camera_rounds: int
    gallery_sizes: tuple[int, ...]
    search_repeats: int
    load_runs: int
    recall_queries: int
    enrol_images: int
    process_runs: int
    build_budget_s: float | None


MODES = {
    "full": Settings(50, 10, 100, 300, 5, (10_000, 100_000, 1_000_000), 200, 5, 1000, 100, 7, None),
    "quick": Settings(10, 3, 25, 90, 3, (10_000, 100_000, 1_000_000), 30, 2, 200, 20, 3, 150.0),
    # A check that the suite runs end to end (tests/test_benchmarks.py): tiny galleries, figures not meaningful.
    "smoke": Settings(2, 1, 3, 6, 1, (500, 1000, 2000), 3, 1, 20, 2, 1, None),
}
GOALS = (
    Goal("identify() at 640x480 with one face", "identify.640x480.faces_1.fps", 60, True, "frames/s"),
    Goal("exact top-5 search in a 1M-identity gallery", "gallery.exact.1M.search_top5_ms", 50, False, "ms"),
    Goal("runtime peak RSS", "process.runtime.peak_rss_bytes", 200, False, "MB", scale=1 / MB),
)


@dataclass
class Part:
    """What one part of the suite measured: its figures, its table and facts about how (for the JSON)."""

    figures: dict[str, Figure]
    table: Table
    facts: dict[str, object] = field(default_factory=dict)


def embedder_part(args: argparse.Namespace, settings: Settings) -> Part:
    """1. Embedder ms/face and faces/s: PyTorch eager, ONNX Runtime FP32 and INT8, batch 1/8/32, 1 and all threads."""
    figures, facts = measure_embedders(args.lfw_dir, args.detector, settings.embed_repeats, settings.embed_warmup)
    columns = ["embedder", "threads", "batch", "ms/face", "p10-p90", "faces/s", "vs ORT FP32 (x faster)"]
    table = Table("1. Embedder (nn4_small2, 96x96 crops)", columns)
    for threads in ("1", "all"):
        for engine in ENGINES:
            for batch in BATCH_SIZES:
                key = f"embedder.{engine}.threads_{threads}.batch_{batch}"
                ratio = figures.get(f"{key}.vs_ort_fp32")
                per_face = figures[f"{key}.ms_per_face"]
                row = [ENGINE_LABELS[engine], threads if threads == "1" else f"all ({facts['threads_all']})"]
                row += [str(batch), median_cell(per_face), spread_cell(per_face)]
                row += [
                    median_cell(figures[f"{key}.faces_per_s"]),
                    "1 (reference)" if ratio is None else f"{ratio.value:.2f}",
                ]
                table.rows.append(row)
    table.notes += [
        f"Input: {facts['crops']}.",
        f"PyTorch eager: {facts['torch_weights']}; torch.inference_mode, {facts['torch_memory_format']} memory "
        "format (the faster in a short trial), torch threads set to match; preprocessing included for all three.",
        "ONNX Runtime: the package's edge_facenet/models/nn4_small2.onnx and nn4_small2_int8.onnx, CPU provider.",
        f"Within each thread setting the three take turns call by call; {facts['repeats']} timed calls per batch size.",
    ]
    return Part(figures, table, facts)


def detector_part(args: argparse.Namespace, settings: Settings, photos: list[Path]) -> Part:
    """2. Detector ms/frame on LFW scenes at 640x480 and 1280x720, the two sizes taking turns."""
    from edge_facenet.detector import FaceDetector

    detector = FaceDetector(args.detector)
    frames = {
        f"{w}x{h}": compose_scene(photos[:4], (w, h), FACE_WIDTH, seed=3)[0] for w, h in ((640, 480), (1280, 720))
    }
    timings = take_turns(
        {label: partial(detector.detect, frame) for label, frame in frames.items()}, settings.frame_repeats
    )
    table = Table(
        "2. Detector (YuNet 2023mar, ONNX Runtime, frames at their own size)",
        ["frame", "ms/frame", "p10-p90", "frames/s"],
    )
    for label, timing in timings.items():
        table.rows.append([label, median_cell(timing), spread_cell(timing), number(1000 / timing.value)])
    table.notes.append(f"LFW scenes (benchmarks/scenes.py): four {FACE_WIDTH} px faces pasted on a blurred background.")
    return Part({f"detector.{label}.ms_per_frame": timing for label, timing in timings.items()}, table)


def recognition_part(args: argparse.Namespace, settings: Settings, photos: list[Path], workdir: Path) -> Part:
    """3. identify() frames/s with 1, 4 and 8 faces, and the camera app's frames/s with tracking, at 640x480."""
    from edge_facenet.camera.app import CameraApp
    from edge_facenet.detector import FaceDetector
    from edge_facenet.recognizer import Recognizer

    recognizer = Recognizer(detector=FaceDetector(args.detector))
    for photo in photos:
        recognizer.enroll(photo.parent.name, [photo])
    frames = {count: compose_scene(photos[:count], FRAME, FACE_WIDTH, seed=2)[0] for count in (1, 4, 8)}
    found = {count: len(recognizer.identify(frame)) for count, frame in frames.items()}
    timings = take_turns(
        {count: partial(recognizer.identify, frame) for count, frame in frames.items()}, settings.frame_repeats
    )
    precision = recognizer.embedder.metadata.precision.upper()
    columns = ["measurement", "faces found / embedded", "ms/frame", "frames/s", "p10-p90 frames/s"]
    table = Table(f"3. Recognition at 640x480 (the default embedder here: {precision})", columns)
    figures: dict[str, Figure] = {}
    for count, timing in timings.items():
        fps = rate(timing, 1, "frames/s")
        figures[f"identify.640x480.faces_{count}.ms_per_frame"] = timing
        figures[f"identify.640x480.faces_{count}.fps"] = fps
        label = f"identify(), {count} face{'s' * (count > 1)}"
        table.rows.append([label, str(found[count]), median_cell(timing), median_cell(fps), spread_cell(fps)])

    videos = {count: workdir / f"camera_{count}.mp4" for count in (1, 4)}
    for count, video in videos.items():
        write_video(photos[:count], video, settings.camera_frames)
    runs: dict[int, list[tuple[float, int]]] = {count: [] for count in videos}
    for _ in range(settings.camera_rounds):
        for count, video in videos.items():
            runs[count].append(run_app(lambda: CameraApp(recognizer, tracking=True), video))
    for count, results in runs.items():
        fps = summarise([fps for fps, _ in results], "frames/s")
        figures[f"camera.640x480.faces_{count}.tracking.fps"] = fps
        embedded = f"{results[-1][1]} of {count * settings.camera_frames}"
        label = f"camera app, tracking, {count} face{'s' * (count > 1)}"
        table.rows.append([label, embedded, number(1000 / fps.value), median_cell(fps), spread_cell(fps)])
    table.notes += [
        f"identify(): LFW scenes with {FACE_WIDTH} px faces; the {len(photos)} pasted people are enrolled (one photo "
        f"each) so matching does real work; the frames take turns, {settings.frame_repeats} timed calls each.",
        f"Camera app: CameraApp over open_source() of a {settings.camera_frames}-frame 640x480 mp4 written like "
        "benchmarks/bench_camera.py (decode, detect, track, embed where needed, match; no drawing); median over "
        f"{settings.camera_rounds} rounds.",
    ]
    return Part(figures, table, {"precision": precision})


def gallery_part(args: argparse.Namespace, settings: Settings, workdir: Path, say: Callable[[str], None]) -> Part:
    """4. Exact top-5 search, memory and load time at each gallery size (float16 and ANN where Gallery has them)."""
    figures, facts = measure_gallery_sizes(
        workdir,
        settings.gallery_sizes,
        settings.search_repeats,
        settings.load_runs,
        settings.recall_queries,
        settings.build_budget_s,
        log=say,
    )
    enrolment = measure_enrolment(args.lfw_dir, args.detector, workdir, settings.enrol_images)
    figures["gallery.enroll.images_per_s"] = enrolment

    columns = ["search", "identities", "top-5 ms", "p10-p90", "matrix MB", "RSS growth MB", "peak growth MB"]
    columns += ["load s", "add + search ms, first", "later", "remove + search ms", "recall@1"]
    table = Table("4. Gallery (one synthetic unit vector per identity, 128-D)", columns)
    searched = [key.removesuffix(".search_top5_ms") for key in figures if key.endswith(".search_top5_ms")]
    for key in sorted(searched, key=_gallery_order):
        _, kind, label = key.split(".")
        search = figures[f"{key}.search_top5_ms"]
        row = [kind, label, median_cell(search), spread_cell(search)]
        row += [median_cell(figures.get(f"{key}.{name}"), 1 / MB) for name in ("matrix_bytes", "rss_growth_bytes")]
        row += [median_cell(figures[f"{key}.peak_rss_growth_bytes"], 1 / MB), median_cell(figures[f"{key}.load_s"])]
        row += [median_cell(figures.get(f"{key}.add_first_ms")), median_cell(figures.get(f"{key}.add_later_ms"))]
        row.append(median_cell(figures.get(f"{key}.remove_ms")))
        table.rows.append([*row, median_cell(figures.get(f"{key}.recall_at_1"))])
    accuracy = ", ".join(f"{label}: {value:.3f}" for label, value in facts["exact_accuracy"].items())
    table.notes += [
        "exact: Gallery.search, cosine over the whole float32 matrix; one query a call, k=5. Each gallery file is "
        f"opened in fresh processes ({settings.load_runs} per file): load = open + first search (file in the OS "
        "cache), RSS growth = resident memory after the load less before it, peak growth the same at ru_maxrss. "
        "Add + search: Gallery.add of one identity, then one search, which reads only the added row into the "
        "memory reserved for growth at load; the first of 8 calls, and the median of the 7 later ones. Remove + "
        "search: Gallery.remove of those 8, each followed by a search (the removal closes the gap in the loaded "
        "matrix), median; not timed with an IVF index, which a removal makes be built again.",
        "Galleries enrolled with Gallery.add_many. Queries: normalise(centre + noise) at cosine 0.8 to their "
        f"identity; exact top-1 named the right identity for {accuracy} of them.",
        "Enrolment through Recognizer.enroll (read, detect, align, embed, one SQLite write), one LFW photo a call: "
        f"{number(enrolment.value)} images/s ({spread_cell(enrolment)}).",
    ]
    table.notes += [f"{name} rows not measured: {reason}." for name, reason in facts["variants_missing"].items()]
    table.notes += [f"{label} gallery not measured: {reason}." for label, reason in facts["skipped"].items()]
    return Part(figures, table, facts)


def process_part(args: argparse.Namespace, settings: Settings, photos: list[Path], workdir: Path) -> Part:
    """5. Cold start to the first identify() result and peak RSS of a fresh runtime process; torch must stay out."""
    import cv2

    frame_path = workdir / "frame_640x480.png"
    cv2.imwrite(str(frame_path), compose_scene(photos[:1], FRAME, FACE_WIDTH, seed=2)[0])
    runs = [run_child(args.detector, frame_path) for _ in range(settings.process_runs)]
    cold = summarise([run["cold_start_s"] for run in runs], "s")
    peak = summarise([run["peak_rss_bytes"] for run in runs], "bytes")
    checks = {f"imports_{name}": any(run[f"imports_{name}"] for run in runs) for name in ("torch", "onnx")}
    table = Table("5. The runtime as a process", ["figure", "median", "p10-p90"])
    table.rows.append(["cold start to the first identify() result, s", median_cell(cold), spread_cell(cold)])
    table.rows.append(["peak RSS (ru_maxrss), MB", median_cell(peak, 1 / MB), spread_cell(peak, 1 / MB)])
    imported = ", ".join(name for name in ("torch", "onnx") if checks[f"imports_{name}"]) or "neither"
    table.rows.append(["torch or onnx imported by the runtime", imported, ""])
    table.notes.append(
        f"A fresh interpreter (benchmarks/bench_process.py, {settings.process_runs} runs): import edge_facenet, "
        f"Recognizer(detector=...) with the default embedder ({runs[0]['precision'].upper()}), read a 640x480 frame, "
        "one identify(); the clock starts when the parent launches it. 1 MB = 10^6 bytes throughout."
    )
    return Part({"process.runtime.cold_start_s": cold, "process.runtime.peak_rss_bytes": peak}, table, checks)


def _gallery_order(key: str) -> tuple[int, int]:
    _, kind, label = key.split(".")
    count = float(label.rstrip("kM")) * {"k": 1e3, "M": 1e6}.get(label[-1], 1)
    return (["exact", "float16", "ann"].index(kind) if kind in ("exact", "float16", "ann") else 9, int(count))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer repeats; under five minutes on a 2-core CPU")
    mode.add_argument(
        "--smoke", action="store_true", help="seconds-long check that every part runs (figures not meaningful)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object with every figure (tables: stderr)")
    parser.add_argument("--lfw-dir", type=Path, default=LFW_DIR, help="LFW folder holding images/")
    parser.add_argument("--detector", type=Path, default=YUNET, help="YuNet 2023mar ONNX file")
    parser.add_argument(
        "--output", type=Path, help=f"markdown report (default benchmarks/{RESULTS.name}; none for --smoke)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if not (args.lfw_dir / "images").is_dir():
        print(f"error: no LFW images in {args.lfw_dir} (set EDGE_FACENET_SHARED or --lfw-dir)", file=sys.stderr)
        return 2
    if not args.detector.is_file():
        print(f"error: YuNet model not found: {args.detector} (set EDGE_FACENET_SHARED or --detector)", file=sys.stderr)
        return 2
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    settings = MODES[mode]
    output = args.output or (None if args.smoke else RESULTS)

    def say(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    started = time.perf_counter()
    payload: dict[str, object] = {
        "command": shlex.join(["python", "benchmarks/run.py", *argv]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "mode": mode,
        "machine": machine_info(),
        "versions": versions(),
        "settings": asdict(settings),
    }
    say(f"edge_facenet benchmarks, {mode} mode: {payload['machine']['cpu']}, {payload['machine']['cores']}")
    photos = lfw_photos(args.lfw_dir, 8)
    parts: dict[str, Part] = {}
    with tempfile.TemporaryDirectory(prefix="edge_facenet_bench_") as directory:
        workdir = Path(directory)
        steps = {
            "embedder": lambda: embedder_part(args, settings),
            "detector": lambda: detector_part(args, settings, photos),
            "recognition": lambda: recognition_part(args, settings, photos, workdir),
            "gallery": lambda: gallery_part(args, settings, workdir, say),
            "process": lambda: process_part(args, settings, photos, workdir),
        }
        for name, step in steps.items():
            parts[name] = step()
            say(parts[name].table.text())

    figures = {key: figure for part in parts.values() for key, figure in part.figures.items()}
    goals = [goal.check(figures) for goal in GOALS]
    goal_lines = [goal_line(result, goal.unit) for result, goal in zip(goals, GOALS, strict=True)]
    say("\nGoals:\n" + "\n".join(f"  {line}" for line in goal_lines))
    payload.update(
        seconds=time.perf_counter() - started,
        figures={key: figure.to_dict() for key, figure in figures.items()},
        checks=parts["process"].facts,
        facts={name: part.facts for name, part in parts.items() if name != "process"},
        goals=goals,
    )
    if output is not None:
        output.write_text(results_markdown(payload, [part.table for part in parts.values()], goal_lines))
    written = f"report written to {output}" if output else "no report written (--smoke without --output)"
    say(f"\n{len(figures)} figures in {payload['seconds']:.0f} s; {written}")
    if args.json:
        print(json.dumps(payload, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
