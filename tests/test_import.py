"""The runtime package must import on a device that has no torch (and no onnx)."""

import subprocess
import sys


def test_import_leaves_torch_and_onnx_unimported():
    code = (
        "import sys, edge_facenet; "
        "heavy = sorted(m for m in ('torch', 'onnx', 'onnxscript') if m in sys.modules); "
        "assert not heavy, heavy; print(edge_facenet.__version__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().count(".") == 2


def test_training_package_names_the_extra_when_torch_is_missing():
    # Simulate a device without torch: a None entry in sys.modules makes `import torch` raise ImportError.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import edge_facenet.training.data, edge_facenet.training.augment  # crops and augmentation need no torch\n"
        "try:\n"
        "    from edge_facenet.training import build_model\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'edge-facenet[train]'" in result.stdout


def test_preparing_training_crops_runs_without_torch(tmp_path, lfw_dir, detector_path):
    images = tmp_path / "images"
    for person in ("Ann_Veneman", "Baz_Luhrmann"):
        (images / person).mkdir(parents=True)
        source = lfw_dir / "images" / person / f"{person}_0001.jpg"
        (images / person / source.name).write_bytes(source.read_bytes())
    code = (
        "import sys, runpy; sys.modules['torch'] = None\n"
        f"sys.argv = ['prepare.py', '--images', {str(images)!r}, '--out', {str(tmp_path / 'crops')!r}, "
        f"'--detector', {str(detector_path)!r}]\n"
        "runpy.run_path('train/prepare.py', run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "2 crops of 96x96" in result.stdout and (tmp_path / "crops" / "crops.npy").is_file()
