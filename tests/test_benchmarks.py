"""The benchmark suite (benchmarks/run.py) runs end to end and reports every figure; speed itself is not tested."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

# The smoke mode's gallery sizes (run.MODES["smoke"]): 500, 1000 and 2000 identities.
SMOKE_GALLERIES = ("500", "1k", "2k")


def expected_figure_keys(largest_gallery_variants: list[str]) -> list[str]:
    keys = []
    for engine in ("torch_eager", "ort_fp32", "ort_int8"):
        for threads in ("1", "all"):
            for batch in (1, 8, 32):
                key = f"embedder.{engine}.threads_{threads}.batch_{batch}"
                keys += [f"{key}.ms_per_face", f"{key}.faces_per_s"]
                keys += [f"{key}.vs_ort_fp32"] if engine != "ort_fp32" else []
    keys += ["detector.640x480.ms_per_frame", "detector.1280x720.ms_per_frame"]
    for faces in (1, 4, 8):
        keys += [f"identify.640x480.faces_{faces}.fps", f"identify.640x480.faces_{faces}.ms_per_frame"]
    keys += ["camera.640x480.faces_1.tracking.fps", "camera.640x480.faces_4.tracking.fps"]
    per_file = ("search_top5_ms", "load_s", "rss_growth_bytes", "peak_rss_growth_bytes")
    for size in SMOKE_GALLERIES:
        keys += [f"gallery.exact.{size}.{name}" for name in (*per_file, "matrix_bytes")]
    for variant in largest_gallery_variants:
        keys += [f"gallery.{variant}.{SMOKE_GALLERIES[-1]}.{name}" for name in per_file]
    if "ann" in largest_gallery_variants:
        keys.append(f"gallery.ann.{SMOKE_GALLERIES[-1]}.recall_at_1")
    keys += ["gallery.enroll.images_per_s", "process.runtime.cold_start_s", "process.runtime.peak_rss_bytes"]
    return keys


@pytest.mark.slow
def test_smoke_run_reports_every_figure(tmp_path, lfw_dir, detector_path):
    pytest.importorskip("torch")
    report = tmp_path / "RESULTS.md"
    command = [sys.executable, str(BENCHMARKS / "run.py"), "--smoke", "--json", "--output", str(report)]
    command += ["--lfw-dir", str(lfw_dir), "--detector", str(detector_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads(done.stdout)

    variants = [name for name in ("float16", "ann") if name not in payload["facts"]["gallery"]["variants_missing"]]
    figures = payload["figures"]
    for key in expected_figure_keys(variants):
        assert key in figures, key
        figure = figures[key]
        assert figure["value"] > 0, (key, figure)
        if figure["p10"] is not None:
            assert 0 < figure["p10"] <= figure["value"] <= figure["p90"], (key, figure)
    assert payload["checks"] == {"imports_torch": False, "imports_onnx": False}
    goals = {goal["key"]: goal for goal in payload["goals"]}
    assert goals["gallery.exact.1M.search_top5_ms"]["passed"] is None  # smoke mode builds no 1M gallery
    assert goals["identify.640x480.faces_1.fps"]["passed"] in (True, False)
    assert {"cpu", "cores", "memory", "os"} <= set(payload["machine"])
    assert {"python", "numpy", "onnxruntime", "opencv", "torch", "edge_facenet"} <= set(payload["versions"])

    text = report.read_text()
    assert "python benchmarks/run.py --smoke --json" in text
    for heading in ("## Machine", "## Versions", "## Goals", "## 1. Embedder", "## 2. Detector", "## 5. The runtime"):
        assert heading in text
    assert "PASS" in done.stderr or "FAIL" in done.stderr  # the goal lines go with the tables to stderr under --json


def test_missing_detector_is_one_line_and_exit_2(tmp_path, lfw_dir, capsys):
    import run

    assert run.main(["--smoke", "--lfw-dir", str(lfw_dir), "--detector", str(tmp_path / "none.onnx")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "none.onnx" in error
