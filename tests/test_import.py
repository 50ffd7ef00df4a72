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
        "try:\n"
        "    import edge_facenet.training\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'edge-facenet[train]'" in result.stdout
