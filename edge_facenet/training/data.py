"""Training data: identity-labelled photo folders turned into aligned face crops, and the dataset that serves them.

:func:`prepare_crops` detects and aligns every photo of ``images_dir/<identity>/<image>`` once, exactly as the LFW
evaluation does (the face nearest the image centre, aligned to the embedder's template; the fixed centre crop where
YuNet finds no face), and writes a crops folder:

- ``crops.npy``: (N, H, W, 3) uint8 BGR crops, a plain ``.npy`` file that :class:`CropDataset` memory-maps.
- ``manifest.tsv``: one row per crop: index, identity, source (``Name/file.jpg``, relative to ``images_dir``),
  method (``detected`` or ``centre``), det_score and the ten landmark coordinates in source pixels (``nan`` for a
  centre crop).
- ``meta.json``: alignment template, crop size, detector file and settings, ``images_dir``, counts, failures.

Crops are appended as they are made, so a run that stops (killed, or an exception) is resumed by running it again:
finished images are kept and only the rest are detected.

This module needs numpy and OpenCV only.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from edge_facenet._files import atomic_output, sha256_file
from edge_facenet.aligner import FaceAligner
from edge_facenet.detector import FaceDetector, central_face
from edge_facenet.images import decode_image
from edge_facenet.lfw import read_people_folds
from edge_facenet.templates import LANDMARK_NAMES
from edge_facenet.types import Face

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CROPS_FILE = "crops.npy"
MANIFEST_FILE = "manifest.tsv"
META_FILE = "meta.json"
FORMAT_VERSION = 1
MANIFEST_COLUMNS = (
    "index",
    "identity",
    "source",
    "method",
    "det_score",
    *(f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y")),
)

# The crops file has a fixed 128-byte .npy (version 1.0) header, so the crop count can be rewritten in place while
# crops are appended behind it.
_NPY_HEADER_BYTES = 128
_MANIFEST_HEADER = "\t".join(MANIFEST_COLUMNS)


@dataclass(frozen=True)
class PrepareReport:
    """What :func:`prepare_crops` did.

    Attributes:
        written: Crops made in this run.
        skipped_existing: Crops found from an earlier run and kept (their images were not read again).
        detected: Crops of the whole folder aligned on a detected face.
        centre_crops: Crops of the whole folder that are the fixed centre crop (no face found).
        failed: (source path relative to ``images_dir``, one-line reason) of the files that could not be read.
    """

    written: int
    skipped_existing: int
    detected: int
    centre_crops: int
    failed: tuple[tuple[str, str], ...]


def prepare_crops(
    images_dir: str | PathLike[str],
    out_dir: str | PathLike[str],
    detector: FaceDetector,
    aligner: FaceAligner,
    progress: bool = True,
) -> PrepareReport:
    """Detect, align and store the labelled face of every image in ``images_dir/<identity>/``, resumably.

    Args:
        images_dir: Folder of identity folders (jpg, jpeg, png, bmp or webp; hidden files are ignored).
        out_dir: Crops folder to create, or to resume when an earlier run made it with the same settings.
        detector: The runtime's face detector.
        aligner: The aligner of the embedder to be trained (template and crop size).
        progress: Show a progress bar.

    Returns:
        Counts, and the files that could not be read (logged too; they never stop the run).

    Raises:
        FileNotFoundError: When ``images_dir`` does not exist.
        ValueError: When it holds no images, or ``out_dir`` holds crops made with other settings.
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    sources = _list_sources(images_dir)
    settings = _settings(detector, aligner)
    _start_meta(out_dir, settings, images_dir)

    failed: list[tuple[str, str]] = []
    with _CropWriter(out_dir, aligner.size) as writer:
        skipped = len(writer.sources)
        pending = [source for source in sources if source not in writer.sources]
        for source in _progress(pending, progress):
            image, reason = _read_image(images_dir, source)
            if image is None:
                logger.warning("skipping %s: %s", source, reason)
                failed.append((source, reason))
                continue
            face = central_face(detector.detect(image), image.shape[1], image.shape[0])
            crop = aligner.centre_crop(image) if face is None else aligner.align(image, face.landmarks)
            writer.append(crop, source, face)
        methods, identities = writer.methods, len(writer.identities)

    report = PrepareReport(
        written=len(methods) - skipped,
        skipped_existing=skipped,
        detected=methods.count("detected"),
        centre_crops=methods.count("centre"),
        failed=tuple(failed),
    )
    counts = {
        "crops": len(methods),
        "identities": identities,
        "detected": report.detected,
        "centre_crops": report.centre_crops,
        "failed": len(failed),
    }
    meta = {**settings, "images_dir": str(images_dir.resolve()), "complete": True, "counts": counts}
    _write_meta(out_dir, {**meta, "failed": [list(failure) for failure in failed]})
    logger.info("%s: %d crops (%d new), %d unreadable files", out_dir, len(methods), report.written, len(failed))
    return report


@dataclass(frozen=True, eq=False)
class CropDataset:
    """Aligned training crops with identity labels.

    Attributes:
        crops: (N, H, W, 3) uint8 BGR crops; memory-mapped after :meth:`load`, in memory after :meth:`subset` or
            :meth:`concatenate`.
        labels: (N,) int64 index into ``identities``.
        identities: Identity names; every one has at least one crop.
        sources: Source image of each crop, relative to the images folder (``Name/file.jpg``).
        detected: (N,) bool, False where the fixed centre crop stood in for a detection.
        template: Name of the alignment template.
        input_size: (height, width) of the crops.
    """

    crops: np.ndarray
    labels: np.ndarray
    identities: list[str]
    sources: list[str]
    detected: np.ndarray
    template: str
    input_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> CropDataset:
        """Open a crops folder written by :func:`prepare_crops`, memory-mapping its crops.

        Raises:
            FileNotFoundError: When the folder or one of its three files is missing.
            ValueError: When the preparation did not finish or the files disagree with each other.
        """
        path = Path(path)
        for name in (META_FILE, MANIFEST_FILE, CROPS_FILE):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name} not found; make the crops folder with train/prepare.py")
        meta = _read_meta(path)
        if not meta.get("complete"):
            raise ValueError(f"{path}: the crop preparation did not finish; run train/prepare.py again to complete it")
        rows, partial = _read_manifest(path / MANIFEST_FILE)
        crops = np.load(path / CROPS_FILE, mmap_mode="r")
        height, width = meta["crop_size"]
        if partial or crops.dtype != np.uint8 or crops.shape != (len(rows), height, width, 3):
            raise ValueError(
                f"{path}: expected {len(rows)} uint8 crops of {height}x{width}x3 as the manifest lists, "
                f"found a {crops.dtype} array of shape {crops.shape}; prepare the folder again"
            )
        identities = sorted({row[1] for row in rows})
        label_of = {name: label for label, name in enumerate(identities)}
        return cls(
            crops=crops,
            labels=np.array([label_of[row[1]] for row in rows], dtype=np.int64),
            identities=identities,
            sources=[row[2] for row in rows],
            detected=np.array([row[3] == "detected" for row in rows], dtype=bool),
            template=meta["template"],
            input_size=(height, width),
        )

    @staticmethod
    def concatenate(datasets: Sequence[CropDataset]) -> CropDataset:
        """Join datasets of distinct people (e.g. LFW and CelebA) into one; crops are copied into memory.

        Raises:
            ValueError: When there are no datasets, templates or crop sizes differ, or an identity name is in two.
        """
        if not datasets:
            raise ValueError("concatenate needs at least one CropDataset, got none")
        first = datasets[0]
        for other in datasets[1:]:
            if (other.template, other.input_size) != (first.template, first.input_size):
                raise ValueError(
                    f"cannot concatenate crops of template {first.template!r} {first.input_size} with crops of "
                    f"template {other.template!r} {other.input_size}"
                )
        names = [name for dataset in datasets for name in dataset.identities]
        repeated = sorted(name for name, count in Counter(names).items() if count > 1)
        if repeated:
            raise ValueError(f"identity names must be distinct across datasets; repeated: {', '.join(repeated[:5])}")
        offsets = np.cumsum([0] + [len(dataset.identities) for dataset in datasets[:-1]])
        return CropDataset(
            crops=np.concatenate([dataset.crops for dataset in datasets]),
            labels=np.concatenate([dataset.labels + offset for dataset, offset in zip(datasets, offsets, strict=True)]),
            identities=names,
            sources=[source for dataset in datasets for source in dataset.sources],
            detected=np.concatenate([dataset.detected for dataset in datasets]),
            template=first.template,
            input_size=first.input_size,
        )

    def subset(self, indices: Sequence[int] | np.ndarray) -> CropDataset:
        """The crops at ``indices`` (or where a boolean mask is True), labels renumbered 0..K-1 in identity order.

        Raises:
            TypeError: When the indices are neither integers nor a boolean mask.
            ValueError: When an index is out of range or a mask has the wrong length.
        """
        index = np.asarray(indices)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise ValueError(f"a boolean mask must have shape ({len(self)},), got {index.shape}")
            index = np.flatnonzero(index)
        elif index.size == 0:
            index = index.astype(np.int64)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise TypeError(
                f"indices must be a 1-D sequence of integers or a boolean mask, got {index.dtype} {index.shape}"
            )
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise ValueError(f"indices must lie in 0..{len(self) - 1}, got {index.min()}..{index.max()}")

        kept = np.unique(self.labels[index])
        relabel = np.full(len(self.identities), -1, dtype=np.int64)
        relabel[kept] = np.arange(len(kept))
        return CropDataset(
            crops=self.crops[index],
            labels=relabel[self.labels[index]],
            identities=[self.identities[label] for label in kept],
            sources=[self.sources[i] for i in index],
            detected=self.detected[index],
            template=self.template,
            input_size=self.input_size,
        )

    def without_identities(self, names: Iterable[str]) -> CropDataset:
        """The crops of every identity except ``names`` (names the dataset lacks are ignored).

        Raises:
            TypeError: When ``names`` is a single string instead of a collection of names.
        """
        if isinstance(names, str):
            raise TypeError(f"names must be a collection of identity names, got the single string {names!r}")
        dropped = set(names)
        keep = np.array([name not in dropped for name in self.identities], dtype=bool)
        return self.subset(keep[self.labels])


def lfw_fold_people(people_txt: str | PathLike[str], folds: Iterable[int]) -> set[str]:
    """Names of the people in the given folds (1-based) of LFW's ``people.txt``.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the file is malformed or a fold is not in it.
    """
    fold_of = read_people_folds(people_txt)
    wanted = set(folds)
    unknown = sorted(wanted - set(fold_of.values()), key=repr)
    if unknown:
        raise ValueError(f"{people_txt} has folds {min(fold_of.values())}-{max(fold_of.values())}, not {unknown}")
    return {name for name, fold in fold_of.items() if fold in wanted}


def celeba_possible_lfw(lfw_nearest_tsv: str | PathLike[str], max_distance: float = 0.40) -> set[str]:
    """CelebA identities whose mean dlib embedding lies within ``max_distance`` of some LFW person's.

    Leave them out of training when a model's LFW figure is quoted (see the celeba299 README). The file gives
    distances to three decimals, so the bound is inclusive: the README's 29 identities below 0.40 include two
    listed as 0.400.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When a line is malformed or ``max_distance`` is negative.
    """
    path = Path(lfw_nearest_tsv)
    if not (math.isfinite(max_distance) and max_distance >= 0):
        raise ValueError(f"max_distance must be a non-negative distance, got {max_distance}")
    if not path.is_file():
        raise FileNotFoundError(f"CelebA-LFW distance file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("celeba_identity\t"):
        raise ValueError(f"{path}:1: expected the header 'celeba_identity<TAB>nearest_lfw_person<TAB>distance...'")
    possible = set()
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        try:
            distance = float(fields[2])
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{number}: expected 'identity<TAB>person<TAB>distance', got {line!r}") from None
        if distance <= max_distance:
            possible.add(fields[0])
    return possible


class _CropWriter:
    """Appends crops to ``crops.npy`` and rows to ``manifest.tsv``; on entry, trims them to their common length."""

    def __init__(self, out_dir: Path, size: tuple[int, int]) -> None:
        self.crops_path, self.manifest_path = out_dir / CROPS_FILE, out_dir / MANIFEST_FILE
        self.size = size
        self.crop_bytes = size[0] * size[1] * 3
        self.sources: set[str] = set()
        self.identities: set[str] = set()
        self.methods: list[str] = []

    def __enter__(self) -> _CropWriter:
        rows, partial = _read_manifest(self.manifest_path) if self.manifest_path.is_file() else ([], True)
        stored = self._stored_crops()
        count = min(len(rows), stored)
        if rows and (partial or count != len(rows) or count != stored):
            logger.info("%s: keeping the %d finished crops of an interrupted run", self.crops_path.parent, count)
        if partial or count != len(rows):
            with atomic_output(self.manifest_path) as temporary:
                lines = [_MANIFEST_HEADER, *(row[4] for row in rows[:count])]
                temporary.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        self.sources = {row[2] for row in rows[:count]}
        self.identities = {row[1] for row in rows[:count]}
        self.methods = [row[3] for row in rows[:count]]

        self._crops = open(self.crops_path, "r+b")
        self._crops.truncate(_NPY_HEADER_BYTES + count * self.crop_bytes)
        self._write_header()
        self._crops.seek(0, 2)
        self._manifest = open(self.manifest_path, "a", encoding="utf-8", newline="\n")
        return self

    def append(self, crop: np.ndarray, source: str, face: Face | None) -> None:
        assert crop.shape == (*self.size, 3) and crop.dtype == np.uint8
        identity = source.split("/")[0]
        if face is None:
            method, numbers = "centre", ["nan"] * 11
        else:
            method = "detected"
            numbers = [f"{face.det_score:.4f}", *(f"{value:.2f}" for value in face.landmarks.reshape(-1))]
        self._crops.write(np.ascontiguousarray(crop).tobytes())
        self._manifest.write("\t".join([str(len(self.methods)), identity, source, method, *numbers]) + "\n")
        self.sources.add(source)
        self.identities.add(identity)
        self.methods.append(method)

    def __exit__(self, *exc_info: object) -> None:
        # Runs after an exception too, so an interrupted run leaves a consistent, resumable folder.
        self._manifest.close()
        self._write_header()
        self._crops.close()

    def _stored_crops(self) -> int:
        if not self.crops_path.is_file():
            with open(self.crops_path, "wb") as file:
                file.write(_npy_header(0, self.size))
            return 0
        with open(self.crops_path, "rb") as file:
            try:
                np.lib.format.read_magic(file)
                header = np.lib.format.read_array_header_1_0(file)
            except ValueError:
                header = None
        if header is None or header[0][1:] != (*self.size, 3) or header[2] != np.uint8:
            raise ValueError(f"{self.crops_path} is not a {self.size[0]}x{self.size[1]} crops file; use a new folder")
        return (self.crops_path.stat().st_size - _NPY_HEADER_BYTES) // self.crop_bytes

    def _write_header(self) -> None:
        self._crops.flush()
        self._crops.seek(0)
        self._crops.write(_npy_header(len(self.methods), self.size))
        self._crops.flush()


def _npy_header(count: int, size: tuple[int, int]) -> bytes:
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({count}, {size[0]}, {size[1]}, 3), }}"
    text = text.ljust(_NPY_HEADER_BYTES - 11) + "\n"
    assert len(text) == _NPY_HEADER_BYTES - 10
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def _read_manifest(path: Path) -> tuple[list[tuple[str, str, str, str, str]], bool]:
    """Rows as (index, identity, source, method, line), and whether a partly written last line was dropped."""
    lines = path.read_text(encoding="utf-8").split("\n")
    partial = lines.pop() != ""
    if not lines or lines[0] != _MANIFEST_HEADER:
        raise ValueError(f"{path}:1: expected the manifest header {_MANIFEST_HEADER!r}")
    rows = []
    for number, line in enumerate(lines[1:]):
        fields = line.split("\t")
        if len(fields) != len(MANIFEST_COLUMNS) or fields[0] != str(number) or fields[3] not in ("detected", "centre"):
            raise ValueError(f"{path}:{number + 2}: expected row {number} with {len(MANIFEST_COLUMNS)} fields")
        rows.append((fields[0], fields[1], fields[2], fields[3], line))
    return rows, partial


def _settings(detector: FaceDetector, aligner: FaceAligner) -> dict[str, object]:
    return {
        "format": FORMAT_VERSION,
        "template": aligner.template.name,
        "template_points": [list(point) for point in aligner.template.points],
        "crop_size": list(aligner.size),
        "detector": {
            "file": detector.model_path.name,
            "sha256": sha256_file(detector.model_path),
            "score_threshold": detector.score_threshold,
            "nms_threshold": detector.nms_threshold,
            "max_side": detector.max_side,
        },
    }


def _start_meta(out_dir: Path, settings: dict[str, object], images_dir: Path) -> None:
    if (out_dir / META_FILE).is_file():
        meta = _read_meta(out_dir)
        changed = [key for key in settings if meta.get(key) != settings[key]]
        if changed:
            raise ValueError(
                f"{out_dir} holds crops made with other settings ({', '.join(changed)} differ); "
                "prepare into a new folder"
            )
        if meta.get("images_dir") != str(images_dir.resolve()):
            logger.warning("%s was prepared from %s; adding images of %s", out_dir, meta.get("images_dir"), images_dir)
    elif (out_dir / CROPS_FILE).exists() or (out_dir / MANIFEST_FILE).exists():
        raise ValueError(f"{out_dir} holds crops without {META_FILE}; prepare into a new folder")
    _write_meta(out_dir, {**settings, "images_dir": str(images_dir.resolve()), "complete": False})


def _read_meta(out_dir: Path) -> dict:
    try:
        meta = json.loads((out_dir / META_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{out_dir / META_FILE} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{out_dir / META_FILE} is not a crops-folder description of format {FORMAT_VERSION}")
    return meta


def _write_meta(out_dir: Path, meta: dict[str, object]) -> None:
    with atomic_output(out_dir / META_FILE) as temporary:
        temporary.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _list_sources(images_dir: Path) -> list[str]:
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder not found: {images_dir}")
    sources = [
        f"{folder.name}/{file.name}"
        for folder in sorted(images_dir.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
        for file in sorted(folder.iterdir())
        if not file.name.startswith(".") and file.suffix.lower() in IMAGE_SUFFIXES and file.is_file()
    ]
    if not sources:
        hint = f"; did you mean {images_dir / 'images'}?" if (images_dir / "images").is_dir() else ""
        raise ValueError(f"no images found in {images_dir}/<identity>/ folders{hint}")
    return sources


def _read_image(images_dir: Path, source: str) -> tuple[np.ndarray | None, str]:
    if any(character in source for character in "\t\n\r"):
        return None, "the name holds a tab or line break, which the manifest cannot store"
    try:
        data = np.fromfile(images_dir / source, dtype=np.uint8)
    except OSError as error:
        return None, f"cannot read the file: {error.strerror or error}"
    image = decode_image(data)
    if image is None:
        return None, "not a decodable image"
    return image, ""


def _progress(items: list[str], enabled: bool) -> Iterator[str] | list[str]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="preparing crops", unit="image")
