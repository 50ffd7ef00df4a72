import itertools
import json

import numpy as np
import pytest

from edge_facenet.camera.tracker import FaceTracker, TrackerConfig, TrackEvent
from edge_facenet.gallery import Gallery
from edge_facenet.types import Face

DIM = 128
THRESHOLD = 0.6
FPS = 25.0
FINGERPRINT = "ab" * 32
LANDMARK_OFFSETS = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], dtype=np.float32)


def face_at(x, y, size=100.0):
    bbox = np.array([x, y, x + size, y + size], dtype=np.float32)
    return Face(bbox, bbox[:2] + LANDMARK_OFFSETS * np.float32(size), 0.9)


def unit(vector):
    return vector / np.linalg.norm(vector)


class GalleryMatcher:
    """The camera app's matcher: the best gallery identity when it reaches the threshold; records each call's rows."""

    def __init__(self, gallery):
        self.gallery = gallery
        self.calls = []

    def __call__(self, embeddings):
        self.calls.append(len(embeddings))
        results = []
        for candidates in self.gallery.search(embeddings, k=1):
            similarity = candidates[0].similarity if candidates else -1.0
            results.append((candidates[0].name if similarity >= THRESHOLD else None, similarity))
        return results


@pytest.fixture
def people():
    rng = np.random.default_rng(7)
    return {"A": unit(rng.normal(size=DIM)), "B": unit(rng.normal(size=DIM))}


@pytest.fixture
def matcher(people):
    with Gallery(None, FINGERPRINT, DIM) as gallery:
        for name, vector in people.items():
            gallery.add(name, vector)
        yield GalleryMatcher(gallery)


def noisy(vector, sigma, rng):
    return unit(vector + sigma * rng.normal(size=DIM))


def run(tracker, frames, matcher, embedding_of, sharpness=None):
    """The camera app's loop; ``embedding_of(frame, detection)`` embeds a face. Returns the frames embedded per face.

    ``sharpness(frame)``, when given, returns the sharpness of each face of that frame.
    """
    embedded = {}
    for index, faces in enumerate(frames):
        pairs = tracker.update(faces, index, index / FPS, None if sharpness is None else sharpness(index))
        todo = []
        for position, (track, face) in enumerate(pairs):
            if tracker.needs_embedding(track, face, index):
                todo.append((track, embedding_of(index, position)))
                embedded.setdefault(position, []).append(index)
        tracker.add_embeddings(todo, matcher, index, index / FPS)
    return embedded


def kinds(events):
    return [(event.kind, event.track_id, event.frame_index) for event in events]


def test_moving_faces_keep_their_tracks_and_a_long_absence_starts_a_new_one():
    rng = np.random.default_rng(0)
    tracker = FaceTracker(TrackerConfig(max_missed=5))
    ids = {"left": [], "right": []}
    last_right = None
    for index in range(60):
        jitter = rng.uniform(-2.0, 2.0, size=4)
        people = []
        if not 40 <= index < 45:  # 5 frames away: no more than max_missed
            people.append(("left", face_at(50 + 3 * index + jitter[0], 100 + jitter[1])))
        if not 20 <= index < 28:  # 8 frames away: the track is given up at frame 25
            people.append(("right", face_at(500 + jitter[2], 50 + 2 * index + jitter[3], size=80.0)))
        people = [people[i] for i in rng.permutation(len(people))]

        pairs = tracker.update([face for _, face in people], index, index / FPS)

        assert [face for _, face in pairs] == [face for _, face in people]  # detection order
        for (person, _), (track, _) in zip(people, pairs, strict=True):
            ids[person].append((index, track.track_id))
        if index == 19:
            last_right = next(face for person, face in people if person == "right")
    tracker.finish(60, 60 / FPS)

    left_id = ids["left"][0][1]
    right_id = ids["right"][0][1]
    assert {track_id for _, track_id in ids["left"]} == {left_id}
    assert {track_id for index, track_id in ids["right"] if index < 20} == {right_id}
    assert {track_id for index, track_id in ids["right"] if index >= 28} == {3}
    assert {left_id, right_id} == {1, 2}

    events = tracker.drain_events()
    assert kinds(events) == [
        ("appeared", 1, 0),
        ("appeared", 2, 0),
        ("left", right_id, 25),
        ("appeared", 3, 28),
        ("left", left_id, 60),
        ("left", 3, 60),
    ]
    assert [event.timestamp for event in events] == [0.0, 0.0, 25 / FPS, 28 / FPS, 60 / FPS, 60 / FPS]
    assert all(event.name is None and event.similarity is None for event in events)
    assert events[2].bbox == pytest.approx(tuple(float(v) for v in last_right.bbox))
    assert tracker.drain_events() == [] and tracker.tracks == ()
    assert tracker.summary().tracks_created == 3 and tracker.summary().frames_processed == 60


def test_association_takes_the_highest_overlap_first():
    tracker = FaceTracker()
    first, second = (track for track, _ in tracker.update([face_at(0, 0), face_at(60, 0)], 0, 0.0))

    # The first detection overlaps both tracks, more the second (IoU 0.6 against 0.48); the second detection overlaps
    # the second track most (0.9), so that pair is taken first and the first detection continues the first track.
    pairs = tracker.update([face_at(35, 0), face_at(65, 0)], 1, 0.04)
    assert [track for track, _ in pairs] == [first, second]

    # Two detections on one track: the closer one continues it, the other starts a track.
    tracker = FaceTracker()
    (only, _) = tracker.update([face_at(0, 0)], 0, 0.0)[0]
    pairs = tracker.update([face_at(45, 0), face_at(5, 2)], 1, 0.04)
    assert pairs[1][0] is only and pairs[0][0].track_id == 2
    assert kinds(tracker.drain_events()) == [("appeared", 1, 0), ("appeared", 2, 1)]


def test_a_fast_face_keeps_its_track():
    # 60 px a frame: consecutive boxes overlap by IoU 0.25, under the 0.3 needed.
    tracker = FaceTracker()
    ids = [tracker.update([face_at(60 * index, 100)], index, index / FPS)[0][0].track_id for index in range(10)]
    assert ids == [1] * 10
    assert tracker.tracks[0].velocity == pytest.approx([60, 0, 60, 0])

    # Off: the first jump already starts a new track.
    tracker = FaceTracker(TrackerConfig(max_jump=0.0))
    ids = [tracker.update([face_at(60 * index, 100)], index, index / FPS)[0][0].track_id for index in range(3)]
    assert ids == [1, 2, 3]


def test_a_face_speeding_up_is_followed_by_its_predicted_box():
    tracker = FaceTracker(TrackerConfig(max_jump=0.0))  # IoU with the predicted box alone
    x, ids = 0.0, []
    for index in range(12):
        x += 15.0 * index  # up to 165 px a frame, more than the face's width
        ids.append(tracker.update([face_at(x, 100)], index, index / FPS)[0][0].track_id)
    assert ids == [1] * 12


def test_two_faces_crossing_keep_their_own_tracks():
    tracker = FaceTracker()
    tracks = {"left": set(), "right": set()}
    for index in range(16):
        left, right = face_at(20 + 40 * index, 100), face_at(400 - 40 * index, 110)
        for name, (track, _) in zip(tracks, tracker.update([left, right], index, index / FPS), strict=True):
            tracks[name].add(track.track_id)
    assert tracks == {"left": {1}, "right": {2}}


@pytest.mark.parametrize("lookalike", ["A or unknown", "A or B"])
def test_windowed_identity_does_not_flicker_where_single_frames_do(people, matcher, lookalike):
    rng = np.random.default_rng(1)
    if lookalike == "A or unknown":  # single-frame similarity to A straddles the threshold
        embeddings = [noisy(people["A"], 0.118, rng) for _ in range(60)]
    else:  # more like A on average, more like B on a quarter of the frames
        embeddings = [noisy(people["A"] + rng.uniform(0.4, 1.2) * people["B"], 0.02, rng) for _ in range(60)]
    single = [name for name, _ in matcher(np.stack(embeddings))]
    flips = sum(before != after for before, after in itertools.pairwise(single))
    assert flips >= 5

    tracker = FaceTracker(TrackerConfig(reembed_every=1))  # embedded every frame, as flicker-prone as it gets
    names = []
    for index in range(60):
        pairs = tracker.update([face_at(100 + rng.uniform(-2, 2), 100 + rng.uniform(-2, 2))], index, index / FPS)
        tracker.add_embeddings([(pairs[0][0], embeddings[index])], matcher, index, index / FPS)
        names.append(pairs[0][0].name)

    events = tracker.drain_events()
    identified = [event for event in events if event.kind == "identified"]
    assert [(event.name, event.frame_index) for event in identified] == [("A", 2)]  # the 3rd decision agreeing
    assert not [event for event in events if event.kind == "identity_changed"]
    assert names[2:] == ["A"] * 58
    assert identified[0].similarity > THRESHOLD


def test_a_steady_face_is_embedded_every_few_frames_and_at_once_when_it_grows(people, matcher):
    rng = np.random.default_rng(2)
    stranger = unit(rng.normal(size=DIM))
    tracker = FaceTracker(TrackerConfig(reembed_every=5))
    frames = []
    for index in range(60):
        size = 100.0 * (np.sqrt(1.3) if index >= 30 else 1.0) * (np.sqrt(1.1) if index >= 43 else 1.0)
        frames.append([face_at(150 - size / 2, 150 - size / 2, size), face_at(400, 100)])
    identities = (people["A"], stranger)

    embedded = run(tracker, frames, matcher, lambda _, position: noisy(identities[position], 0.05, rng))

    # Named: three decisions in a row to confirm "A", then every 5 frames; 1.3x the area at frame 30 re-embeds at
    # once, 1.1x at frame 43 does not.
    assert embedded[0] == [0, 1, 2, 7, 12, 17, 22, 27, 30, 35, 40, 45, 50, 55]
    # Unknown: the first decision already agrees with "unknown"; every 5 frames from then on.
    assert embedded[1] == list(range(0, 60, 5))
    assert [track.name for track in tracker.tracks] == ["A", None]
    assert tracker.summary() == type(tracker.summary())(
        frames_processed=60, faces_seen=120, tracks_created=2, embeddings_computed=26
    )
    assert len(embedded[0]) <= 60 // 5 + tracker.config.switch_after


def test_a_face_that_gets_sharper_is_embedded_again_at_once(people, matcher):
    rng = np.random.default_rng(3)
    tracker = FaceTracker(TrackerConfig(reembed_every=10, switch_after=1))
    frames = [[face_at(100, 100), face_at(400, 100)] for _ in range(30)]
    # Face 0 is blurred (moving) until frame 13, then sharp; face 1's sharpness wavers by up to 15 % either way.
    blurred, sharp = 40.0, 200.0
    wavering = 150.0 * (1.0 + 0.15 * np.sin(np.arange(30)))

    def sharpness(index):
        return [blurred if index < 13 else sharp, float(wavering[index])]

    embedded = run(tracker, frames, matcher, lambda _, position: noisy(people["AB"[position]], 0.05, rng), sharpness)

    assert embedded[0] == [0, 10, 13, 23]  # at once when it got 5x sharper; not again while it stays as sharp
    assert embedded[1] == [0, 10, 20]  # at most 1.15 / 0.85 = 1.35x between two frames: below the 1.5x ratio
    assert tracker.tracks[0].last_embedded_sharpness == sharp


def test_sharpness_must_be_one_non_negative_number_per_face():
    tracker = FaceTracker()
    with pytest.raises(ValueError, match=r"sharpness must hold one finite number >= 0 per face \(2\)"):
        tracker.update([face_at(0, 0), face_at(300, 0)], 0, 0.0, [1.0])
    with pytest.raises(ValueError, match="sharpness must hold"):
        tracker.update([face_at(0, 0)], 1, 0.04, [float("nan")])
    with pytest.raises(ValueError, match="sharpness must hold"):
        tracker.update([face_at(0, 0)], 2, 0.08, [-1.0])
    ((track, _),) = tracker.update([face_at(0, 0)], 3, 0.12, [12.5])
    assert track.sharpness == 12.5


def test_one_matcher_call_per_update_over_the_windowed_means(people, matcher):
    tracker = FaceTracker(TrackerConfig(min_embeddings_to_name=2, window=3, reset_below=-1.0))  # A and B averaged
    pairs = tracker.update([face_at(0, 0), face_at(300, 0)], 0, 0.0)
    tracker.add_embeddings([(track, people["A"]) for track, _ in pairs], matcher, 0, 0.0)
    assert matcher.calls == []  # one embedding each, two needed

    tracker.update([face_at(0, 0), face_at(300, 0)], 1, 0.04)
    tracker.add_embeddings([(pairs[0][0], people["B"]), (pairs[1][0], people["A"])], matcher, 1, 0.04)
    assert matcher.calls == [2]
    mean = pairs[0][0].mean_embedding()
    assert mean == pytest.approx(unit(people["A"] + people["B"]), abs=1e-5)
    assert len(pairs[0][0].embeddings) == 2


@pytest.mark.parametrize("reset_below", [0.3, -1.0])
def test_a_genuine_change_of_person_changes_the_identity_once(people, matcher, reset_below):
    rng = np.random.default_rng(3)
    tracker = FaceTracker(TrackerConfig(reembed_every=1, reset_below=reset_below))  # embedded every frame
    frames = [[face_at(100, 100)] for _ in range(60)]
    run(tracker, frames, matcher, lambda index, _: noisy(people["A" if index < 40 else "B"], 0.066, rng))
    tracker.finish(60, 60 / FPS)

    events = [event for event in tracker.drain_events() if event.kind != "appeared"]
    assert [(event.kind, event.name, event.previous_name) for event in events] == [
        ("identified", "A", None),
        ("identity_changed", "B", "A"),
        ("left", "B", None),
    ]
    if reset_below > -1:  # B's first embedding empties the window: three decisions on B, at frames 40, 41, 42
        assert events[1].frame_index == 40 + 2
    else:  # the window of 10 turns to B after about 5 of its embeddings, then 3 decisions confirm it
        assert 40 + 3 <= events[1].frame_index <= 40 + 10 // 2 + 3 + 1


def test_someone_taking_a_tracked_persons_place_is_named_within_a_few_frames(people, matcher):
    rng = np.random.default_rng(5)
    tracker = FaceTracker()  # defaults: embedded every 5 frames while settled
    frames = [[face_at(100, 100)] for _ in range(80)]
    run(tracker, frames, matcher, lambda index, _: noisy(people["A" if index < 41 else "B"], 0.066, rng))
    changed = [event for event in tracker.drain_events() if event.kind == "identity_changed"]
    # A was embedded at frames 0, 1, 2 (confirming), then every 5: B first at 42, then every frame until three
    # decisions agree. Without emptying the window it took about two seconds at 15 frames/s.
    assert [(event.name, event.frame_index) for event in changed] == [("B", 44)]

    # The same person with noisier embeddings (cosine about 0.7 to each other) never empties the window.
    tracker = FaceTracker()
    run(tracker, frames, matcher, lambda index, _: noisy(people["A"], 0.09, rng))
    assert [event.kind for event in tracker.drain_events()] == ["appeared", "identified"]
    assert len(tracker.tracks[0].embeddings) == tracker.config.window


def test_a_named_track_that_stops_matching_becomes_unknown(people, matcher):
    rng = np.random.default_rng(4)
    stranger = unit(rng.normal(size=DIM))
    tracker = FaceTracker(TrackerConfig(reembed_every=1, window=4, switch_after=2))
    frames = [[face_at(100, 100)] for _ in range(20)]
    run(tracker, frames, matcher, lambda index, _: noisy(people["A"] if index < 10 else stranger, 0.05, rng))

    changes = [event for event in tracker.drain_events() if event.kind == "identity_changed"]
    assert [(event.previous_name, event.name) for event in changes] == [("A", None)]
    assert changes[0].similarity < THRESHOLD
    assert tracker.tracks[0].name is None and tracker.tracks[0].was_named


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("iou_threshold", 0.0),
        ("iou_threshold", 1.5),
        ("iou_threshold", float("nan")),
        ("max_missed", -1),
        ("max_missed", 2.5),
        ("window", 0),
        ("window", True),
        ("reembed_every", 0),
        ("grow_ratio", 1.0),
        ("grow_ratio", float("inf")),
        ("max_jump", -0.5),
        ("reset_below", 1.5),
        ("reset_below", float("nan")),
        ("max_jump", float("inf")),
        ("sharper_ratio", 0.9),
        ("sharper_ratio", "2"),
        ("min_embeddings_to_name", 0),
        ("min_embeddings_to_name", 11),
        ("switch_after", 0),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrackerConfig(**{field: value})


def test_bad_calls_raise(people, matcher):
    with pytest.raises(TypeError, match="TrackerConfig"):
        FaceTracker({"window": 3})
    tracker = FaceTracker(TrackerConfig(max_missed=0))
    ((track, _),) = tracker.update([face_at(0, 0)], 5, 0.2)

    with pytest.raises(ValueError, match="frame_index must be greater than the previous 5, got 5"):
        tracker.update([face_at(0, 0)], 5, 0.2)
    with pytest.raises(ValueError, match="bbox"):
        tracker.update([Face(np.array([0, 0, 1], np.float32), LANDMARK_OFFSETS, 0.9)], 6, 0.24)
    with pytest.raises(ValueError, match=r"shape \(D,\)"):
        tracker.add_embeddings([(track, np.zeros((2, DIM)))], matcher, 5, 0.2)
    tracker.add_embeddings([(track, people["A"])], matcher, 5, 0.2)
    with pytest.raises(ValueError, match=r"shape \(128,\), got \(64,\)"):
        tracker.add_embeddings([(track, people["A"][:64])], matcher, 5, 0.2)
    with pytest.raises(ValueError, match="finite and non-zero"):
        tracker.add_embeddings([(track, np.zeros(DIM))], matcher, 5, 0.2)
    with pytest.raises(ValueError, match="matcher must return one"):
        tracker.add_embeddings([(track, people["A"])], lambda embeddings: [], 5, 0.2)

    tracker.update([], 6, 0.24)  # max_missed=0: the track leaves at once
    with pytest.raises(ValueError, match="not a live track"):
        tracker.add_embeddings([(track, people["A"])], matcher, 6, 0.24)
    with pytest.raises(ValueError, match="at least the previous 6"):
        tracker.finish(4, 0.16)


def test_events_serialise_to_json():
    event = TrackEvent(
        kind="identity_changed",
        track_id=3,
        frame_index=12,
        timestamp=0.48000001,
        name=None,
        similarity=np.float32(0.512345678),
        bbox=tuple(np.array([1.23456, 2.0, 30.5, 40.99999], np.float32)),
        previous_name="A",
    )
    record = json.loads(json.dumps(event.to_dict()))
    assert record == {
        "event": "identity_changed",
        "track": 3,
        "frame": 12,
        "time": 0.48,
        "name": None,
        "similarity": 0.5123,
        "bbox": [1.2346, 2.0, 30.5, 41.0],
        "previous_name": "A",
    }
    with pytest.raises(ValueError, match="kind must be one of"):
        TrackEvent("vanished", 1, 0, 0.0, None, None, (0.0, 0.0, 1.0, 1.0))
