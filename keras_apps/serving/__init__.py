"""Serving exported keras_apps models with TF Serving: signatures, clients, checks.

``keras_apps.export.export_model(model, "serving")`` writes TF Serving's layout
``saved_models/<name>/<version>/`` (a SavedModel per version, tag ``serve``). This package
reads what such an export serves and talks to a model server:

* :func:`signatures` / :func:`describe` read the SignatureDefs from ``saved_model.pb``: key,
  method ``tensorflow/serving/predict``, inputs and outputs with dtype and shape (and the
  recorded defaults of scalar inputs, :func:`serving_defaults`);
* :mod:`keras_apps.serving.client`: :func:`predict_request` (a real
  ``tensorflow_serving.apis.predict_pb2.PredictRequest``), :func:`rest_body` (the REST JSON,
  row ``{"instances": ...}`` or columnar ``{"inputs": ...}``), :func:`rest_url`,
  :func:`parse_predict_response`, :func:`parse_rest_response`, :func:`predict_grpc` and
  :func:`predict_rest`;
* :func:`run_saved_model_cli` runs signatures through TensorFlow's own ``saved_model_cli run``.

The ``serving_default`` signatures:

* a registry model, a NIWT-extended one or any single-input Keras model (``model.export``):
  input ``image`` float32 ``(None, H, W, C)``; output ``output_0`` (the class probabilities,
  ``(None, classes)``), ``output_<i>`` for a list of outputs, or the dict keys for a dict of
  outputs (GoogLeNet's training model: ``main``, ``aux1``, ``aux2``; a
  :func:`keras_apps.feature_extractor`: its stage names). ``model.export`` also writes the
  same function as signature ``serve``.
* HD-CNN (conditional execution, :mod:`keras_apps.hdcnn.conditional`): inputs ``image``
  float32 ``(None, H, W, C)`` and ``beta`` float32 scalar (recorded default ``inf``: every
  fine component runs, the full model); outputs ``predictions`` float32 ``(None, C)``,
  ``coarse`` float32 ``(None, K)`` and ``components_run`` int32 ``(None,)``. ``beta`` must
  be sent in the columnar REST format (``{"inputs": {"image": ..., "beta": 4.0}}``).
"""

from keras_apps.serving.cli_runner import CliRun, SavedModelCliError, cli_arguments, run_saved_model_cli
from keras_apps.serving.client import (
    DEFAULT_INPUT_KEY,
    DEFAULT_SIGNATURE,
    GRPC_PORT,
    REST_FORMATS,
    REST_PORT,
    ServingConnectionError,
    ServingError,
    parse_predict_response,
    parse_rest_response,
    predict_grpc,
    predict_request,
    predict_rest,
    rest_body,
    rest_url,
)
from keras_apps.serving.signatures import (
    SERVE_TAG,
    SignatureInfo,
    TensorInfo,
    describe,
    saved_model_dir,
    serving_defaults,
    signatures,
)

__all__ = [
    "CliRun",
    "DEFAULT_INPUT_KEY",
    "DEFAULT_SIGNATURE",
    "GRPC_PORT",
    "REST_FORMATS",
    "REST_PORT",
    "SERVE_TAG",
    "SavedModelCliError",
    "ServingConnectionError",
    "ServingError",
    "SignatureInfo",
    "TensorInfo",
    "cli_arguments",
    "describe",
    "parse_predict_response",
    "parse_rest_response",
    "predict_grpc",
    "predict_request",
    "predict_rest",
    "rest_body",
    "rest_url",
    "run_saved_model_cli",
    "saved_model_dir",
    "serving_defaults",
    "signatures",
]
