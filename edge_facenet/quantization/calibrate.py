"""INT8 post-training calibration: an FP32 embedder in, an explicitly quantized (Q/DQ) ONNX model out.

The output is the one INT8 file for every target: ONNX Runtime runs it on the CPU (QLinearConv on VNNI cores) and
TensorRT 10/11 builds an INT8 engine from it (explicit quantization, the only INT8 path TensorRT 11 keeps). What the
two consumers need fixes the choices below:

- activations: int8, symmetric, per tensor (zero point 0); weights: int8, symmetric, per output channel (axis 0);
- biases stay float: an INT32 DequantizeLinear of a bias is rejected by TensorRT's ONNX parser;
- Q/DQ on the inputs and outputs of Conv and Gemm only. The L2 pooling (Mul, AveragePool, Sqrt), the final L2
  normalisation and the pooling/concatenation between convolutions stay float. Quantizing MaxPool, Concat and Relu as
  well measured slower on ONNX Runtime (1.27x instead of 1.58x over FP32 at batch 1) at equal accuracy;
- one Q/DQ pair per consumer ("dedicated" pairs). ONNX Runtime turns int8 Q/DQ into its fast uint8 kernels only where
  a QuantizeLinear has a single consumer; the runtime therefore also keeps its common-subexpression pass from merging
  the pairs again (:func:`edge_facenet.session.create_session`).

The faces are aligned crops preprocessed exactly as the runtime preprocesses them, drawn from identities the model is
not evaluated on; the record written beside the model lists each face with a hash so a calibration can be repeated.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import io
import json
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from os import PathLike
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization import CalibrationMethod as OrtCalibrationMethod
from onnxruntime.quantization.shape_inference import quant_pre_process

from edge_facenet import __version__
from edge_facenet._files import atomic_output, sha256_file
from edge_facenet.images import read_image
from edge_facenet.metadata import ModelMetadata, read_metadata
from edge_facenet.preprocess import blob_from_crops

logger = logging.getLogger(__name__)

QUANTIZED_OPS = ("Conv", "Gemm")
DEFAULT_NUM_FACES = 512
RECORD_SUFFIX = ".calibration.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
INT8_MAX = 127


class CalibrationMethod(str, enum.Enum):
    """How activation ranges are chosen from the calibration faces."""

    MINMAX = "minmax"  # the observed range: no clipping, coarsest steps
    # The range whose int8 histogram stays closest (KL divergence) to the float one. quantize_static gives ONNX
    # Runtime's entropy calibrator 128 histogram bins for 128 levels, which leaves nothing to clip: for nn4_small2
    # its ranges came out identical to minmax.
    ENTROPY = "entropy"
    PERCENTILE = "percentile"  # the 99.999th percentile of |x|: clips rare outliers (the default)

    def to_ort(self) -> OrtCalibrationMethod:
        return {
            CalibrationMethod.MINMAX: OrtCalibrationMethod.MinMax,
            CalibrationMethod.ENTROPY: OrtCalibrationMethod.Entropy,
            CalibrationMethod.PERCENTILE: OrtCalibrationMethod.Percentile,
        }[self]


@dataclass(frozen=True)
class CalibrationFace:
    """One face of a calibration set.

    Attributes:
        source: Where it came from (the photo a crops folder names, or the crop's file).
        identity: Whose face it is.
        sha256: sha256 of the crop's pixels (H x W x 3 BGR bytes), so the same crops can be checked later.
    """

    source: str
    identity: str
    sha256: str


@dataclass(frozen=True)
class CalibrationFaces:
    """Aligned crops for calibration and what they are.

    Attributes:
        crops: (N, H, W, 3) uint8 BGR crops.
        faces: One record per crop, in the same order.
    """

    crops: np.ndarray
    faces: list[CalibrationFace]


@dataclass(frozen=True)
class CalibrationResult:
    """What a calibration wrote.

    Attributes:
        path: The INT8 Q/DQ model.
        sha256: Its sha256.
        record_path: The JSON record beside it (faces with hashes, activation ranges, settings).
        metadata: The edge_facenet metadata of the INT8 model.
        method: The calibration method.
        faces: How many faces were used.
        ranges: Per quantized activation tensor: its scale and the float range it covers (``amax = 127 * scale``).
    """

    path: Path
    sha256: str
    record_path: Path
    metadata: ModelMetadata
    method: CalibrationMethod
    faces: int
    ranges: dict[str, dict[str, float]]


class CropCalibrationReader(CalibrationDataReader):
    """Feeds aligned crops to ONNX Runtime's calibrator in batches, preprocessed as the runtime does.

    Args:
        crops: (N, H, W, 3) uint8 BGR crops.
        metadata: The FP32 model's metadata (crop size, channel order, mean and std).
        input_name: The model's input tensor name.
        batch_size: Crops per calibration batch.
    """

    def __init__(self, crops: np.ndarray, metadata: ModelMetadata, input_name: str, batch_size: int = 16) -> None:
        self._crops = crops
        self._metadata = metadata
        self._input_name = input_name
        self._batch_size = batch_size
        self._start = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._start >= len(self._crops):
            return None
        batch = self._crops[self._start : self._start + self._batch_size]
        self._start += self._batch_size
        return {self._input_name: blob_from_crops(np.ascontiguousarray(batch), self._metadata)}

    def rewind(self) -> None:
        self._start = 0


def load_calibration_faces(
    faces_dir: str | PathLike[str],
    input_size: tuple[int, int],
    num_faces: int = DEFAULT_NUM_FACES,
    exclude_identities: Iterable[str] = (),
    seed: int = 0,
) -> CalibrationFaces:
    """Draw calibration faces from aligned crops, spread over identities.

    Identities are visited in a seeded random order, one face each per round, until ``num_faces`` are drawn.

    Args:
        faces_dir: A crops folder written by ``train/prepare.py`` (``crops.npy`` and ``manifest.tsv``), or a folder of
            aligned crop images (``identity/image.png``; the parent folder names the identity).
        input_size: (height, width) the crops must have: the model's input size.
        num_faces: How many faces to draw (all of them when fewer are available).
        exclude_identities: Identities the model is evaluated on, whose faces must not calibrate it.
        seed: Seed of the draw.

    Raises:
        FileNotFoundError: When the folder does not exist.
        ValueError: For crops of another size, an empty selection or a non-positive ``num_faces``.
    """
    faces_dir = Path(faces_dir)
    if num_faces < 1:
        raise ValueError(f"num_faces must be positive, got {num_faces}")
    if not faces_dir.is_dir():
        raise FileNotFoundError(f"calibration faces folder not found: {faces_dir}")
    if (faces_dir / "crops.npy").is_file():
        crops, sources, identities = _read_crops_folder(faces_dir)
    else:
        crops, sources, identities = _read_image_folder(faces_dir)
    if crops.shape[1:3] != tuple(input_size):
        raise ValueError(
            f"calibration crops in {faces_dir} are {crops.shape[2]}x{crops.shape[1]}, the model takes "
            f"{input_size[1]}x{input_size[0]}: align them for this model (train/prepare.py --model MODEL)"
        )

    excluded = set(exclude_identities)
    by_identity: dict[str, list[int]] = {}
    for index, identity in enumerate(identities):
        if identity not in excluded:
            by_identity.setdefault(identity, []).append(index)
    if not by_identity:
        raise ValueError(f"no calibration faces left in {faces_dir} after excluding {len(excluded)} identities")

    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(by_identity[name])) for name in sorted(by_identity)]
    queues = [queues[i] for i in rng.permutation(len(queues))]
    chosen: list[int] = []
    while len(chosen) < num_faces and any(queues):
        for queue in queues:
            if queue and len(chosen) < num_faces:
                chosen.append(int(queue.pop()))
    if len(chosen) < num_faces:
        logger.warning("only %d calibration faces available in %s (asked for %d)", len(chosen), faces_dir, num_faces)

    selected = np.ascontiguousarray(crops[chosen])
    faces = [
        CalibrationFace(sources[i], identities[i], hashlib.sha256(crop.tobytes()).hexdigest())
        for i, crop in zip(chosen, selected, strict=True)
    ]
    return CalibrationFaces(selected, faces)


def calibrate(
    model: str | PathLike[str],
    output: str | PathLike[str],
    faces: CalibrationFaces,
    method: CalibrationMethod | str = CalibrationMethod.PERCENTILE,
    batch_size: int = 16,
) -> CalibrationResult:
    """Quantize an FP32 embedder to INT8 Q/DQ with activation ranges from the calibration faces.

    Args:
        model: The FP32 ONNX embedder (with edge_facenet metadata).
        output: The INT8 ONNX file to write; the record goes beside it (``<output>.calibration.json``).
        faces: Aligned calibration crops (:func:`load_calibration_faces`).
        method: ``minmax``, ``entropy`` or ``percentile``.
        batch_size: Crops per calibration batch.

    Raises:
        FileNotFoundError: When the model does not exist.
        ValueError: For an unknown method, a model that is not FP32, or crops of the wrong size.
    """
    model, output = Path(model), Path(output)
    method = _method(method)
    metadata = read_metadata(model)
    if metadata.precision != "fp32":
        raise ValueError(f"{model} is already {metadata.precision}: calibrate the FP32 model")
    if tuple(faces.crops.shape[1:3]) != metadata.input_size:
        raise ValueError(f"calibration crops are {faces.crops.shape[1:3]}, the model takes {metadata.input_size}")
    float_model = onnx.load(str(model))
    (input_name,) = [
        i.name for i in float_model.graph.input if i.name not in {t.name for t in float_model.graph.initializer}
    ]

    with tempfile.TemporaryDirectory(prefix="edge_facenet_calibrate_") as workdir:
        # Shape inference and constant folding first, as ONNX Runtime's quantizer expects.
        prepared_path, quantized_path = Path(workdir) / "prepared.onnx", Path(workdir) / "int8.onnx"
        quant_pre_process(str(model), str(prepared_path))
        # ONNX Runtime's calibrators print their progress; keep standard output for the caller (--json).
        chatter = io.StringIO()
        with contextlib.redirect_stdout(chatter):
            quantize_static(
                str(prepared_path),
                str(quantized_path),
                CropCalibrationReader(faces.crops, metadata, input_name, batch_size),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method.to_ort(),
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QuantizeBias": False,
                    "DedicatedQDQPair": True,
                },
            )
        logger.debug("quantize_static said: %s", chatter.getvalue().strip())
        quantized = onnx.load(str(quantized_path))

    int8_metadata = replace(ModelMetadata.from_props(_props(float_model), source=str(model)), precision="int8")
    fp32_sha256 = sha256_file(model)
    _set_props(
        quantized,
        {
            **int8_metadata.to_props(),
            "calibration_method": method.value,
            "calibration_faces": str(len(faces.faces)),
            "fp32_sha256": fp32_sha256,
        },
    )
    onnx.checker.check_model(quantized)
    with atomic_output(output) as temporary:
        onnx.save(quantized, str(temporary))

    ranges = activation_ranges(quantized)
    record = {
        "producer": f"edge_facenet {__version__}",
        "model": output.name,
        "fp32_model": model.name,
        "fp32_sha256": fp32_sha256,
        "method": method.value,
        "quantized_ops": list(QUANTIZED_OPS),
        "faces": [asdict(face) for face in faces.faces],
        "ranges": ranges,
    }
    record_path = output.with_name(output.name + RECORD_SUFFIX)
    with atomic_output(record_path) as temporary:
        temporary.write_text(json.dumps(record, indent=1) + "\n")
    return CalibrationResult(
        path=output,
        sha256=sha256_file(output),
        record_path=record_path,
        metadata=int8_metadata,
        method=method,
        faces=len(faces.faces),
        ranges=ranges,
    )


def activation_ranges(model: onnx.ModelProto) -> dict[str, dict[str, float]]:
    """The calibrated range of each quantized activation, read back from its QuantizeLinear scale.

    Returns:
        Float tensor name -> ``{"scale": s, "amax": 127 * s}`` (the symmetric range ``[-amax, amax]``).
    """
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    constants.update({node.output[0]: node.attribute[0].t for node in model.graph.node if node.op_type == "Constant"})
    ranges = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in constants and node.input[1] in constants:
            scale = float(numpy_helper.to_array(constants[node.input[1]]).reshape(-1)[0])
            ranges[node.input[0]] = {"scale": scale, "amax": scale * INT8_MAX}
    return ranges


def _method(method: CalibrationMethod | str) -> CalibrationMethod:
    try:
        return CalibrationMethod(method)
    except ValueError:
        valid = ", ".join(m.value for m in CalibrationMethod)
        raise ValueError(f"unknown calibration method {method!r}; valid methods: {valid}") from None


def _props(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def _set_props(model: onnx.ModelProto, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def _read_crops_folder(folder: Path) -> tuple[np.ndarray, list[str], list[str]]:
    crops = np.load(folder / "crops.npy", mmap_mode="r")
    manifest = folder / "manifest.tsv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{folder} has crops.npy but no manifest.tsv (not a train/prepare.py folder?)")
    lines = manifest.read_text().splitlines()
    header = lines[0].split("\t")
    if "identity" not in header or "source" not in header:
        raise ValueError(f"{manifest} lacks identity/source columns")
    identity_column, source_column = header.index("identity"), header.index("source")
    rows = [line.split("\t") for line in lines[1:] if line]
    if len(rows) != len(crops):
        raise ValueError(f"{manifest} lists {len(rows)} crops, crops.npy holds {len(crops)}")
    return crops, [row[source_column] for row in rows], [row[identity_column] for row in rows]


def _read_image_folder(folder: Path) -> tuple[np.ndarray, list[str], list[str]]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{folder} has no crops.npy and no images ({', '.join(IMAGE_SUFFIXES)})")
    crops = []
    for path in paths:
        crops.append(read_image(path))
    shapes = {crop.shape for crop in crops}
    if len(shapes) != 1:
        raise ValueError(f"calibration crops in {folder} differ in size ({sorted(shapes)}): they must be aligned crops")
    sources = [str(path.relative_to(folder)) for path in paths]
    return np.stack(crops), sources, [path.parent.name for path in paths]
