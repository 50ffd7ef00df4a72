import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_facenet import FaceAligner, FaceDetector
from edge_facenet._files import sha256_file
from edge_facenet.evaluate import align_images
from edge_facenet.templates import DEFAULT_TEMPLATE
from edge_facenet.training.data import (
    CropDataset,
    PrepareReport,
    celeba_possible_lfw,
    lfw_fold_people,
    prepare_crops,
)
from tests.conftest import REPO_ROOT, shared_dir

PEOPLE_FOLD_SIZES = [601, 555, 552, 560, 567, 527, 597, 601, 580, 609]
# Abdullah_Gul_0009 shows two faces; the better-scored one is not the labelled person near the centre.
LFW_IMAGES = {
    "Abdullah_Gul": ["Abdullah_Gul_0001.jpg", "Abdullah_Gul_0009.jpg", "Abdullah_Gul_0011.jpg"],
    "Abel_Pacheco": ["Abel_Pacheco_0001.jpg", "Abel_Pacheco_0002.jpg"],
    "Adrien_Brody": ["Adrien_Brody_0001.jpg", "Adrien_Brody_0002.jpg"],
}
SOURCES = [
    "Abdullah_Gul/Abdullah_Gul_0001.jpg",
    "Abdullah_Gul/Abdullah_Gul_0009.jpg",
    "Abdullah_Gul/Abdullah_Gul_0011.jpg",
    "Abel_Pacheco/Abel_Pacheco_0001.jpg",
    "Abel_Pacheco/Abel_Pacheco_0002.jpg",
    "Adrien_Brody/Adrien_Brody_0001.jpg",
    "Adrien_Brody/Adrien_Brody_0002.jpg",
    "Adrien_Brody/no_face.png",
]
BROKEN = ("Abel_Pacheco/broken.jpg", "not a decodable image")
OUTPUT_FILES = ("crops.npy", "manifest.tsv", "meta.json")


@pytest.fixture(scope="module")
def detector(detector_path):
    return FaceDetector(detector_path)


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner(DEFAULT_TEMPLATE, (96, 96))


def gradient_image() -> np.ndarray:
    ramp = np.tile(np.linspace(0, 255, 250, dtype=np.uint8), (250, 1))
    return cv2.merge([ramp, ramp.T, ramp[::-1]])


@pytest.fixture
def images_dir(tmp_path, lfw_dir):
    """Seven LFW photos of three people, a face-less image, a corrupt jpg, and files that are not images."""
    root = tmp_path / "images"
    for person, files in LFW_IMAGES.items():
        (root / person).mkdir(parents=True)
        for name in files:
            shutil.copyfile(lfw_dir / "images" / person / name, root / person / name)
    cv2.imwrite(str(root / "Adrien_Brody" / "no_face.png"), gradient_image())
    (root / "Abel_Pacheco" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (root / "Abel_Pacheco" / "notes.txt").write_text("not an image\n")
    shutil.copyfile(root / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg", root / "Abel_Pacheco" / ".hidden.jpg")
    (root / ".DS_Store").write_bytes(b"\x00")
    return root


def prepare(images_dir, out_dir, detector, aligner) -> PrepareReport:
    return prepare_crops(images_dir, out_dir, detector, aligner, progress=False)


def count_detections(monkeypatch, detector, fail_after: int | None = None) -> list[int]:
    calls = [0]
    detect = detector.detect

    def counting(frame):
        if fail_after is not None and calls[0] == fail_after:
            raise RuntimeError("simulated interruption")
        calls[0] += 1
        return detect(frame)

    monkeypatch.setattr(detector, "detect", counting)
    return calls


def read_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUT_FILES}


def test_prepare_writes_crops_manifest_and_meta(images_dir, tmp_path, detector, aligner, detector_path):
    out = tmp_path / "crops"
    report = prepare(images_dir, out, detector, aligner)
    assert report == PrepareReport(written=8, skipped_existing=0, detected=7, centre_crops=1, failed=(BROKEN,))

    crops = np.load(out / "crops.npy", mmap_mode="r")
    assert crops.shape == (8, 96, 96, 3) and crops.dtype == np.uint8
    header, *lines = (out / "manifest.tsv").read_text().splitlines()
    assert header.split("\t")[:5] == ["index", "identity", "source", "method", "det_score"]
    rows = [line.split("\t") for line in lines]
    assert [row[2] for row in rows] == SOURCES and [row[0] for row in rows] == [str(i) for i in range(8)]
    assert [row[1] for row in rows] == [source.split("/")[0] for source in SOURCES]
    assert [row[3] for row in rows] == ["detected"] * 7 + ["centre"]
    assert all(len(row) == 15 for row in rows) and rows[7][4:] == ["nan"] * 11

    meta = json.loads((out / "meta.json").read_text())
    assert meta["template"] == DEFAULT_TEMPLATE and meta["crop_size"] == [96, 96] and meta["complete"]
    assert meta["detector"]["sha256"] == sha256_file(detector_path)
    assert meta["images_dir"] == str(images_dir.resolve())
    assert meta["counts"] == {"crops": 8, "identities": 3, "detected": 7, "centre_crops": 1, "failed": 1}

    # The labelled person of Abdullah_Gul_0009 is the face nearest the centre, not the best-scored one.
    image = cv2.imread(str(images_dir / SOURCES[1]))
    faces = detector.detect(image)
    centre = min(faces, key=lambda f: np.linalg.norm((f.bbox[:2] + f.bbox[2:]) / 2 - 125))
    assert centre is not faces[0]
    np.testing.assert_array_equal(crops[1], aligner.align(image, centre.landmarks))
    np.testing.assert_allclose(np.array(rows[1][5:], float), centre.landmarks.reshape(-1), atol=0.006)
    assert float(rows[1][4]) == pytest.approx(centre.det_score, abs=1e-4)
    np.testing.assert_array_equal(crops[7], aligner.centre_crop(gradient_image()))


def test_training_crops_are_the_evaluation_crops(images_dir, tmp_path, detector, aligner):
    prepare(images_dir, tmp_path / "crops", detector, aligner)
    dataset = CropDataset.load(tmp_path / "crops")
    evaluated = align_images(images_dir, SOURCES, detector, aligner, cache=None, progress=False)
    np.testing.assert_array_equal(np.asarray(dataset.crops), evaluated.crops)
    np.testing.assert_array_equal(dataset.detected, evaluated.detected)


def test_rerun_does_no_repeated_work_and_adds_new_images(images_dir, tmp_path, detector, aligner, monkeypatch):
    out = tmp_path / "crops"
    prepare(images_dir, out, detector, aligner)
    before = read_bytes(out)

    calls = count_detections(monkeypatch, detector)
    report = prepare(images_dir, out, detector, aligner)
    assert report == PrepareReport(written=0, skipped_existing=8, detected=7, centre_crops=1, failed=(BROKEN,))
    assert calls[0] == 0 and read_bytes(out) == before

    shutil.copyfile(images_dir / SOURCES[0], images_dir / "Abdullah_Gul" / "Abdullah_Gul_0002.jpg")
    report = prepare(images_dir, out, detector, aligner)
    assert (report.written, report.skipped_existing, calls[0]) == (1, 8, 1)
    dataset = CropDataset.load(out)
    assert len(dataset) == 9 and dataset.sources[-1] == "Abdullah_Gul/Abdullah_Gul_0002.jpg"
    np.testing.assert_array_equal(dataset.crops[-1], dataset.crops[0])


@pytest.mark.parametrize("damage", ["none", "torn_crop_and_row", "row_without_crop"])
def test_interrupted_run_resumes_to_the_same_files(images_dir, tmp_path, detector, aligner, monkeypatch, damage):
    prepare(images_dir, tmp_path / "reference", detector, aligner)
    out = tmp_path / "crops"

    count_detections(monkeypatch, detector, fail_after=4)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        prepare(images_dir, out, detector, aligner)
    with pytest.raises(ValueError, match="did not finish"):
        CropDataset.load(out)
    finished = 4
    # A hard kill can leave half a crop and half a manifest row, or a row whose crop was still in a buffer.
    if damage == "torn_crop_and_row":
        with open(out / "crops.npy", "ab") as file:
            file.write(b"\x07" * 1000)
        with open(out / "manifest.tsv", "a") as file:
            file.write("4\tAbel_Pacheco\tAbel_Pa")
    elif damage == "row_without_crop":
        with open(out / "crops.npy", "r+b") as file:
            file.truncate(file.seek(0, 2) - 96 * 96 * 3)
        finished = 3

    monkeypatch.undo()
    calls = count_detections(monkeypatch, detector)
    report = prepare(images_dir, out, detector, aligner)
    assert (report.skipped_existing, report.written, calls[0]) == (finished, 8 - finished, 8 - finished)
    assert read_bytes(out) == read_bytes(tmp_path / "reference")


def test_prepare_refuses_other_settings_and_bad_folders(images_dir, tmp_path, detector, aligner, lfw_dir):
    out = tmp_path / "crops"
    prepare(images_dir, out, detector, aligner)
    with pytest.raises(ValueError, match=r"other settings \(crop_size differ\)"):
        prepare(images_dir, out, detector, FaceAligner(DEFAULT_TEMPLATE, (112, 96)))
    with pytest.raises(FileNotFoundError, match="images folder not found"):
        prepare(tmp_path / "missing", tmp_path / "other", detector, aligner)
    (tmp_path / "empty" / "images" / "Someone").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no images found .*did you mean .*empty/images\?"):
        prepare(tmp_path / "empty", tmp_path / "other", detector, aligner)


@pytest.fixture
def prepared(images_dir, tmp_path, detector, aligner) -> Path:
    prepare(images_dir, tmp_path / "crops", detector, aligner)
    return tmp_path / "crops"


def test_load_memory_maps_the_prepared_folder(prepared):
    dataset = CropDataset.load(prepared)
    assert len(dataset) == 8 and isinstance(dataset.crops, np.memmap)
    assert dataset.identities == ["Abdullah_Gul", "Abel_Pacheco", "Adrien_Brody"]
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2] and dataset.labels.dtype == np.int64
    assert dataset.sources == SOURCES and dataset.detected.tolist() == [True] * 7 + [False]
    assert dataset.template == DEFAULT_TEMPLATE and dataset.input_size == (96, 96)
    np.testing.assert_array_equal(dataset.crops, np.load(prepared / "crops.npy"))


def test_load_errors_name_the_problem(prepared, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"meta\.json not found"):
        CropDataset.load(tmp_path / "nowhere")
    manifest = (prepared / "manifest.tsv").read_text()
    (prepared / "manifest.tsv").write_text("".join(manifest.splitlines(keepends=True)[:-1]))
    with pytest.raises(ValueError, match=r"expected 7 uint8 crops .* shape \(8, 96, 96, 3\)"):
        CropDataset.load(prepared)
    (prepared / "manifest.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"manifest\.tsv not found"):
        CropDataset.load(prepared)


def synthetic(identities, labels, template=DEFAULT_TEMPLATE, size=(4, 4), first=0) -> CropDataset:
    count = len(labels)
    crops = np.arange(first, first + count, dtype=np.uint8)[:, None, None, None] * np.ones((1, *size, 3), np.uint8)
    return CropDataset(
        crops=crops,
        labels=np.array(labels, dtype=np.int64),
        identities=list(identities),
        sources=[f"{identities[label]}/{first + i}.jpg" for i, label in enumerate(labels)],
        detected=np.arange(count) % 2 == 0,
        template=template,
        input_size=size,
    )


def test_subset_renumbers_labels_compactly():
    dataset = synthetic(["a", "b", "c", "d"], [0, 0, 1, 2, 2, 3])
    part = dataset.subset([5, 0, 4])
    assert part.identities == ["a", "c", "d"] and part.labels.tolist() == [2, 0, 1]
    assert part.crops[:, 0, 0, 0].tolist() == [5, 0, 4] and part.sources == ["d/5.jpg", "a/0.jpg", "c/4.jpg"]
    assert part.detected.tolist() == [False, True, True]
    assert dataset.subset(np.array([False, False, True, False, False, False])).identities == ["b"]
    assert len(dataset.subset([])) == 0 and dataset.subset([]).identities == []
    with pytest.raises(ValueError, match=r"indices must lie in 0..5, got 0..6"):
        dataset.subset([0, 6])
    with pytest.raises(TypeError, match="integers or a boolean mask"):
        dataset.subset([0.5])
    with pytest.raises(ValueError, match=r"boolean mask must have shape \(6,\)"):
        dataset.subset([True, False])


def test_without_identities_drops_people_and_reindexes():
    dataset = synthetic(["a", "b", "c"], [0, 1, 1, 2])
    rest = dataset.without_identities({"b", "not_there"})
    assert rest.identities == ["a", "c"] and rest.labels.tolist() == [0, 1] and rest.sources == ["a/0.jpg", "c/3.jpg"]
    assert len(dataset.without_identities(["a", "b", "c"])) == 0
    with pytest.raises(TypeError, match="single string 'b'"):
        dataset.without_identities("b")


def test_concatenate_offsets_labels_and_checks_compatibility():
    lfw = synthetic(["Ann", "Bob"], [0, 1, 1])
    celeba = synthetic(["celeba_1", "celeba_2", "celeba_3"], [2, 0, 1], first=10)
    joined = CropDataset.concatenate([lfw, celeba])
    assert joined.identities == ["Ann", "Bob", "celeba_1", "celeba_2", "celeba_3"]
    assert joined.labels.tolist() == [0, 1, 1, 4, 2, 3] and len(joined) == 6
    assert joined.crops[:, 0, 0, 0].tolist() == [0, 1, 2, 10, 11, 12] and joined.sources[3] == "celeba_3/10.jpg"
    with pytest.raises(ValueError, match="repeated: Bob"):
        CropDataset.concatenate([lfw, synthetic(["Bob"], [0])])
    with pytest.raises(ValueError, match=r"\(4, 4\) with crops of template 'lfw_funneled_5pt' \(8, 8\)"):
        CropDataset.concatenate([lfw, synthetic(["Cy"], [0], size=(8, 8))])
    with pytest.raises(ValueError, match="at least one"):
        CropDataset.concatenate([])


def test_lfw_fold_people_match_the_readme(lfw_dir):
    people = lfw_dir / "people.txt"
    assert [len(lfw_fold_people(people, [fold])) for fold in range(1, 11)] == PEOPLE_FOLD_SIZES
    assert len(lfw_fold_people(people, range(1, 11))) == 5749
    first_five = lfw_fold_people(people, range(1, 6))
    assert len(first_five) == sum(PEOPLE_FOLD_SIZES[:5]) and not first_five & lfw_fold_people(people, range(6, 11))
    with pytest.raises(ValueError, match=r"has folds 1-10, not \[0, 11\]"):
        lfw_fold_people(people, [0, 3, 11])


def test_celeba_possible_lfw_counts_from_the_readme():
    path = shared_dir() / "data" / "celeba299" / "lfw_nearest.tsv"
    if not path.is_file():
        pytest.skip(f"CelebA distances not found at {path} (set EDGE_FACENET_SHARED)")
    assert len(celeba_possible_lfw(path)) == 29
    assert len(celeba_possible_lfw(path, max_distance=0.35)) == 5
    assert "celeba_07398" in celeba_possible_lfw(path, max_distance=0.35)


def test_celeba_possible_lfw_rejects_bad_files(tmp_path):
    path = tmp_path / "near.tsv"
    path.write_text("celeba_identity\tnearest_lfw_person\tdistance\nceleba_1\tAnn\t0.2\nceleba_2\tBob\n")
    with pytest.raises(ValueError, match=r"near.tsv:3: expected"):
        celeba_possible_lfw(path)
    with pytest.raises(FileNotFoundError):
        celeba_possible_lfw(tmp_path / "missing.tsv")


def load_prepare_script():
    spec = importlib.util.spec_from_file_location("prepare_script", REPO_ROOT / "train" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_prepares_and_prints_json(images_dir, tmp_path, detector_path, capsys):
    main = load_prepare_script().main
    args = ["--images", str(images_dir), "--out", str(tmp_path / "crops"), "--detector", str(detector_path)]
    assert main([*args, "--size", "64", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["written"], result["detected"], result["centre_crops"]) == (8, 7, 1)
    assert result["failed"] == [list(BROKEN)] and result["size"] == [64, 64]
    assert CropDataset.load(tmp_path / "crops").crops.shape == (8, 64, 64, 3)

    assert main([*args, "--size", "64"]) == 0
    printed = capsys.readouterr().out
    assert "kept from before 8" in printed and "Abel_Pacheco/broken.jpg: not a decodable image" in printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "96", "--model", "m.onnx"], "error: give either --model or --template/--size, not both"),
        (["--template", "nope"], "error: unknown alignment template 'nope'"),
        (["--model", "missing.onnx"], "error: model file not found: missing.onnx"),
    ],
)
def test_cli_bad_arguments_give_one_error_line(images_dir, tmp_path, detector_path, capsys, extra, message):
    main = load_prepare_script().main
    argv = ["--images", str(images_dir), "--out", str(tmp_path / "crops"), "--detector", str(detector_path), *extra]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(message) and len(captured.err.splitlines()) == 1
    assert not (tmp_path / "crops").exists()


def test_cli_script_reports_a_missing_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, "train/prepare.py", "--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == f"error: --images folder not found: {tmp_path / 'nowhere'}"
