"""Embedder speed: PyTorch eager, ONNX Runtime FP32 and INT8 on the same aligned LFW crops, taking turns.

Used by benchmarks/run.py. The PyTorch model is nn4_small2 built by ``edge_facenet.training.build_model`` with random
weights: the same architecture as the shipped ONNX, so the same cost. Each embedder runs with one thread and with all
usable cores; within one thread setting the three take turns call by call, so ratios compare like with like.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from figures import Figure, rate, usable_cores
from scenes import lfw_photos

from edge_facenet.metadata import ModelMetadata

ENGINES = ("torch_eager", "ort_fp32", "ort_int8")
ENGINE_LABELS = {"torch_eager": "PyTorch eager", "ort_fp32": "ONNX Runtime FP32", "ort_int8": "ONNX Runtime INT8"}
BATCH_SIZES = (1, 8, 32)


def build_torch_model(metadata: ModelMetadata, channels_last: bool) -> object:
    """nn4_small2 (or the metadata's architecture) in PyTorch, random weights, eval mode, in the chosen layout."""
    import torch

    from edge_facenet.training import build_model

    model = build_model(metadata.arch, embedding_size=metadata.embedding_size).eval()
    return model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class TorchEmbedder:
    """A PyTorch model behind the runtime Embedder's ``embed(crops)`` call, with the same preprocessing.

    Args:
        model: From :func:`build_torch_model`.
        metadata: The ONNX model's metadata (input size, channel order, mean and std).
        threads: torch intra-op threads, set before a call when they differ.
        channels_last: Feed the input in the channels-last memory format (the model's layout).
    """

    def __init__(self, model: object, metadata: ModelMetadata, threads: int, channels_last: bool) -> None:
        import torch

        self._torch = torch
        self._format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model
        self.metadata = metadata
        self.threads = threads

    def embed(self, crops: np.ndarray) -> np.ndarray:
        from edge_facenet.preprocess import blob_from_crops

        torch = self._torch
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        blob = torch.from_numpy(blob_from_crops(crops, self.metadata)).contiguous(memory_format=self._format)
        with torch.inference_mode():
            return self.model(blob).numpy()


def aligned_crops(lfw_dir: Path, detector_path: Path, metadata: ModelMetadata, count: int) -> tuple[np.ndarray, int]:
    """Detect and align ``count`` LFW photos of different people; the fixed centre crop where no face is found.

    Returns:
        (count, height, width, 3) uint8 BGR crops, and how many came from a detected face.
    """
    import cv2

    from edge_facenet.aligner import FaceAligner
    from edge_facenet.detector import FaceDetector, central_face

    detector = FaceDetector(detector_path)
    aligner = FaceAligner.from_metadata(metadata)
    crops, detected = [], 0
    for photo in lfw_photos(lfw_dir, count, seed=11):
        image = cv2.imread(str(photo))
        face = central_face(detector.detect(image), image.shape[1], image.shape[0])
        if face is None:
            crops.append(aligner.centre_crop(image))
        else:
            crops.append(aligner.align(image, face.landmarks))
            detected += 1
    return np.stack(crops), detected


def prefers_channels_last(metadata: ModelMetadata, crops: np.ndarray, threads: int, calls: int = 4) -> bool:
    """Whether channels-last beats the default layout for this model here (a short trial at batch 8)."""
    best = {}
    for channels_last in (False, True):
        embedder = TorchEmbedder(build_torch_model(metadata, channels_last), metadata, threads, channels_last)
        embedder.embed(crops[:8])
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            embedder.embed(crops[:8])
            times.append(time.perf_counter() - start)
        best[channels_last] = min(times)
    return best[True] < best[False]


def measure_embedders(
    lfw_dir: Path, detector_path: Path, repeats: int, warmup: int
) -> tuple[dict[str, Figure], dict[str, object]]:
    """Time the three embedders at batch 1, 8 and 32, with one thread and with all usable cores.

    Returns:
        Figures keyed ``embedder.<engine>.threads_<1|all>.batch_<n>.<ms_per_face|faces_per_s|vs_ort_fp32>``, and
        facts about the run (crops, thread counts, memory format).
    """
    import torch

    from edge_facenet.embedder import DEFAULT_MODELS, Embedder
    from edge_facenet.metadata import read_metadata
    from edge_facenet.quantization.gate import speed_side_by_side

    metadata = read_metadata(DEFAULT_MODELS["fp32"])
    crops, detected = aligned_crops(lfw_dir, detector_path, metadata, max(BATCH_SIZES))
    all_threads = usable_cores()
    torch_threads_before = torch.get_num_threads()
    channels_last = prefers_channels_last(metadata, crops, all_threads)
    torch_model = build_torch_model(metadata, channels_last)

    figures: dict[str, Figure] = {}
    for label, threads in (("1", 1), ("all", all_threads)):
        embedders = {
            "torch_eager": TorchEmbedder(torch_model, metadata, threads, channels_last),
            "ort_fp32": Embedder(DEFAULT_MODELS["fp32"], backend="onnxruntime", precision="fp32", threads=threads),
            "ort_int8": Embedder(DEFAULT_MODELS["int8"], backend="onnxruntime", precision="int8", threads=threads),
        }
        timings = speed_side_by_side(embedders, crops, BATCH_SIZES, repeats=repeats, warmup=warmup)
        for engine in ENGINES:
            for batch in BATCH_SIZES:
                timing = timings[engine][batch]
                per_face = Figure(timing["ms_per_face"], "ms/face", timing["p10"], timing["p90"])
                key = f"embedder.{engine}.threads_{label}.batch_{batch}"
                figures[f"{key}.ms_per_face"] = per_face
                figures[f"{key}.faces_per_s"] = rate(per_face, 1, "faces/s")
                if engine != "ort_fp32":
                    reference = timings["ort_fp32"][batch]["ms_per_face"]
                    figures[f"{key}.vs_ort_fp32"] = Figure(reference / per_face.value, "x")
    torch.set_num_threads(torch_threads_before)

    facts = {
        "crops": f"{len(crops)} real LFW photos of different people, aligned with FaceDetector + FaceAligner "
        + ("(all detected)" if detected == len(crops) else f"({len(crops) - detected} undetected: fixed centre crop)"),
        "threads_all": all_threads,
        "torch_memory_format": "channels_last" if channels_last else "contiguous",
        "torch_weights": "random (build_model('nn4_small2')): same architecture as the shipped ONNX, same cost",
        "repeats": repeats,
    }
    return figures, facts
