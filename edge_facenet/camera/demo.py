"""Demo material for the camera app: a gallery of four LFW people and a short video of them and a stranger.

Usage:
    python -m edge_facenet.camera.demo --out build/demo [--lfw-dir ../shared/data/lfw]
    python -m edge_facenet.camera --source build/demo/demo.mp4 --gallery build/demo/people --no-display

The photos are LFW deep-funneled images of people the shipped model never saw in training (``people.txt`` folds
6-10). They are read from a local LFW copy (``--lfw-dir`` or ``$EDGE_FACENET_LFW``), else from the cache, else
fetched from the public LFW repository; every file is pinned by sha256. Photos 1-2 of each person go into the
gallery; the video shows photos 3-6 of each (one after another, as a face turns and moves) and a stranger who is
not in the gallery. LFW has no licence beyond research and benchmarking: the photos stay out of the repository.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import urllib.request
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import cv2
import numpy as np

from edge_facenet._files import atomic_output, sha256_file
from edge_facenet.images import read_image
from edge_facenet.resolve import DOWNLOAD_TIMEOUT_S, cache_dir

logger = logging.getLogger(__name__)

LFW_ENV_VAR = "EDGE_FACENET_LFW"
# The LFW web site's repository at the commit whose images_deepfunneled/ the shared LFW copy was taken from.
LFW_REPOSITORY = (
    "https://raw.githubusercontent.com/umass-vis-lfw/umass-vis-lfw.github.io/"
    "2a620cd8cceb10430f8c7012fe9fa5f0837759e9/images_deepfunneled"
)
GALLERY_PEOPLE = ("George_W_Bush", "Britney_Spears", "Donald_Rumsfeld", "Jennifer_Aniston")
STRANGER = "Ariel_Sharon"
PHOTOS = {
    "George_W_Bush/George_W_Bush_0001.jpg": "4f19991979a6138e73fa0a75a34bcab30eaea46d3670a7047a1451c1b178e91f",
    "George_W_Bush/George_W_Bush_0002.jpg": "6ff1a77e676637ae94117f1a67755fae126b0891f5d13e3cf675b8757e930a94",
    "George_W_Bush/George_W_Bush_0003.jpg": "8f6eb3092fe09fd4593d446989dadea47bc4f2951566dc90193d655d93952983",
    "George_W_Bush/George_W_Bush_0004.jpg": "18f57e6d9aef1dd9a3559bfd6bea2697c960ebe365e0d6c8ed855bb0a00c8b64",
    "George_W_Bush/George_W_Bush_0005.jpg": "0474ecf96b5538fc38ddd469a0573f6e9b256e870366e9afcf468291fd675b6f",
    "George_W_Bush/George_W_Bush_0006.jpg": "bd9408f4dcfcc1d12f8b5712e1f12f2055413ebb6197bc84c396e1ec16b1844a",
    "Britney_Spears/Britney_Spears_0001.jpg": "e04d6c4e9e85fe703f067266b0322869bb2491c840bae1bfa41f6dc59dbee277",
    "Britney_Spears/Britney_Spears_0002.jpg": "661f13b904322352165d8aa2e1894a99008e27c92880832f640f27094f9ad44c",
    "Britney_Spears/Britney_Spears_0003.jpg": "9ad3f904f83dc4f604763c146511c9efbaaa237997e495cbf4d6e6b3c741495f",
    "Britney_Spears/Britney_Spears_0004.jpg": "a24c2f331a59389793db20320bf0debd22a2bc05f69c92a53693a68bfc085f8a",
    "Britney_Spears/Britney_Spears_0005.jpg": "3b30f2327cfa4b0b40e04e4afd0e9b97e63c4725255ef624369c80dd415bb355",
    "Britney_Spears/Britney_Spears_0006.jpg": "9ab4de0a0eaa36c5da683f7e19abc42be2c45c88f1d71b99372daf90f5e7d4f4",
    "Donald_Rumsfeld/Donald_Rumsfeld_0001.jpg": "45326f51ce66add911cea082f470f3c51d4f2b9660622cd113b9b30f63628618",
    "Donald_Rumsfeld/Donald_Rumsfeld_0002.jpg": "f36d89331c9ac3ad313d9167c8c63ce3ef0c5d5c555faca3075cb814722100c8",
    "Donald_Rumsfeld/Donald_Rumsfeld_0003.jpg": "be6cf25612877dfc13264339e2c7616a856d04c6c6ba83b7218fe1537e7772ff",
    "Donald_Rumsfeld/Donald_Rumsfeld_0004.jpg": "18f229a114a4c2433589b8f56eb4bd989fdf16d70a55130e9cb42ce186915931",
    "Donald_Rumsfeld/Donald_Rumsfeld_0005.jpg": "9341e5c69e30b6ab19af755920662567a33646088240f66e9c997c7879c97f2c",
    "Donald_Rumsfeld/Donald_Rumsfeld_0006.jpg": "18016a75fcd05fbeb1dae29771c33eb01e3524a2e65f961653ad3f1677df69f7",
    "Jennifer_Aniston/Jennifer_Aniston_0001.jpg": "1926771448afa861851997fef2c4fad8efe4424c9450cad5d3a9e2ed281d08e8",
    "Jennifer_Aniston/Jennifer_Aniston_0002.jpg": "694f3bf8fdbab2b4ba982bf9ba38a3c9fee921450451d988277899701ce9b7c3",
    "Jennifer_Aniston/Jennifer_Aniston_0003.jpg": "51cf1d47fa587ac512c4a70a4b0e31a30bc6318378eafc7be25627a53b2b6092",
    "Jennifer_Aniston/Jennifer_Aniston_0004.jpg": "2466b5f93f181a8ed721d1d56a5d70f2000dcef20276f7220eaa0f1884897391",
    "Jennifer_Aniston/Jennifer_Aniston_0005.jpg": "1237a41ea4f71cddc498476620fd9f6c4e80d5040f2c2a79769dde05e69eeb22",
    "Jennifer_Aniston/Jennifer_Aniston_0006.jpg": "2644f0ce698a1eef28c080fcb8fb0d697b0d4a9545b225cd153b77ff6aafff0f",
    "Ariel_Sharon/Ariel_Sharon_0001.jpg": "46827a30a39ae80e9b442319f105439932dfe119753c98b701dd1ef38c83567b",
    "Ariel_Sharon/Ariel_Sharon_0002.jpg": "8862cd7e99b639429fc0f10c2e98f92669eb0db824dd59cff56deaac74c2c7b7",
    "Ariel_Sharon/Ariel_Sharon_0003.jpg": "80313790fcb38eb2865af0500bd9d652c1e28b4f5dfb174c43bf95c6adee9e8c",
    "Ariel_Sharon/Ariel_Sharon_0004.jpg": "ae5995644ffbba265addc33730e22044a745a8bd5265fe4d4606a0fb3959f4de",
    "Ariel_Sharon/Ariel_Sharon_0005.jpg": "e44dcc61b1f1d3c3c106cb286e0dd7259a69ce8485bff9f94cf0fcc94f5e8ce7",
    "Ariel_Sharon/Ariel_Sharon_0006.jpg": "17782dc86677d68d6407835641fb6f7e347f5e3db164c72ff7a347c7c8edf57d",
}
GALLERY_PHOTOS = (1, 2)
VIDEO_PHOTOS = (3, 4, 5, 6)
FRAME_SIZE = (640, 480)
FPS = 15
FACE_SIDE = 150
FRAMES_PER_PHOTO = 6
# Who walks through when: (person, first frame, last frame, start (x, y), end (x, y)) of the face's top-left corner.
# Nobody enters where someone left less than a second before, which a tracker would take for the same person.
SCRIPT = (
    ("George_W_Bush", 0, 59, (40, 200), (420, 250)),
    ("Britney_Spears", 50, 119, (450, 60), (60, 80)),
    (STRANGER, 60, 119, (100, 300), (300, 300)),
    ("Donald_Rumsfeld", 110, 179, (60, 290), (400, 60)),
    ("Jennifer_Aniston", 125, 179, (480, 310), (300, 320)),
)


@dataclass(frozen=True)
class DemoMaterial:
    """What :func:`prepare_demo` wrote.

    Attributes:
        people_dir: ``people/<name>/*.jpg``, the gallery folder.
        video: The demo video.
        gallery_people: Names enrolled in the gallery (all of them appear in the video).
        stranger: The person in the video who is not in the gallery.
        frames: Frames of the video.
    """

    people_dir: Path
    video: Path
    gallery_people: tuple[str, ...]
    stranger: str
    frames: int


def demo_photos(lfw_dir: str | PathLike[str] | None = None, download: bool = True) -> dict[str, Path]:
    """Find the demo's LFW photos, each checked against its sha256.

    Looks in ``lfw_dir`` (or ``$EDGE_FACENET_LFW``), an LFW folder with ``images/``; then in the cache
    (``$EDGE_FACENET_HOME/demo/lfw``); then fetches the missing ones from the public LFW repository into the cache.

    Raises:
        FileNotFoundError: When a photo is in none of those places (the message names them).
        ValueError: When a local photo's sha256 differs from the pinned one.
    """
    local = lfw_dir or os.environ.get(LFW_ENV_VAR)
    cache = cache_dir() / "demo" / "lfw"
    found: dict[str, Path] = {}
    for key, sha256 in PHOTOS.items():
        if local:
            path = Path(local) / "images" / key
            if not path.is_file():
                raise FileNotFoundError(f"LFW photo {key} not found under {Path(local) / 'images'}")
            if sha256_file(path) != sha256:
                raise ValueError(f"{path} is not the LFW deep-funneled image it should be (sha256 differs)")
            found[key] = path
            continue
        cached = cache / key
        if not (cached.is_file() and sha256_file(cached) == sha256):
            if not download:
                raise FileNotFoundError(
                    f"LFW photo {key} is not cached in {cache}: set ${LFW_ENV_VAR} to an LFW folder or allow the "
                    "download"
                )
            _fetch(f"{LFW_REPOSITORY}/{key}", cached, sha256)
        found[key] = cached
    return found


def prepare_demo(out_dir: str | PathLike[str], lfw_dir: str | PathLike[str] | None = None) -> DemoMaterial:
    """Write the demo's gallery folder (``out_dir/people``) and video (``out_dir/demo.mp4``).

    Raises:
        FileNotFoundError, ValueError: When the photos cannot be found (see :func:`demo_photos`).
        RuntimeError: When OpenCV cannot write an MP4 video here.
    """
    out_dir = Path(out_dir)
    photos = demo_photos(lfw_dir)
    people_dir = out_dir / "people"
    shutil.rmtree(people_dir, ignore_errors=True)
    for name in GALLERY_PEOPLE:
        (people_dir / name).mkdir(parents=True)
        for number in GALLERY_PHOTOS:
            key = f"{name}/{name}_{number:04d}.jpg"
            shutil.copyfile(photos[key], people_dir / key)
    video = out_dir / "demo.mp4"
    frames = write_demo_video(photos, video)
    return DemoMaterial(people_dir, video, GALLERY_PEOPLE, STRANGER, frames)


def write_demo_video(photos: dict[str, Path], path: Path) -> int:
    """Compose the demo video from the photos (see :data:`SCRIPT`); returns the number of frames.

    Raises:
        RuntimeError: When OpenCV cannot write an MP4 video here.
    """
    faces = {
        name: [_face_patch(photos[f"{name}/{name}_{number:04d}.jpg"]) for number in VIDEO_PHOTOS] for name, *_ in SCRIPT
    }
    frame_count = max(last for _, _, last, _, _ in SCRIPT) + 1
    background = _background()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        # OpenCV picks the container from the file name, so the temporary file keeps the .mp4 suffix.
        target = temporary.with_suffix(".mp4")
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), FPS, FRAME_SIZE)
        try:
            if not writer.isOpened():
                raise RuntimeError("OpenCV cannot write MP4 video here (no FFmpeg in this OpenCV build?)")
            for index in range(frame_count):
                writer.write(_demo_frame(background, faces, index))
            writer.release()
            target.replace(temporary)
        finally:
            writer.release()
            target.unlink(missing_ok=True)
    return frame_count


def scripted_faces(index: int) -> list[tuple[str, int, int]]:
    """Who is in frame ``index`` of the demo video, and where: (name, x, y) of each face's top-left corner."""
    placed = []
    for name, first, last, start, end in SCRIPT:
        if first <= index <= last:
            progress = (index - first) / max(1, last - first)
            x = round(start[0] + (end[0] - start[0]) * progress)
            y = round(start[1] + (end[1] - start[1]) * progress)
            placed.append((name, x, y))
    return placed


def _demo_frame(background: np.ndarray, faces: dict[str, list[np.ndarray]], index: int) -> np.ndarray:
    frame = background.copy()
    for name, x, y in scripted_faces(index):
        first = next(entry[1] for entry in SCRIPT if entry[0] == name)
        photo = (index - first) // FRAMES_PER_PHOTO % len(VIDEO_PHOTOS)
        frame[y : y + FACE_SIDE, x : x + FACE_SIDE] = faces[name][photo]
    return frame


def _face_patch(photo: Path) -> np.ndarray:
    # The central part of a 250x250 deep-funneled photo: the face with some hair and neck.
    image = read_image(photo)
    return cv2.resize(image[30:220, 30:220], (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA)


def _background() -> np.ndarray:
    width, height = FRAME_SIZE
    ramp = np.linspace(60, 150, width, dtype=np.float32)[None, :, None]
    shade = np.linspace(0.8, 1.1, height, dtype=np.float32)[:, None, None]
    colour = np.array([1.0, 0.9, 0.8], dtype=np.float32)[None, None, :]
    return np.clip(ramp * shade * colour, 0, 255).astype(np.uint8)


def _fetch(url: str, destination: Path, sha256: str) -> None:
    logger.info("fetching %s", url)
    with atomic_output(destination) as temporary:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                temporary.write_bytes(response.read())
        except OSError as error:
            raise FileNotFoundError(
                f"cannot fetch {url} ({error}); set ${LFW_ENV_VAR} to a local LFW folder instead"
            ) from None
        if sha256_file(temporary) != sha256:
            raise ValueError(f"{url} does not have the pinned sha256; not using it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_facenet.camera.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write people/ and demo.mp4 into")
    parser.add_argument("--lfw-dir", type=Path, help=f"local LFW folder with images/ (default: ${LFW_ENV_VAR})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        material = prepare_demo(args.out, args.lfw_dir)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"gallery folder: {material.people_dir} ({', '.join(material.gallery_people)}; two photos each)")
    print(f"video: {material.video} ({material.frames} frames at {FPS} fps, with {material.stranger}, not enrolled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
