"""The camera app end to end on the demo video: events with the right names, the stranger unknown, clear errors."""

import json

import cv2
import numpy as np
import pytest

from edge_facenet.camera import demo
from edge_facenet.camera.app import CameraApp, describe, main
from edge_facenet.camera.tracker import TrackerConfig
from edge_facenet.detector import FaceDetector
from edge_facenet.recognizer import Recognizer


@pytest.fixture(scope="module")
def material(lfw_dir, tmp_path_factory):
    return demo.prepare_demo(tmp_path_factory.mktemp("demo"), lfw_dir)


def person_at(frame: int, bbox: list[float]) -> str | None:
    """Who the demo script put nearest to a box centre at a frame."""
    centre = np.array([(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2])
    gaps = {
        name: np.linalg.norm(np.array([x, y]) + demo.FACE_SIDE / 2 - centre)
        for name, x, y in demo.scripted_faces(frame)
    }
    best = min(gaps, key=gaps.get, default=None)
    return best if best is not None and gaps[best] < demo.FACE_SIDE / 2 else None


def demo_arguments(material, detector_path):
    """The app on the demo video with the demo people."""
    return ["--gallery", str(material.people_dir), "--source", str(material.video), "--detector", str(detector_path)]


def run(arguments, capsys):
    code = main(arguments)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_app_names_the_enrolled_people_and_leaves_the_stranger_unknown(material, detector_path, capsys, tmp_path):
    output = tmp_path / "annotated.mp4"
    arguments = demo_arguments(material, detector_path)
    code, out, err = run([*arguments, "--no-display", "--json", "--max-frames", "500", "--output", str(output)], capsys)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    summary = events.pop()
    assert summary["event"] == "summary" and summary["frames"] == material.frames
    assert summary["embeddings"] < summary["faces"] / 2  # tracking embeds a face every few frames, not every frame

    people = {}  # track -> the scripted person it started on
    names = {}  # track -> every name the track was given
    for event in events:
        if event["event"] == "appeared":
            people[event["track"]] = person_at(event["frame"], event["bbox"])
        if event["event"] in ("identified", "identity_changed"):
            names.setdefault(event["track"], []).append(event["name"])
    assert {e["event"] for e in events} >= {"appeared", "identified", "left"}
    assert sum(e["event"] == "appeared" for e in events) == sum(e["event"] == "left" for e in events)
    scripted = {track: person for track, person in people.items() if person is not None}
    assert set(scripted.values()) == {*demo.GALLERY_PEOPLE, demo.STRANGER}
    for track, person in scripted.items():
        given = [name for name in names.get(track, []) if name is not None]
        if person == demo.STRANGER:
            assert given == [], f"the stranger was named {given}"
        else:
            assert given and set(given) == {person}, f"track {track} of {person} was named {names.get(track)}"
    assert set(summary["named"]) == set(demo.GALLERY_PEOPLE)
    assert output.is_file() and output.stat().st_size > 10_000


def test_text_output_ends_with_the_summary(material, detector_path, capsys):
    arguments = demo_arguments(material, detector_path)
    code, out, _ = run([*arguments, "--no-display", "--max-frames", "30"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("gallery ") and "4 people" in lines[0]
    assert any("identified: George_W_Bush" in line for line in lines)
    assert lines[-1].startswith("summary: 30 frames")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.mp4", "not found"),
        ("http://127.0.0.1:9/stream.mjpg", "cannot open"),
        ("ftp:/nowhere", ""),
    ],
)
def test_bad_sources_exit_with_one_line(material, detector_path, capsys, tmp_path, source, message):
    source = str(tmp_path / source) if source.endswith(".mp4") else source
    arguments = ["--gallery", str(material.people_dir), "--source", source, "--detector", str(detector_path)]
    code, _, err = run([*arguments, "--no-display"], capsys)
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_an_empty_gallery_folder_exits_with_one_line(material, detector_path, capsys, tmp_path):
    empty = tmp_path / "nobody"
    empty.mkdir()
    arguments = ["--gallery", str(empty), "--source", str(material.video), "--detector", str(detector_path)]
    code, _, err = run([*arguments, "--no-display"], capsys)
    assert code == 1 and "no one could be enrolled" in err and err.count("\n") == 1
    code, _, err = run(["--gallery", str(tmp_path / "absent"), "--source", str(material.video)], capsys)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1


def test_bad_numbers_exit_with_one_line(material, detector_path, capsys):
    arguments = demo_arguments(material, detector_path)
    for option, value, message in [
        ("--watch", "-1", "--watch must be 0 (off) or a positive number of seconds, got -1.0"),
        ("--stream-timeout", "0", "--stream-timeout must be a positive number of seconds, got 0.0"),
        ("--stream-timeout", "nan", "--stream-timeout must be a positive number of seconds, got nan"),
        ("--max-frames", "0", "--max-frames must be at least 1, got 0"),
    ]:
        code, _, err = run([*arguments, "--no-display", option, value], capsys)
        assert (code, err) == (1, f"error: {message}\n")


def test_a_gallery_update_reads_as_one_line():
    event = {"event": "gallery_updated", "frame": 42, "time": 2.8, "added": 2, "removed": 1, "failed": 0, "people": 5}
    assert (
        describe(event) == "[   2.80s frame    42] gallery updated: 2 photos added, 1 removed, 0 not enrolled; 5 people"
    )


def test_a_face_coming_into_focus_is_embedded_again_at_once(lfw_dir, detector_path, random_model_path):
    # One LFW photo on a grey 640x480 frame: blurred (a moving face) for six frames, then sharp.
    photo = cv2.imread(str(lfw_dir / "images" / "George_W_Bush" / "George_W_Bush_0001.jpg"))
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[100:350, 200:450] = photo
    blurred = cv2.GaussianBlur(frame, (0, 0), 2.5)
    recognizer = Recognizer(random_model_path, FaceDetector(detector_path), threshold=0.5)
    app = CameraApp(recognizer, tracker_config=TrackerConfig(reembed_every=100))

    embedded = []
    for index in range(10):
        before = app.summary.embeddings
        app.process(blurred if index < 6 else frame, index, index / 25)
        if app.summary.embeddings > before:
            embedded.append(index)
    assert app.summary.faces == 10 and app.tracker.summary().tracks_created == 1
    assert embedded == [0, 6]
