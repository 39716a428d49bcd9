"""Argument validation, inputs, classifier heads and weight loading shared by every builder.

The arguments follow ``keras.applications``: ``include_top``, ``weights``, ``input_shape``,
``input_tensor``, ``pooling``, ``classes``, ``classifier_activation``. Everything is checked
before a single layer is built, and errors name the bad value and what is allowed.
"""

from __future__ import annotations

import os
import warnings
import zipfile

import keras

from keras_apps.models import pretrained

#: Name of every model's image input; it is also the input key of the exported
#: SavedModel's ``serving_default`` signature.
INPUT_NAME = "image"

_POOLINGS = (None, "avg", "max")


def validate_builder_args(
    *,
    model_name: str,
    include_top: bool,
    weights,
    input_shape,
    input_tensor,
    pooling,
    classes,
    classifier_activation,
    default_input_shape: tuple,
    min_size: int,
    fixed_size_top: bool = False,
) -> tuple:
    """Checks the keras.applications-style arguments; returns the resolved input shape.

    ``weights`` is None, a local ``.keras``/``.weights.h5`` file, or ``"imagenet"`` for the
    models that keras.applications also has (checked by
    :func:`keras_apps.models.pretrained.check_imagenet_arguments`).

    Args:
        min_size: smallest spatial size the network accepts (the output of its last
            downsampling stage must stay at least 1x1).
        fixed_size_top: the classifier flattens a fixed-size feature map (VGG, AlexNet):
            with ``include_top=True`` the spatial size must be known.
    """
    if not isinstance(include_top, bool):
        raise TypeError(f"`include_top` must be True or False, got {include_top!r}.")
    if weights is not None and weights != "imagenet":
        if isinstance(weights, os.PathLike):
            weights = os.fspath(weights)
        if not isinstance(weights, str):
            raise TypeError(
                f"`weights` must be None, 'imagenet' or a path to a .keras or .weights.h5 "
                f"file, got {type(weights).__name__}: {weights!r}."
            )
        if not (weights.endswith(".keras") or weights.endswith(".weights.h5")):
            raise ValueError(
                f"`weights` must be None, 'imagenet' or a path to a .keras or .weights.h5 "
                f"file, got {weights!r}."
            )
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"`weights` file {weights!r} does not exist.")
    if pooling not in _POOLINGS:
        raise ValueError(f"`pooling` must be one of {_POOLINGS}, got {pooling!r}.")
    if include_top:
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ValueError(f"`classes` must be a positive integer, got {classes!r}.")
        if classifier_activation is not None:
            try:
                keras.activations.get(classifier_activation)
            except (ValueError, TypeError) as err:
                raise ValueError(
                    f"`classifier_activation` must be None, a callable or a Keras "
                    f"activation name such as 'softmax', got {classifier_activation!r}."
                ) from err

    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise TypeError(
                f"`input_tensor` must be a Keras tensor (from keras.Input or another "
                f"layer), got {type(input_tensor).__name__}."
            )
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            raise ValueError(
                f"`input_shape` {tuple(input_shape)} does not match the shape of "
                f"`input_tensor` {tensor_shape}."
            )
        input_shape = tensor_shape
    if input_shape is None:
        input_shape = tuple(default_input_shape)
    try:
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"`input_shape` must be a tuple (height, width, channels), got {input_shape!r}."
        ) from None
    if len(input_shape) != 3:
        raise ValueError(
            f"`input_shape` must have 3 entries (height, width, channels), got {input_shape!r}."
        )
    height, width, channels = input_shape
    if channels is None or channels < 1:
        raise ValueError(f"`input_shape` needs a known positive channel count, got {input_shape!r}.")
    for label, dim in (("height", height), ("width", width)):
        if dim is not None and dim < min_size:
            raise ValueError(
                f"`input_shape` {input_shape}: {label} {dim} is smaller than the minimum "
                f"{min_size} that {model_name} accepts."
            )
    if include_top and fixed_size_top and (height is None or width is None):
        raise ValueError(
            f"{model_name} with `include_top=True` flattens a fixed-size feature map: give a "
            f"full `input_shape` such as {tuple(default_input_shape)}, got {input_shape}."
        )
    if weights == "imagenet":
        pretrained.check_imagenet_arguments(
            model_name=model_name,
            include_top=include_top,
            classes=classes,
            input_shape=input_shape,
            default_input_shape=tuple(default_input_shape),
            fixed_size_top=fixed_size_top,
        )
    return input_shape


def image_input(input_shape: tuple, input_tensor=None):
    """Returns ``(model_inputs, x)``: the model's input and the tensor to build on."""
    if input_tensor is None:
        image = keras.Input(shape=input_shape, name=INPUT_NAME)
        return image, image
    return keras.utils.get_source_inputs(input_tensor), input_tensor


def pooled_head(x, *, include_top, pooling, classes, classifier_activation, dropout=0.0):
    """Global average pooling + one dense classifier (ResNet, NIN-free families), or the
    keras.applications ``pooling`` choice when ``include_top=False``."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        return classifier(x, classes=classes, classifier_activation=classifier_activation)
    return global_pool(x, pooling)


def classifier(x, *, classes, classifier_activation, name="predictions", **dense_kwargs):
    """The dense classifier ``name`` producing the logits, then its activation as a separate
    layer (:func:`classifier_activation_layer`)."""
    x = keras.layers.Dense(classes, name=name, **dense_kwargs)(x)
    return classifier_activation_layer(x, classifier_activation, name=name)


def classifier_activation_layer(logits, classifier_activation, *, name="predictions"):
    """``Activation(classifier_activation)`` named ``<name>_activation`` on the logits, in
    float32 (mixed-precision models output float32 probabilities); the logits themselves
    when ``classifier_activation`` is None."""
    if classifier_activation is None:
        return logits
    return keras.layers.Activation(classifier_activation, name=f"{name}_activation", dtype="float32")(
        logits
    )


def check_rate(argument: str, value) -> None:
    """Dropout-like rates must lie in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{argument}` must be in [0, 1), got {value!r}.")


def fully_connected_head(x, *, units, names, dropout, dropout_names, classes, classifier_activation):
    """Flatten, then ReLU dense layers of ``units`` (each followed by dropout when
    ``dropout`` > 0) and the classifier named ``predictions`` (AlexNet, VGG)."""
    x = keras.layers.Flatten(name="flatten")(x)
    for width, name, dropout_name in zip(units, names, dropout_names):
        x = keras.layers.Dense(width, activation="relu", name=name)(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=dropout_name)(x)
    return classifier(x, classes=classes, classifier_activation=classifier_activation)


def global_pool(x, pooling):
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def finish(inputs, outputs, *, model_name: str, name: str | None, weights) -> keras.Model:
    """Makes the functional model (named ``name`` or the registry name ``model_name``) and
    loads ``weights`` into it: a local file, or ``"imagenet"`` (fetched through the
    keras.applications twin and transplanted, see :mod:`keras_apps.models.pretrained`)."""
    model = keras.Model(inputs, outputs, name=name or model_name)
    if weights == "imagenet":
        pretrained.load_imagenet_weights(model, model_name)
    elif weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: keras.Model, path) -> None:
    """Loads a ``.weights.h5`` or ``.keras`` file into ``model``.

    Every failure is one ValueError naming the path: an unreadable file (not HDF5 / not a
    zip), or weights of another architecture (Keras' per-layer warnings are held back and
    summarised, not printed); warnings of a load that succeeds are passed on.
    """
    path = os.fspath(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except FileNotFoundError:
            raise
        except (OSError, zipfile.BadZipFile, EOFError) as err:
            raise ValueError(
                f"Could not load weights from {path!r}: the file is not a readable Keras "
                f"weights file (corrupt or truncated?): {type(err).__name__}: {err}"
            ) from err
        except (ValueError, KeyError, TypeError) as err:
            held = f" ({len(caught)} Keras warnings held back)" if caught else ""
            raise ValueError(
                f"Could not load weights from {path!r} into {model.name!r} "
                f"({model.count_params():,} parameters): the file holds the weights of another "
                f"architecture or configuration{held}: {err}"
            ) from err
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
