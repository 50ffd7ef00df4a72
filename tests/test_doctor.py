"""python -m edge_facenet.doctor: what this machine gives the runtime, without downloading or importing torch."""

import json
import subprocess
import sys

from edge_facenet.doctor import main, run_checks


def by_name(checks):
    return {check["name"]: check for check in checks}


def test_this_machine_can_run_the_runtime(detector_path, capsys):
    assert main(["--json", "--detector", str(detector_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    checks = by_name(report["checks"])
    assert report["ok"] is True
    assert checks["embedder"]["status"] == "ok" and "nn4_small2" in checks["embedder"]["detail"]
    assert "ms per face at batch 8" in checks["embedder"]["detail"]
    assert checks["detector"] == {"name": "detector", "status": "ok", "detail": str(detector_path)}
    assert checks["onnxruntime providers"]["status"] == "ok"
    assert checks["tensorrt"]["status"] in ("ok", "warn")


def test_a_missing_detector_is_a_warning_and_nothing_is_downloaded(monkeypatch):
    # conftest points the cache at an empty folder and clears $EDGE_FACENET_DETECTOR.
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(AssertionError("download")))
    checks = {check.name: check for check in run_checks()}
    assert checks["detector"].status == "warn" and "downloaded on first use" in checks["detector"].detail


def test_a_missing_model_fails_with_the_reason(tmp_path, detector_path, capsys):
    assert main(["--model", str(tmp_path / "absent.onnx"), "--detector", str(detector_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("FAIL") and "embedder model not found" in line for line in lines)
    assert lines[-1] == "1 failed"
    assert main(["--detector", str(tmp_path / "absent.onnx")]) == 1
    assert "FAIL  detector" in capsys.readouterr().out


def test_a_random_model_is_a_warning(random_model_path, detector_path):
    checks = {check.name: check for check in run_checks(str(random_model_path), str(detector_path))}
    assert checks["embedder"].status == "warn" and "RANDOM weights" in checks["embedder"].detail


def test_the_doctor_imports_neither_torch_nor_onnx(detector_path):
    code = (
        "import sys; from edge_facenet.doctor import run_checks; "
        f"run_checks(detector={str(detector_path)!r}); "
        "print(sorted(m for m in ('torch', 'onnx', 'faiss', 'tensorrt') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
