"""The shipped reference model: `Recognizer()` with no arguments recognises LFW people it never trained on.

The package's nn4_small2 (edge_facenet/models/MODEL_CARD.md) was trained without the people of people.txt folds
6-10, so the people enrolled and identified here are new to it.
"""

import cv2
import numpy as np
import onnxruntime
import pytest

from edge_facenet.embedder import DEFAULT_MODELS
from edge_facenet.lfw import image_path, read_people_folds
from edge_facenet.recognizer import Recognizer

HELD_OUT_FOLDS = range(6, 11)
PEOPLE = 25  # enrolled, two photos each; four other photos each are identified
STRANGERS = 25  # never enrolled, one photo each


@pytest.fixture(scope="module")
def held_out_people(lfw_dir):
    """(enrolled names, strangers): people of folds 6-10 by name, those with six or more photos enrolled."""
    folds = read_people_folds(lfw_dir / "people.txt")
    counts = {}
    for line in (lfw_dir / "lfw-names.txt").read_text().splitlines():
        name, count = line.split("\t")
        counts[name] = int(count)
    held_out = sorted(name for name, fold in folds.items() if fold in HELD_OUT_FOLDS)
    enrolled = [name for name in held_out if counts[name] >= 6][:PEOPLE]
    strangers = [name for name in held_out if counts[name] < 6][:STRANGERS]
    return enrolled, strangers


@pytest.fixture(scope="module", params=["fp32", "int8"])
def recognizer(request, detector_path, held_out_people, lfw_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGE_FACENET_DETECTOR", str(detector_path))
        recognizer = Recognizer(precision=request.param)
    for name in held_out_people[0]:
        assert recognizer.enroll(name, [image_path(lfw_dir, name, number) for number in (1, 2)]) == 2
    return recognizer


def main_face(matches):
    """The face nearest the centre of a 250x250 LFW photo: the labelled person."""
    assert matches
    return min(matches, key=lambda m: np.hypot(*((m.bbox[:2] + m.bbox[2:]) / 2 - 125)))


def test_the_recognizer_uses_the_shipped_trained_model(recognizer):
    embedder = recognizer.embedder
    assert embedder.model_path == DEFAULT_MODELS[embedder.metadata.precision]
    assert embedder.metadata.arch == "nn4_small2" and not embedder.metadata.is_random
    assert 0.0 < embedder.metadata.threshold < 1.0


def test_the_default_on_a_cpu_is_the_int8_model(detector_path):
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA: the default there is FP32")
    assert Recognizer(detector=detector_path).embedder.metadata.precision == "int8"


def test_enrolled_held_out_people_are_identified_in_other_photos(recognizer, held_out_people, lfw_dir):
    enrolled, _ = held_out_people
    shipped = recognizer.match_threshold()
    nearest, named_right, named_wrong = [], [], []
    for name in enrolled:
        for number in (3, 4, 5, 6):
            match = main_face(recognizer.identify(cv2.imread(str(image_path(lfw_dir, name, number))), threshold=-1.0))
            named = match.name if match.similarity >= shipped else None
            nearest.append(match.name == name)
            named_right.append(named == name)
            named_wrong.append(named not in (None, name))
    # Measured on this machine, FP32 and INT8 alike: rank-1 0.88 among the 25; at the shipped threshold (FAR 1e-3
    # on held-out training people) 0.21 named, none wrongly. Most true matches stay unknown there: the price of
    # rarely naming a stranger (MODEL_CARD.md gives the trade-off at other thresholds).
    assert np.mean(nearest) >= 0.85, f"rank-1 {np.mean(nearest):.3f}"
    assert np.mean(named_right) >= 0.15, f"named at the shipped threshold {np.mean(named_right):.3f}"
    assert not any(named_wrong)


def test_strangers_stay_unknown_at_the_shipped_threshold(recognizer, held_out_people, lfw_dir):
    _, strangers = held_out_people
    named = [main_face(recognizer.identify(cv2.imread(str(image_path(lfw_dir, name, 1))))).name for name in strangers]
    assert sum(name is not None for name in named) <= 1, named
