"""INT8 post-training quantization: calibration, the TensorRT Q/DQ lint, the accuracy gate (need onnx)."""
