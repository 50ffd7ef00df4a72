"""Run a native TensorRT engine built by :mod:`edge_facenet.trt.build`: NCHW float32 blobs in, embeddings out.

CUDA memory and streams go through cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` before cuda-python
12.6.1) or, where it is absent, pycuda. Both sit behind the small private ``_CudaApi`` interface below.
"""

# TODO: written against the TensorRT 10/11 and cuda-python 12 docs; not yet run on a device (no TensorRT GPU to test)

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import TracebackType

import numpy as np

from edge_facenet._optional import require
from edge_facenet.metadata import ModelMetadata
from edge_facenet.trt.sidecar import REBUILD_HINT, EngineInfo, check_compatible, read_engine_info

logger = logging.getLogger(__name__)

CUDA_INSTALL_HINT = (
    "install cuda-python (pip install 'edge-facenet[tensorrt]'; on JetPack 6: pip install 'cuda-python>=12.6,<13') "
    "or pycuda"
)


@dataclass(frozen=True)
class GpuInfo:
    """A CUDA device as TensorRT engines care about it.

    Attributes:
        name: Device name, e.g. ``"Orin"``.
        compute_capability: ``"major.minor"``, e.g. ``"8.7"``.
    """

    name: str
    compute_capability: str


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of a CUDA device, through cuda-python or pycuda.

    Raises:
        ImportError: When neither cuda-python nor pycuda is installed.
        RuntimeError: When CUDA finds no such device.
    """
    return _load_cuda_api(device, make_current=False).device_info()


class _CudaApi:
    """The few CUDA calls the engine needs: device buffers, pinned host buffers, one stream."""

    name = "cuda"

    def device_info(self) -> GpuInfo:
        raise NotImplementedError

    def malloc(self, nbytes: int) -> int:
        raise NotImplementedError

    def free(self, pointer: int) -> None:
        raise NotImplementedError

    def host_empty(self, nbytes: int) -> np.ndarray:
        """A page-locked uint8 host array (async copies need page-locked memory)."""
        raise NotImplementedError

    def host_free(self, array: np.ndarray) -> None:
        raise NotImplementedError

    def copy_to_device(self, pointer: int, array: np.ndarray) -> None:
        raise NotImplementedError

    def copy_to_host(self, array: np.ndarray, pointer: int) -> None:
        raise NotImplementedError

    def stream_handle(self) -> int:
        raise NotImplementedError

    def synchronize(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _CudaPythonApi(_CudaApi):
    name = "cuda-python"

    def __init__(self, runtime, device: int, make_current: bool) -> None:
        self._rt = runtime
        self._device = device
        self._stream = None
        if make_current:
            self._check("cudaSetDevice", runtime.cudaSetDevice(device))

    def _check(self, call: str, result):
        error, values = result[0], result[1:]
        if error != self._rt.cudaError_t.cudaSuccess:
            try:
                name = self._rt.cudaGetErrorName(error)[1].decode()
            except Exception:  # the error name is a nicety; the call's failure is the message
                name = str(error)
            raise RuntimeError(f"{call} failed: {name}")
        return values[0] if len(values) == 1 else None

    def device_info(self) -> GpuInfo:
        properties = self._check("cudaGetDeviceProperties", self._rt.cudaGetDeviceProperties(self._device))
        name = bytes(properties.name).split(b"\0", 1)[0].decode(errors="replace").strip()
        return GpuInfo(name=name, compute_capability=f"{properties.major}.{properties.minor}")

    def malloc(self, nbytes: int) -> int:
        return int(self._check("cudaMalloc", self._rt.cudaMalloc(nbytes)))

    def free(self, pointer: int) -> None:
        self._check("cudaFree", self._rt.cudaFree(pointer))

    def host_empty(self, nbytes: int) -> np.ndarray:
        pointer = int(self._check("cudaMallocHost", self._rt.cudaMallocHost(nbytes)))
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(pointer))

    def host_free(self, array: np.ndarray) -> None:
        self._check("cudaFreeHost", self._rt.cudaFreeHost(array.ctypes.data))

    def copy_to_device(self, pointer: int, array: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        result = self._rt.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self._stream_object())
        self._check("cudaMemcpyAsync", result)

    def copy_to_host(self, array: np.ndarray, pointer: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        result = self._rt.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self._stream_object())
        self._check("cudaMemcpyAsync", result)

    def _stream_object(self):
        if self._stream is None:
            self._stream = self._check("cudaStreamCreate", self._rt.cudaStreamCreate())
        return self._stream

    def stream_handle(self) -> int:
        stream = self._stream_object()
        try:  # cuda-python >= 12.9.1 deprecates int(stream) in favour of get_cuda_native_handle
            from cuda.bindings.utils import get_cuda_native_handle
        except ImportError:
            return int(stream)
        return int(get_cuda_native_handle(stream))

    def synchronize(self) -> None:
        if self._stream is not None:
            self._check("cudaStreamSynchronize", self._rt.cudaStreamSynchronize(self._stream))

    def close(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            self._check("cudaStreamDestroy", self._rt.cudaStreamDestroy(stream))


class _PyCudaApi(_CudaApi):
    name = "pycuda"

    def __init__(self, driver, device: int, make_current: bool) -> None:
        self._cuda = driver
        try:
            driver.init()
            count = driver.Device.count()
        except driver.Error as error:
            raise RuntimeError(f"CUDA initialisation failed: {error}") from None
        if device >= count:
            raise RuntimeError(f"CUDA device {device} not found ({count} devices)")
        self._device = driver.Device(device)
        self._context = None
        if make_current:
            # TensorRT and the copies run in the current context: use the device's primary context, as the CUDA
            # runtime API (and so cuda-python, PyTorch, ONNX Runtime) does.
            self._context = self._device.retain_primary_context()
            self._context.push()
        self._allocations: dict[int, object] = {}
        self._stream = None

    def device_info(self) -> GpuInfo:
        major, minor = self._device.compute_capability()
        return GpuInfo(name=str(self._device.name()), compute_capability=f"{major}.{minor}")

    def malloc(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        self._allocations.pop(pointer).free()

    def host_empty(self, nbytes: int) -> np.ndarray:
        return self._cuda.pagelocked_empty(nbytes, np.uint8)

    def host_free(self, array: np.ndarray) -> None:
        array.base.free()

    def copy_to_device(self, pointer: int, array: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(pointer, array, self._stream_object())

    def copy_to_host(self, array: np.ndarray, pointer: int) -> None:
        self._cuda.memcpy_dtoh_async(array, pointer, self._stream_object())

    def _stream_object(self):
        if self._stream is None:
            self._stream = self._cuda.Stream()
        return self._stream

    def stream_handle(self) -> int:
        return int(self._stream_object().handle)

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def close(self) -> None:
        self._stream = None
        if self._context is not None:
            context, self._context = self._context, None
            context.pop()
            context.detach()


def _load_cuda_api(device: int = 0, make_current: bool = True) -> _CudaApi:
    runtime = None
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:  # cuda-python before 12.6.1
            from cuda import cudart as runtime
        except ImportError:
            runtime = None
    if runtime is not None:
        return _CudaPythonApi(runtime, device, make_current)
    try:
        import pycuda.driver as driver
    except ImportError:
        raise ImportError(f"TensorRT engines need CUDA from Python: {CUDA_INSTALL_HINT}") from None
    return _PyCudaApi(driver, device, make_current)


class TensorRTEngine:
    """A TensorRT engine built by ``export/build_engine.py``, with its sidecar, ready to embed batches.

    Args:
        engine_path: The ``.engine`` file; its sidecar ``<engine>.json`` must lie beside it.
        device: CUDA device index.

    One engine serves one thread at a time; with pycuda, the device's primary context is made current in the
    constructing thread.

    Raises:
        ImportError: When TensorRT, or both cuda-python and pycuda, are missing.
        FileNotFoundError: When the engine or its sidecar is missing.
        ValueError: When the engine was built for another TensorRT or GPU, or TensorRT cannot load it.

    Example:
        >>> with TensorRTEngine("nn4_small2.engine") as engine:  # doctest: +SKIP
        ...     embeddings = engine.run(blob)  # blob: (N, 3, 96, 96) float32
    """

    def __init__(self, engine_path: str | PathLike[str], device: int = 0) -> None:
        self._cuda: _CudaApi | None = None
        trt = require("tensorrt", "tensorrt")
        self.engine_path = Path(engine_path)
        if not self.engine_path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {self.engine_path}")
        self._info = read_engine_info(self.engine_path)
        self._metadata = self._info.model_metadata()

        self._cuda = _load_cuda_api(device)
        self._buffers: dict[str, int] = {}
        self._host: dict[str, np.ndarray] = {}
        self._capacity = 0
        try:
            gpu = self._cuda.device_info()
            check_compatible(self._info, trt.__version__, gpu.compute_capability, engine_path=self.engine_path)
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self._engine is None:
                raise ValueError(f"TensorRT {trt.__version__} could not load {self.engine_path}: {REBUILD_HINT}")
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise RuntimeError(f"TensorRT could not create an execution context for {self.engine_path}")
            self._bind_names(trt)
        except BaseException:
            cuda, self._cuda = self._cuda, None
            cuda.close()
            raise
        logger.info(
            "loaded %s: %s, TensorRT %s on %s via %s",
            self.engine_path,
            self._info.precision,
            trt.__version__,
            gpu.name,
            self._cuda.name,
        )

    def _bind_names(self, trt) -> None:
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [self._info.input_name] or self._info.output_name not in outputs:
            raise ValueError(
                f"{self.engine_path} has inputs {inputs} and outputs {outputs}, but its sidecar names "
                f"{self._info.input_name!r} and {self._info.output_name!r}: {REBUILD_HINT}"
            )
        width = tuple(self._engine.get_tensor_shape(self._info.output_name))[-1]
        if width != self._metadata.embedding_size:
            raise ValueError(
                f"{self.engine_path} outputs {width} values per face but its metadata says embedding_size "
                f"{self._metadata.embedding_size}: {REBUILD_HINT}"
            )
        self._outputs = outputs
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        low, _, high = self._engine.get_tensor_profile_shape(self._info.input_name, 0)
        self._batch_range = (int(low[0]), int(high[0]))

    @property
    def info(self) -> EngineInfo:
        """The engine's sidecar."""
        return self._info

    @property
    def metadata(self) -> ModelMetadata:
        """The embedder's metadata (input size, mean/std, embedding size, threshold)."""
        return self._metadata

    @property
    def max_batch(self) -> int:
        """Largest batch one :meth:`run` call accepts."""
        return self._batch_range[1]

    def run(self, blob: np.ndarray) -> np.ndarray:
        """Run the engine on one batch.

        Args:
            blob: (N, 3, H, W) float32 input, as :func:`edge_facenet.preprocess.blob_from_crops` makes it.

        Returns:
            (N, embedding_size) float32 embeddings.

        Raises:
            ValueError: When the blob's shape does not fit the engine or N is outside the engine's batch range.
            RuntimeError: When a CUDA call or TensorRT's execution fails.
        """
        if self._cuda is None:
            raise RuntimeError(f"{self.engine_path} is closed")
        height, width = self._metadata.input_size
        if not isinstance(blob, np.ndarray) or blob.dtype != np.float32 or blob.shape[1:] != (3, height, width):
            raise ValueError(
                f"expected a float32 blob of shape (N, 3, {height}, {width}), got "
                f"{getattr(blob, 'dtype', type(blob).__name__)} {getattr(blob, 'shape', '')}"
            )
        blob = np.ascontiguousarray(blob, dtype=self._dtypes[self._info.input_name])
        low, high = self._batch_range
        if not low <= blob.shape[0] <= high:
            raise ValueError(f"batch of {blob.shape[0]} is outside the engine's range {low}..{high}; split it")

        name_in = self._info.input_name
        if not self._context.set_input_shape(name_in, blob.shape):
            raise ValueError(f"TensorRT refused input shape {blob.shape} for {name_in!r}")
        shapes = {n: tuple(self._context.get_tensor_shape(n)) for n in self._outputs}
        self._reserve(blob.shape[0])

        host_in = self._host[name_in][: blob.nbytes].view(blob.dtype).reshape(blob.shape)
        np.copyto(host_in, blob)
        self._cuda.copy_to_device(self._buffers[name_in], host_in)
        for name, pointer in self._buffers.items():
            if not self._context.set_tensor_address(name, pointer):
                raise RuntimeError(f"TensorRT refused the device address of {name!r}")
        if not self._context.execute_async_v3(self._cuda.stream_handle()):
            raise RuntimeError(f"TensorRT execution of {self.engine_path} failed (see the TensorRT log)")
        name_out = self._info.output_name
        out_shape = shapes[name_out]
        out_bytes = int(np.prod(out_shape)) * self._dtypes[name_out].itemsize
        host_out = self._host[name_out][:out_bytes].view(self._dtypes[name_out]).reshape(out_shape)
        self._cuda.copy_to_host(host_out, self._buffers[name_out])
        self._cuda.synchronize()
        return np.array(host_out, dtype=np.float32)

    def _reserve(self, batch: int) -> None:
        # Buffers hold the largest batch seen so far; a larger one frees and reallocates them.
        if batch <= self._capacity:
            return
        self._release()
        height, width = self._metadata.input_size
        per_item = {self._info.input_name: 3 * height * width}
        for name in self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            per_item[name] = int(np.prod(shape[1:])) if shape else 1
        for name, count in per_item.items():
            nbytes = batch * count * self._dtypes[name].itemsize
            self._buffers[name] = self._cuda.malloc(nbytes)
            self._host[name] = self._cuda.host_empty(nbytes)
        self._capacity = batch

    def _release(self) -> None:
        for pointer in self._buffers.values():
            self._cuda.free(pointer)
        for array in self._host.values():
            self._cuda.host_free(array)
        self._buffers.clear()
        self._host.clear()
        self._capacity = 0

    def close(self) -> None:
        """Free the device and host buffers and the CUDA stream; the engine cannot run afterwards."""
        if self._cuda is None:
            return
        try:
            self._cuda.synchronize()
            self._release()
        finally:
            cuda, self._cuda = self._cuda, None
            self._context = None
            self._engine = None
            cuda.close()

    def __enter__(self) -> TensorRTEngine:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
