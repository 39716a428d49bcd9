"""Clients of a TF Serving model server: gRPC ``PredictRequest``s and REST JSON bodies.

TF Serving (``tensorflow/serving``) serves a model folder ``<name>/<version>/`` (what
``keras_apps.export.export_model(model, "serving")`` writes) on gRPC port 8500 and REST port
8501. A request names the model, optionally a version (default: the highest), and a
signature (default ``serving_default``) and feeds every input of that signature:

* gRPC: ``tensorflow_serving.apis.predict_pb2.PredictRequest`` with ``model_spec`` and one
  ``TensorProto`` per input (:func:`predict_request`, sent by :func:`predict_grpc`);
* REST: ``POST /v1/models/<name>[/versions/<v>]:predict`` (:func:`rest_url`) with a JSON body
  (:func:`rest_body`) in the row format ``{"instances": [...]}`` (one entry per image; every
  input must share the batch dimension, so scalar inputs such as HD-CNN's ``beta`` cannot be
  sent this way) or the columnar format ``{"inputs": {"image": [...], "beta": 4.0}}``.
  Non-finite floats are written as ``Infinity`` / ``NaN``, which TF Serving's JSON accepts.

When ``path`` (the exported SavedModel or TF Serving model folder) is given, the request is
checked against its signature (:func:`keras_apps.serving.signatures`): the signature exists,
the image key, rank, dtype and known dimensions fit, the scalar inputs are the signature's;
a scalar input not passed gets the default recorded in the export (HD-CNN: ``beta = inf``,
the full model). Without ``path`` the image key is ``"image"`` (the ``keras.Input`` name of
every registry model) and floating images are sent as float32.

    >>> from keras_apps.serving import client
    >>> request = client.predict_request(images, model_name="hdcnn", path="saved_models/hdcnn", beta=4.0)
    >>> outputs = client.predict_grpc(images, model_name="hdcnn", host="localhost", port=8500)
    >>> body = client.rest_body(images, format="inputs", beta=4.0)
    >>> url = client.rest_url("localhost", 8501, "hdcnn")
"""

from __future__ import annotations

import json
import math
import numbers
import pathlib

import numpy as np

from keras_apps.serving.signatures import (
    SignatureInfo,
    check_images,
    saved_model_dir,
    serving_defaults,
    signatures,
)

#: Flags of docker, named in the deployment hint (not keras-apps flags).
FOREIGN_FLAGS = ("--mount", "--name", "-p")

__all__ = [
    "DEFAULT_INPUT_KEY",
    "DEFAULT_SIGNATURE",
    "GRPC_PORT",
    "REST_FORMATS",
    "REST_PORT",
    "ServingConnectionError",
    "ServingError",
    "parse_predict_response",
    "parse_rest_response",
    "predict_grpc",
    "predict_request",
    "predict_rest",
    "rest_body",
    "rest_url",
]

DEFAULT_SIGNATURE = "serving_default"
#: The image input key of every registry model (``keras_apps.models._common.INPUT_NAME``).
DEFAULT_INPUT_KEY = "image"
#: TF Serving's default ports (``docker run -p 8500:8500 -p 8501:8501 tensorflow/serving``).
GRPC_PORT = 8500
REST_PORT = 8501
#: REST body formats: row (``{"instances": ...}``) and columnar (``{"inputs": ...}``).
REST_FORMATS = ("instances", "inputs")


class ServingError(RuntimeError):
    """The model server answered with an error (its message is included)."""


class ServingConnectionError(ServingError, ConnectionError):
    """No model server answered at the given address within the timeout."""


def _check_name(model_name) -> str:
    if not isinstance(model_name, str) or not model_name or "/" in model_name or model_name.strip() != model_name:
        raise ValueError(
            f"`model_name` must be the served model's name (a non-empty string without '/' or "
            f"surrounding spaces, e.g. 'resnet20_cifar'), got {model_name!r}."
        )
    return model_name


def _check_version(version):
    if version is None:
        return None
    if isinstance(version, (bool, np.bool_)) or not isinstance(version, numbers.Integral) or version < 1:
        raise ValueError(f"`version` must be None (the highest) or a positive integer, got {version!r}.")
    return int(version)


def _check_signature_name(signature_name) -> str:
    if not isinstance(signature_name, str) or not signature_name:
        raise ValueError(f"`signature_name` must be a non-empty string, got {signature_name!r}.")
    return signature_name


def _export_dir(path, version) -> pathlib.Path:
    path = pathlib.Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    return saved_model_dir(path, version)


def _signature(path, signature_name: str, version) -> tuple[SignatureInfo, pathlib.Path]:
    directory = _export_dir(path, version)
    infos = signatures(directory)
    if signature_name not in infos:
        raise ValueError(
            f"{directory} has no signature {signature_name!r}; its signatures: "
            f"{', '.join(infos) or 'none'}."
        )
    return infos[signature_name], directory


def _scalar(key: str, value, dtype) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"Scalar input {key!r} must be a real number, got {value!r}.")
    return np.asarray(value, dtype=dtype)


def _feeds(images, signature_name, input_key, path, version, scalar_inputs) -> tuple[dict, SignatureInfo | None]:
    """``input key -> array`` for a request, checked against the signature when ``path``."""
    signature_name = _check_signature_name(signature_name)
    if path is None:
        key = input_key or DEFAULT_INPUT_KEY
        if not isinstance(key, str):
            raise ValueError(f"`input_key` must be a string, got {input_key!r}.")
        array = np.asarray(images)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise ValueError(f"`images` must be a numeric array, got dtype {array.dtype}.")
        if np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32, copy=False)
        if array.ndim < 1:
            raise ValueError(f"`images` must have a batch axis, got shape {array.shape}.")
        feeds = {key: array}
        for name, value in sorted(scalar_inputs.items()):
            if name == key:
                raise ValueError(f"Scalar input {name!r} is also the image input key.")
            feeds[name] = _scalar(name, value, np.float32)
        return feeds, None
    info, directory = _signature(path, signature_name, version)
    key = input_key or info.image_key
    feeds = {key: check_images(images, info, key)}
    unknown = sorted(set(scalar_inputs) - set(info.scalar_keys))
    if unknown:
        takes = ", ".join(info.scalar_keys) or "none"
        raise ValueError(
            f"Signature {info.key!r} of {directory} has no scalar input(s) {unknown}; its scalar "
            f"inputs: {takes}."
        )
    missing = [k for k in info.scalar_keys if k not in scalar_inputs and k != key]
    defaults = serving_defaults(directory) if missing else {}
    for name in info.scalar_keys:
        if name == key:
            continue
        if name in scalar_inputs:
            value = scalar_inputs[name]
        elif name in defaults:
            value = defaults[name]
        else:
            raise ValueError(
                f"Signature {info.key!r} of {directory} needs the scalar input {name!r} and the "
                f"export records no default for it; pass {name}=<value>."
            )
        feeds[name] = _scalar(name, value, np.dtype(info.inputs[name].dtype))
    return feeds, info


def predict_request(images, *, model_name: str, signature_name: str = DEFAULT_SIGNATURE,
                    version: int | None = None, input_key: str | None = None, path=None,
                    **scalar_inputs):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` for ``images``.

    Args:
        images: (N, H, W, C) array.
        model_name: the served model's name (TF Serving's ``MODEL_NAME``).
        signature_name: the signature to run.
        version: a version number (``model_spec.version``); None lets the server take the
            highest it has loaded.
        input_key: the images' input key; default the signature's only non-scalar input
            (with ``path``) or ``"image"``.
        path: the exported SavedModel or TF Serving model folder to check the request
            against (see the module docstring); its ``version`` is read when given.
        **scalar_inputs: the signature's scalar inputs (HD-CNN: ``beta=4.0``); with
            ``path``, omitted ones get the export's recorded default.

    Returns:
        The request, with ``model_spec.name``, ``model_spec.signature_name``,
        ``model_spec.version`` (if given) and one ``TensorProto`` per input
        (``tf.make_tensor_proto``).
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    model_name = _check_name(model_name)
    version = _check_version(version)
    feeds, _ = _feeds(images, signature_name, input_key, path, version, scalar_inputs)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    for key, value in feeds.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def rest_body(images, *, format: str = "instances", signature_name: str = DEFAULT_SIGNATURE,
              input_key: str | None = None, path=None, version: int | None = None,
              **scalar_inputs) -> str:
    """The JSON body of a TF Serving REST ``:predict`` call for ``images``.

    Args:
        format: ``"instances"`` (row format: ``{"signature_name": ..., "instances": [image,
            ...]}``, one entry per image) or ``"inputs"`` (columnar: ``{"signature_name":
            ..., "inputs": {"image": [...], <scalar>: value}}``). Scalar inputs need
            ``"inputs"``: the row format requires every input to have the batch dimension.
        signature_name, input_key, path, version, scalar_inputs: as in
            :func:`predict_request` (``version`` selects the export under ``path`` to check
            against; the REST version goes in :func:`rest_url`).

    Returns:
        The body as a string (``json.dumps``; non-finite floats as ``Infinity`` / ``NaN``).
    """
    if format not in REST_FORMATS:
        raise ValueError(f"Unknown REST body format {format!r}; allowed: {', '.join(REST_FORMATS)}.")
    version = _check_version(version)
    feeds, _ = _feeds(images, signature_name, input_key, path, version, scalar_inputs)
    image_key = next(iter(feeds))
    scalars = [k for k in feeds if k != image_key]
    body = {"signature_name": signature_name}
    if format == "instances":
        if scalars:
            raise ValueError(
                f"The row format ('instances') cannot carry the scalar input(s) {scalars}: each "
                "input must have the batch dimension there. Use format='inputs'."
            )
        body["instances"] = feeds[image_key].tolist()
    else:
        body["inputs"] = {k: v.tolist() for k, v in feeds.items()}
    return json.dumps(body)


def rest_url(host: str, port: int, model_name: str, version: int | None = None, *,
             scheme: str = "http") -> str:
    """``<scheme>://<host>:<port>/v1/models/<model_name>[/versions/<version>]:predict``."""
    if not isinstance(host, str) or not host or any(c in host for c in "/ ?#"):
        raise ValueError(f"`host` must be a host name or address such as 'localhost', got {host!r}.")
    if isinstance(port, (bool, np.bool_)) or not isinstance(port, numbers.Integral) or not 0 < port < 65536:
        raise ValueError(f"`port` must be an integer in 1..65535, got {port!r}.")
    if scheme not in ("http", "https"):
        raise ValueError(f"`scheme` must be 'http' or 'https', got {scheme!r}.")
    model_name = _check_name(model_name)
    version = _check_version(version)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    url = f"{scheme}://{host}:{int(port)}/v1/models/{model_name}"
    if version is not None:
        url += f"/versions/{version}"
    return url + ":predict"


def parse_predict_response(response) -> dict:
    """``output key -> np.ndarray`` of a ``PredictResponse`` (or its serialised bytes)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    if isinstance(response, (bytes, bytearray)):
        parsed = predict_pb2.PredictResponse()
        parsed.ParseFromString(bytes(response))
        response = parsed
    if not isinstance(response, predict_pb2.PredictResponse):
        raise TypeError(
            f"`response` must be a PredictResponse or its serialised bytes, got {type(response).__name__}."
        )
    return {key: tf.make_ndarray(response.outputs[key]) for key in sorted(response.outputs)}


def parse_rest_response(body, *, output_key: str | None = None, path=None,
                        signature_name: str = DEFAULT_SIGNATURE, version: int | None = None) -> dict:
    """``output key -> np.ndarray`` of a REST ``:predict`` response body.

    Row responses are ``{"predictions": [...]}`` (one entry per image: a value for a single
    output, an object keyed by output for several); columnar ones ``{"outputs": ...}`` (a
    value for a single output, an object of outputs). A single output comes back without its
    name: it is keyed ``output_key``, else the signature's only output (with ``path``), else
    ``"output_0"``. With ``path`` the arrays get the signature's dtypes; without, JSON numbers
    give float64 / int64. ``{"error": ...}`` raises :class:`ServingError`.
    """
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as err:
            raise ValueError(f"The REST response is not JSON ({err}): {body[:200]!r}") from None
    if not isinstance(body, dict):
        raise ValueError(f"The REST response must be a JSON object, got {type(body).__name__}.")
    if "error" in body:
        raise ServingError(f"TF Serving answered with an error: {body['error']}")
    info = None
    if path is not None:
        info, _ = _signature(path, _check_signature_name(signature_name), _check_version(version))
    single = output_key or (next(iter(info.outputs)) if info and len(info.outputs) == 1 else "output_0")
    if "predictions" in body:
        rows = body["predictions"]
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            keys = sorted(rows[0])
            if any(sorted(r) != keys for r in rows):
                raise ValueError("The REST response's predictions do not all have the same outputs.")
            outputs = {k: np.asarray([r[k] for r in rows]) for k in keys}
        else:
            outputs = {single: np.asarray(rows)}
    elif "outputs" in body:
        columns = body["outputs"]
        if isinstance(columns, dict):
            outputs = {k: np.asarray(v) for k, v in sorted(columns.items())}
        else:
            outputs = {single: np.asarray(columns)}
    else:
        raise ValueError(
            f"The REST response has neither 'predictions' nor 'outputs' (keys: {sorted(body)})."
        )
    if info is not None:
        for key, value in outputs.items():
            if key in info.outputs:
                outputs[key] = value.astype(info.outputs[key].dtype)
    return outputs


def _check_timeout(timeout) -> float:
    if isinstance(timeout, (bool, np.bool_)) or not isinstance(timeout, numbers.Real) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"`timeout` must be a positive number of seconds, got {timeout!r}.")
    return float(timeout)


def predict_grpc(images, *, model_name: str, host: str = "localhost", port: int = GRPC_PORT,
                 signature_name: str = DEFAULT_SIGNATURE, version: int | None = None,
                 input_key: str | None = None, path=None, timeout: float = 10.0,
                 **scalar_inputs) -> dict:
    """Sends :func:`predict_request` to a TF Serving gRPC endpoint and returns its outputs
    (:func:`parse_predict_response`).

    Raises:
        ServingConnectionError: nothing answered at ``host:port`` within ``timeout`` seconds.
        ServingError: the server answered with an error (unknown model, bad input, ...).
    """
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    rest_url(host, port, model_name)  # the same checks of host, port and name
    timeout = _check_timeout(timeout)
    request = predict_request(images, model_name=model_name, signature_name=signature_name,
                              version=version, input_key=input_key, path=path, **scalar_inputs)
    address = f"{host}:{int(port)}"
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as err:
            code = err.code()
            details = err.details() or ""
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ServingConnectionError(
                    f"No TF Serving gRPC server answered at {address} within {timeout:g} s "
                    f"({code.name}: {details}). Start one, e.g. docker run -p {port}:8500 "
                    f"--mount type=bind,source=<export folder>,target=/models/{model_name} "
                    f"-e MODEL_NAME={model_name} -t tensorflow/serving"
                ) from None
            raise ServingError(
                f"TF Serving at {address} refused the request for model {model_name!r} "
                f"({code.name}): {details}"
            ) from None
    return parse_predict_response(response)


def predict_rest(images, *, model_name: str, host: str = "localhost", port: int = REST_PORT,
                 format: str = "instances", signature_name: str = DEFAULT_SIGNATURE,
                 version: int | None = None, input_key: str | None = None, path=None,
                 timeout: float = 10.0, **scalar_inputs) -> dict:
    """POSTs :func:`rest_body` to :func:`rest_url` and returns :func:`parse_rest_response`.

    Raises:
        ServingConnectionError: nothing answered at ``host:port`` within ``timeout`` seconds.
        ServingError: the server answered with an HTTP error (its ``error`` message included).
    """
    import urllib.error
    import urllib.request

    url = rest_url(host, port, model_name, version)
    timeout = _check_timeout(timeout)
    body = rest_body(images, format=format, signature_name=signature_name, input_key=input_key,
                     path=path, version=version, **scalar_inputs)
    request = urllib.request.Request(
        url, data=body.encode("utf-8"), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            text = answer.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (json.JSONDecodeError, AttributeError):
            pass
        raise ServingError(f"TF Serving at {url} answered HTTP {err.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ServingConnectionError(
            f"No TF Serving REST server answered at {url} within {timeout:g} s ({reason})."
        ) from None
    return parse_rest_response(text, path=path, signature_name=signature_name, version=version)
