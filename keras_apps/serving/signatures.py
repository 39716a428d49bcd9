"""The signatures of an exported SavedModel, read from its ``saved_model.pb`` (no variables
are loaded): what TF Serving serves and what ``saved_model_cli show --dir D --all`` prints.

    >>> from keras_apps.serving import signatures, describe
    >>> signatures("saved_models/resnet20_cifar")["serving_default"].inputs["image"]
    TensorInfo(key='image', dtype='float32', shape=(None, 32, 32, 3), tensor_name='serving_default_image:0')
    >>> print(describe("saved_models/resnet20_cifar"))
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

__all__ = [
    "SERVE_TAG",
    "SignatureInfo",
    "TensorInfo",
    "describe",
    "saved_model_dir",
    "serving_defaults",
    "signatures",
]

#: The MetaGraph tag TF Serving loads (``--tag_set serve`` of ``saved_model_cli``).
SERVE_TAG = "serve"
#: Internal entry of every SavedModel's signature map; it is not a servable signature.
_INIT_OP = "__saved_model_init_op"
_DEFAULTS_FUNCTION = "serving_defaults"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature.

    Attributes:
        key: the name clients use (``PredictRequest.inputs[key]``, the REST JSON key).
        dtype: numpy dtype name, e.g. ``"float32"``.
        shape: dimensions, None where unknown (the batch dimension); ``()`` for scalars.
        tensor_name: the graph tensor behind the key (``saved_model_cli show`` prints it).
    """

    key: str
    dtype: str
    shape: tuple
    tensor_name: str

    @property
    def is_scalar(self) -> bool:
        """True for a rank-0 input (e.g. HD-CNN's ``beta``), fed once per request."""
        return self.shape == ()


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    """A SignatureDef: its key, method name (``tensorflow/serving/predict``), inputs, outputs."""

    key: str
    method_name: str
    inputs: dict
    outputs: dict

    @property
    def image_key(self) -> str:
        """The single non-scalar input (the images); ValueError if there is not exactly one."""
        keys = [k for k, info in self.inputs.items() if not info.is_scalar]
        if len(keys) != 1:
            raise ValueError(
                f"Signature {self.key!r} has {len(keys)} non-scalar inputs {keys}; pass "
                "`input_key` to say which one takes the images."
            )
        return keys[0]

    @property
    def scalar_keys(self) -> list:
        """The rank-0 inputs, sorted."""
        return sorted(k for k, info in self.inputs.items() if info.is_scalar)


def saved_model_dir(path, version: int | None = None) -> pathlib.Path:
    """The SavedModel folder of ``path``: ``path`` itself if it holds ``saved_model.pb``, else
    version ``version`` (default: the highest) of a TF Serving model folder ``<name>/``."""
    path = pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"No SavedModel folder at {path}.")
    if (path / "saved_model.pb").is_file():
        if version is not None:
            raise ValueError(
                f"{path} is a single SavedModel; `version` ({version!r}) only applies to a TF "
                "Serving model folder of numbered versions."
            )
        return path
    versions = {
        int(p.name): p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()
    }
    if not versions:
        raise ValueError(
            f"{path} is neither a SavedModel folder (with saved_model.pb) nor a TF Serving model "
            "folder of numbered versions (<name>/<version>/saved_model.pb)."
        )
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        raise ValueError(
            f"{path} has no version {version!r}; it has versions {sorted(versions)}."
        )
    return versions[version]


def _meta_graph(directory: pathlib.Path):
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString((directory / "saved_model.pb").read_bytes())
    except Exception as err:
        raise ValueError(
            f"{directory / 'saved_model.pb'} is not a readable SavedModel ({type(err).__name__})."
        ) from err
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    tags = [list(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ValueError(f"SavedModel {directory} has no {SERVE_TAG!r} MetaGraph (tag sets: {tags}).")


def _tensor_info(key: str, info) -> TensorInfo:
    from tensorflow.python.framework import dtypes

    if info.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
    return TensorInfo(key, dtypes.as_dtype(info.dtype).name, shape, info.name)


def signatures(path, version: int | None = None) -> dict:
    """``signature key -> SignatureInfo`` of the ``serve`` MetaGraph of an exported SavedModel.

    Args:
        path: a SavedModel folder or a TF Serving model folder (see :func:`saved_model_dir`).
        version: version of a TF Serving model folder (default: the highest).
    """
    meta_graph = _meta_graph(saved_model_dir(path, version))
    result = {}
    for key in sorted(meta_graph.signature_def):
        if key == _INIT_OP:
            continue
        definition = meta_graph.signature_def[key]
        result[key] = SignatureInfo(
            key=key,
            method_name=definition.method_name,
            inputs={k: _tensor_info(k, v) for k, v in sorted(definition.inputs.items())},
            outputs={k: _tensor_info(k, v) for k, v in sorted(definition.outputs.items())},
        )
    return result


def serving_defaults(path, version: int | None = None) -> dict:
    """The recorded defaults of the scalar signature inputs (``{"beta": inf}`` for HD-CNN's
    conditional execution; ``{}`` for a plain model): the values under which the signature
    computes the Keras model (:func:`keras_apps.export.exporter.save_serving_module`)."""
    directory = saved_model_dir(path, version)
    root = _meta_graph(directory).object_graph_def.nodes[0]
    if _DEFAULTS_FUNCTION not in {child.local_name for child in root.children}:
        return {}
    import tensorflow as tf

    loaded = tf.saved_model.load(str(directory))
    return {k: v.numpy().item() for k, v in getattr(loaded, _DEFAULTS_FUNCTION)().items()}


def _shape_text(shape) -> str:
    if shape is None:
        return "unknown rank"
    if shape == ():
        return "scalar"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def describe(path, version: int | None = None) -> str:
    """A plain-text description of every servable signature (key, method, each input and
    output with dtype and shape, the defaults of scalar inputs): the documentation of what
    TF Serving will serve from ``path``."""
    directory = saved_model_dir(path, version)
    infos = signatures(directory)
    defaults = serving_defaults(directory)
    lines = [f"SavedModel {directory} (tag set {SERVE_TAG!r})"]
    for key, info in infos.items():
        lines.append(f"signature {key!r} (method {info.method_name or 'none'})")
        for k, tensor in info.inputs.items():
            extra = f", default {defaults[k]!r}" if k in defaults else ""
            lines.append(f"  input  {k!r}: {tensor.dtype} {_shape_text(tensor.shape)}{extra}")
        for k, tensor in info.outputs.items():
            lines.append(f"  output {k!r}: {tensor.dtype} {_shape_text(tensor.shape)}")
    return "\n".join(lines)


def check_images(images, info: SignatureInfo, input_key: str) -> np.ndarray:
    """``images`` as an array of the signature input's dtype, after checking rank, dtype
    kind and the known dimensions; one ValueError naming what is wrong otherwise."""
    if input_key not in info.inputs:
        raise ValueError(
            f"Signature {info.key!r} has no input {input_key!r}; its inputs: "
            f"{', '.join(sorted(info.inputs))}."
        )
    spec = info.inputs[input_key]
    array = np.asarray(images)
    want = np.dtype(spec.dtype)
    if np.issubdtype(want, np.floating) and not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"Input {input_key!r} of signature {info.key!r} takes {spec.dtype}; the images have "
            f"dtype {array.dtype} (convert and scale them the way the model was trained, e.g. "
            "images.astype('float32') / 255)."
        )
    if spec.shape is not None:
        if array.ndim != len(spec.shape):
            raise ValueError(
                f"Input {input_key!r} of signature {info.key!r} takes rank {len(spec.shape)} "
                f"{_shape_text(spec.shape)}; the images have shape {array.shape} (rank "
                f"{array.ndim}; a single image needs a batch axis: images[None])."
            )
        if any(w is not None and g != w for g, w in zip(array.shape, spec.shape)):
            raise ValueError(
                f"Input {input_key!r} of signature {info.key!r} takes {_shape_text(spec.shape)}; "
                f"the images have shape {array.shape}."
            )
    return array.astype(want, copy=False)
