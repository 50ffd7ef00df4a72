"""edge_facenet: FaceNet-style face recognition for small CUDA devices and ordinary CPUs.

The runtime package imports without torch; training and export code lives in :mod:`edge_facenet.training`,
which needs the ``train`` extra.

Example:
    >>> from edge_facenet import Recognizer
    >>> recognizer = Recognizer(gallery="people.sqlite3")  # the shipped nn4_small2; model=PATH for another
    >>> recognizer.enroll("Ada", ["ada_1.jpg", "ada_2.jpg"])
    >>> [(m.name, m.similarity) for m in recognizer.identify(frame)]
"""

__version__ = "0.1.0"

from edge_facenet.aligner import FaceAligner
from edge_facenet.detector import FaceDetector
from edge_facenet.embedder import Embedder
from edge_facenet.gallery import Candidate, EnrollmentReport, Gallery, GalleryMismatchError
from edge_facenet.images import decode_image, read_image
from edge_facenet.metadata import ModelMetadata, read_metadata
from edge_facenet.preprocess import blob_from_crops
from edge_facenet.recognizer import Recognizer
from edge_facenet.templates import AlignmentTemplate, get_template, list_templates
from edge_facenet.types import Face, Match

__all__ = [
    "AlignmentTemplate",
    "Candidate",
    "Embedder",
    "EnrollmentReport",
    "Face",
    "FaceAligner",
    "FaceDetector",
    "Gallery",
    "GalleryMismatchError",
    "Match",
    "ModelMetadata",
    "Recognizer",
    "__version__",
    "blob_from_crops",
    "decode_image",
    "get_template",
    "list_templates",
    "read_image",
    "read_metadata",
]
