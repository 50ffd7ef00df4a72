"""Alignment templates: where the five facial landmarks land in an embedder's input crop.

A template is stored in normalised coordinates (fractions of the crop's width and height), so one template serves
any crop size; the embedder's ONNX metadata names the template and gives the crop size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")


@dataclass(frozen=True)
class AlignmentTemplate:
    """Target landmark positions of an aligned face crop.

    Attributes:
        name: Registry name, as written in a model's ``alignment_template`` metadata.
        points: Five (x, y) pairs as fractions of the crop, in the order of ``LANDMARK_NAMES``
            (the subject's right eye first, which is on the left of the image, as YuNet reports them).
        description: Where the template comes from.
    """

    name: str
    points: tuple[tuple[float, float], ...]
    description: str

    def landmarks(self, width: int, height: int) -> np.ndarray:
        """Return the template's landmarks in pixels of a ``width`` x ``height`` crop, shape (5, 2), float32."""
        return (np.asarray(self.points, dtype=np.float32) * np.array([width, height], dtype=np.float32)).astype(
            np.float32
        )


# Measured by tools/derive_alignment_template.py: the median YuNet landmarks of 2,000 LFW deep-funneled images
# inside the fixed box x 65-185, y 68-188 of the 250x250 image, made mirror-symmetric. Aligning a face to it gives
# the same framing as that centre crop of a funneled image, so both kinds of crop can be mixed in training.
LFW_FUNNELED_5PT = AlignmentTemplate(
    name="lfw_funneled_5pt",
    points=((0.3187, 0.3681), (0.6813, 0.3681), (0.5, 0.5721), (0.3453, 0.7293), (0.6547, 0.7293)),
    description="median YuNet landmarks of LFW deep-funneled faces in the 120x120 box at (65, 68), symmetrised",
)

_TEMPLATES = {template.name: template for template in (LFW_FUNNELED_5PT,)}

DEFAULT_TEMPLATE = LFW_FUNNELED_5PT.name


def list_templates() -> list[str]:
    """Return the names of the known alignment templates."""
    return sorted(_TEMPLATES)


def get_template(name: str) -> AlignmentTemplate:
    """Look up an alignment template by name.

    Raises:
        ValueError: For an unknown name; the message lists the known ones.
    """
    try:
        return _TEMPLATES[name]
    except KeyError:
        raise ValueError(
            f"unknown alignment template {name!r}; known templates: {', '.join(list_templates())}"
        ) from None
