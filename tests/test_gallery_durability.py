"""Durability and concurrency of one gallery file, and the odd things an enrolment folder can hold.

CPU only, no models: :class:`SlowRecognizer` embeds an image as a random vector seeded by its pixels, with a sleep
per image so that a kill lands in the middle of an enrolment. Run with ``-s`` to see the figures printed.
"""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_facenet.gallery import Gallery
from tests.conftest import REPO_ROOT

D = 16
IDENTITIES = 10
PHOTOS = 5


class SlowRecognizer:
    """Deterministic fake recognizer: the embedding of an image depends on its pixels only."""

    fingerprint = hashlib.sha256(b"slow recognizer").hexdigest()
    embedding_size = D

    def __init__(self, delay_s=0.0):
        self.delay_s = delay_s
        self.calls = 0

    def embed_largest_face(self, image):
        self.calls += 1
        time.sleep(self.delay_s)
        seed = int.from_bytes(hashlib.sha256(image.tobytes()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(D)


def write_png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    path.write_bytes(encoded.tobytes())


def make_people(root, identities=IDENTITIES, photos=PHOTOS):
    """identities x photos tiny distinct images; returns {name: [paths]}."""
    people = {}
    for person in range(identities):
        name = f"person {person:02d}"
        people[name] = [root / name / f"photo {photo}.png" for photo in range(photos)]
        for photo, path in enumerate(people[name]):
            write_png(path, seed=person * 100 + photo)
    return people


def python(code, *args, **kwargs):
    """Start ``python -c code args`` in the repository, so that it imports this package and this test module."""
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-c", code, *map(str, args)]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, text=True, **kwargs)


ENROL = """
import sys
from edge_facenet.gallery import Gallery
from tests.test_gallery_durability import SlowRecognizer
gallery, report = Gallery.from_folder(sys.argv[1], SlowRecognizer(float(sys.argv[2])))
"""


def committed_identities(path):
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(path, timeout=5)) as connection:
            return connection.execute("SELECT count(*) FROM identities").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def test_an_enrolment_killed_midway_keeps_complete_identities_and_a_rerun_finishes(tmp_path, figure):
    root = (tmp_path / "people").resolve()
    people = make_people(root)
    path = root / "gallery.sqlite3"

    # 5 photos x 60 ms per identity: the first identities commit within a second, the rest take 2.5 s more.
    process = python(ENROL, root, 0.06)
    deadline = time.monotonic() + 30
    while committed_identities(path) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL

    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = connection.execute(
            "SELECT i.name, e.source_path FROM embeddings e JOIN identities i ON i.id = e.identity_id"
        ).fetchall()
    enrolled = {}
    for name, source in rows:
        enrolled.setdefault(name, set()).add(Path(source))
    figure(f"identities committed before SIGKILL: {len(enrolled)} of {IDENTITIES}")
    assert 2 <= len(enrolled) < IDENTITIES
    for name, sources in enrolled.items():
        assert sources == set(people[name]), f"{name} is half-enrolled"

    recognizer = SlowRecognizer()
    gallery, report = Gallery.from_folder(root, recognizer)
    with gallery:
        assert report.unchanged == tuple(sorted(file for name in enrolled for file in people[name]))
        assert report.added == tuple(sorted(file for name in people if name not in enrolled for file in people[name]))
        assert report.failed == report.removed == ()
        assert recognizer.calls == PHOTOS * (IDENTITIES - len(enrolled))
        assert gallery.names() == sorted(people) and gallery.count() == IDENTITIES * PHOTOS


def vector_of(person):
    return np.random.default_rng(1000 + person).standard_normal(D)


def add_people(gallery, people):
    gallery.add_many([f"person{person:03d}" for person in people], np.stack([vector_of(person) for person in people]))


READ = """
import sys
from tests.test_gallery_durability import search_until_seen
print(search_until_seen(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), ready=lambda: print("ready", flush=True)))
"""


def search_until_seen(path, last, timeout_s, ready=None):
    """Search the gallery in a loop until ``person<last>`` is found; return what happened as JSON."""
    known = {f"person{person:03d}" for person in range(last + 1)}
    searches, problems, seen = 0, [], False
    rng = np.random.default_rng(os.getpid())
    began = time.monotonic()
    with Gallery(path, SlowRecognizer.fingerprint, D) as gallery:
        while not seen and time.monotonic() - began < timeout_s:
            try:
                hits = gallery.search(np.stack([rng.standard_normal(D), vector_of(last)]), k=5)
            except Exception as error:
                problems.append(f"{type(error).__name__}: {error}")
                if len(problems) > 100:
                    break
                continue
            searches += 1
            if searches == 1 and ready is not None:
                ready()
            for candidates in hits:
                names = [candidate.name for candidate in candidates]
                similarities = [candidate.similarity for candidate in candidates]
                if len(names) != 5 or not set(names) <= known or similarities != sorted(similarities, reverse=True):
                    problems.append(f"inconsistent result {names} {similarities}")
            seen = hits[1][0].name == f"person{last:03d}" and hits[1][0].similarity > 0.999
    return json.dumps({"searches": searches, "problems": problems[:5], "seen": seen})


def test_readers_search_safely_while_a_writer_enrols(tmp_path, figure):
    path = tmp_path / "gallery.sqlite3"
    first, last = 20, 79
    with Gallery(path, SlowRecognizer.fingerprint, D) as writer:
        add_people(writer, range(first))

        readers = [python(READ, path, last, 30) for _ in range(2)]
        assert [reader.stdout.readline() for reader in readers] == ["ready\n", "ready\n"]
        in_thread = {}
        thread = threading.Thread(target=lambda: in_thread.update(json.loads(search_until_seen(path, last, 30))))
        thread.start()
        began = time.monotonic()
        for person in range(first, 50):  # one transaction per identity, as enrolment does
            writer.add(f"person{person:03d}", vector_of(person))
            time.sleep(0.02)
        writer.remove("person000")  # checkpoints and truncates the log while the readers read
        add_people(writer, range(50, last + 1))
        written_s = time.monotonic() - began

        outcomes = [json.loads(reader.communicate(timeout=60)[0].strip().splitlines()[-1]) for reader in readers]
        thread.join(timeout=60)
    outcomes.append(in_thread)

    figure(
        f"writer: {last + 1 - first} identities in {written_s:.2f} s; searches per reader: "
        f"{[outcome['searches'] for outcome in outcomes]}"
    )
    for outcome in outcomes:
        assert outcome["problems"] == [] and outcome["seen"] and outcome["searches"] > 0


def test_symbolic_link_loops_end_the_scan_and_are_reported(tmp_path):
    root = (tmp_path / "people").resolve()
    people = make_people(root, identities=2, photos=2)
    alice = root / "person 00"
    (root / "loop").symlink_to(root / "loop")  # a link to itself at the top: neither a folder nor followed
    (root / "back").symlink_to(root)  # an identity folder that is the enrolment folder again
    (alice / "up").symlink_to(alice)  # a folder loop one level down: deeper folders are ignored
    (alice / "self.jpg").symlink_to(alice / "self.jpg")  # an image name that loops

    began = time.monotonic()
    gallery, report = Gallery.from_folder(root, SlowRecognizer())
    with gallery:
        assert time.monotonic() - began < 10
        assert report.failed == (
            (root / "back", "identity folder links back to the enrolment folder; not followed"),
            (alice / "self.jpg", "cannot read file: Too many levels of symbolic links"),
        )
        assert report.added == tuple(sorted(file for files in people.values() for file in files))
        assert gallery.names() == sorted(people)


def test_an_image_in_two_identity_folders_is_enrolled_under_neither_and_reported(tmp_path):
    root = (tmp_path / "people").resolve()
    people = make_people(root, identities=3, photos=2)
    ada, bob = root / "person 00", root / "person 01"
    Gallery.from_folder(root, SlowRecognizer())[0].close()
    (bob / "copy.png").write_bytes(people["person 00"][0].read_bytes())  # mislabelled: ada's photo under bob

    gallery, report = Gallery.from_folder(root, SlowRecognizer())
    with gallery:
        assert report.failed == (
            (ada / "photo 0.png", f"same image as {bob / 'copy.png'} of identity 'person 01'; enrolled under neither"),
            (bob / "copy.png", f"same image as {ada / 'photo 0.png'} of identity 'person 00'; enrolled under neither"),
        )
        assert report.removed == (ada / "photo 0.png",)  # its earlier enrolment is dropped until the copy goes
        assert (gallery.count("person 00"), gallery.count("person 01")) == (1, 2)

    (bob / "copy.png").unlink()
    gallery, report = Gallery.from_folder(root, SlowRecognizer())
    with gallery:
        assert report.added == (ada / "photo 0.png",) and report.failed == ()
        assert (gallery.count("person 00"), gallery.count("person 01")) == (2, 2)


def test_unicode_spaces_empty_and_fake_images(tmp_path):
    root = (tmp_path / "enrolment folder ü").resolve()
    write_png(root / "José María" / "foto 1.png", seed=1)
    write_png(root / "李 雷" / "照片 二.PNG", seed=2)
    (root / "李 雷" / "empty.jpg").write_bytes(b"")
    (root / "李 雷" / "notes.png").write_text("a text file with an image name")

    gallery, report = Gallery.from_folder(root, SlowRecognizer())
    with gallery:
        assert report.added == (root / "José María" / "foto 1.png", root / "李 雷" / "照片 二.PNG")
        assert report.failed == (
            (root / "李 雷" / "empty.jpg", "empty file"),
            (root / "李 雷" / "notes.png", "cannot decode image"),
        )
        assert gallery.names() == ["José María", "李 雷"]
        image = cv2.imdecode(np.fromfile(root / "José María" / "foto 1.png", dtype=np.uint8), cv2.IMREAD_COLOR)
        assert gallery.search(SlowRecognizer().embed_largest_face(image), k=1)[0][0].name == "José María"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_image_is_reported_and_keeps_its_earlier_embedding(tmp_path):
    root = (tmp_path / "people").resolve()
    people = make_people(root, identities=2, photos=2)
    Gallery.from_folder(root, SlowRecognizer())[0].close()
    locked = people["person 01"][1]
    locked.chmod(0)
    try:
        gallery, report = Gallery.from_folder(root, SlowRecognizer())
    finally:
        locked.chmod(0o644)
    with gallery:
        assert report.failed == ((locked, "cannot read file: Permission denied"),)
        assert report.removed == () and gallery.count("person 01") == 2
