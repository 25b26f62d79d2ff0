"""The conversion tier: rebuild InceptionResNetV1 in Keras 3, load the recovered weights, export
every format, prove parity with the original graph, quantize, export MTCNN (TensorFlow inside)."""
