import pytest
import torch

from edge_facenet.training import EMBEDDING_SIZES, build_model, list_models
from edge_facenet.training.layers import Inception, InceptionSpec, L2Pool2d
from edge_facenet.training.summary import count_multiply_adds, summarize

OPENFACE_NN4_SMALL2_PARAMETERS = 3_733_968  # OpenFace's published count for nn4.small2
FACENET_NN4_MULTIPLY_ADDS = 285e6  # the FaceNet paper's figure for NN4 (it calls them FLOPS)


def test_registry_lists_the_family():
    assert {"nn4", "nn4_small2", "nns2"} <= set(list_models())


@pytest.mark.parametrize("arch", ["nn4", "nn4_small2", "nns2"])
@pytest.mark.parametrize("embedding_size", EMBEDDING_SIZES)
def test_output_shape_and_unit_norm(arch, embedding_size):
    torch.manual_seed(0)
    model = build_model(arch, embedding_size).eval()
    with torch.no_grad():
        embeddings = model(torch.rand(3, 3, 96, 96))
    assert embeddings.shape == (3, embedding_size)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3))
    assert (embeddings[0] - embeddings[1]).abs().max() > 1e-4, "different inputs gave the same embedding"


def test_nn4_small2_matches_openface_parameter_count():
    parameters = sum(p.numel() for p in build_model("nn4_small2").parameters())
    assert abs(parameters - OPENFACE_NN4_SMALL2_PARAMETERS) <= 0.05 * OPENFACE_NN4_SMALL2_PARAMETERS
    assert parameters == OPENFACE_NN4_SMALL2_PARAMETERS  # the layout is OpenFace's, weight for weight


def test_multiply_adds_match_the_paper_and_the_family_order():
    nn4, small2, tiny = (summarize(arch) for arch in ("nn4", "nn4_small2", "nns2"))
    assert abs(nn4.multiply_adds - FACENET_NN4_MULTIPLY_ADDS) <= 0.05 * FACENET_NN4_MULTIPLY_ADDS
    assert nn4.multiply_adds > small2.multiply_adds > 10 * tiny.multiply_adds
    assert small2.input_size == (96, 96)


def test_multiply_adds_of_a_single_convolution():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_multiply_adds(conv, (10, 10)) == 10 * 10 * 8 * 3 * 3 * 3


def test_train_mode_and_backward_work():
    model = build_model("nns2").train()
    embeddings = model(torch.rand(4, 3, 96, 96))
    (embeddings[:, 0].sum()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_l2_pool_is_root_of_sum_of_squares_and_finite_on_zeros():
    x = torch.randn(2, 4, 5, 5)
    pooled = L2Pool2d(3, stride=1, padding=1, eps=0.0)(x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    expected = padded.pow(2).unfold(2, 3, 1).unfold(3, 3, 1).sum(dim=(-1, -2)).sqrt()
    torch.testing.assert_close(pooled, expected)

    zeros = torch.zeros(1, 2, 4, 4, requires_grad=True)
    L2Pool2d()(zeros).sum().backward()
    assert torch.isfinite(zeros.grad).all()


def test_inception_output_channels_follow_the_spec():
    spec = InceptionSpec(64, 96, 128, 16, 32, 1, "max", 32)
    block = Inception(192, spec)
    assert block(torch.rand(1, 192, 12, 12)).shape == (1, 256, 12, 12)
    reduce = Inception(320, InceptionSpec(0, 128, 256, 32, 64, 2, "max", 0))
    assert reduce(torch.rand(1, 320, 12, 12)).shape == (1, 640, 6, 6)


@pytest.mark.parametrize("arch", ["nn4_small", "NN4", ""])
def test_unknown_architecture_raises_with_the_valid_names(arch):
    with pytest.raises(ValueError, match="nn4_small2"):
        build_model(arch)


@pytest.mark.parametrize("embedding_size", [0, 100, 1024])
def test_unsupported_embedding_size_raises(embedding_size):
    with pytest.raises(ValueError, match="64, 128, 256, 512"):
        build_model("nn4_small2", embedding_size)


def test_invalid_inception_spec_raises():
    with pytest.raises(ValueError, match="stride"):
        Inception(8, InceptionSpec(8, 8, 8, 0, 0, 3, "max", 8))
    with pytest.raises(ValueError, match="pool"):
        Inception(8, InceptionSpec(8, 8, 8, 0, 0, 1, "avg", 8))
