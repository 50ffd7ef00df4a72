"""edge_facenet: FaceNet-style face recognition for small CUDA devices and ordinary CPUs.

The runtime package imports without torch; training and export code lives in :mod:`edge_facenet.training`,
which needs the ``train`` extra.
"""

__version__ = "0.1.0"

from edge_facenet.metadata import ModelMetadata, read_metadata
from edge_facenet.preprocess import blob_from_crops
from edge_facenet.templates import AlignmentTemplate, get_template, list_templates

__all__ = [
    "AlignmentTemplate",
    "ModelMetadata",
    "__version__",
    "blob_from_crops",
    "get_template",
    "list_templates",
    "read_metadata",
]
