from pathlib import Path

import numpy as np
import pytest
import torch

from edge_facenet.lfw import read_pairs
from edge_facenet.training.distill import SimilarityDistillationLoss, TeacherEmbeddings
from tests.conftest import shared_dir

LFW_IMAGES = 13_233
CELEBA_IMAGES = 6_278


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=1)


def embeddings_with_gram(gram: torch.Tensor) -> torch.Tensor:
    """Vectors whose pairwise dot products are ``gram`` (which must be positive semi-definite)."""
    values, vectors = torch.linalg.eigh(gram)
    return vectors * values.clamp_min(0).sqrt()


@pytest.fixture
def teacher() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return unit(torch.randn(10, 128, generator=generator, dtype=torch.float64))


@pytest.fixture(scope="module")
def lfw_teacher_path(lfw_dir) -> Path:
    return lfw_dir / "dlib_resnet_embeddings.npz"


@pytest.fixture(scope="module")
def lfw_raw(lfw_teacher_path) -> tuple[list[str], np.ndarray]:
    with np.load(lfw_teacher_path, allow_pickle=False) as archive:
        return [str(name) for name in archive["names"]], archive["embeddings"].astype(np.float64)


def write_npz(path: Path, names: list[str], dimension: int = 4) -> Path:
    embeddings = np.random.default_rng(len(names)).normal(size=(len(names), dimension)).astype(np.float32)
    np.savez(path, names=np.array(names), embeddings=embeddings)
    return path


# SimilarityDistillationLoss


@pytest.mark.parametrize("scale", ["auto", 1.0])
def test_zero_when_the_student_has_the_teachers_geometry(teacher, scale):
    rotation, _ = torch.linalg.qr(
        torch.randn(128, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    )
    student = teacher @ rotation  # other vectors, same cosine similarities
    loss = SimilarityDistillationLoss(scale)(student, teacher, torch.ones(10, dtype=torch.bool))
    assert float(loss) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("scale", ["auto", 1.0, 2.5])
def test_positive_when_the_geometry_differs(teacher, scale):
    student = unit(torch.randn(10, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    loss = SimilarityDistillationLoss(scale)(student, teacher, torch.ones(10, dtype=torch.bool))
    assert float(loss) > 0.01
    if scale == "auto":
        assert float(loss) <= 4.0  # 2 (1 - r) with r the correlation of the similarities


def test_auto_ignores_how_spread_the_students_similarities_are(teacher):
    # A student whose cosines are the teacher's times 0.3 (squeezed towards 0) has the same relative geometry:
    # "auto" does not push it anywhere, plain matching (scale 1) does.
    squeezed = embeddings_with_gram(0.3 * (teacher @ teacher.T) + 0.7 * torch.eye(10, dtype=torch.float64))
    mask = torch.ones(10, dtype=torch.bool)
    assert float(SimilarityDistillationLoss("auto")(squeezed, teacher, mask)) < 1e-8
    assert float(SimilarityDistillationLoss(1.0)(squeezed, teacher, mask)) > 1e-3
    assert float(SimilarityDistillationLoss(0.3)(squeezed, teacher, mask)) < 1e-12


@pytest.mark.parametrize("scale", ["auto", 1.0])
def test_masked_images_change_nothing_and_get_no_gradient(teacher, scale):
    loss_fn = SimilarityDistillationLoss(scale)
    mask = torch.tensor([True, False, True, True, False, True, True, False, True, True])
    student = unit(torch.randn(10, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    student.requires_grad_(True)

    loss = loss_fn(student, teacher, mask)
    loss.backward()
    reference = loss_fn(student.detach()[mask], teacher[mask], torch.ones(7, dtype=torch.bool))
    torch.testing.assert_close(loss.detach(), reference)
    assert torch.all(student.grad[~mask] == 0)
    assert torch.all(student.grad[mask].abs().sum(dim=1) > 0)

    # Whatever sits in the masked rows (here: zeros for the teacher, noise for the student) is ignored.
    other_student = student.detach().clone()
    other_student[~mask] = torch.randn(3, 32, dtype=torch.float64)
    other_teacher = teacher.clone()
    other_teacher[~mask] = 0.0
    torch.testing.assert_close(loss_fn(other_student, other_teacher, mask), loss.detach())


@pytest.mark.parametrize("valid", [0, 1])
def test_fewer_than_two_valid_images_give_a_zero_in_the_graph(teacher, valid):
    student = torch.randn(10, 32, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(10, dtype=torch.bool)
    mask[:valid] = True
    loss = SimilarityDistillationLoss()(student, teacher, mask)
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert torch.all(student.grad == 0)


def test_teacher_side_gets_no_gradient(teacher):
    teacher = teacher.clone().requires_grad_(True)
    student = torch.randn(10, 32, dtype=torch.float64, requires_grad=True)
    SimilarityDistillationLoss()(student, teacher, torch.ones(10, dtype=torch.bool)).backward()
    assert teacher.grad is None
    assert student.grad is not None


def test_takes_the_numpy_arrays_of_a_lookup(tmp_path):
    names = [f"p{index}/p{index}_0001.jpg" for index in range(6)]
    teachers = TeacherEmbeddings.load([write_npz(tmp_path / "t.npz", names, dimension=8)])
    vectors, mask = teachers.lookup([*names[:4], "absent/absent_0001.jpg"])
    student = torch.randn(5, 16, requires_grad=True)
    loss = SimilarityDistillationLoss()(student, vectors, mask)
    loss.backward()
    assert loss.item() > 0
    assert torch.all(student.grad[4] == 0)


def test_loss_argument_errors(teacher):
    for scale in ("fixed", 0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="scale should be 'auto' or a positive number"):
            SimilarityDistillationLoss(scale)
    loss_fn = SimilarityDistillationLoss()
    with pytest.raises(TypeError, match="mask should be boolean"):
        loss_fn(teacher, teacher, torch.ones(10))
    with pytest.raises(ValueError, match="same B"):
        loss_fn(teacher[:9], teacher, torch.ones(9, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask should have shape \(10,\)"):
        loss_fn(teacher, teacher, torch.ones(9, dtype=torch.bool))


# TeacherEmbeddings


def test_lfw_teacher_lookup_returns_centred_unit_vectors(lfw_teacher_path, lfw_raw):
    names, raw = lfw_raw
    teachers = TeacherEmbeddings.load([lfw_teacher_path])
    assert len(teachers) == LFW_IMAGES
    assert teachers.dimension == 128
    assert "Aaron_Eckhart/Aaron_Eckhart_0001.jpg" in teachers

    sources = ["Zico/Zico_0003.jpg", "Not_A_Person/Not_A_Person_0001.jpg", "AJ_Cook/AJ_Cook_0001.jpg"]
    vectors, mask = teachers.lookup(sources)
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, 128)
    assert mask.tolist() == [True, False, True]
    assert np.all(vectors[1] == 0)
    np.testing.assert_allclose(np.linalg.norm(vectors[mask], axis=1), 1.0, atol=1e-6)

    centred = raw[names.index("Zico/Zico_0003.jpg")] - raw.mean(axis=0)
    np.testing.assert_allclose(vectors[0], centred / np.linalg.norm(centred), atol=1e-6)
    np.testing.assert_allclose(teachers.mean, raw.mean(axis=0))


def test_centring_opens_the_cone_of_the_lfw_teacher(lfw_dir, lfw_teacher_path, lfw_raw):
    names, _ = lfw_raw
    pairs = read_pairs(lfw_dir / "pairs.txt")
    same = np.array([pair.same for pair in pairs])
    similarities = {}
    for centre in (False, True):
        teachers = TeacherEmbeddings.load([lfw_teacher_path], centre=centre)
        vectors, mask = teachers.lookup(names)
        assert mask.all()
        # The mean of the unit vectors: near 0 once centred, near 1 for a narrow cone.
        mean_length = float(np.linalg.norm(vectors.mean(axis=0)))
        assert mean_length < 0.1 if centre else mean_length > 0.85
        left, _ = teachers.lookup([pair.left for pair in pairs])
        right, _ = teachers.lookup([pair.right for pair in pairs])
        similarities[centre] = (left * right).sum(axis=1)

    uncentred, centred = similarities[False], similarities[True]
    assert uncentred[~same].mean() > 0.8  # measured 0.952 same vs 0.832 different
    assert uncentred[same].mean() - uncentred[~same].mean() < 0.15
    assert abs(centred[~same].mean()) < 0.05  # measured 0.703 same vs -0.002 different
    assert centred[same].mean() - centred[~same].mean() > 0.6


def test_lfw_and_celeba_load_together(lfw_teacher_path):
    celeba = shared_dir() / "data" / "celeba299" / "dlib_resnet_embeddings.npz"
    if not celeba.is_file():
        pytest.skip(f"CelebA teacher embeddings not found at {celeba}")
    teachers = TeacherEmbeddings.load([lfw_teacher_path, celeba])
    assert len(teachers) == LFW_IMAGES + CELEBA_IMAGES
    with np.load(celeba, allow_pickle=False) as archive:
        first = str(archive["names"][0])
    _, mask = teachers.lookup([first, "AJ_Cook/AJ_Cook_0001.jpg"])
    assert mask.all()


def test_uncentred_load_keeps_the_direction(tmp_path):
    path = write_npz(tmp_path / "t.npz", ["a/a_0001.jpg", "b/b_0001.jpg"])
    with np.load(path) as archive:
        raw = archive["embeddings"]
    teachers = TeacherEmbeddings.load([path], centre=False)
    assert teachers.mean is None
    vectors, _ = teachers.lookup(["b/b_0001.jpg"])
    np.testing.assert_allclose(vectors[0], raw[1] / np.linalg.norm(raw[1]), rtol=1e-6)


def test_teacher_loading_errors(tmp_path):
    first = write_npz(tmp_path / "first.npz", ["a/a_0001.jpg", "b/b_0001.jpg"])
    second = write_npz(tmp_path / "second.npz", ["c/c_0001.jpg", "b/b_0001.jpg", "d/d_0001.jpg"])
    with pytest.raises(ValueError, match=r"'b/b_0001\.jpg' appears in both .*first\.npz and .*second\.npz"):
        TeacherEmbeddings.load([first, second])
    repeated = write_npz(tmp_path / "repeated.npz", ["a/a_0001.jpg", "a/a_0001.jpg"])
    with pytest.raises(ValueError, match="appears"):
        TeacherEmbeddings.load([repeated])
    wider = write_npz(tmp_path / "wider.npz", ["e/e_0001.jpg"], dimension=8)
    with pytest.raises(ValueError, match="dimension 8, expected 4"):
        TeacherEmbeddings.load([first, wider])
    np.savez(tmp_path / "other.npz", vectors=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="expected arrays 'names' and 'embeddings', found vectors"):
        TeacherEmbeddings.load([tmp_path / "other.npz"])
    with pytest.raises(FileNotFoundError, match=r"absent\.npz"):
        TeacherEmbeddings.load([tmp_path / "absent.npz"])
    with pytest.raises(TypeError, match="wrap it in a list"):
        TeacherEmbeddings.load(str(first))
    with pytest.raises(ValueError, match="paths is empty"):
        TeacherEmbeddings.load([])
    with pytest.raises(TypeError, match="single string"):
        TeacherEmbeddings.load([first]).lookup("a/a_0001.jpg")
