"""MTCNN face detection on ONNX Runtime: numpy and onnxruntime only, no TensorFlow, no OpenCV.

Reproduces the pipeline of the ``mtcnn`` 1.0.0 package (``mtcnn/stages``, ``mtcnn/utils``) on its
three nets exported by ``toolchain.convert.mtcnn_export`` (``facenet model export --format mtcnn``):

- :mod:`~toolchain.runtime.mtcnn.pyramid`: the detection plan of a photo (pyramid scales, the
  reduced copy of a real-size photo) and the area-resized, normalized levels P-Net runs on.
- :mod:`~toolchain.runtime.mtcnn.stages`: P-Net proposals, R-Net and O-Net refinement on patches
  cut like ``tf.image.crop_and_resize``, the package's NMS and box regression.
- :mod:`~toolchain.runtime.mtcnn.detector`: :class:`MTCNNDetector`, the three nets on ONNX Runtime
  and the pipeline from an RGB photo to :class:`Detection` results.

Photos no larger than ``max_side`` take exactly the package's path. Larger ones are searched on a
reduced copy for the pyramid and at full resolution for R-Net and O-Net, so the faces still found
get the same boxes and landmarks, and memory is bounded by ``max_side`` whatever the photo's size.

Known difference: when a pyramid level is too small for P-Net to produce any output (side <= 10
pixels; only with a ``min_face_size`` above the default), the package's TensorFlow call fails and
it returns no faces for the whole image; here that level is skipped.
"""

from toolchain.runtime.mtcnn.detector import (
    KEYPOINT_NAMES,
    NET_OUTPUTS,
    Detection,
    MTCNNDetector,
)
from toolchain.runtime.mtcnn.pyramid import (
    DEFAULT_MAX_SIDE,
    MIN_MAX_SIDE,
    DetectionPlan,
    area_resize,
    detection_plan,
    pyramid_scales,
    reduce_image,
    summed_area_table,
)
from toolchain.runtime.mtcnn.stages import crop_and_resize, nms, proposals, regress, square

__all__ = [
    "DEFAULT_MAX_SIDE",
    "KEYPOINT_NAMES",
    "MIN_MAX_SIDE",
    "NET_OUTPUTS",
    "Detection",
    "DetectionPlan",
    "MTCNNDetector",
    "area_resize",
    "crop_and_resize",
    "detection_plan",
    "nms",
    "proposals",
    "pyramid_scales",
    "reduce_image",
    "regress",
    "square",
    "summed_area_table",
]
