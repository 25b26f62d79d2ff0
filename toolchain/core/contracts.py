"""The file contracts every tier and the legacy environment share: names, sizes, format strings.

``legacy_env/recover.py`` writes the weights and reference files, ``toolchain.convert`` reads them
and writes the models, ``toolchain.runtime`` loads the models: all of them take the names and
format strings from here, so none keeps its own copy. The legacy environment installs the project
with ``--no-deps``, so this module imports nothing but the standard library.
"""

from __future__ import annotations

INPUT_SIZE = 160
"""Model input is 160x160x3 RGB (``input_1`` in the legacy ``model_config``)."""

EMBEDDING_DIM = 128
"""Length of a FaceNet embedding (the ``Bottleneck_BatchNorm`` output)."""

KERAS_FILE = "facenet.keras"
SAVEDMODEL_DIR = "facenet_savedmodel"
ONNX_FILE = "facenet.onnx"
"""The fp32 ONNX model: what the runtime embeds with and what galleries are fingerprinted by."""
ONNX_INT8_FILE = "facenet_int8.onnx"
TFLITE_FILE = "facenet.tflite"
TFLITE_FP16_FILE = "facenet_fp16.tflite"
TFLITE_INT8_FILE = "facenet_int8.tflite"
OPENVINO_DIR = "facenet_openvino"
"""The OpenVINO IR (fp32) directory: :data:`OPENVINO_XML` and its ``.bin`` weights."""
OPENVINO_INT8_DIR = "facenet_openvino_int8"
"""The OpenVINO IR quantized to int8 by NNCF."""
OPENVINO_XML = "facenet.xml"
"""The IR graph file inside an OpenVINO directory (``facenet.bin`` beside it)."""

MTCNN_FILES: dict[str, str] = {
    "pnet": "mtcnn_pnet.onnx",
    "rnet": "mtcnn_rnet.onnx",
    "onet": "mtcnn_onet.onnx",
}
"""The three MTCNN stage nets, relative to ``artifacts/models``, in detection order."""

MANIFEST_FILE = "manifest.json"
"""The weights manifest, next to the ``<layer>.npz`` files in ``artifacts/weights``."""
MANIFEST_FORMAT = "facenet-toolchain/weights-manifest/1"
"""The ``format`` string of the weights manifest."""

REFERENCE_NPZ = "reference.npz"
"""``crops`` (uint8 ``(N, 160, 160, 3)``) and ``embeddings`` (float32 ``(N, 128)``, raw)."""
REFERENCE_INDEX = "index.json"
"""Every dataset photo, its split, person, detection and row in :data:`REFERENCE_NPZ`."""
REFERENCE_INDEX_FORMAT = "facenet-toolchain/reference-index/1"
"""The ``format`` string of :data:`REFERENCE_INDEX`."""

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
"""Extensions taken as photos when a folder is scanned (a file named explicitly is always tried)."""

CONTAINER_PACK = "pack-onnxruntime"
"""The model pack the container image holds, under the artifacts tree (ONNX Runtime fp32 and int8,
written by ``facenet model pack --runtime onnxruntime``; the Dockerfile's ``COPY`` names it)."""
