"""Native TensorRT engines for the embedder: build them on the target device, describe them, run them.

- :mod:`edge_facenet.trt.sidecar`: the JSON file beside each engine (what built it, for which GPU, from which ONNX).
- :mod:`edge_facenet.trt.build`: ONNX to serialized engine with TensorRT's builder (``export/build_engine.py``).
- :mod:`edge_facenet.trt.runtime`: :class:`~edge_facenet.trt.runtime.TensorRTEngine`, batched inference on a GPU.

Nothing here imports TensorRT or CUDA at import time; they are imported where they are used.
"""
