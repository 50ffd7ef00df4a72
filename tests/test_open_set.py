"""Open-set identification with real face embeddings: dlib's descriptors of LFW stand in for a trained embedder.

These check that the gallery's nearest-identity search and the threshold rule name enrolled people from a new photo
and reject people who are not enrolled, on real data. The threshold is chosen on LFW's View 1 training pairs for a
false-accept rate of 1e-3, as a model's metadata threshold will be.
"""

import hashlib

import numpy as np
import pytest

from edge_facenet.gallery import Gallery
from edge_facenet.lfw import read_pairs
from edge_facenet.metrics import threshold_at_far

FINGERPRINT = hashlib.sha256(b"dlib_face_recognition_resnet_model_v1").hexdigest()


@pytest.fixture(scope="module")
def dlib(lfw_dir):
    with np.load(lfw_dir / "dlib_resnet_embeddings.npz", allow_pickle=False) as data:
        names, embeddings = data["names"].tolist(), data["embeddings"]
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    return {name: vector for name, vector in zip(names, unit, strict=True)}


@pytest.fixture(scope="module")
def threshold(lfw_dir, dlib):
    pairs = read_pairs(lfw_dir / "pairsDevTrain.txt")
    similarities = np.array([dlib[p.left] @ dlib[p.right] for p in pairs])
    return threshold_at_far(similarities, np.array([p.same for p in pairs]), 1e-3)


@pytest.fixture(scope="module")
def people(dlib):
    by_person: dict[str, list[str]] = {}
    for key in sorted(dlib):
        by_person.setdefault(key.split("/")[0], []).append(key)
    with_two = [p for p, keys in by_person.items() if len(keys) >= 2]
    singles = [p for p, keys in by_person.items() if len(keys) == 1]
    return by_person, with_two[::8][:200], singles[::10][:200]


def test_five_people_enrolled_from_one_photo_are_named_from_another(dlib, threshold, people):
    by_person, enrolled, strangers = people
    with Gallery(None, FINGERPRINT, 128) as gallery:
        for person in enrolled[:5]:
            gallery.add(person, dlib[by_person[person][0]])
        for person in enrolled[:5]:
            (best,) = gallery.search(dlib[by_person[person][1]], k=1)[0]
            assert best.name == person and best.similarity >= threshold
        for person in strangers[:5]:
            (best,) = gallery.search(dlib[by_person[person][0]], k=1)[0]
            assert best.similarity < threshold


def test_identification_and_rejection_rates_on_200_people(dlib, threshold, people):
    by_person, enrolled, strangers = people
    with Gallery(None, FINGERPRINT, 128) as gallery:
        for person in enrolled:
            gallery.add(person, dlib[by_person[person][0]])
        probes = np.stack([dlib[by_person[p][1]] for p in enrolled])
        results = gallery.search(probes, k=1)
        named = [r[0].name if r[0].similarity >= threshold else None for r in results]
        correct = np.mean([name == person for name, person in zip(named, enrolled, strict=True)])
        wrong = np.mean([name not in (None, person) for name, person in zip(named, enrolled, strict=True)])

        impostors = gallery.search(np.stack([dlib[by_person[p][0]] for p in strangers]), k=1)
        rejected = np.mean([r[0].similarity < threshold for r in impostors])
    # dlib is a strong model; at FAR 1e-3 per pair, a 200-identity gallery still rejects most strangers.
    assert correct >= 0.85, correct
    assert wrong <= 0.03, wrong
    assert rejected >= 0.75, rejected
