"""Robustness: bad images, bad model files and a long run, each met with a clear error, a reported skip or no leak."""
