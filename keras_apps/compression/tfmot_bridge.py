"""A faithful bridge between Keras 3 functional models and tf_keras (Keras 2), for
tensorflow-model-optimization (tfmot 0.8.1 accepts only tf_keras models).

    >>> from keras_apps.compression import tfmot_bridge
    >>> twin = tfmot_bridge.to_tf_keras(model, sample=images)   # checked on `images`
    >>> back = tfmot_bridge.to_keras(twin, like=model, sample=images)

Why not ``tf_keras.models.model_from_json(model.to_json())``: tf_keras cannot read Keras 3's
``InputLayer`` config (``batch_shape``, ``optional``) nor its serialised ``DTypePolicy`` and
initialiser dicts. :func:`to_tf_keras` walks the Keras 3 functional graph instead
(``model.get_config()``: its layers and their inbound nodes, in order), rebuilds every layer as
the tf_keras class of the same name with the same configuration (Keras-3-only keys are
dropped only when they hold a neutral value such as None or False; anything else is an error),
wires the same graph, copies every layer's weights by name and checks that both models give
the same outputs (max |tf_keras - keras| <= :data:`TOLERANCE` * max(1, max |keras output|)).

Supported layers (:data:`SUPPORTED_LAYERS`): what the suite's CNNs use, and three
keras_apps layers with tf_keras twins: :class:`keras_apps.layers.ZeroPaddingShortcut` (the
CIFAR ResNets' option-A shortcut, :class:`TFKerasZeroPaddingShortcut`),
``LocalResponseNormalization`` (AlexNet, GoogLeNet; :class:`TFKerasLocalResponseNormalization`)
and ``SqueezeExcitation`` (SE-ResNets; :class:`TFKerasSqueezeExcitation`, same weights). Any
other layer (deformable convolution, ``L2NormalizeScale`` of grown networks, a nested model
such as HD-CNN's components, ...) is one :class:`UnsupportedLayerError` naming the layer and
its class.

The way back, :func:`to_keras`, copies the tf_keras weights (e.g. after ``strip_pruning``)
into a fresh Keras 3 model of the original architecture (``keras.models.clone_model``), so
the result is an ordinary keras_apps model that saves as ``.keras`` and exports.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import tensorflow as tf
import tf_keras

__all__ = [
    "BridgeMismatchError",
    "SUPPORTED_LAYERS",
    "TOLERANCE",
    "NO_QAT_TWINS",
    "TFKerasLocalResponseNormalization",
    "TFKerasSqueezeExcitation",
    "TFKerasZeroPaddingShortcut",
    "UnsupportedLayerError",
    "check_supported",
    "compare_outputs",
    "copy_weights",
    "to_keras",
    "to_tf_keras",
]

#: Outputs must agree within TOLERANCE * max(1, max |keras output|) (float32 rounding of
#: the same graph run by two libraries; measured 0 - 3e-7 on the suite's CNNs).
TOLERANCE = 1e-5

#: Keras 3 layer classes rebuilt as the tf_keras class of the same name.
SUPPORTED_LAYERS = (
    "Activation", "Add", "AveragePooling2D", "BatchNormalization", "Concatenate", "Conv2D",
    "Dense", "DepthwiseConv2D", "Dropout", "Flatten", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "InputLayer", "MaxPooling2D", "Multiply", "Normalization", "ReLU",
    "Rescaling", "Reshape", "Softmax", "ZeroPadding2D",
)

#: Keyword arguments every tf_keras layer takes through ``**kwargs``.
_BASE_KWARGS = ("name", "trainable", "dtype")

_OBJECT_MODULES = {
    "_initializer": tf_keras.initializers,
    "_regularizer": tf_keras.regularizers,
    "_constraint": tf_keras.constraints,
}


class UnsupportedLayerError(ValueError):
    """The Keras 3 model holds a layer (or a setting) the bridge cannot rebuild in tf_keras."""


class BridgeMismatchError(ValueError):
    """The two models' outputs differ beyond :data:`TOLERANCE` on the check sample."""


@tf_keras.saving.register_keras_serializable(package="keras_apps_tf_keras")
class TFKerasZeroPaddingShortcut(tf_keras.layers.Layer):
    """tf_keras twin of :class:`keras_apps.layers.ZeroPaddingShortcut` (He et al. 2016,
    Sec. 3.3 option (A)): ``x[:, ::s, ::s, :]`` with zero channels appended up to
    ``filters``. No weights."""

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)

    def call(self, inputs):
        x = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - inputs.shape[-1]
        if extra:
            x = tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        s = self.strides
        height = None if shape[1] is None else (shape[1] + s - 1) // s
        width = None if shape[2] is None else (shape[2] + s - 1) // s
        return tf.TensorShape([shape[0], height, width, self.filters])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


@tf_keras.saving.register_keras_serializable(package="keras_apps_tf_keras")
class TFKerasLocalResponseNormalization(tf_keras.layers.Layer):
    """tf_keras twin of :class:`keras_apps.layers.LocalResponseNormalization` (Krizhevsky et
    al. 2012, Sec. 3.3): ``b_i = a_i / (k + alpha sum_j a_j^2)^beta`` over the ``size``
    channels around i (the window cut at the edges). No weights."""

    def __init__(self, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75,
                 **kwargs):
        super().__init__(**kwargs)
        self.size, self.k, self.alpha, self.beta = int(size), float(k), float(alpha), float(beta)

    def call(self, inputs):
        channels = inputs.shape[-1]
        radius = self.size // 2
        squared = tf.pad(tf.square(inputs), [[0, 0], [0, 0], [0, 0], [radius, radius]])
        window_sum = tf.add_n([squared[..., offset:offset + channels] for offset in range(self.size)])
        return inputs / tf.pow(self.k + self.alpha * window_sum, self.beta)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "k": self.k, "alpha": self.alpha,
                "beta": self.beta}


@tf_keras.saving.register_keras_serializable(package="keras_apps_tf_keras")
class TFKerasSqueezeExcitation(tf_keras.layers.Layer):
    """tf_keras twin of :class:`keras_apps.layers.SqueezeExcitation` (Hu et al. 2018, Eq. 2-4):
    ``x * sigmoid(W2 relu(W1 mean_ij(x) + b1) + b2)``, with the same four weights in the same
    order (reduce kernel and bias, expand kernel and bias), so weights copy across. Its
    kernels are not pruned (tfmot prunes Conv2D/DepthwiseConv2D/Dense layers)."""

    def __init__(self, reduction: int = 16, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.reduction = int(reduction)
        self.kernel_initializer = tf_keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.units = max(1, channels // self.reduction)
        self.reduce_kernel = self.add_weight(name="reduce_kernel", shape=(channels, self.units),
                                             initializer=self.kernel_initializer)
        self.reduce_bias = self.add_weight(name="reduce_bias", shape=(self.units,),
                                           initializer="zeros")
        self.expand_kernel = self.add_weight(name="expand_kernel", shape=(self.units, channels),
                                             initializer=self.kernel_initializer)
        self.expand_bias = self.add_weight(name="expand_bias", shape=(channels,),
                                           initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        squeezed = tf.reduce_mean(inputs, axis=(1, 2))
        hidden = tf.nn.relu(tf.matmul(squeezed, self.reduce_kernel) + self.reduce_bias)
        gates = tf.sigmoid(tf.matmul(hidden, self.expand_kernel) + self.expand_bias)
        return inputs * gates[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction,
                "kernel_initializer": tf_keras.initializers.serialize(self.kernel_initializer)}


#: Registered names of keras_apps layers -> their tf_keras twins.
_TWINS = {
    "keras_apps>ZeroPaddingShortcut": TFKerasZeroPaddingShortcut,
    "keras_apps>LocalResponseNormalization": TFKerasLocalResponseNormalization,
    "keras_apps>SqueezeExcitation": TFKerasSqueezeExcitation,
}
#: Twins tfmot's quantization-aware training has no scheme for (their non-linear outputs
#: would need their own fake-quant ranges): pruning and post-training int8 take them.
NO_QAT_TWINS = (TFKerasLocalResponseNormalization, TFKerasSqueezeExcitation)


# ------------------------------------------------------------------------------ Keras 3 -> tf_keras


def to_tf_keras(model: keras.Model, *, sample=None, check: bool = True) -> tf_keras.Model:
    """The tf_keras twin of the Keras 3 functional ``model``: same layers (names, classes,
    configurations), same graph, same weights.

    Args:
        model: a functional (or Sequential) ``keras.Model`` whose layers are all in
            :data:`SUPPORTED_LAYERS` (or have a twin, such as ``ZeroPaddingShortcut``).
        sample: images to check the outputs on; default a fixed uniform [0, 1) batch of 4
            at the model's input shape.
        check: compare the outputs (:func:`compare_outputs`); False skips it.

    Raises:
        UnsupportedLayerError: a layer without tf_keras counterpart (named with its class),
            a nested model, or a setting tf_keras lacks.
        BridgeMismatchError: the outputs differ beyond :data:`TOLERANCE`.
    """
    config = check_supported(model)
    layers = {entry["name"]: entry for entry in config["layers"]}

    built = {}        # layer name -> tf_keras layer
    outputs = {}      # (layer name, node index) -> output tensor(s)
    pending = [(entry["name"], k) for entry in config["layers"]
               for k in range(max(1, len(entry["inbound_nodes"])))]
    while pending:
        progressed = []
        for name, k in pending:
            entry = layers[name]
            if entry["class_name"] == "InputLayer":
                outputs[(name, 0)] = _input(entry)
                progressed.append((name, k))
                continue
            node = entry["inbound_nodes"][k]
            try:
                args = _resolve(node.get("args", ()), outputs)
                kwargs = _resolve(node.get("kwargs", {}), outputs)
            except KeyError:
                continue  # an input of this node is not built yet
            if name not in built:
                built[name] = _layer(model, entry)
            kwargs = {key: value for key, value in kwargs.items() if value is not None}
            outputs[(name, k)] = built[name](*args, **kwargs)
            progressed.append((name, k))
        if not progressed:
            raise UnsupportedLayerError(
                f"Could not rebuild the graph of model {model.name!r}: the nodes "
                f"{pending[:5]} have inputs that no layer produces."
            )
        pending = [item for item in pending if item not in progressed]

    inputs = _resolve(_as_history(config["input_layers"]), outputs)
    result = _resolve(_as_history(config["output_layers"]), outputs)
    twin = tf_keras.Model(inputs, result, name=model.name)
    copy_weights(model, twin)
    if check:
        compare_outputs(model, twin, sample)
    return twin


def check_supported(model: keras.Model) -> dict:
    """Raises :class:`UnsupportedLayerError` now (naming the layer and its class) if
    :func:`to_tf_keras` cannot rebuild ``model``; returns its functional config."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras 3 keras.Model, got {type(model).__name__}.")
    config = _functional_config(model)
    for entry in config["layers"]:
        _check_supported(model, entry)
    return config


def _functional_config(model: keras.Model) -> dict:
    try:
        config = model.get_config()
    except Exception as err:  # a subclassed model without get_config
        raise UnsupportedLayerError(
            f"Model {model.name!r} ({type(model).__name__}) is not a functional model the bridge "
            f"can walk: get_config() failed ({type(err).__name__}: {err})."
        ) from err
    if not isinstance(config, dict) or "layers" not in config or "input_layers" not in config:
        if isinstance(model, keras.Sequential) and model.inputs:
            return _functional_config(keras.Model(model.inputs, model.outputs, name=model.name))
        raise UnsupportedLayerError(
            f"Model {model.name!r} ({type(model).__name__}) is not a functional model; the bridge "
            "walks functional graphs (layers and inbound nodes)."
        )
    return config


def _check_supported(model: keras.Model, entry: dict) -> None:
    class_name, registered = entry["class_name"], entry.get("registered_name")
    if registered in _TWINS:
        return
    if class_name in ("Functional", "Sequential", "Model"):
        raise UnsupportedLayerError(
            f"Layer {entry['name']!r} of model {model.name!r} is a nested model ({class_name}); "
            "the bridge rebuilds flat functional models only."
        )
    if class_name not in SUPPORTED_LAYERS or entry.get("module") != "keras.layers":
        what = registered or f"{entry.get('module')}.{class_name}"
        raise UnsupportedLayerError(
            f"Layer {entry['name']!r} of model {model.name!r} has class {class_name} ({what}), "
            f"which has no tf_keras counterpart in the bridge. Supported: "
            f"{', '.join(SUPPORTED_LAYERS)} and {', '.join(sorted(_TWINS))}."
        )


def _input(entry: dict):
    config = entry["config"]
    if config.get("sparse") or config.get("ragged"):
        raise UnsupportedLayerError(f"Input {entry['name']!r} is sparse or ragged; images only.")
    return tf_keras.Input(batch_shape=tuple(config["batch_shape"]), dtype=config.get("dtype"),
                          name=config["name"])


def _layer(model: keras.Model, entry: dict):
    twin = _TWINS.get(entry.get("registered_name"))
    cls = twin or getattr(tf_keras.layers, entry["class_name"])
    config = dict(entry["config"])
    accepted = _accepted(cls)
    kwargs = {}
    for key, value in config.items():
        if key == "dtype":
            kwargs[key] = _dtype_name(value)
        elif key in accepted:
            kwargs[key] = _object(model, entry, key, value)
        elif not _neutral(value):
            raise UnsupportedLayerError(
                f"Layer {entry['name']!r} ({entry['class_name']}) of model {model.name!r} sets "
                f"{key}={value!r}, which tf_keras {cls.__name__} does not take."
            )
    return cls(**kwargs)


def _accepted(cls) -> set:
    names = set(_BASE_KWARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    names.discard("self")
    return names


def _dtype_name(value):
    if isinstance(value, dict):
        return value.get("config", {}).get("name", "float32")
    return value


def _neutral(value) -> bool:
    return value is None or value is False or (isinstance(value, (dict, list, tuple)) and not value)


def _object(model, entry, key, value):
    """Keras 3 serialised initialisers / regularisers / constraints -> tf_keras objects."""
    if not (isinstance(value, dict) and "class_name" in value):
        return value
    module = next((mod for suffix, mod in _OBJECT_MODULES.items() if key.endswith(suffix)), None)
    if module is None:
        raise UnsupportedLayerError(
            f"Layer {entry['name']!r} ({entry['class_name']}) of model {model.name!r}: cannot "
            f"translate the serialised {key}={value!r} to tf_keras."
        )
    cls = getattr(module, value["class_name"], None)
    if cls is None:
        raise UnsupportedLayerError(
            f"Layer {entry['name']!r} ({entry['class_name']}) of model {model.name!r}: {key} "
            f"{value['class_name']} does not exist in tf_keras."
        )
    accepted = _accepted(cls)
    config = {}
    for name, item in (value.get("config") or {}).items():
        if name in accepted:
            config[name] = item
        elif not _neutral(item):
            raise UnsupportedLayerError(
                f"Layer {entry['name']!r} ({entry['class_name']}) of model {model.name!r}: "
                f"{key} {value['class_name']} sets {name}={item!r}, which tf_keras lacks."
            )
    return cls(**config)


def _as_history(spec):
    """``config["input_layers"]`` / ``["output_layers"]`` as keras-tensor placeholders."""
    if isinstance(spec, dict):
        return {key: _as_history(value) for key, value in spec.items()}
    if isinstance(spec, (list, tuple)) and len(spec) == 3 and isinstance(spec[0], str):
        return {"class_name": "__keras_tensor__", "config": {"keras_history": list(spec)}}
    return [_as_history(item) for item in spec]


def _resolve(structure, outputs):
    """Replaces the ``__keras_tensor__`` placeholders of a node's arguments by tf_keras
    tensors (KeyError: the producing layer is not built yet)."""
    if isinstance(structure, dict):
        if structure.get("class_name") == "__keras_tensor__":
            name, node, index = structure["config"]["keras_history"]
            produced = outputs[(name, node)]
            if isinstance(produced, (list, tuple)):
                return produced[index]
            return produced
        return {key: _resolve(value, outputs) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_resolve(item, outputs) for item in structure]
    return structure


# ------------------------------------------------------------------------------------- weights


def copy_weights(source, target) -> int:
    """Copies the weights of every layer of ``source`` into the layer of the same name of
    ``target`` (Keras 3 <-> tf_keras, either way); returns the number of arrays copied.

    Raises:
        ValueError: a layer with weights is missing in ``target``, or its weights differ in
            number or shape.
    """
    target_layers = {layer.name: layer for layer in target.layers}
    copied = 0
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        other = target_layers.get(layer.name)
        if other is None:
            raise ValueError(
                f"Layer {layer.name!r} of {source.name!r} has weights but {target.name!r} has no "
                "layer of that name."
            )
        current = other.get_weights()
        shapes = [w.shape for w in weights]
        if [w.shape for w in current] != shapes:
            raise ValueError(
                f"Layer {layer.name!r}: weights of shapes {shapes} cannot replace "
                f"{[w.shape for w in current]} in {target.name!r}."
            )
        other.set_weights(weights)
        if hasattr(other, "finalize_state"):
            other.finalize_state()  # Normalization: mean/variance are derived from its weights
        copied += len(weights)
    return copied


def compare_outputs(keras_model, tf_keras_model, sample=None) -> float:
    """Max |tf_keras - keras| over all outputs on ``sample`` (default: a fixed uniform
    [0, 1) batch of 4); raises :class:`BridgeMismatchError` beyond :data:`TOLERANCE` *
    max(1, max |keras output|)."""
    sample = _sample(keras_model, sample)
    reference = [np.asarray(v) for v in keras.tree.flatten(keras_model(sample, training=False))]
    got = [np.asarray(v) for v in tf.nest.flatten(tf_keras_model(sample, training=False))]
    if len(got) != len(reference):
        raise BridgeMismatchError(
            f"{tf_keras_model.name!r} gives {len(got)} outputs, {keras_model.name!r} {len(reference)}."
        )
    scale = max(1.0, max(float(np.max(np.abs(r))) for r in reference))
    diff = max(float(np.max(np.abs(g.astype(np.float64) - r))) for g, r in zip(got, reference))
    if not diff <= TOLERANCE * scale:
        raise BridgeMismatchError(
            f"The tf_keras twin of {keras_model.name!r} differs from it by max {diff:.3g} on "
            f"{len(sample)} images (tolerance {TOLERANCE * scale:.3g})."
        )
    return diff


def _sample(model, sample) -> np.ndarray:
    if sample is not None:
        return np.asarray(sample, dtype=np.float32)
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"The input shape {shape} of {model.name!r} is not fully known; pass `sample`.")
    return np.random.default_rng(0).uniform(0.0, 1.0, (4, *shape)).astype(np.float32)


# ------------------------------------------------------------------------------ tf_keras -> Keras 3


def to_keras(tf_keras_model, *, like: keras.Model, sample=None, check: bool = True) -> keras.Model:
    """A new Keras 3 model of ``like``'s architecture (``keras.models.clone_model``) holding
    the weights of the tf_keras model (e.g. a pruned twin after ``strip_pruning``), checked
    to give the same outputs on ``sample`` (see :func:`compare_outputs`)."""
    if not isinstance(like, keras.Model):
        raise TypeError(f"`like` must be the Keras 3 model of the architecture, got {type(like).__name__}.")
    model = keras.models.clone_model(like)
    copy_weights(tf_keras_model, model)
    if check:
        compare_outputs(model, tf_keras_model, sample)
    return model
