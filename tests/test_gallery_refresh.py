"""A gallery's search matrix follows the file: additions are read on their own, anything else reloads it all.

The reference for every check is a gallery opened afresh on the same file after the change, which reads everything.
"""

import sqlite3
from contextlib import closing

import numpy as np
import pytest

import edge_facenet.gallery
from edge_facenet import gallery_index, gallery_storage
from edge_facenet.gallery import Gallery
from tests.test_gallery_scale import needs_faiss

D = 8
FINGERPRINT = "cd" * 32


def unit_rows(rng, count, size=D):
    rows = rng.standard_normal((count, size))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def every_score(gallery, queries):
    """(name, similarity) of every identity for every query, in the gallery's ranking."""
    k = max(1, len(gallery))
    return [[(c.name, round(c.similarity, 4)) for c in row] for row in gallery.search(queries, k=k)]


def same_scores(got, expected):
    # Ties may come in either order: compare each query's scores by name.
    return [dict(row) for row in got] == [dict(row) for row in expected]


def newest_identity(path):
    with closing(sqlite3.connect(path)) as connection:
        query = "SELECT i.name FROM embeddings e JOIN identities i ON i.id = e.identity_id ORDER BY e.id DESC LIMIT 1"
        return connection.execute(query).fetchone()[0]


@pytest.fixture
def full_reads(monkeypatch):
    reads = []
    real = gallery_storage.read_embeddings
    monkeypatch.setattr(edge_facenet.gallery, "read_embeddings", lambda *args: reads.append(1) or real(*args))
    return reads


@pytest.mark.parametrize(("dtype", "seed"), [("float32", 11), ("float32", 12), ("float32", 13), ("float16", 14)])
def test_a_long_lived_gallery_matches_a_fresh_one_through_random_changes(tmp_path, dtype, seed, full_reads):
    rng = np.random.default_rng(seed)
    path = tmp_path / "gallery.sqlite3"
    queries = unit_rows(rng, 12)
    operations = {"add new": 0, "add to existing": 0, "add many": 0, "remove": 0, "rename": 0}
    foreign_rewrites = 0  # removals and renames by the other connection since the reader's last search
    checks = reads_expected = 0
    with Gallery(path, FINGERPRINT, D, dtype=dtype) as reader, Gallery(path, FINGERPRINT, D, dtype=dtype) as writer:
        for step in range(120):
            gallery = reader if step % 3 == 0 else writer  # the reader's own writes and another connection's
            names = gallery.names()
            choice = rng.choice(list(operations), p=[0.35, 0.25, 0.2, 0.1, 0.1]) if names else "add new"
            if choice == "add new":
                gallery.add(f"new{step}", unit_rows(rng, int(rng.integers(1, 3))))
            elif choice == "add to existing":
                gallery.add(str(rng.choice(names)), unit_rows(rng, 1))
            elif choice == "add many":
                chosen = [str(rng.choice(names)) if rng.random() < 0.3 else f"bulk{step}-{i}" for i in range(4)]
                gallery.add_many(chosen, unit_rows(rng, 4))
            elif choice == "remove":  # half the time the newest rows' identity: SQLite may reuse their ids
                gallery.remove(newest_identity(path) if rng.random() < 0.5 else str(rng.choice(names)))
            else:
                gallery.rename(str(rng.choice(names)), f"renamed{step}")
            operations[choice] += 1
            foreign_rewrites += gallery is writer and choice in ("remove", "rename")

            if rng.random() < 0.5:  # otherwise changes pile up before the reader's next search
                checks += 1
                with Gallery(path, FINGERPRINT, D, dtype=dtype) as fresh:
                    assert same_scores(every_score(reader, queries), every_score(fresh, queries)), (step, choice)
                # The fresh gallery's read, and the reader's: its first, or one after the other's removals or renames.
                reads_expected += 1 + (checks == 1 or foreign_rewrites > 0)
                foreign_rewrites = 0

    assert all(operations.values()) and checks > 40, (operations, checks)
    # Besides the fresh galleries' reads, the reader read everything only after removals or renames by the other
    # connection; never for additions, nor for its own removals and renames (applied in memory).
    assert len(full_reads) == reads_expected


def test_additions_are_read_without_reading_the_gallery_again(tmp_path, full_reads):
    rng = np.random.default_rng(2)
    path = tmp_path / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, D) as gallery, Gallery(path, FINGERPRINT, D) as other:
        gallery.add_many([f"id{i}" for i in range(1000)], unit_rows(rng, 1000))
        gallery.search(unit_rows(rng, 1))
        for step in range(20):
            (gallery if step % 2 else other).add(f"late{step}", unit_rows(rng, 1))
            vector = unit_rows(rng, 1)
            other.add("id5", vector)  # an older identity gains a photo: regrouped in memory
            assert gallery.search(vector, k=1)[0][0].name == "id5"
        assert len(full_reads) == 1
        assert len(gallery.names()) == 1020


def test_own_removals_and_renames_apply_in_memory_unless_another_connection_interleaves(tmp_path, full_reads):
    rng = np.random.default_rng(6)
    path = tmp_path / "gallery.sqlite3"
    vectors = unit_rows(rng, 6)
    with Gallery(path, FINGERPRINT, D) as gallery, Gallery(path, FINGERPRINT, D) as other:
        gallery.add_many(["ada", "bob", "cy", "dee"], vectors[:4])
        gallery.add("bob", vectors[4])  # two rows for bob
        gallery.search(vectors[0])
        gallery.remove("bob")
        other.add("eve", vectors[5])  # an addition by the other connection does not break the chain
        gallery.rename("cy", "cyd")
        assert [gallery.search(v, k=1)[0][0].name for v in vectors[[0, 2, 3, 5]]] == ["ada", "cyd", "dee", "eve"]
        assert "bob" not in {c.name for c in gallery.search(vectors[1], k=5)[0]}
        assert len(full_reads) == 1

        gallery.remove("ada")
        other.rename("dee", "dot")  # another connection's rename in between: the whole file is read
        assert [gallery.search(v, k=1)[0][0].name for v in vectors[[2, 3, 5]]] == ["cyd", "dot", "eve"]
        assert len(gallery.search(vectors[0], k=9)[0]) == 3
        assert len(full_reads) == 2


def test_appended_rows_go_into_spare_memory(tmp_path):
    rng = np.random.default_rng(4)
    with Gallery(tmp_path / "gallery.sqlite3", FINGERPRINT, D) as gallery:
        gallery.add_many([f"id{i}" for i in range(400)], unit_rows(rng, 400))
        gallery.search(unit_rows(rng, 1))
        spare = gallery._index.spare
        assert spare is not None and len(spare) == 400 + 100  # a quarter more than the rows read
        for step in range(100):
            gallery.add(f"more{step}", unit_rows(rng, 1))
            gallery.search(unit_rows(rng, 1))
            assert gallery._index.spare is spare and np.shares_memory(gallery._index.matrix, spare)
        gallery.add("one too many", unit_rows(rng, 1))
        assert gallery.search(gallery._index.matrix[:1], k=1)[0][0].name == "id0"
        assert len(gallery._index.spare) == 501 + 125 and not np.shares_memory(gallery._index.matrix, spare)
        assert gallery._index.names[-1] == "one too many" and len(gallery._index.matrix) == 501


def test_a_gallery_made_before_the_change_counter_gets_it_when_opened(tmp_path, full_reads):
    path = tmp_path / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, D) as gallery:
        gallery.add("ada", np.eye(D)[0])
    with closing(sqlite3.connect(path)) as connection:
        for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            connection.execute(f"DROP TRIGGER {name}")
        connection.execute("DELETE FROM meta WHERE key = 'rewrites'")
        connection.commit()
        assert not gallery_storage.has_change_counter(connection)

    with Gallery(path, FINGERPRINT, D) as gallery:
        gallery.search(np.eye(D)[0])
        gallery.add("bob", np.eye(D)[1])
        assert gallery.search(np.eye(D)[1], k=1)[0][0].name == "bob"
        gallery.remove("bob")
        assert [c.name for c in gallery.search(np.eye(D)[1], k=5)[0]] == ["ada"]
    assert len(full_reads) == 1
    with closing(sqlite3.connect(path)) as connection:
        assert gallery_storage.has_change_counter(connection)


def test_without_the_change_counter_every_change_reads_everything(tmp_path, monkeypatch, full_reads):
    # A read-only file cannot be given the triggers; searches then stay right by reading the whole file.
    monkeypatch.setattr(gallery_storage, "_add_triggers", lambda connection, where: None)
    path = tmp_path / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, D) as gallery, Gallery(path, FINGERPRINT, D) as other:
        gallery.add("ada", np.eye(D)[0])
        gallery.search(np.eye(D)[0])
        other.add("bob", np.eye(D)[1])
        assert gallery.search(np.eye(D)[1], k=1)[0][0].name == "bob"
        other.remove("bob")
        assert [c.name for c in gallery.search(np.eye(D)[1], k=5)[0]] == ["ada"]
    assert len(full_reads) == 3


def test_deleting_one_embedding_row_makes_the_next_search_read_everything(tmp_path, full_reads):
    # As enroll_folder does for a photo that left the folder: the trigger counts it, so the next search reloads.
    path = tmp_path / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, D) as gallery, Gallery(path, FINGERPRINT, D) as other:
        other.add("ada", np.eye(D)[:2], source_path="/photos/ada/1.jpg")
        gallery.search(np.eye(D)[0])
        with other._write() as connection:
            connection.execute("DELETE FROM embeddings WHERE id = (SELECT max(id) FROM embeddings)")
        assert gallery.search(np.eye(D)[1], k=1)[0][0].similarity == pytest.approx(0.0, abs=1e-6)
    assert len(full_reads) == 2


@needs_faiss
def test_an_ivf_index_takes_new_rows_without_being_built_again(tmp_path, monkeypatch):
    built = []
    real_init = gallery_index.IvfIndex.__init__
    monkeypatch.setattr(gallery_index.IvfIndex, "__init__", lambda self, e: built.append(1) or real_init(self, e))
    rng = np.random.default_rng(8)
    path = tmp_path / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, 32, index="ivf") as gallery:
        gallery.add_many([f"id{i}" for i in range(4000)], unit_rows(rng, 4000, 32))
        gallery.search(unit_rows(rng, 1, 32))
        assert len(built) == 1
        late = unit_rows(rng, 200, 32)
        for start in range(0, 200, 50):
            gallery.add_many([f"late{i}" for i in range(start, start + 50)], late[start : start + 50])
            hits = gallery.search(late[start : start + 50], k=1)
            assert [row[0].name for row in hits] == [f"late{i}" for i in range(start, start + 50)]
        assert len(built) == 1

        gallery.add_many([f"bulk{i}" for i in range(4200)], unit_rows(rng, 4200, 32))  # past twice the built rows
        gallery.search(unit_rows(rng, 1, 32))
        assert len(built) == 2
        gallery.rename("id0", "zed")  # the rows stay where they are: the index stays
        assert gallery.search(gallery._index.matrix[:1], k=1)[0][0].name == "zed"
        assert len(built) == 2
        gallery.remove("id1")  # rows move up: built again
        gallery.search(unit_rows(rng, 1, 32))
        assert len(built) == 3
