"""The camera app: capture, tracking and identity over time (python -m edge_facenet.camera)."""
