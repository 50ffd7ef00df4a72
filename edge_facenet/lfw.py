"""Readers for the protocol files of Labeled Faces in the Wild (LFW).

An image is named by its key: its path relative to the dataset's ``images/`` folder, for example
``Abel_Pacheco/Abel_Pacheco_0001.jpg`` (the same form as the ``names`` of the shared dlib embeddings).

Files read here, fields separated by one tab:

- ``pairs.txt`` (View 2): header ``folds<TAB>n``, then per fold n same-person lines ``name n1 n2`` followed by
  n different-person lines ``name1 n1 name2 n2``.
- ``pairsDevTrain.txt`` / ``pairsDevTest.txt`` (View 1): header ``n``, then n same-person and n
  different-person lines; one fold.
- ``people.txt``: header ``folds``, then per fold a count N and N lines ``name<TAB>image_count``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

logger = logging.getLogger(__name__)

IMAGES_FOLDER = "images"


@dataclass(frozen=True)
class Pair:
    """One verification pair of an LFW protocol file.

    Attributes:
        left: Key of the first image, relative to ``images/`` (``Name/Name_0001.jpg``).
        right: Key of the second image.
        same: True when both images show the same person.
        fold: 1-based fold the pair belongs to (always 1 in the View 1 files).
    """

    left: str
    right: str
    same: bool
    fold: int


def image_key(name: str, number: int) -> str:
    """Return the key of image ``number`` (1-based) of person ``name``: ``Name/Name_NNNN.jpg``.

    Raises:
        ValueError: When the name is empty or holds a path separator, or the number is not positive.
    """
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"person name must be a non-empty folder name, got {name!r}")
    if number < 1:
        raise ValueError(f"image number must be 1 or more, got {number}")
    return f"{name}/{name}_{number:04d}.jpg"


def image_path(lfw_dir: str | PathLike[str], name: str, number: int) -> Path:
    """Return the path of image ``number`` (1-based) of person ``name``: ``<lfw_dir>/images/<name>/<name>_NNNN.jpg``.

    The file is not checked for existence.

    Raises:
        ValueError: As :func:`image_key`.
    """
    return Path(lfw_dir) / IMAGES_FOLDER / image_key(name, number)


def read_pairs(path: str | PathLike[str]) -> list[Pair]:
    """Read ``pairs.txt`` (10 folds) or a View 1 file (``pairsDevTrain.txt``, ``pairsDevTest.txt``, one fold).

    Args:
        path: The protocol file.

    Returns:
        The pairs in file order; within each fold the same-person pairs come first.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When a line does not have the expected layout; the message names the file and line number.
    """
    path = Path(path)
    lines = _read_lines(path)
    if not lines:
        raise ValueError(f"{path}: empty file, expected a header 'folds<TAB>pairs' or 'pairs'")
    header = lines[0].split("\t")
    if len(header) == 2:
        fold_count, per_class = _positive_int(header[0], path, 1), _positive_int(header[1], path, 1)
    elif len(header) == 1:
        fold_count, per_class = 1, _positive_int(header[0], path, 1)
    else:
        raise ValueError(f"{path}:1: expected a header 'folds<TAB>pairs' or 'pairs', got {lines[0]!r}")

    expected_lines = 1 + fold_count * 2 * per_class
    if len(lines) != expected_lines:
        raise ValueError(
            f"{path}:{min(len(lines), expected_lines) + 1}: header promises {fold_count} fold(s) of {per_class} same "
            f"and {per_class} different pairs ({expected_lines - 1} lines), the file has {len(lines) - 1}"
        )

    pairs = []
    for index, line in enumerate(lines[1:]):
        fold, position = divmod(index, 2 * per_class)
        pairs.append(_parse_pair(line, same=position < per_class, fold=fold + 1, path=path, line_number=index + 2))
    logger.debug("read %d pairs in %d fold(s) from %s", len(pairs), fold_count, path)
    return pairs


def read_people_folds(path: str | PathLike[str]) -> dict[str, int]:
    """Read ``people.txt``: which fold (1-based) each person belongs to.

    Args:
        path: The people file.

    Returns:
        Person name -> fold, in file order.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the layout is broken or a person appears twice; the message names the file and line number.
    """
    path = Path(path)
    lines = _read_lines(path)
    if not lines:
        raise ValueError(f"{path}: empty file, expected a header with the number of folds")
    fold_count = _positive_int(lines[0], path, 1)

    folds: dict[str, int] = {}
    cursor = 1
    for fold in range(1, fold_count + 1):
        if cursor >= len(lines):
            raise ValueError(f"{path}:{cursor + 1}: header promises {fold_count} folds, the file ends after {fold - 1}")
        people_count = _positive_int(lines[cursor], path, cursor + 1)
        for line_index in range(cursor + 1, cursor + 1 + people_count):
            if line_index >= len(lines):
                raise ValueError(f"{path}:{line_index + 1}: fold {fold} promises {people_count} people, the file ends")
            fields = lines[line_index].split("\t")
            if len(fields) != 2 or not fields[0]:
                raise ValueError(f"{path}:{line_index + 1}: expected 'name<TAB>image_count', got {lines[line_index]!r}")
            _positive_int(fields[1], path, line_index + 1)
            if fields[0] in folds:
                raise ValueError(f"{path}:{line_index + 1}: {fields[0]!r} is already listed in fold {folds[fields[0]]}")
            folds[fields[0]] = fold
        cursor += 1 + people_count
    if cursor != len(lines):
        raise ValueError(f"{path}:{cursor + 1}: expected the end of the file after {fold_count} folds")
    logger.debug("read %d people in %d folds from %s", len(folds), fold_count, path)
    return folds


def pair_images(pairs: Iterable[Pair]) -> list[str]:
    """Return the distinct image keys that the pairs use, sorted."""
    return sorted({key for pair in pairs for key in (pair.left, pair.right)})


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"LFW protocol file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _positive_int(text: str, path: Path, line_number: int) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{path}:{line_number}: expected a positive integer, got {text!r}")
    return int(text)


def _parse_pair(line: str, same: bool, fold: int, path: Path, line_number: int) -> Pair:
    fields = line.split("\t")
    if same:
        if len(fields) != 3 or not fields[0]:
            raise ValueError(f"{path}:{line_number}: expected a same-person line 'name<TAB>n1<TAB>n2', got {line!r}")
        left_name, left_text, right_name, right_text = fields[0], fields[1], fields[0], fields[2]
    else:
        if len(fields) != 4 or not fields[0] or not fields[2]:
            raise ValueError(
                f"{path}:{line_number}: expected a different-person line 'name1<TAB>n1<TAB>name2<TAB>n2', got {line!r}"
            )
        left_name, left_text, right_name, right_text = fields
    left_number, right_number = (
        _positive_int(left_text, path, line_number),
        _positive_int(right_text, path, line_number),
    )
    try:
        return Pair(image_key(left_name, left_number), image_key(right_name, right_number), same=same, fold=fold)
    except ValueError as error:
        raise ValueError(f"{path}:{line_number}: {error}") from None
