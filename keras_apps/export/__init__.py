"""Export any keras_apps model as ``.keras``, SavedModel, TF Serving version, TFLite or int8 TFLite.

    >>> from keras_apps import export
    >>> result = export.export_model(model, "serving")        # saved_models/<name>/1/
    >>> run = export.load_exported(result.path)
    >>> probabilities = run(images)

Formats (:data:`FORMATS`) and default paths under ``root="saved_models"``:

=============== ====================================== ==========================================
format          default path                           written by
=============== ====================================== ==========================================
``keras``       ``<root>/<name>.keras``                ``model.save``; reloads with
                                                       ``keras.saving.load_model(safe_mode=True)``
``saved_model`` ``<root>/<name>_saved_model/``         Keras 3 ``model.export`` (TF SavedModel)
``serving``     ``<root>/<name>/<version>/``           the same SavedModel in TF Serving's layout;
                                                       version = highest existing + 1 (or given)
``tflite``      ``<root>/<name>.tflite``               ``TFLiteConverter.from_saved_model``, float32
``tflite_int8`` ``<root>/<name>_int8.tflite``          post-training full-integer quantisation
=============== ====================================== ==========================================

SavedModel signature (checked by the tests): tag ``serve``, signature key ``serving_default``
(method ``tensorflow/serving/predict``), input key ``image`` (the ``keras.Input`` name,
:data:`keras_apps.models._common.INPUT_NAME`), float32 ``(None, H, W, C)``; output key
``output_0`` for a single output, ``output_<i>`` for a list of outputs and the dict keys for
a dict of outputs (e.g. :func:`keras_apps.feature_extractor`). ``saved_model_cli show --dir
DIR --all`` lists it. The TFLite files keep the same signature and tensor names.

int8 TFLite: weights and activations int8, calibrated on ``representative_data`` (required;
no random data is invented), builtin int8 ops only, and **int8 input and output** (for
integer-only accelerators). The input scale/zero point come from the calibration range
(1/255 and -128 for images in [0, 1]); a softmax output has scale 1/256 and zero point -128.
:func:`load_exported` quantises inputs and dequantises outputs, so callers use floats.

Verification (``verify=True``) reloads the written artefact with its own loader and compares
it with the Keras model, with ``s = max(1, max |keras output|)``:

* float formats: max |exported - keras| <= 1e-4 * s (:data:`FLOAT_TOLERANCE`). Measured: 0
  for ``.keras`` and SavedModel; float TFLite up to 3e-6 on softmax outputs and 1e-5 on
  logits of magnitude ~24.
* ``tflite_int8``: mean |exported - keras| <= 0.02 * s (:data:`INT8_TOLERANCE`) and top-1
  agreement >= 0.9 (:data:`INT8_MIN_AGREEMENT`) on the samples whose float top-1 beats the
  runner-up by >= 0.1 * s (:data:`INT8_DECISIVE_MARGIN`). The max is reported, not bounded:
  rounding that flips a near-tie moves single probabilities by up to ~0.5. Measured on
  16x16 CIFAR-layout networks and held-out digits: mean 0.002-0.006 * s (probabilities and
  logits, trained or not); max 0.06 (NIN, 8 epochs), 0.09 (ResNet-20), 0.47 (a half-trained
  NIN); top-1 agreement 0.97-1.0 on decisive samples. Calibrating on images scaled to 0.6x
  their range gives mean 0.032 and is rejected. int8 files are 3.2-3.6x smaller than float.

Every write is atomic: the artefact is built in a hidden temporary sibling of the target,
reloaded and verified there, then renamed into place. A failure leaves no target and no
temporary files; an existing export is only replaced (``overwrite=True``) after the new one
has verified, and an existing serving version is never replaced without ``overwrite``.
The temporary sibling is named ``.<target>.tmp-<host>-<pid>-<random>``; an export removes the
ones of its target left by processes of this host that no longer run (a killed export).
:func:`check_target` says where an export will go and raises what :func:`export_model` would
raise about the target (it exists, it is a folder where a file goes, it lies under a file),
so ``keras-apps train --export`` checks before it trains.
"""

from keras_apps.export.exporter import (
    FLOAT_TOLERANCE,
    FORMATS,
    INT8_DECISIVE_MARGIN,
    INT8_MIN_AGREEMENT,
    INT8_TOLERANCE,
    ExportError,
    ExportResult,
    ExportVerificationError,
    check_target,
    export_model,
    verify_export,
)
from keras_apps.export.loading import ExportedModel, load_exported
from keras_apps.export.representative import calibration_images

__all__ = [
    "FORMATS",
    "FLOAT_TOLERANCE",
    "INT8_TOLERANCE",
    "INT8_MIN_AGREEMENT",
    "INT8_DECISIVE_MARGIN",
    "ExportError",
    "ExportResult",
    "ExportVerificationError",
    "ExportedModel",
    "calibration_images",
    "check_target",
    "export_model",
    "load_exported",
    "verify_export",
]
