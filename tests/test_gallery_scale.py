"""Large galleries: bulk enrolment, the exact search's fast paths, float16 storage and the optional IVF index.

The figures at a million identities (search latency, load time, IVF recall) come from the benchmark, not from here;
these tests run the same code paths at sizes that take a few seconds at most.
"""

import sqlite3
import sys
from contextlib import closing

import numpy as np
import pytest

import edge_facenet.gallery
from edge_facenet import gallery_index, gallery_storage
from edge_facenet.gallery import Gallery
from edge_facenet.gallery_index import EmbeddingMatrix, IvfIndex, exact_search, top_k

D = 16
FINGERPRINT = "ab" * 32
try:
    import faiss  # noqa: F401

    HAS_FAISS = True
except ImportError:
    HAS_FAISS = False
needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason="faiss is not installed (pip install 'edge-facenet[ann]')")


def unit_rows(rng, count, size=D):
    rows = rng.standard_normal((count, size))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def near(rng, centres, cosine):
    """Unit queries whose cosine with their centre is about ``cosine`` (noise orthogonal on average)."""
    sigma = np.tan(np.arccos(cosine)) / np.sqrt(centres.shape[1])
    queries = centres + rng.normal(0.0, sigma, centres.shape)
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def reference_search(names, vectors, queries, k):
    """Brute force with the max-over-embeddings rule, ranked by (-similarity, name)."""
    results = []
    for query in queries:
        best = {}
        for name, vector in zip(names, vectors, strict=True):
            similarity = float(np.dot(query, vector))
            best[name] = max(best.get(name, -2.0), similarity)
        results.append(sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k])
    return results


def assert_same_ranking(got, expected, tolerance=1e-5):
    for candidates, reference in zip(got, expected, strict=True):
        assert len(candidates) == len(reference)
        for candidate, (_, similarity) in zip(candidates, reference, strict=True):
            assert candidate.similarity == pytest.approx(similarity, abs=tolerance)
        assert {c.name for c in candidates if c.similarity > reference[-1][1] + tolerance} == {
            name for name, similarity in reference if similarity > reference[-1][1] + tolerance
        }


def test_add_many_enrols_everything_in_one_call_like_add():
    rng = np.random.default_rng(0)
    vectors = unit_rows(rng, 60) * rng.uniform(0.5, 3.0, (60, 1))  # unnormalised on purpose
    names = [f"person{i % 25:02d}" for i in range(60)]  # 25 identities, some with three embeddings
    queries = unit_rows(rng, 10)

    with Gallery(None, FINGERPRINT, D) as bulk, Gallery(None, FINGERPRINT, D) as one_by_one:
        assert bulk.add_many(names, vectors, source_paths=[f"{i}.jpg" if i % 2 else None for i in range(60)]) == 60
        for name, vector in zip(names, vectors, strict=True):
            one_by_one.add(name, vector)

        assert bulk.names() == one_by_one.names() and len(bulk) == 25 and bulk.count() == 60
        assert bulk.count("person03") == 3
        assert ranking(bulk.search(queries, k=7)) == ranking(one_by_one.search(queries, k=7))
        assert bulk.add_many([], np.zeros((0, D))) == 0


def ranking(results):
    return [[(c.name, round(c.similarity, 5)) for c in candidates] for candidates in results]


def test_add_many_stores_normalised_blobs_and_source_paths(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, D) as gallery:
        gallery.add_many(["ada", "bob"], np.eye(D)[:2] * 5, source_paths=["ada.jpg", None])
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute(
            "SELECT i.name, e.vector, e.source_path FROM embeddings e JOIN identities i "
            "ON i.id = e.identity_id ORDER BY i.name"
        ).fetchall()
    assert [(name, source) for name, _, source in rows] == [("ada", "ada.jpg"), ("bob", None)]
    np.testing.assert_array_equal(np.frombuffer(rows[1][1], dtype="<f4"), np.eye(D)[1])


@pytest.mark.parametrize(
    ("names", "embeddings", "sources", "message"),
    [
        (["a", "b"], np.ones((3, D)), None, "2 names, 3 embeddings and 2 source paths"),
        (["a", "b"], np.ones((2, D)), ["x.jpg"], "2 names, 2 embeddings and 1 source paths"),
        (["a", " "], np.ones((2, D)), None, "non-empty string"),
        (["a", 7], np.ones((2, D)), None, "non-empty string"),
        ("ab", np.ones((2, D)), None, "sequence of names"),
        (["a"], np.ones(D), None, r"shape \(N, 16\), got \(16,\)"),
        (["a"], np.ones((1, D + 1)), None, r"got shape \(1, 17\)"),
        (["a", "b"], np.stack([np.ones(D), np.zeros(D)]), None, "all-zero"),
        (["a", "b"], np.stack([np.ones(D), np.full(D, np.nan)]), None, "NaN"),
    ],
)
def test_add_many_validates_like_add_and_adds_nothing_on_error(names, embeddings, sources, message):
    with Gallery(None, FINGERPRINT, D) as gallery:
        with pytest.raises(ValueError, match=message):
            gallery.add_many(names, embeddings, source_paths=sources)
        assert len(gallery) == 0 and gallery.count() == 0


def test_add_many_is_one_transaction(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, D) as gallery:
        with closing(sqlite3.connect(path, isolation_level=None)) as connection:
            connection.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON embeddings WHEN (SELECT count(*) FROM embeddings) >= 500 "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        with pytest.raises(sqlite3.DatabaseError, match="disk full"):
            gallery.add_many([f"p{i}" for i in range(1000)], unit_rows(np.random.default_rng(0), 1000))
        assert len(gallery) == 0 and gallery.count() == 0


def test_exact_search_groups_rows_added_to_older_identities_later():
    rng = np.random.default_rng(1)
    names, vectors = [], []
    with Gallery(None, FINGERPRINT, D) as gallery:
        for _ in range(4):  # every batch adds rows to identities of earlier batches, out of order
            batch_names = [f"id{i:03d}" for i in rng.integers(0, 120, 80)]
            batch_vectors = unit_rows(rng, 80)
            gallery.add_many(batch_names, batch_vectors)
            names += batch_names
            vectors += list(batch_vectors)
        queries = np.concatenate([unit_rows(rng, 20), np.stack(vectors[:5])])

        for k in (1, 5, 200):
            assert_same_ranking(gallery.search(queries, k=k), reference_search(names, vectors, queries, k))


def test_exact_search_with_one_row_per_identity_matches_brute_force():
    rng = np.random.default_rng(2)
    vectors = unit_rows(rng, 5000)
    names = [f"id{i:05d}" for i in range(5000)]
    queries = np.concatenate([near(rng, vectors[:30], 0.8), unit_rows(rng, 10)])
    with Gallery(None, FINGERPRINT, D) as gallery:
        gallery.add_many(names, vectors)
        got = gallery.search(queries, k=5)
    assert_same_ranking(got, reference_search(names, vectors, queries, 5))


@pytest.mark.parametrize("count", [1, 7, 1023, 1024, 1025, 4096, 20_000])
def test_top_k_is_the_k_largest_best_first_and_lower_index_first_on_ties(count):
    rng = np.random.default_rng(count)
    scores = rng.standard_normal(count).astype(np.float32)
    scores[rng.integers(0, count, count // 3)] = 0.5  # many exact ties
    for k in (1, 3, 10, 64, count + 5):
        expected = np.lexsort((np.arange(count), -scores))[:k]
        np.testing.assert_array_equal(top_k(scores, k), expected)


def test_a_search_reads_the_whole_file_again_only_after_another_connection_removes_or_renames(tmp_path, monkeypatch):
    reads = []
    real = gallery_storage.read_embeddings
    monkeypatch.setattr(edge_facenet.gallery, "read_embeddings", lambda *args: reads.append(1) or real(*args))
    path = tmp_path / "gallery.sqlite3"
    query = np.eye(D)[0]
    with Gallery(path, FINGERPRINT, D) as gallery, Gallery(path, FINGERPRINT, D) as other:
        gallery.add("ada", np.eye(D)[0])
        for _ in range(5):
            gallery.search(query)
        assert len(reads) == 1
        gallery.add("bob", np.eye(D)[1])  # additions, here and in another connection, are read on their own
        other.add("eve", np.eye(D)[2])
        assert [c.name for c in gallery.search(np.eye(D)[2], k=1)[0]] == ["eve"]
        assert [c.name for c in gallery.search(np.eye(D)[1], k=1)[0]] == ["bob"]
        assert len(reads) == 1
        other.rename("bob", "rob")
        assert [c.name for c in gallery.search(np.eye(D)[1], k=1)[0]] == ["rob"]
        assert len(reads) == 2
        gallery.remove("eve")  # its own removal is applied to the loaded matrix
        assert [c.name for c in gallery.search(np.eye(D)[2], k=3)[0]] == ["ada", "rob"]
        assert len(reads) == 2


def test_float16_gallery_halves_memory_and_file_and_keeps_similarities_within_1e_3(tmp_path, figure):
    # Real-like data: 128-D unit identity centres, queries at cosine 0.8 to their own identity.
    rng = np.random.default_rng(3)
    centres = unit_rows(rng, 20_000, 128)
    names = [f"id{i:05d}" for i in range(len(centres))]
    queries = near(rng, centres[:400], 0.8)
    files = {dtype: tmp_path / f"{dtype}.sqlite3" for dtype in ("float32", "float16")}
    results, memory = {}, {}
    for dtype, path in files.items():
        with Gallery(path, FINGERPRINT, 128, dtype=dtype) as gallery:
            gallery.add_many(names, centres)
            results[dtype] = gallery.search(queries, k=3)
            memory[dtype] = gallery.memory_bytes
            assert gallery.dtype == gallery.stored_dtype == dtype

    differences = [
        abs(a.similarity - b.similarity)
        for half, full in zip(results["float16"], results["float32"], strict=True)
        for a, b in zip(half, full, strict=True)
        if a.name == b.name
    ]
    top1_changed = sum(half[0].name != full[0].name for half, full in zip(*results.values(), strict=True))
    figure(
        f"float16 vs float32 at 20k: max |similarity difference| {max(differences):.2e}, top-1 changed {top1_changed}"
    )
    # |error| <= sum |q_i| |x_i| 2**-11 <= 2**-11 by Cauchy-Schwarz: float16 keeps 11 significant bits.
    assert max(differences) < 1e-3
    assert top1_changed == 0
    assert [candidates[0].name for candidates in results["float32"]] == names[:400]
    assert memory["float16"] == pytest.approx(memory["float32"] / 2, rel=0.01)
    assert files["float16"].stat().st_size < 0.65 * files["float32"].stat().st_size
    with closing(sqlite3.connect(files["float16"])) as connection:
        assert len(connection.execute("SELECT vector FROM embeddings LIMIT 1").fetchone()[0]) == 2 * 128
        meta = dict(connection.execute("SELECT key, value FROM meta"))
    assert (meta["dtype"], meta["schema_version"]) == ("float16", "2")


def test_a_file_keeps_its_stored_precision_and_dtype_chooses_the_in_memory_one(tmp_path):
    half, full = tmp_path / "half.sqlite3", tmp_path / "full.sqlite3"
    Gallery(half, FINGERPRINT, D, dtype="float16").close()
    Gallery(full, FINGERPRINT, D).close()
    query = np.eye(D)[0]

    with Gallery(half, FINGERPRINT, D) as gallery:  # the file's precision by default
        assert (gallery.dtype, gallery.stored_dtype) == ("float16", "float16")
    with Gallery(half, FINGERPRINT, D, dtype="float32") as gallery:
        gallery.add("ada", np.eye(D)[0] + 0.001)
        assert (gallery.dtype, gallery.stored_dtype) == ("float32", "float16")
        assert gallery.search(query)[0][0].similarity == pytest.approx(1.0, abs=1e-3)
        assert gallery.memory_bytes == gallery.count() * D * 4
    with Gallery(full, FINGERPRINT, D, dtype="float16") as gallery:
        gallery.add("ada", np.eye(D)[0])
        assert (gallery.dtype, gallery.stored_dtype) == ("float16", "float32")
        assert gallery.search(query)[0][0].similarity == pytest.approx(1.0, abs=1e-3)
        assert "float16" in repr(gallery)

    for path, blob_bytes in [(half, 2 * D), (full, 4 * D)]:
        with closing(sqlite3.connect(path)) as connection:
            assert {len(blob) for (blob,) in connection.execute("SELECT vector FROM embeddings")} == {blob_bytes}


def test_bad_dtype_or_index_is_refused():
    with pytest.raises(ValueError, match=r"dtype must be one of 'float32', 'float16' or None, got 'float64'"):
        Gallery(None, FINGERPRINT, D, dtype="float64")
    with pytest.raises(ValueError, match=r"index must be one of 'exact', 'ivf', 'auto', got 'hnsw'"):
        Gallery(None, FINGERPRINT, D, index="hnsw")


def test_an_unknown_stored_precision_is_refused(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    Gallery(path, FINGERPRINT, D).close()
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("UPDATE meta SET value = 'bfloat16' WHERE key = 'dtype'")
    with pytest.raises(ValueError, match="schema version 1 with 'bfloat16' embeddings"):
        Gallery(path, FINGERPRINT, D)


def test_ann_index_without_faiss_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    for index in ("ivf", "auto"):
        with pytest.raises(ImportError, match=r"pip install 'edge-facenet\[ann\]'"):
            Gallery(None, FINGERPRINT, D, index=index)
    with Gallery(None, FINGERPRINT, D) as gallery:  # exact search needs no faiss
        gallery.add("ada", np.eye(D)[0])
        assert gallery.search(np.eye(D)[0])[0][0].name == "ada"


@needs_faiss
def test_ivf_recall_at_1_against_exact_search_at_50k(figure):
    rng = np.random.default_rng(4)
    centres = unit_rows(rng, 50_000, 128).astype(np.float32)
    names = [f"id{i:05d}" for i in range(len(centres))]
    queries = near(rng, centres[rng.choice(len(centres), 2000, replace=False)], 0.8)

    with Gallery(None, FINGERPRINT, 128, index="ivf") as gallery:
        gallery.add_many(names, centres)
        approximate = gallery.search(queries, k=1)
        assert gallery.memory_bytes > 2 * centres.nbytes
    embeddings = EmbeddingMatrix(names=tuple(names), starts=None, matrix=centres, data_version=0)
    exact = exact_search(embeddings, queries.astype(np.float32), 1)

    recall = np.mean([hits[0].name == names[best[0][0]] for hits, best in zip(approximate, exact, strict=True)])
    figure(f"IVF recall@1 against exact search at 50k identities, queries at cosine 0.8: {recall:.4f}")
    assert recall >= 0.99


@needs_faiss
def test_ivf_keeps_the_best_embedding_per_identity_and_returns_k_identities():
    rng = np.random.default_rng(5)
    vectors = unit_rows(rng, 3000)
    names = [f"id{i % 500:03d}" for i in range(3000)]  # six embeddings per identity
    queries = vectors[:20]
    with Gallery(None, FINGERPRINT, D, index="ivf") as gallery:
        gallery.add_many(names, vectors)
        got = gallery.search(queries, k=10)
    expected = reference_search(names, vectors, queries, 500)
    for candidates, reference in zip(got, expected, strict=True):
        assert len(candidates) == 10 and len({c.name for c in candidates}) == 10
        assert candidates[0].name == reference[0][0]
        assert candidates[0].similarity == pytest.approx(reference[0][1], abs=1e-5)
        similarities = [c.similarity for c in candidates]
        assert similarities == sorted(similarities, reverse=True)
        best = dict(reference)
        assert all(c.similarity == pytest.approx(best[c.name], abs=1e-5) for c in candidates[:3])
        assert all(c.similarity <= best[c.name] + 1e-5 for c in candidates)


@needs_faiss
def test_auto_switches_to_ivf_from_the_threshold_and_rebuilds_after_a_change(monkeypatch):
    monkeypatch.setattr(edge_facenet.gallery, "AUTO_IVF_MIN_EMBEDDINGS", 1000)
    rng = np.random.default_rng(6)
    with Gallery(None, FINGERPRINT, D, index="auto") as gallery:
        gallery.add_many([f"id{i}" for i in range(999)], unit_rows(rng, 999))
        gallery.search(np.eye(D)[0])
        assert gallery._ann is None
        gallery.add("ada", np.eye(D)[0])
        assert gallery.search(np.eye(D)[0], k=1)[0][0].name == "ada"
        assert isinstance(gallery._ann, IvfIndex) and gallery._ann.source is gallery._index
        gallery.remove("ada")
        assert gallery.search(np.eye(D)[0], k=1)[0][0].name != "ada"
        assert gallery._ann is None  # 999 embeddings: exact again


@pytest.mark.parametrize("threads", [False, True])
def test_float16_products_equal_those_of_the_widened_matrix(monkeypatch, threads):
    if threads:
        monkeypatch.setattr(gallery_index, "_PARALLEL_MIN_ROWS", 1)
    rng = np.random.default_rng(7)
    matrix = unit_rows(rng, 5000, 128).astype(np.float16)
    matrix[0, :4] = [6e-8, -6e-8, 3e-5, -0.0]  # float16 subnormals and a negative zero widen exactly too
    queries = unit_rows(rng, 3, 128).astype(np.float32)

    got = gallery_index.similarities(matrix, queries)

    assert got.shape == (3, 5000) and got.dtype == np.float32
    np.testing.assert_allclose(got, queries @ matrix.astype(np.float32).T, rtol=0, atol=2e-6)


@needs_faiss
def test_ivf_on_a_tiny_gallery_is_exact_and_returns_every_identity_for_a_large_k():
    rng = np.random.default_rng(8)
    vectors = unit_rows(rng, 50)
    names = [f"id{i % 20:02d}" for i in range(50)]
    queries = unit_rows(rng, 5)
    with Gallery(None, FINGERPRINT, D, index="ivf") as approximate, Gallery(None, FINGERPRINT, D) as exact:
        approximate.add_many(names, vectors)
        exact.add_many(names, vectors)
        assert ranking(approximate.search(queries, k=3)) == ranking(exact.search(queries, k=3))
        assert all(len(candidates) == 20 for candidates in approximate.search(queries, k=100))
