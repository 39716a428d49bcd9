"""OverFeat (Sermanet, Eigen, Zhang, Mathieu, Fergus, LeCun, "OverFeat: Integrated Recognition,
Localization and Detection using Convolutional Networks", ICLR 2014): one network for
classification, localization and detection.

    >>> import keras_apps
    >>> from keras_apps import overfeat
    >>> classifier = keras_apps.build("overfeat_accurate_small", classes=4)   # 3 objects + background
    >>> dense = overfeat.to_dense(classifier, offset_pooling=True)           # any input >= 221
    >>> regressor = overfeat.regression_head(classifier, classes=3)          # frozen features
    >>> system = overfeat.overfeat_system(classifier, regressor)             # {"scores", "boxes"}
    >>> found = overfeat.detect(system, images, scales=(1.0, 1.4), preprocess=...)

* networks: ``overfeat_fast`` (231x231), ``overfeat_accurate`` (221x221) at the paper's tables
  and their narrow ``*_small`` variants (:mod:`keras_apps.overfeat.models`);
* dense evaluation: :func:`to_dense`, offset max pooling
  (:class:`keras_apps.layers.OffsetMaxPooling2D`), :func:`dense_geometry`, :func:`window_boxes`,
  :func:`output_size`, :data:`SCALES`; multi-scale + flip classification and the 10-view
  baseline (:func:`multi_scale_scores`, :func:`ten_view_scores`);
* training: :func:`fit` (classifier with background, then the box regressor, on a VOC set such
  as ``"bccd"``; resumable; thresholds chosen on validation images; saves ``system.keras``);
* localization and detection: :func:`regression_head` + :class:`BoxRegressionLoss`, training
  windows (:func:`sample_windows`, :func:`crop_windows`), :func:`overfeat_system`,
  :func:`localize`, :func:`detect`, :func:`greedy_merge`, :func:`save_system` / :func:`load_system`;
* metrics: :func:`top_k_error`, :func:`average_precision`, :func:`detection_ap` (VOC mAP),
  :func:`localization_error` (ILSVRC); boxes: :mod:`keras_apps.overfeat.boxes`.

``keras-apps overfeat classify|localize|detect IMAGE... --model M`` is the command line.
"""

from keras_apps.overfeat import models  # noqa: F401  (registers the networks)
from keras_apps.overfeat.boxes import iou
from keras_apps.overfeat.classify import multi_scale_scores, ten_view_scores
from keras_apps.overfeat.dense import (
    SCALES,
    dense_geometry,
    feature_layer,
    output_size,
    to_dense,
    window_boxes,
)
from keras_apps.overfeat.inference import (
    dense_predictions,
    dense_system,
    detect,
    detect_predictions,
    load_system,
    localize,
    localize_predictions,
    overfeat_system,
    save_system,
)
from keras_apps.overfeat.merge import greedy_merge, match_score
from keras_apps.overfeat.metrics import (
    average_precision,
    detection_ap,
    localization_error,
    top_k_error,
)
from keras_apps.overfeat.pipeline import OverFeatResult, choose_thresholds, fit
from keras_apps.overfeat.regression import BoxRegressionLoss, regression_head
from keras_apps.overfeat.windows import crop_windows, sample_windows

__all__ = [
    "BoxRegressionLoss",
    "OverFeatResult",
    "SCALES",
    "average_precision",
    "choose_thresholds",
    "crop_windows",
    "dense_geometry",
    "dense_predictions",
    "dense_system",
    "detect",
    "detect_predictions",
    "detection_ap",
    "feature_layer",
    "fit",
    "greedy_merge",
    "iou",
    "load_system",
    "localization_error",
    "localize",
    "localize_predictions",
    "match_score",
    "multi_scale_scores",
    "output_size",
    "overfeat_system",
    "regression_head",
    "sample_windows",
    "save_system",
    "ten_view_scores",
    "to_dense",
    "top_k_error",
    "window_boxes",
]
