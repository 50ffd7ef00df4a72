from collections import Counter
from pathlib import Path

import pytest

from edge_facenet.lfw import Pair, image_key, image_path, pair_images, read_pairs, read_people_folds

PEOPLE_FOLD_SIZES = [601, 555, 552, 560, 567, 527, 597, 601, 580, 609]


def person(key: str) -> str:
    return key.split("/")[0]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    return path


def test_image_key_and_path_follow_the_lfw_layout(tmp_path):
    assert image_key("George_W_Bush", 10) == "George_W_Bush/George_W_Bush_0010.jpg"
    assert image_path(tmp_path, "Abel_Pacheco", 1) == tmp_path / "images/Abel_Pacheco/Abel_Pacheco_0001.jpg"
    with pytest.raises(ValueError, match="image number"):
        image_key("Abel_Pacheco", 0)
    with pytest.raises(ValueError, match="folder name"):
        image_key("a/b", 1)


def test_two_fold_file_is_read_in_order(tmp_path):
    path = write(tmp_path, "2\t1\nA\t1\t2\nA\t1\tB\t3\nC\t2\t4\nC\t1\tD\t1\n")
    assert read_pairs(path) == [
        Pair("A/A_0001.jpg", "A/A_0002.jpg", same=True, fold=1),
        Pair("A/A_0001.jpg", "B/B_0003.jpg", same=False, fold=1),
        Pair("C/C_0002.jpg", "C/C_0004.jpg", same=True, fold=2),
        Pair("C/C_0001.jpg", "D/D_0001.jpg", same=False, fold=2),
    ]
    assert pair_images(read_pairs(path)) == [
        "A/A_0001.jpg",
        "A/A_0002.jpg",
        "B/B_0003.jpg",
        "C/C_0001.jpg",
        "C/C_0002.jpg",
        "C/C_0004.jpg",
        "D/D_0001.jpg",
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("", "empty file"),
        ("2\t1\tx\nA\t1\t2\nA\t1\tB\t3\n", ":1:"),
        ("two\nA\t1\t2\nA\t1\tB\t3\n", ":1:"),
        ("1\nA\t1\tB\t2\nA\t1\tB\t3\n", ":2:"),
        ("1\nA\t1\t2\nA\t1\t3\n", ":3:"),
        ("1\nA\t1\tx\nA\t1\tB\t3\n", ":2:"),
        ("1\nA\t1\t0\nA\t1\tB\t3\n", ":2:"),
        ("1\nA\t1\t2\n\tx\tB\t3\n", ":3:"),
        ("2\nA\t1\t2\nA\t1\tB\t3\n", ":4:"),
        ("1\nA\t1\t2\nA\t1\tB\t3\nA\t1\t2\n", ":4:"),
        ("1\nA/x\t1\t2\nA\t1\tB\t3\n", ":2:"),
    ],
)
def test_malformed_pairs_name_file_and_line(tmp_path, text, line):
    with pytest.raises(ValueError, match=line) as error:
        read_pairs(write(tmp_path, text))
    assert "pairs.txt" in str(error.value)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.txt"):
        read_pairs(tmp_path / "nothing.txt")
    with pytest.raises(FileNotFoundError, match=r"nothing\.txt"):
        read_people_folds(tmp_path / "nothing.txt")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("2\n1\nA\t1\n", ":4:"),
        ("1\n2\nA\t1\n", ":4:"),
        ("1\n1\nA\n", ":3:"),
        ("1\n1\nA\tmany\n", ":3:"),
        ("2\n1\nA\t1\n1\nA\t2\n", ":5:"),
        ("1\n1\nA\t1\nB\t1\n", ":4:"),
    ],
)
def test_malformed_people_name_file_and_line(tmp_path, text, line):
    path = tmp_path / "people.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"people.txt{line}"):
        read_people_folds(path)


def test_view2_pairs_have_ten_folds_of_300_and_300(lfw_dir):
    pairs = read_pairs(lfw_dir / "pairs.txt")
    assert len(pairs) == 6000
    counts = Counter((pair.fold, pair.same) for pair in pairs)
    assert counts == {(fold, same): 300 for fold in range(1, 11) for same in (True, False)}
    assert pairs[0] == Pair("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg", True, 1)
    assert all((person(pair.left) == person(pair.right)) == pair.same for pair in pairs)


def test_every_image_the_pairs_need_exists(lfw_dir):
    images = pair_images(read_pairs(lfw_dir / "pairs.txt"))
    assert len(images) == len(set(images)) > 5000
    assert all((lfw_dir / "images" / key).is_file() for key in images)


@pytest.mark.parametrize(("name", "per_class"), [("pairsDevTrain.txt", 1100), ("pairsDevTest.txt", 500)])
def test_view1_pairs_are_one_fold(lfw_dir, name, per_class):
    pairs = read_pairs(lfw_dir / name)
    assert Counter((pair.fold, pair.same) for pair in pairs) == {(1, True): per_class, (1, False): per_class}
    assert all(pair.same for pair in pairs[:per_class])


def test_people_folds_have_the_documented_sizes(lfw_dir):
    folds = read_people_folds(lfw_dir / "people.txt")
    assert len(folds) == 5749
    assert [Counter(folds.values())[fold] for fold in range(1, 11)] == PEOPLE_FOLD_SIZES


def test_pairs_use_people_of_their_own_fold(lfw_dir):
    folds = read_people_folds(lfw_dir / "people.txt")
    pairs = read_pairs(lfw_dir / "pairs.txt")
    misplaced = [pair for pair in pairs if {folds[person(pair.left)], folds[person(pair.right)]} != {pair.fold}]
    assert misplaced == []
