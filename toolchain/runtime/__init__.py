"""Face recognition on the exported ONNX models: ONNX Runtime, numpy, Pillow; no TensorFlow."""
