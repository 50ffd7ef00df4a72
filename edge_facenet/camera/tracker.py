"""Faces tracked across video frames, and each track's identity decided over time.

Per frame the camera app detects faces and hands them to :meth:`FaceTracker.update`, which links each face to a
track by the overlap with the box predicted from the track's motion. Only the faces that
:meth:`FaceTracker.needs_embedding` asks for are aligned and embedded; their embeddings go to
:meth:`FaceTracker.add_embeddings`, which names each track from the mean of its recent embeddings. Deciding on the
mean of several frames, as FaceNet's YouTube Faces result did, keeps names from flickering where single frames hover
around the threshold; re-embedding a tracked face only now and then, or when it grew or got sharper
(:func:`edge_facenet.quality.sharpness`, handed to :meth:`FaceTracker.update`), saves most of the embedder's work.

Identity rule: a track's identity (a name, or None for unknown; every track starts unknown) changes only after
``switch_after`` consecutive decisions on its windowed mean differed from it, and then takes the latest decision.
The matcher reports only the best identity and its similarity, so once another name (or none) is best, the mean's
similarity to the current name is not known and a similarity margin between the two could not be checked; a run of
disagreeing decisions can be. A track whose decision disagrees with its identity is embedded every frame until that
is settled, so the confirmation costs ``switch_after`` frames rather than ``switch_after * reembed_every``. An
embedding far from the windowed mean (below ``reset_below``) empties the window before it joins: when another person
takes the tracked one's place, the decisions turn at once instead of after half a window of new embeddings.

This module needs numpy and the :class:`~edge_facenet.types.Face` type only: no model, gallery or OpenCV.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from edge_facenet.camera.association import box_area, face_boxes, iou_matches, iou_matrix, nearby_matches
from edge_facenet.camera.tracks import (
    EVENT_KINDS,
    EventKind,
    Track,
    TrackerConfig,
    TrackerStats,
    TrackEvent,
    is_real,
)
from edge_facenet.types import Face

__all__ = ["EVENT_KINDS", "FaceTracker", "Matcher", "Track", "TrackEvent", "TrackerConfig", "TrackerStats"]

logger = logging.getLogger(__name__)

_SMOOTHING = 0.5  # weight of the latest motion in a track's velocity

Matcher = Callable[[np.ndarray], list[tuple[str | None, float]]]
"""Given (N, D) unit embeddings, per row the identity (None below the threshold or for an empty gallery) and the
best cosine similarity."""


class FaceTracker:
    """Links detected faces across frames and decides each track's identity from its recent embeddings.

    Per frame: :meth:`update` with the detections, then :meth:`needs_embedding` for each returned pair, then
    :meth:`add_embeddings` with the embeddings of the faces that needed one, then :meth:`drain_events`. At the end of
    the input, :meth:`finish`. Use one tracker from one thread at a time.

    Args:
        config: Tracking and identity settings; the defaults of :class:`TrackerConfig` when None.

    Raises:
        TypeError: When ``config`` is not a :class:`TrackerConfig`.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        if config is None:
            config = TrackerConfig()
        elif not isinstance(config, TrackerConfig):
            raise TypeError(f"config must be a TrackerConfig or None, got {type(config).__name__}")
        self._config = config
        self._tracks: list[Track] = []  # live tracks in order of creation
        self._events: list[TrackEvent] = []
        self._next_id = 1
        self._last_frame: int | None = None
        self._dim: int | None = None
        self._frames = 0
        self._faces = 0
        self._embeddings = 0

    @property
    def config(self) -> TrackerConfig:
        """The tracker's settings."""
        return self._config

    @property
    def tracks(self) -> tuple[Track, ...]:
        """The live tracks, oldest first."""
        return tuple(self._tracks)

    def update(
        self,
        faces: Sequence[Face],
        frame_index: int,
        timestamp: float,
        sharpness: Sequence[float] | None = None,
    ) -> list[tuple[Track, Face]]:
        """Link a frame's detections to tracks, start tracks for new faces and end tracks missed for too long.

        Each track's box is predicted from its last box and its smoothed velocity (constant motion). Association is
        greedy: pairs of predicted box and detection are taken by falling IoU, each at most once, while the IoU is at
        least ``iou_threshold``; then the tracks and detections left over are paired by rising centre distance, up
        to ``max_jump`` box widths, where their sizes are within 1.5x.

        Args:
            faces: The frame's detections.
            frame_index: The frame's number, larger than at the previous update.
            timestamp: The frame's time in seconds.
            sharpness: The sharpness of each face (:func:`edge_facenet.quality.sharpness`), or None when not
                measured; it lets :meth:`needs_embedding` embed a face again once it is clearly sharper.

        Returns:
            One (track, face) pair per detection, in the order of ``faces``.

        Raises:
            ValueError: When a box is not 4 finite numbers, ``frame_index`` does not increase, or ``sharpness`` is
                not one finite number, 0 or more, per face.
        """
        self._check_time(frame_index, timestamp, allow_same=False)
        boxes = face_boxes(faces)
        if sharpness is not None:
            sharpness = list(sharpness)
            if len(sharpness) != len(faces) or not all(is_real(value) and value >= 0 for value in sharpness):
                raise ValueError(f"sharpness must hold one finite number >= 0 per face ({len(faces)}), got {sharpness}")
        predicted = np.zeros((len(self._tracks), 4), dtype=np.float32)
        for track_index, track in enumerate(self._tracks):
            predicted[track_index] = track.bbox + track.velocity * (frame_index - track.last_frame)
        matches = iou_matches(iou_matrix(predicted, boxes), self._config.iou_threshold)
        if self._config.max_jump > 0.0 and len(matches) < min(len(predicted), len(boxes)):
            matches += nearby_matches(predicted, boxes, matches, self._config.max_jump)

        assigned: dict[int, Track] = {}
        for track_index, face_index in matches:
            track = self._tracks[track_index]
            motion = (boxes[face_index] - track.bbox) / np.float32(frame_index - track.last_frame)
            track.velocity = motion if track.hits == 1 else _SMOOTHING * motion + (1 - _SMOOTHING) * track.velocity
            track.bbox = boxes[face_index].copy()
            track.last_frame = frame_index
            track.hits += 1
            track.missed = 0
            assigned[face_index] = track

        matched = {track_index for track_index, _ in matches}
        survivors = []
        for track_index, track in enumerate(self._tracks):
            if track_index not in matched:
                track.missed += 1
                if track.missed > self._config.max_missed:
                    self._emit("left", track, frame_index, timestamp)
                    continue
            survivors.append(track)
        self._tracks = survivors

        for face_index in range(len(faces)):
            if face_index not in assigned:
                assigned[face_index] = self._start_track(boxes[face_index], frame_index, timestamp)
            assigned[face_index].sharpness = None if sharpness is None else float(sharpness[face_index])

        self._frames += 1
        self._faces += len(faces)
        self._last_frame = frame_index
        return [(assigned[face_index], face) for face_index, face in enumerate(faces)]

    def needs_embedding(self, track: Track, face: Face, frame_index: int) -> bool:
        """Whether the face of a track should be embedded in this frame.

        True for a track never embedded, one with fewer than ``min_embeddings_to_name`` embeddings, one whose
        latest decision differs from its identity (until settled), one last embedded ``reembed_every`` or more
        frames ago, one whose box area reached ``grow_ratio`` times the area at its latest embedding, and one whose
        sharpness reached ``sharper_ratio`` times the sharpness at its latest embedding. An unknown
        track whose decisions agree that it is unknown is checked every ``reembed_every`` frames like a named one:
        a stranger in view costs no embedding per frame.

        Args:
            track: A track from this frame's :meth:`update`.
            face: The face linked to it in this frame.
            frame_index: This frame's number.

        Returns:
            Whether to embed ``face`` and pass the embedding to :meth:`add_embeddings`.
        """
        config = self._config
        if track.last_embedded_frame is None or track.pending > 0:
            return True
        if len(track.embeddings) < config.min_embeddings_to_name:
            return True
        if frame_index - track.last_embedded_frame >= config.reembed_every:
            return True
        sharper = track.sharpness is not None and track.last_embedded_sharpness is not None
        if (
            sharper
            and track.sharpness > 0.0
            and track.sharpness >= config.sharper_ratio * track.last_embedded_sharpness
        ):
            return True
        return face.area > 0.0 and face.area >= config.grow_ratio * track.last_embedded_area

    def add_embeddings(
        self, pairs: Sequence[tuple[Track, np.ndarray]], matcher: Matcher, frame_index: int, timestamp: float
    ) -> None:
        """Add embeddings to their tracks and decide the identity of those tracks.

        Each embedding joins its track's window; then one matcher call covers the windowed means of all tracks that
        hold at least ``min_embeddings_to_name`` embeddings, and each decision applies the identity rule of this
        module. Identity changes are emitted as "identified" (a track's first name) or "identity_changed".

        Args:
            pairs: (track, embedding) with live tracks of this tracker and (D,) embeddings, normalised here.
            matcher: Names the identity of (N, D) unit embeddings, see :data:`Matcher`.
            frame_index: The frame the embeddings come from.
            timestamp: That frame's time in seconds.

        Raises:
            ValueError: When a track is not live in this tracker, an embedding is not a finite non-zero (D,) vector
                of the length of the earlier ones, or the matcher returns a wrong number of rows.
        """
        vectors = [self._unit_embedding(track, embedding) for track, embedding in pairs]
        if not vectors:
            return

        updated: list[Track] = []
        for (track, _), vector in zip(pairs, vectors, strict=True):
            mean = track.mean_embedding()
            if mean is not None and float(mean @ vector) < self._config.reset_below:
                logger.debug("frame %d: track %d looks like someone else: window emptied", frame_index, track.track_id)
                track.embeddings.clear()
            track.embeddings.append(vector)
            track.last_embedded_frame = frame_index
            track.last_embedded_area = box_area(track.bbox)
            track.last_embedded_sharpness = track.sharpness
            if all(track is not other for other in updated):
                updated.append(track)
        self._embeddings += len(vectors)

        ready, means = [], []
        for track in updated:
            mean = track.mean_embedding() if len(track.embeddings) >= self._config.min_embeddings_to_name else None
            if mean is not None:
                ready.append(track)
                means.append(mean)
        if not ready:
            return

        decisions = list(matcher(np.stack(means)))
        if len(decisions) != len(ready):
            raise ValueError(f"matcher must return one (name, similarity) per row, {len(ready)}, got {len(decisions)}")
        for track, (name, similarity) in zip(ready, decisions, strict=True):
            self._decide(track, name, float(similarity), frame_index, timestamp)

    def drain_events(self) -> list[TrackEvent]:
        """The events since the previous drain, in the order they happened."""
        events, self._events = self._events, []
        return events

    def finish(self, frame_index: int, timestamp: float) -> None:
        """End all tracks at the end of the input, emitting "left" for each.

        Args:
            frame_index: The last frame's number (not below that of the latest update).
            timestamp: Its time in seconds.

        Raises:
            ValueError: When ``frame_index`` lies before the latest update.
        """
        self._check_time(frame_index, timestamp, allow_same=True)
        for track in self._tracks:
            self._emit("left", track, frame_index, timestamp)
        self._tracks = []
        self._last_frame = frame_index

    def summary(self) -> TrackerStats:
        """Counts of frames, faces, tracks and embeddings so far."""
        return TrackerStats(
            frames_processed=self._frames,
            faces_seen=self._faces,
            tracks_created=self._next_id - 1,
            embeddings_computed=self._embeddings,
        )

    def _start_track(self, bbox: np.ndarray, frame_index: int, timestamp: float) -> Track:
        track = Track(
            track_id=self._next_id,
            bbox=bbox.copy(),
            first_frame=frame_index,
            last_frame=frame_index,
            embeddings=deque(maxlen=self._config.window),
        )
        self._next_id += 1
        self._tracks.append(track)
        self._emit("appeared", track, frame_index, timestamp)
        return track

    def _decide(self, track: Track, name: str | None, similarity: float, frame_index: int, timestamp: float) -> None:
        if name == track.name:
            track.similarity = similarity
            track.pending = 0
            return

        track.pending += 1
        if track.pending < self._config.switch_after:
            return

        previous = track.name
        kind: EventKind = "identity_changed" if track.was_named else "identified"
        track.name, track.similarity, track.pending = name, similarity, 0
        track.was_named = track.was_named or name is not None
        self._emit(kind, track, frame_index, timestamp, previous if kind == "identity_changed" else None)

    def _emit(
        self, kind: EventKind, track: Track, frame_index: int, timestamp: float, previous_name: str | None = None
    ) -> None:
        x1, y1, x2, y2 = (float(value) for value in track.bbox)
        event = TrackEvent(
            kind=kind,
            track_id=track.track_id,
            frame_index=int(frame_index),
            timestamp=float(timestamp),
            name=track.name,
            similarity=track.similarity,
            bbox=(x1, y1, x2, y2),
            previous_name=previous_name,
        )
        logger.debug("frame %d: track %d %s (%s)", frame_index, track.track_id, kind, track.name)
        self._events.append(event)

    def _check_time(self, frame_index: int, timestamp: float, allow_same: bool) -> None:
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
            raise ValueError(f"frame_index must be an integer, got {frame_index!r}")
        if self._last_frame is not None and (
            frame_index < self._last_frame or (frame_index == self._last_frame and not allow_same)
        ):
            expected = "at least" if allow_same else "greater than"
            raise ValueError(f"frame_index must be {expected} the previous {self._last_frame}, got {frame_index}")
        if not is_real(timestamp):
            raise ValueError(f"timestamp must be a finite number of seconds, got {timestamp!r}")

    def _unit_embedding(self, track: Track, embedding: np.ndarray) -> np.ndarray:
        if all(track is not live for live in self._tracks):
            raise ValueError(f"track {getattr(track, 'track_id', track)!r} is not a live track of this tracker")
        vector = np.asarray(embedding, dtype=np.float32)
        dim = self._dim if self._dim is not None else (vector.shape[0] if vector.ndim == 1 else None)
        if vector.ndim != 1 or vector.shape[0] != dim or dim == 0:
            expected = f"({self._dim},)" if self._dim is not None else "(D,) with D > 0"
            raise ValueError(f"embedding of track {track.track_id} must have shape {expected}, got {vector.shape}")
        norm = float(np.linalg.norm(vector))
        if not math.isfinite(norm) or norm == 0.0:
            raise ValueError(f"embedding of track {track.track_id} must be finite and non-zero")
        self._dim = dim
        return vector / norm
