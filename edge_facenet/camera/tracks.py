"""What the camera app's tracker works with: tracks, their events, its settings and its counts.

numpy only; the tracking itself is :class:`~edge_facenet.camera.tracker.FaceTracker`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

EventKind = Literal["appeared", "identified", "identity_changed", "left"]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)


@dataclass(frozen=True)
class TrackEvent:
    """Something that happened to a track.

    Attributes:
        kind: "appeared" (a new track), "identified" (a track's first name), "identity_changed" (a later change of
            identity, also to or from unknown) or "left" (the track ended).
        track_id: The track.
        frame_index: The frame at which the tracker saw it happen; for "left", the frame at which the track was
            given up (see :attr:`Track.last_frame` for the last sighting).
        timestamp: Seconds, the time of that frame as the caller gave it.
        name: The track's identity after the event; None for unknown.
        similarity: Cosine similarity backing ``name`` (see :attr:`Track.similarity`); None before any decision.
        bbox: The track's box (x1, y1, x2, y2) in pixels.
        previous_name: For "identity_changed", the identity before; None otherwise.
    """

    kind: EventKind
    track_id: int
    frame_index: int
    timestamp: float
    name: str | None
    similarity: float | None
    bbox: tuple[float, float, float, float]
    previous_name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(EVENT_KINDS)}, got {self.kind!r}")

    def to_dict(self) -> dict[str, object]:
        """The event as plain JSON-ready values, floats rounded to 4 decimals.

        Returns:
            Keys ``event`` (the kind), ``track``, ``frame``, ``time``, ``name`` (None for unknown), ``similarity``,
            ``bbox`` (a list of 4) and ``previous_name``: the keys of the camera app's other events.
        """
        return {
            "event": self.kind,
            "track": int(self.track_id),
            "frame": int(self.frame_index),
            "time": round(float(self.timestamp), 4),
            "name": self.name,
            "similarity": None if self.similarity is None else round(float(self.similarity), 4),
            "bbox": [round(float(value), 4) for value in self.bbox],
            "previous_name": self.previous_name,
        }


@dataclass(eq=False)
class Track:
    """One face followed across frames. The tracker updates it; callers only read it.

    Attributes:
        track_id: Unique within a tracker, counting from 1.
        bbox: The latest box (x1, y1, x2, y2), float32.
        first_frame: Frame at which the track appeared.
        last_frame: Last frame with a detection matched to the track.
        hits: Frames with a matched detection.
        missed: Consecutive updates without a matched detection.
        embeddings: The last ``window`` unit embeddings, oldest first.
        last_embedded_frame: Frame of the latest embedding; None before the first.
        velocity: The box's smoothed motion in pixels per frame (x1, y1, x2, y2), float32; its next box is predicted
            from it.
        last_embedded_area: Box area in square pixels when the latest embedding was added.
        sharpness: The face's sharpness in the latest frame, when the caller measures it; else None.
        last_embedded_sharpness: The sharpness when the latest embedding was added (None when not measured).
        name: The decided identity; None for unknown.
        similarity: Similarity of the windowed mean to ``name`` at the last decision that agreed with it (for an
            unknown track, the best similarity, below the threshold); None before any decision.
        pending: Consecutive decisions that differed from ``name``.
        was_named: Whether the track has had a name at some point.
    """

    track_id: int
    bbox: np.ndarray
    first_frame: int
    last_frame: int
    hits: int = 1
    missed: int = 0
    embeddings: deque[np.ndarray] = field(default_factory=deque)
    last_embedded_frame: int | None = None
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    last_embedded_area: float = 0.0
    sharpness: float | None = None
    last_embedded_sharpness: float | None = None
    name: str | None = None
    similarity: float | None = None
    pending: int = 0
    was_named: bool = False

    def mean_embedding(self) -> np.ndarray | None:
        """The L2-normalised mean of the windowed embeddings.

        Returns:
            A (D,) float32 unit vector; None when there are no embeddings or they cancel out.
        """
        if not self.embeddings:
            return None
        mean = np.mean(np.stack(self.embeddings), axis=0)
        norm = float(np.linalg.norm(mean))
        if not norm > 1e-6:
            return None
        return (mean / norm).astype(np.float32)


@dataclass(frozen=True)
class TrackerConfig:
    """How faces are tracked and when identities change.

    Attributes:
        iou_threshold: Least box overlap (intersection over union) between a detection and a track's predicted
            box that links them, in (0, 1].
        max_jump: A detection that overlaps no track too little is still linked to a track whose predicted box centre
            is within this many box widths of its centre and whose size is within 1.5x of its size (0 turns it off):
            catches a face that starts to move fast, before its motion is known.
        max_missed: Updates a track survives without a detection; the next one ends it ("left").
        window: Embeddings kept per track; identities are decided on their mean.
        reembed_every: A settled track is embedded again after this many frames.
        grow_ratio: A track is embedded again as soon as its box area reaches this multiple (> 1) of the area it
            had at its latest embedding: a nearer face gives a better embedding.
        sharper_ratio: A track is embedded again as soon as its sharpness reaches this multiple (> 1) of the sharpness
            at its latest embedding (when the caller measures sharpness): a face that stopped moving or came into
            focus gives a better embedding.
        min_embeddings_to_name: Embeddings a track needs before its identity is decided, 1 to ``window``.
        switch_after: Consecutive differing decisions before a track's identity changes (1 = at once).
        reset_below: A new embedding whose cosine similarity to the track's windowed mean is below this, in [-1, 1],
            empties the window first: another person has most likely taken the place of the tracked one (say, in a
            queue), and the old embeddings would hold the old name for a whole window. With the shipped model,
            across LFW photos, different people's similarity has a median of 0.00 and the same person's a 5th
            percentile of 0.47; one person's consecutive video frames are closer still. -1 turns it off.
    """

    iou_threshold: float = 0.3
    max_jump: float = 1.0
    max_missed: int = 10
    window: int = 10
    reembed_every: int = 5
    grow_ratio: float = 1.25
    sharper_ratio: float = 1.5
    min_embeddings_to_name: int = 1
    switch_after: int = 3
    reset_below: float = 0.3

    def __post_init__(self) -> None:
        if not is_real(self.iou_threshold) or not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be a number in (0, 1], got {self.iou_threshold!r}")
        if not is_real(self.max_jump) or self.max_jump < 0.0:
            raise ValueError(f"max_jump must be a finite number >= 0, got {self.max_jump!r}")
        check_int("max_missed", self.max_missed, 0)
        check_int("window", self.window, 1)
        check_int("reembed_every", self.reembed_every, 1)
        if not is_real(self.grow_ratio) or not self.grow_ratio > 1.0:
            raise ValueError(f"grow_ratio must be a finite number > 1, got {self.grow_ratio!r}")
        if not is_real(self.sharper_ratio) or not self.sharper_ratio > 1.0:
            raise ValueError(f"sharper_ratio must be a finite number > 1, got {self.sharper_ratio!r}")
        check_int("min_embeddings_to_name", self.min_embeddings_to_name, 1)
        if self.min_embeddings_to_name > self.window:
            raise ValueError(
                f"min_embeddings_to_name must not exceed window ({self.window}), got {self.min_embeddings_to_name}"
            )
        check_int("switch_after", self.switch_after, 1)
        if not is_real(self.reset_below) or not -1.0 <= self.reset_below <= 1.0:
            raise ValueError(f"reset_below must be a number in [-1, 1], got {self.reset_below!r}")


@dataclass(frozen=True)
class TrackerStats:
    """What a tracker has done so far.

    Attributes:
        frames_processed: Calls of :meth:`FaceTracker.update`.
        faces_seen: Detections handed to it.
        tracks_created: Tracks started.
        embeddings_computed: Embeddings handed to :meth:`FaceTracker.add_embeddings`; ``faces_seen`` minus this
            is the work tracking saved.
    """

    frames_processed: int
    faces_seen: int
    tracks_created: int
    embeddings_computed: int


def is_real(value: object) -> bool:
    """Whether a value is a finite int or float (numpy scalars too), not a bool."""
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def check_int(name: str, value: object, minimum: int) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
