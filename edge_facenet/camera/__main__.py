"""Entry point of ``python -m edge_facenet.camera`` (see :mod:`edge_facenet.camera.app`)."""

import sys

from edge_facenet.camera.app import main

sys.exit(main())
