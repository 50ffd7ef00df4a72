"""Bad images through every entry point that takes one: a clear error or a reported skip, never a crash or a change.

The corpus is written by the tests into a temporary folder (no binary files in the repository): broken files made
from a real LFW photo, and valid but unusual encodings of it (16-bit, CMYK, palette, alpha, GIF).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import resource
import struct
import time
import zlib
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from edge_facenet import FaceDetector, Recognizer
from edge_facenet.camera.app import main as camera_main
from edge_facenet.embedder import Embedder
from edge_facenet.gallery import Gallery
from tests.conftest import REPO_ROOT

UNICODE_NAME = "Ünïcode face 名前.jpg"
# File -> (error, message fragment) from Recognizer.enroll; each must leave the gallery as it was.
UNREADABLE = {
    "truncated.jpg": (ValueError, "cannot decode an image from"),
    "truncated.png": (ValueError, "cannot decode an image from"),
    "corrupt.jpg": (ValueError, "cannot decode an image from"),
    "empty.jpg": (ValueError, "the file is empty"),
    "notes.jpg": (ValueError, "cannot decode an image from"),
}
# File -> images Recognizer.enroll adds from it.
READABLE = {"tiny.png": 0, "deep.png": 1, "cmyk.jpg": 1, "palette.png": 1, "alpha.png": 1, UNICODE_NAME: 1}


def lfw_photo(lfw_dir: Path, name: str, number: int = 1) -> Path:
    return lfw_dir / "images" / name / f"{name}_{number:04d}.jpg"


def cmyk_jpeg(image: np.ndarray, step: int = 4) -> bytes:
    """A baseline JPEG with four components, written here since neither OpenCV nor numpy writes one.

    The components hold the Adobe (inverted) CMYK that decoders expect from such files: R, G, B and K = 255, which
    OpenCV turns back into the original BGR. One uniform quantisation step, and Huffman tables that give every
    symbol a code of one length (4 bits for DC sizes, 8 for the 162 AC run/size symbols), keep the encoder short.
    """
    height, width = image.shape[:2]
    planes = np.concatenate([image[:, :, ::-1], np.full((height, width, 1), 255, np.uint8)], axis=2)
    planes = np.pad(planes, ((0, -height % 8), (0, -width % 8), (0, 0)), mode="edge").astype(np.float64) - 128.0
    k = np.arange(8)
    dct = np.sqrt(2 / 8) * np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16)
    dct[0] /= np.sqrt(2)
    # Zigzag order: by anti-diagonal, rows rising on odd diagonals and falling on even ones.
    zigzag = sorted(((i, j) for i in range(8) for j in range(8)), key=lambda p: (sum(p), p[0] if sum(p) % 2 else -p[0]))
    rows, cols = [i for i, _ in zigzag], [j for _, j in zigzag]
    ac_symbols = [0x00, 0xF0] + [run << 4 | size for run in range(16) for size in range(1, 11)]
    ac_code = {symbol: index for index, symbol in enumerate(ac_symbols)}

    bits: list[str] = []

    def put(code: int, length: int) -> None:
        if length:
            bits.append(format(code, f"0{length}b"))

    def magnitude(value: int) -> tuple[int, int]:
        size = abs(value).bit_length()
        return size, value if value >= 0 else value + (1 << size) - 1

    previous_dc = [0, 0, 0, 0]
    for top in range(0, planes.shape[0], 8):
        for left in range(0, planes.shape[1], 8):
            for component in range(4):
                block = planes[top : top + 8, left : left + 8, component]
                coefficients = np.rint(dct @ block @ dct.T / step).astype(int)[rows, cols].tolist()
                size, code = magnitude(coefficients[0] - previous_dc[component])
                previous_dc[component] = coefficients[0]
                put(size, 4)
                put(code, size)
                last = max((i for i in range(1, 64) if coefficients[i]), default=0)
                run = 0
                for value in coefficients[1 : last + 1]:
                    if value == 0:
                        run += 1
                        continue
                    while run > 15:
                        put(ac_code[0xF0], 8)
                        run -= 16
                    size, code = magnitude(value)
                    put(ac_code[run << 4 | size], 8)
                    put(code, size)
                    run = 0
                if last < 63:
                    put(ac_code[0x00], 8)
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    scan = int(stream, 2).to_bytes(len(stream) // 8, "big").replace(b"\xff", b"\xff\x00")

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    frame = struct.pack(">BHHB", 8, height, width, 4) + b"".join(bytes([c + 1, 0x11, 0]) for c in range(4))
    dc_table = bytes([0x00, 0, 0, 0, 12] + [0] * 12) + bytes(range(12))
    ac_table = bytes([0x10] + [0] * 7 + [len(ac_symbols)] + [0] * 8) + bytes(ac_symbols)
    header = segment(0xDB, bytes([0] + [step] * 64)) + segment(0xC0, frame) + segment(0xC4, dc_table + ac_table)
    start_of_scan = segment(0xDA, bytes([4]) + b"".join(bytes([c + 1, 0]) for c in range(4)) + bytes([0, 63, 0]))
    return b"\xff\xd8" + header + start_of_scan + scan + b"\xff\xd9"


def palette_png(grey: np.ndarray) -> bytes:
    """An 8-bit palette PNG (colour type 3) of a greyscale image, through a 256-entry grey palette."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    height, width = grey.shape
    scanlines = b"".join(b"\x00" + row.tobytes() for row in grey)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", np.repeat(np.arange(256, dtype=np.uint8), 3).tobytes())
        + chunk(b"IDAT", zlib.compress(scanlines))
        + chunk(b"IEND", b"")
    )


def encode(extension: str, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(extension, image)
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def face_path(lfw_dir) -> Path:
    return lfw_photo(lfw_dir, "Tony_Blair")


@pytest.fixture(scope="module")
def face(face_path) -> np.ndarray:
    return cv2.imread(str(face_path))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, face_path, face) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    jpeg, png = face_path.read_bytes(), encode(".png", face)
    files = {
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png[: len(png) // 2],
        "corrupt.jpg": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "empty.jpg": b"",
        "notes.jpg": b"meeting notes, not a photo\n",
        "tiny.png": encode(".png", face[:1, :1]),
        "deep.png": encode(".png", face.astype(np.uint16) * 257),
        "cmyk.jpg": cmyk_jpeg(face),
        "palette.png": palette_png(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)),
        "alpha.png": encode(".png", cv2.cvtColor(face, cv2.COLOR_BGR2BGRA)),
        UNICODE_NAME: jpeg,
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def parts(random_model_path, detector_path) -> tuple[Embedder, FaceDetector]:
    return Embedder(random_model_path), FaceDetector(detector_path)


@pytest.fixture
def recognizer(parts, lfw_dir, tmp_path):
    """A recogniser over a gallery file that already holds one person."""
    embedder, detector = parts
    recognizer = Recognizer(embedder, detector, gallery=tmp_path / "gallery.sqlite3", threshold=0.5)
    assert recognizer.enroll("Colin_Powell", [lfw_photo(lfw_dir, "Colin_Powell")]) == 1
    yield recognizer
    recognizer.gallery.close()


def contents(recognizer: Recognizer) -> dict[str, int]:
    """Identities and their image counts, read back from the gallery's file by a second connection."""
    with Gallery(recognizer.gallery.path, recognizer.fingerprint, recognizer.embedding_size) as gallery:
        return {name: gallery.count(name) for name in gallery.names()}


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_the_unusual_encodings_decode_to_the_photo(corpus, face):
    # The corpus is only as good as its files: the valid encodings must decode to the photo they were made from.
    for name in ("deep.png", "cmyk.jpg", "alpha.png", UNICODE_NAME):
        decoded = cv2.imdecode(np.fromfile(corpus / name, dtype=np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == face.shape and np.abs(decoded.astype(int) - face).mean() < 2.0, name
    palette = cv2.imdecode(np.fromfile(corpus / "palette.png", dtype=np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(palette[:, :, 0], cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))


@pytest.mark.parametrize("name", UNREADABLE)
def test_enrolling_an_unreadable_file_names_it_and_adds_nothing(recognizer, corpus, name):
    before = contents(recognizer)
    error, fragment = UNREADABLE[name]
    with pytest.raises(error, match=fragment) as raised:
        recognizer.enroll("Tony_Blair", [corpus / name])
    assert str(corpus / name) in str(raised.value) and "\n" not in str(raised.value)
    assert contents(recognizer) == before == {"Colin_Powell": 1}


@pytest.mark.parametrize("name", READABLE)
def test_enrolling_an_unusual_but_valid_file(recognizer, corpus, name, caplog):
    added = recognizer.enroll("Tony_Blair", [corpus / name])
    assert added == READABLE[name]
    if added:
        assert contents(recognizer) == {"Colin_Powell": 1, "Tony_Blair": 1}
    else:
        assert f"no face found in {corpus / name}; not enrolled" in caplog.text
        assert contents(recognizer) == {"Colin_Powell": 1}


def test_a_bad_file_among_good_ones_stops_the_enrolment_before_anything_is_added(recognizer, corpus, face_path):
    with pytest.raises(ValueError, match="the file is empty"):
        recognizer.enroll("Tony_Blair", [face_path, corpus / UNICODE_NAME, corpus / "empty.jpg"])
    assert contents(recognizer) == {"Colin_Powell": 1}


def test_a_gif_is_enrolled_where_opencv_reads_gifs_and_refused_clearly_elsewhere(recognizer, face, tmp_path):
    gif = tmp_path / "face.gif"
    if cv2.haveImageWriter(str(gif)):
        gif.write_bytes(encode(".gif", face))
        assert recognizer.enroll("Tony_Blair", [gif]) == 1
        assert contents(recognizer) == {"Colin_Powell": 1, "Tony_Blair": 1}
    else:
        gif.write_bytes(b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff,\x00\x00\x00\x00\x01\x00\x01\x00")
        with pytest.raises(ValueError, match="cannot decode an image from"):
            recognizer.enroll("Tony_Blair", [gif])
        assert contents(recognizer) == {"Colin_Powell": 1}


# What enroll() is given, made from (a photo's path, its image, a folder) -> the error and its message.
NOT_IMAGE_LISTS = {
    "one path string": (lambda photo, image, folder: str(photo), TypeError, "got one path"),
    "one Path": (lambda photo, image, folder: photo, TypeError, "got one path"),
    "one image": (
        lambda photo, image, folder: image,
        TypeError,
        r"one array of shape \(250, 250, 3\): put it in a list",
    ),
    "None": (lambda photo, image, folder: None, TypeError, "got None"),
    "a folder": (lambda photo, image, folder: [photo, folder], FileNotFoundError, "image not found"),
    "a missing file": (lambda photo, image, folder: [photo, folder / "gone.jpg"], FileNotFoundError, "image not found"),
    "None in the list": (lambda photo, image, folder: [image, None], ValueError, "image must be a numpy array"),
    "a nested list": (lambda photo, image, folder: [image, [[0, 0, 0]]], ValueError, "image must be a numpy array"),
}


@pytest.mark.parametrize("case", NOT_IMAGE_LISTS)
def test_enroll_refuses_what_is_not_a_list_of_images(recognizer, face, face_path, tmp_path, case):
    make, error, fragment = NOT_IMAGE_LISTS[case]
    with pytest.raises(error, match=fragment):
        recognizer.enroll("Tony_Blair", make(face_path, face, tmp_path))
    assert contents(recognizer) == {"Colin_Powell": 1}


@pytest.mark.parametrize("name", ["", "   ", None, 42])
def test_enroll_refuses_a_bad_identity_name(recognizer, face_path, name):
    with pytest.raises(ValueError, match="an identity name must be a non-empty string"):
        recognizer.enroll(name, [face_path])
    assert contents(recognizer) == {"Colin_Powell": 1}


BAD_ARRAYS = {
    "None": (lambda face: None, "must be a numpy array .* got NoneType"),
    "nested list": (lambda face: face.tolist(), "must be a numpy array .* got list"),
    "path string": (lambda face: "photo.jpg", "must be a numpy array .* got str"),
    "float32": (lambda face: face.astype(np.float32) / 255, "got dtype float32; convert"),
    "float64": (lambda face: face.astype(np.float64), "got dtype float64; convert"),
    "uint16": (lambda face: face.astype(np.uint16) * 257, "got dtype uint16; convert"),
    "int8": (lambda face: face.astype(np.int8), "got dtype int8"),
    "bool": (lambda face: face > 127, "got dtype bool"),
    "empty 3-D": (lambda face: face[:0], r"is empty \(shape \(0, 250, 3\)\)"),
    "empty 2-D": (lambda face: np.zeros((240, 0), np.uint8), r"is empty \(shape \(240, 0\)\)"),
    "0-D": (lambda face: np.array(7, np.uint8), r"got shape \(\)"),
    "1-D": (lambda face: face.reshape(-1), r"got shape \(187500,\)"),
    "one channel axis": (lambda face: face[:, :, :1], r"got shape \(250, 250, 1\)"),
    "two channels": (lambda face: face[:, :, :2], r"got shape \(250, 250, 2\)"),
    "five channels": (lambda face: np.dstack([face, face[:, :, :2]]), r"got shape \(250, 250, 5\)"),
    "a batch": (lambda face: np.stack([face, face]), r"got shape \(2, 250, 250, 3\)"),
}


@pytest.mark.parametrize("case", BAD_ARRAYS)
def test_identify_and_embed_largest_face_refuse_a_bad_array_in_one_line(recognizer, face, case):
    make, fragment = BAD_ARRAYS[case]
    with pytest.raises(ValueError, match=f"^frame .*{fragment}") as raised:
        recognizer.identify(make(face))
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match=f"^image .*{fragment}"):
        recognizer.embed_largest_face(make(face))


def test_identify_takes_odd_but_valid_arrays(recognizer, face):
    expected = [match.bbox for match in recognizer.identify(face)]
    assert len(expected) >= 1
    grey = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    read_only = face.copy()
    read_only.flags.writeable = False
    same_faces = {
        "BGRA": cv2.cvtColor(face, cv2.COLOR_BGR2BGRA),
        "Fortran order": np.asfortranarray(face),
        "read-only": read_only,
        "strided view": np.pad(face, ((0, 0), (0, 0), (0, 1)))[:, :, :3],
    }
    for case, frame in same_faces.items():
        boxes = [match.bbox for match in recognizer.identify(frame)]
        assert len(boxes) == len(expected) and np.allclose(boxes, expected, atol=1e-3), case
    assert len(recognizer.identify(grey)) >= 1
    assert len(recognizer.identify(face[:, ::-1])) >= 1  # a mirrored view with a negative stride
    for frame in (face[:1, :1], grey[:1, :1], np.zeros((1, 3000, 3), np.uint8), np.zeros((3000, 2), np.uint8)):
        assert recognizer.identify(frame) == []
        assert recognizer.embed_largest_face(frame) is None


def test_a_huge_photo_is_detected_at_a_bounded_size_quickly(recognizer, face, tmp_path, figure):
    # At its own size, this frame took 11 s and 5.1 GB on the development machine, and YuNet missed the 1000-pixel
    # face; the detector shrinks frames longer than 4096 pixels.
    huge = np.full((10_000, 10_000, 3), 128, np.uint8)
    huge[1000:3500, 1000:3500] = cv2.resize(face, (2500, 2500), interpolation=cv2.INTER_LINEAR)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    matches = recognizer.identify(huge)
    seconds = time.perf_counter() - start
    peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak_before
    figure(f"10000x10000 identify: {seconds:.2f} s, {len(matches)} faces, peak RSS +{peak_growth:.0f} MB")
    assert seconds < 8.0
    assert peak_growth < 2000
    boxes = [match.bbox for match in matches]
    assert any(1500 <= x1 < x2 <= 3500 and 1000 <= y1 < y2 <= 3500 and x2 - x1 > 500 for x1, y1, x2, y2 in boxes)

    path = tmp_path / "huge photo.jpg"
    path.write_bytes(encode(".jpg", huge))
    del huge
    assert recognizer.enroll("Tony_Blair", [path]) == 1
    assert contents(recognizer) == {"Colin_Powell": 1, "Tony_Blair": 1}


# The command-line entry points.


@pytest.fixture
def people(lfw_dir, tmp_path) -> Path:
    folder = tmp_path / "people"
    for name in ("Tony_Blair", "Colin_Powell"):
        (folder / name).mkdir(parents=True)
        (folder / name / "1.jpg").write_bytes(lfw_photo(lfw_dir, name, 2).read_bytes())
    return folder


@pytest.fixture
def model_args(random_model_path, detector_path) -> list[str]:
    return ["--model", str(random_model_path), "--detector", str(detector_path), "--threshold", "0.5"]


def test_camera_app_skips_and_counts_the_unreadable_images_of_a_folder(
    corpus, people, model_args, tmp_path, capsys, caplog
):
    video = tmp_path / "annotated.mp4"
    arguments = ["--gallery", str(people), "--source", str(corpus), *model_args, "--no-display", "--json"]
    assert camera_main([*arguments, "--output", str(video)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.splitlines()[-1])
    assert summary["event"] == "summary"
    assert summary["frames"] == len(READABLE) and summary["dropped"] == len(UNREADABLE)
    for name in UNREADABLE:
        assert f"skipping {corpus / name}: not a readable image" in caplog.text
    # The frames are 250x250 and 1x1: every one is in the video, scaled into the first one's size.
    capture = cv2.VideoCapture(str(video))
    sizes = []
    while (frame := capture.read()[1]) is not None:
        sizes.append(frame.shape)
    capture.release()
    assert sizes == [(250, 250, 3)] * len(READABLE)


def test_camera_app_text_summary_counts_the_skipped_images(corpus, people, model_args, capsys):
    assert camera_main(["--gallery", str(people), "--source", str(corpus), *model_args, "--no-display"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"summary: {len(READABLE)} frames ({len(UNREADABLE)} dropped), ")


@pytest.mark.parametrize("content", [b"", b"this is a text file, not a video\n"])
def test_camera_app_refuses_a_video_file_it_cannot_open_in_one_line(people, model_args, tmp_path, capsys, content):
    video = tmp_path / "clip.mp4"
    video.write_bytes(content)
    code = camera_main(["--gallery", str(people), "--source", str(video), *model_args, "--no-display"])
    assert code == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == f"error: cannot open video file {video} (OpenCV: no backend could read it)"


def load_sample(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"robustness_sample_{name}", REPO_ROOT / "samples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name", ["truncated.jpg", "truncated.png", "corrupt.jpg", "empty.jpg", "notes.jpg", "missing.jpg"]
)
def test_annotate_image_refuses_an_unreadable_photo_in_one_line(corpus, people, model_args, tmp_path, capsys, name):
    output = tmp_path / "annotated.jpg"
    arguments = [*model_args, "--people", str(people), "--output", str(output), str(corpus / name)]
    code = load_sample("annotate_image").main(arguments)
    assert code == 1
    assert one_error_line(capsys.readouterr().err) == f"error: cannot read an image from {corpus / name}"
    assert not output.exists()


def test_annotate_image_reads_a_unicode_file_name(corpus, people, model_args, tmp_path, capsys):
    output = tmp_path / "annotated photo é.png"
    arguments = [*model_args, "--people", str(people), "--output", str(output), str(corpus / UNICODE_NAME)]
    code = load_sample("annotate_image").main(arguments)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 faces" in captured.out
    assert cv2.imdecode(np.fromfile(output, dtype=np.uint8), cv2.IMREAD_COLOR).shape == (250, 250, 3)


def test_images_to_csv_reports_each_unreadable_image_and_goes_on(corpus, people, model_args, tmp_path, capsys):
    output = tmp_path / "faces.csv"
    arguments = [*model_args, "--people", str(people), "--output", str(output), str(corpus)]
    code = load_sample("images_to_csv").main(arguments)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    with output.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    errors = {row["image"] for row in rows if row["error"]}
    faces = {row["image"] for row in rows if not row["error"]}
    assert errors == set(UNREADABLE)  # a truncated JPEG too (cv2.imread would return its decodable top)
    assert faces == {name for name, added in READABLE.items() if added}
    assert f"{len(UNREADABLE) + len(READABLE)} images ({len(errors)} unreadable" in captured.out


def test_compare_faces_skips_a_faceless_image_and_stops_at_an_unreadable_one(
    corpus, random_model_path, detector_path, face_path, capsys
):
    compare = load_sample("compare_faces").main
    models = ["--model", str(random_model_path), "--detector", str(detector_path)]
    assert compare([*models, str(face_path), str(corpus / "tiny.png"), str(corpus / UNICODE_NAME)]) == 0
    captured = capsys.readouterr()
    assert f"skipped {corpus / 'tiny.png'}: no face found" in captured.out and "embedded 2 faces" in captured.out
    assert compare([*models, str(face_path), str(corpus / "empty.jpg")]) == 1
    assert one_error_line(capsys.readouterr().err) == f"error: cannot read an image from {corpus / 'empty.jpg'}"
