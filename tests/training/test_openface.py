import cv2
import numpy as np
import pytest
import torch

from edge_facenet.training import build_model
from edge_facenet.training.openface import OpenFaceLoadReport, load_openface_weights, recalibrate_batchnorm

MISSING_OPENFACE_KEYS = {
    "inception_3c_3x3_conv2_w": "features.inception_3c.branch3x3.1.0.weight",
    "inception_4e_3x3_conv2_w": "features.inception_4e.branch3x3.1.0.weight",
    "inception_5a_1x1_conv_w": "features.inception_5a.branch1x1.0.weight",
    "inception_5a_3x3_conv2_w": "features.inception_5a.branch3x3.1.0.weight",
    "inception_5b_3x3_conv2_w": "features.inception_5b.branch3x3.1.0.weight",
}
BATCHNORM_LAYERS = 37


@pytest.fixture(scope="module")
def openface_arrays(openface_path) -> dict[str, np.ndarray]:
    with np.load(openface_path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module")
def loaded(openface_path) -> tuple[torch.nn.Module, OpenFaceLoadReport]:
    torch.manual_seed(0)
    model = build_model("nn4_small2").eval()
    return model, load_openface_weights(model, openface_path)


@pytest.fixture(scope="module")
def lfw_crops(lfw_dir) -> torch.Tensor:
    """64 centre crops (x 65-185, y 68-188 of the 250x250 images) at 96x96, RGB in 0..1, N x 3 x 96 x 96."""
    folders = sorted(path for path in (lfw_dir / "images").iterdir() if path.is_dir())[::80][:64]
    crops = []
    for folder in folders:
        image = cv2.imread(str(sorted(folder.glob("*.jpg"))[0]))
        crop = cv2.resize(image[68:188, 65:185], (96, 96), interpolation=cv2.INTER_AREA)
        crops.append(crop[:, :, ::-1].astype(np.float32) / 255.0)
    return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy())


def test_loaded_tensors_equal_the_file(loaded, openface_arrays):
    model, _ = loaded
    state = model.state_dict()
    np.testing.assert_array_equal(state["features.conv1.0.weight"].numpy(), openface_arrays["conv1_w"])
    np.testing.assert_array_equal(state["features.conv3.1.running_mean"].numpy(), openface_arrays["bn3_m"])
    np.testing.assert_array_equal(
        state["features.inception_4a.branch5x5.1.1.running_var"].numpy(), openface_arrays["inception_4a_5x5_bn2_v"]
    )
    # Inside a branch the channels keep their order.
    np.testing.assert_array_equal(
        state["features.inception_3a.branch3x3.1.0.weight"].numpy(), openface_arrays["inception_3a_3x3_conv2_w"]
    )


def test_input_channels_follow_our_branch_order(loaded, openface_arrays):
    # OpenFace concatenates 3x3 (128), 5x5 (32), pool (32), 1x1 (64) in 3a; we concatenate 1x1, 3x3, 5x5, pool.
    model, _ = loaded
    ours = model.state_dict()["features.inception_3b.branch1x1.0.weight"].numpy()
    theirs = openface_arrays["inception_3b_1x1_conv_w"]
    np.testing.assert_array_equal(ours[:, :64], theirs[:, 192:256])
    np.testing.assert_array_equal(ours[:, 64:192], theirs[:, :128])
    np.testing.assert_array_equal(ours[:, 192:256], theirs[:, 128:192])

    # 5b: OpenFace 3x3 (384), pool (96), 1x1 (256); ours 1x1, 3x3, pool. The dense layer reads 5b.
    dense = model.state_dict()["embedding.weight"].numpy()
    np.testing.assert_array_equal(dense[:, :256], openface_arrays["dense_w"][:, 480:])
    np.testing.assert_array_equal(dense[:, 256:640], openface_arrays["dense_w"][:, :384])
    np.testing.assert_array_equal(dense[:, 640:], openface_arrays["dense_w"][:, 384:480])
    np.testing.assert_array_equal(model.state_dict()["embedding.bias"].numpy(), openface_arrays["dense_b"])


def test_report_counts_and_missing_weights_stay_unchanged(openface_path):
    torch.manual_seed(1)
    model = build_model("nn4_small2")
    before = {key: value.clone() for key, value in model.state_dict().items()}

    report = load_openface_weights(model, openface_path)

    assert len(report.loaded) == 219  # 221 file arrays less the two stray ones
    assert set(report.unused) == {"inception_5a_3x3_conv2_m", "inception_5a_3x3_conv2_v"}
    tracked = {key for key in report.missing if key.endswith("num_batches_tracked")}
    assert len(tracked) == BATCHNORM_LAYERS
    assert set(report.missing) - tracked == set(MISSING_OPENFACE_KEYS.values())
    assert len(report.loaded) + len(report.missing) == len(model.state_dict())
    for key in report.missing:
        torch.testing.assert_close(model.state_dict()[key], before[key], rtol=0, atol=0)
    assert not torch.equal(model.state_dict()["features.conv1.0.weight"], before["features.conv1.0.weight"])


def test_shape_mismatch_names_the_tensor_and_changes_nothing(tmp_path, openface_arrays):
    arrays = dict(openface_arrays)
    arrays["inception_4a_pool_conv_w"] = np.zeros((128, 320, 1, 1), dtype=np.float32)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    model = build_model("nn4_small2")
    before = model.state_dict()["features.conv1.0.weight"].clone()

    with pytest.raises(ValueError, match=r"'inception_4a_pool_conv_w' has shape \(128, 320, 1, 1\), expected"):
        load_openface_weights(model, path)
    assert torch.equal(model.state_dict()["features.conv1.0.weight"], before)


@pytest.mark.parametrize(("arch", "embedding_size"), [("nn4", 128), ("nns2", 128), ("nn4_small2", 64)])
def test_refuses_a_model_of_another_shape(openface_path, arch, embedding_size):
    with pytest.raises(ValueError, match="expected an nn4_small2 model with a 128-D embedding"):
        load_openface_weights(build_model(arch, embedding_size), openface_path)


def test_caller_errors(tmp_path, openface_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.npz"):
        load_openface_weights(build_model("nn4_small2"), tmp_path / "absent.npz")
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        load_openface_weights({"conv1": 1}, openface_path)


def test_rgb_unit_input_matches_the_stored_conv1_statistics(loaded, lfw_crops):
    model, _ = loaded
    conv1 = model.features.conv1[0]
    with torch.no_grad():
        rgb_means = conv1(lfw_crops).mean(dim=(0, 2, 3))
        bgr_means = conv1(lfw_crops.flip(1) * 255.0).mean(dim=(0, 2, 3))
    stored = model.features.conv1[1].running_mean
    assert np.corrcoef(rgb_means.numpy(), stored.numpy())[0, 1] > 0.9
    assert np.corrcoef(bgr_means.numpy(), stored.numpy())[0, 1] < 0.9


def test_branch_order_keeps_the_stored_statistics_of_3b(loaded, lfw_crops):
    # 3b reads 3a's concatenation. Mean |log(batch variance / stored variance)| of its first BatchNorms on 128
    # crops: 0.54-0.70 with OpenFace's channel order left as it is, 0.14-0.16 once permuted (3a's: 0.08-0.12).
    model, _ = loaded
    variance_ratios = {}

    def record(name):
        def hook(module, inputs, output):
            batch_variance = inputs[0].var(dim=(0, 2, 3))
            variance_ratios[name] = float((batch_variance / module.running_var).log().abs().mean())

        return hook

    block = model.features.inception_3b
    layers = {"1x1": block.branch1x1[1], "3x3": block.branch3x3[0][1], "5x5": block.branch5x5[0][1]}
    handles = [layer.register_forward_hook(record(name)) for name, layer in layers.items()]
    try:
        with torch.no_grad():
            model.features[:7](lfw_crops)
    finally:
        for handle in handles:
            handle.remove()
    assert max(variance_ratios.values()) < 0.35, variance_ratios


def test_recalibration_sets_the_running_stats_to_the_batch_stats():
    torch.manual_seed(2)
    model = build_model("nns2").eval()
    batches = [torch.rand(6, 3, 96, 96), torch.rand(6, 3, 96, 96) * 0.5]
    bn = model.features.conv1[1]
    batch_means, batch_variances = [], []

    def record(module, inputs, output):
        batch_means.append(inputs[0].mean(dim=(0, 2, 3)))
        batch_variances.append(inputs[0].var(dim=(0, 2, 3)))

    handle = bn.register_forward_hook(record)
    seen = recalibrate_batchnorm(model, batches)
    handle.remove()

    assert seen == 12
    assert not model.training and not bn.training
    assert bn.momentum == 0.1  # restored
    torch.testing.assert_close(bn.running_mean, torch.stack(batch_means).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack(batch_variances).mean(0))
    assert not any(p.grad is not None for p in model.parameters())


def test_recalibration_undoes_the_collapse_after_a_partial_load(openface_path, lfw_crops):
    # On 256 LFW crops the mean pairwise cosine went 0.983 -> 0.277 and the fold-1 AUC 0.672 -> 0.721.
    torch.manual_seed(3)
    model = build_model("nn4_small2").eval()
    load_openface_weights(model, openface_path)

    def mean_pairwise_cosine() -> float:
        with torch.no_grad():
            embeddings = model(lfw_crops)
        similarities = embeddings @ embeddings.T
        count = len(embeddings)
        return float((similarities.sum() - count) / (count * count - count))

    before = mean_pairwise_cosine()
    recalibrate_batchnorm(model, lfw_crops.split(32))
    after = mean_pairwise_cosine()
    assert before > 0.9
    assert after < 0.5


def test_recalibration_errors_leave_the_statistics_alone():
    model = build_model("nns2").eval()
    bn = model.features.conv1[1]
    bn.running_mean.fill_(0.25)
    with pytest.raises(ValueError, match="batches is empty"):
        recalibrate_batchnorm(model, [])
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        recalibrate_batchnorm(model, [torch.rand(2, 3, 96, 96), np.zeros((2, 3, 96, 96))])
    with pytest.raises(ValueError, match="momentum"):
        recalibrate_batchnorm(model, [torch.rand(2, 3, 96, 96)], momentum=1.5)
    with pytest.raises(ValueError, match="no BatchNorm"):
        recalibrate_batchnorm(torch.nn.Linear(2, 2), [torch.rand(2, 2)])
    assert torch.all(bn.running_mean == 0.25)
    assert bn.momentum == 0.1
