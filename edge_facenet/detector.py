"""Face detection with YuNet: boxes, five landmarks and a score for every face in a BGR frame."""

from __future__ import annotations

import logging
from os import PathLike

import cv2
import numpy as np

from edge_facenet._frames import as_bgr
from edge_facenet._onnx_proto import make_dims_symbolic
from edge_facenet.resolve import YUNET_2023MAR, resolve_model_file
from edge_facenet.session import create_session
from edge_facenet.types import Face

logger = logging.getLogger(__name__)

STRIDES = (8, 16, 32)
BACKENDS = ("onnxruntime", "opencv")
# Detection memory and time grow with the frame's pixels: a 10000x10000 photo took 5.1 GB and 11 s at its own size on
# the development machine (and YuNet missed its 1000-pixel face), 0.8 s shrunk to 4096. Larger frames are shrunk to
# this longest side; 4K video (3840x2160) still runs at its own size.
MAX_DETECT_SIDE = 4096


class FaceDetector:
    """YuNet face detector (2023mar) returning boxes, five landmarks and scores.

    The default backend runs the ONNX model in ONNX Runtime (the session type the embedder uses too) and decodes
    YuNet's grid outputs here; ``backend="opencv"`` uses ``cv2.FaceDetectorYN`` instead (1.4-1.6x slower on the
    development machine). With ``max_side`` set, larger frames are shrunk for detection and the results mapped back
    to frame pixels. That is much faster but not free: on 1280x720 scenes, ``max_side=640`` took 8.3 ms instead of
    29 ms and found 95 % of 96-pixel faces but only 60 % of 64-pixel ones (at native size: 100 % of 64-pixel and
    97 % of 48-pixel faces). So the default detects at the frame's own size; shrink when the faces you need are large.

    Args:
        model: YuNet ONNX file; None resolves it (``$EDGE_FACENET_DETECTOR``, the cache, then a verified download).
        score_threshold: Minimum face score in 0..1.
        nms_threshold: IoU above which the weaker of two overlapping boxes is dropped.
        top_k: Most faces returned per frame.
        max_side: Longest side of the image the network sees, 32 to ``MAX_DETECT_SIDE`` (4096); None (default) detects
            at the frame's own size up to 4096 pixels, and shrinks larger frames to that.
        backend: ``"onnxruntime"`` or ``"opencv"``.
        providers: ONNX Runtime execution providers (default: CPU).
        threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice).

    Raises:
        FileNotFoundError: When the model file cannot be found or fetched.
        ValueError: For an unknown backend, out-of-range settings, or a file that is not the YuNet ONNX model.
    """

    def __init__(
        self,
        model: str | PathLike[str] | None = None,
        *,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 50,
        max_side: int | None = None,
        backend: str = "onnxruntime",
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown detector backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
        if not (0.0 <= score_threshold <= 1.0 and 0.0 < nms_threshold <= 1.0):
            raise ValueError(
                f"score_threshold must be in [0, 1] and nms_threshold in (0, 1], got {score_threshold}, {nms_threshold}"
            )
        if max_side is not None and not 32 <= max_side <= MAX_DETECT_SIDE:
            raise ValueError(f"max_side must be 32 to {MAX_DETECT_SIDE} pixels or None, got {max_side}")
        self.model_path = resolve_model_file(YUNET_2023MAR, model)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.max_side = max_side
        self.backend = backend

        # Relaxing the input's shape also checks, for either backend, that the file is a model with YuNet's inputs
        # and outputs.
        dims = {"input": {2: "height", 3: "width"}}
        dims.update(
            {f"{kind}_{stride}": {1: f"cells_{stride}"} for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES}
        )
        try:
            model_bytes = make_dims_symbolic(self.model_path.read_bytes(), dims)
        except ValueError as error:
            raise ValueError(f"{self.model_path} is not the YuNet ONNX model: {error}") from None
        if backend == "onnxruntime":
            self._session = create_session(model_bytes, providers=providers, threads=threads)
            self._output_names = [f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES]
        else:
            try:
                self._opencv = cv2.FaceDetectorYN.create(
                    str(self.model_path), "", (320, 320), score_threshold, nms_threshold, top_k
                )
            except cv2.error as error:
                reason = str(error).strip().splitlines()[-1]
                raise ValueError(f"OpenCV cannot load {self.model_path}: {reason}") from None

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Find the faces in a frame.

        Args:
            frame: BGR uint8 (H, W, 3); greyscale (H, W) and BGRA (H, W, 4) are converted.

        Returns:
            Faces sorted by score, best first; an empty list when there are none.

        Raises:
            ValueError: When the frame is not an 8-bit image.
        """
        frame = as_bgr(frame)
        height, width = frame.shape[:2]
        scale = 1.0
        limit = self.max_side or MAX_DETECT_SIDE
        if max(height, width) > limit:
            scale = limit / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

        if self.backend == "onnxruntime":
            boxes, landmarks, scores = self._run_onnxruntime(frame)
        else:
            boxes, landmarks, scores = self._run_opencv(frame)

        if scale != 1.0:
            sx, sy = width / frame.shape[1], height / frame.shape[0]
            boxes = boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
            landmarks = landmarks * np.array([sx, sy], dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        return [Face(bbox=boxes[i], landmarks=landmarks[i], det_score=float(scores[i])) for i in order]

    def _run_onnxruntime(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # YuNet takes raw BGR values (0..255) and a size divisible by 32: zero-pad bottom and right.
        height, width = frame.shape[:2]
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        blob[0, :, :height, :width] = frame.transpose(2, 0, 1)
        outputs = self._session.run(self._output_names, {"input": blob})

        boxes, landmarks, scores = [], [], []
        for level, stride in enumerate(STRIDES):
            cls, obj, bbox, kps = (outputs[level + 3 * part][0] for part in range(4))
            score = np.sqrt(np.clip(cls[:, 0], 0.0, 1.0) * np.clip(obj[:, 0], 0.0, 1.0))
            keep = np.flatnonzero(score >= self.score_threshold)
            if keep.size == 0:
                continue
            cols = padded_w // stride
            cells = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)  # (c, r) of each kept cell
            centre = (cells + bbox[keep, :2]) * stride
            size = np.exp(bbox[keep, 2:4]) * stride
            boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
            landmarks.append((kps[keep].reshape(-1, 5, 2) + cells[:, None, :]) * stride)
            scores.append(score[keep])
        if not scores:
            return _no_faces()
        boxes_all, landmarks_all, scores_all = np.concatenate(boxes), np.concatenate(landmarks), np.concatenate(scores)

        xywh = np.concatenate([boxes_all[:, :2], boxes_all[:, 2:] - boxes_all[:, :2]], axis=1)
        kept = cv2.dnn.NMSBoxes(
            xywh.tolist(), scores_all.tolist(), self.score_threshold, self.nms_threshold, top_k=self.top_k
        )
        kept = np.asarray(kept, dtype=np.int64).reshape(-1)
        return (
            boxes_all[kept].astype(np.float32),
            landmarks_all[kept].astype(np.float32),
            scores_all[kept].astype(np.float32),
        )

    def _run_opencv(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._opencv.setInputSize((frame.shape[1], frame.shape[0]))
        _, faces = self._opencv.detect(frame)
        if faces is None or len(faces) == 0:
            return _no_faces()
        boxes = np.concatenate([faces[:, 0:2], faces[:, 0:2] + faces[:, 2:4]], axis=1)
        return (
            boxes.astype(np.float32),
            faces[:, 4:14].reshape(-1, 5, 2).astype(np.float32),
            faces[:, 14].astype(np.float32),
        )


def _no_faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros((0,), np.float32)


def central_face(faces: list[Face], width: int, height: int) -> Face | None:
    """The face whose box centre is nearest the centre of a ``width`` x ``height`` image; None when there is none.

    Photos framed around one person (LFW, the CelebA crops, enrolment photos) label that person this way, also when
    a more confident face stands in the background. Evaluation and training-crop preparation both use this rule.
    """
    if not faces:
        return None
    centre = np.array([width, height], dtype=np.float32) / 2
    return min(faces, key=lambda face: float(np.linalg.norm((face.bbox[:2] + face.bbox[2:]) / 2 - centre)))
