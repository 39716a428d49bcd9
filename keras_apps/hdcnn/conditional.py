"""HD-CNN conditional execution (Yan et al. 2015, "Test-time efficiency") and its SavedModel.

Fine component ``k`` runs only on the images whose coarse probability reaches the threshold

    B_ik >= 1 / (beta * K)

(``beta = inf`` gives the threshold 0: every component runs on every image and the result
is the full model's). An image whose ``B_ik`` are all below the threshold still runs its
top-1 coarse component ``argmax_k B_ik``, so every image gets a prediction (at least one
component per image). The probabilistic averaging then runs over the executed components
only:

- ``renormalize`` (the paper): ``p_i = sum_{k run} B_ik p_k(x_i) / sum_{k run} B_ik``;
- without (the authors' release): ``p_i = sum_{k run} B_ik p_k(x_i)``.

The computation really is skipped: the shared layers and the coarse component run once on
the batch, then each fine component runs on the rows ``tf.gather``-ed for it (possibly
none) and its weighted, scattered prediction is added back with
``tf.tensor_scatter_nd_add``. Nothing is computed and masked, and no graph branch changes
shape (``keras.ops.cond`` with differently shaped branches fails, keras#19379).

    >>> from keras_apps.hdcnn.conditional import conditional_predict, export_saved_model
    >>> result = conditional_predict(model, images, beta=4)
    >>> result.probabilities, result.components_run.mean()
    >>> export_saved_model(model, "saved_models/hdcnn_conditional")

The SavedModel's ``serving_default`` is the same routing, with ``beta`` a signature input
(TF Serving clients feed it with every request): inputs ``"image"`` float32 ``(None, H, W,
C)`` and ``"beta"`` float32 scalar; outputs ``"predictions"`` (N, C), ``"coarse"`` (N, K)
and ``"components_run"`` int32 (N,). It is written with ``tf.saved_model.save`` from a
``tf.Module`` holding the model's variables (the stock ``model.export`` cannot take this
signature: it fails for multi-output models with an ``input_signature``, keras#21258).
``beta <= 0`` or NaN fed to the signature fails with ``InvalidArgumentError``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import pathlib
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_apps.hdcnn.model import components

__all__ = [
    "ConditionalResult",
    "SERVING_DEFAULTS",
    "conditional_predict",
    "export_saved_model",
    "serving_module",
    "threshold",
]

#: Values of the serving signature's extra inputs under which it computes the full model
#: (recorded in the SavedModel; :func:`keras_apps.export.load_exported` feeds them when the
#: caller gives none).
SERVING_DEFAULTS = {"beta": math.inf}

_ROUTES: "weakref.WeakKeyDictionary[keras.Model, tf.types.experimental.GenericFunction]" = (
    weakref.WeakKeyDictionary()
)


@dataclasses.dataclass(frozen=True)
class ConditionalResult:
    """What :func:`conditional_predict` computed.

    Attributes:
        probabilities: (N, C) class probabilities averaged over the executed components.
        components_run: (N,) int, number of fine components executed per image (1..K).
        coarse: (N, K) coarse probabilities B.
        beta: the beta used.
        threshold: ``1 / (beta * K)`` (0 for beta = inf).
    """

    probabilities: np.ndarray
    components_run: np.ndarray
    coarse: np.ndarray
    beta: float
    threshold: float

    @property
    def mean_components_run(self) -> float:
        """Mean number of fine components executed per image."""
        return float(np.mean(self.components_run)) if self.components_run.size else 0.0


def _check_beta(beta) -> float:
    if (
        isinstance(beta, (bool, np.bool_))
        or not isinstance(beta, numbers.Real)
        or math.isnan(beta)
        or beta <= 0
    ):
        raise ValueError(
            "`beta` must be a positive number (fine component k runs where B_k >= "
            f"1/(beta*K); beta=inf runs every component), got {beta!r}."
        )
    return float(beta)


def threshold(beta, num_coarse: int) -> float:
    """The paper's threshold ``1 / (beta * K)`` on B_ik (0 for beta = inf)."""
    beta = _check_beta(beta)
    return 0.0 if math.isinf(beta) else 1.0 / (beta * num_coarse)


def _route(parts, images, beta):
    """The routed forward pass on a batch (graph code; see the module docstring)."""
    tf.debugging.assert_greater(
        beta, tf.zeros_like(beta),
        message="beta must be a positive number (beta=inf runs every fine component)",
    )
    features = images if parts.shared is None else parts.shared(images, training=False)
    coarse = parts.aggregation(parts.coarse(features, training=False))
    dtype = coarse.dtype
    cut = 1.0 / (tf.cast(beta, dtype) * tf.cast(parts.num_coarse, dtype))
    batch = tf.shape(coarse)[0]
    top = tf.argmax(coarse, axis=1, output_type=tf.int32)
    weighted = tf.zeros(tf.stack([batch, parts.scatter.num_classes]), dtype)
    weights = tf.zeros(tf.expand_dims(batch, 0), dtype)
    counts = tf.zeros(tf.expand_dims(batch, 0), tf.int32)
    for k, fine in enumerate(parts.fine):
        coarse_k = coarse[:, k]
        rows = tf.where(tf.logical_or(coarse_k >= cut, tf.equal(top, k)))
        gathered = tf.gather_nd(features, rows)
        # A component no image selects is not run: oneDNN's Conv2D on an empty batch inside a
        # tf.function returns the input's channel count (TF 2.21), so the branch is skipped.
        compact = tf.cond(
            tf.shape(rows)[0] > 0,
            lambda: tf.cast(fine(gathered, training=False), dtype),
            lambda: tf.zeros([0, len(parts.scatter.coarse_sets[k])], dtype),
        )
        scattered = parts.scatter.scatter(k, compact)
        b = tf.gather_nd(coarse_k, rows)
        weighted = tf.tensor_scatter_nd_add(weighted, rows, b[:, None] * scattered)
        weights = tf.tensor_scatter_nd_add(weights, rows, b)
        counts = tf.tensor_scatter_nd_add(counts, rows, tf.ones_like(b, tf.int32))
    if parts.averaging.renormalize:
        floor = tf.cast(parts.averaging.epsilon, dtype)
        predictions = weighted / tf.maximum(weights, floor)[:, None]
    else:
        predictions = weighted
    return {"predictions": predictions, "coarse": coarse, "components_run": counts}


def _input_shape(model) -> tuple:
    return tuple(model.inputs[0].shape[1:])


def _routing_function(model):
    """The tf.function ``(image (None, H, W, C), beta ()) -> dict``, built once per model."""
    function = _ROUTES.get(model)
    if function is None:
        parts = components(model)
        signature = [
            tf.TensorSpec((None, *_input_shape(model)), tf.float32, name="image"),
            tf.TensorSpec((), tf.float32, name="beta"),
        ]

        def route(image, beta):
            return _route(parts, image, beta)

        function = tf.function(route, input_signature=signature, autograph=False)
        _ROUTES[model] = function
    return function


def _batches(images, input_shape, batch_size):
    rank = len(input_shape) + 1
    if isinstance(images, tf.data.Dataset):
        spec = images.element_spec
        if isinstance(spec, (tuple, list)):
            images = images.map(lambda *element: element[0])
            spec = spec[0]
        if not isinstance(spec, tf.TensorSpec) or spec.shape.rank not in (rank - 1, rank):
            raise ValueError(
                f"The dataset must yield images of shape {input_shape} (or batches of them), "
                f"alone or as (images, labels); it yields {images.element_spec}."
            )
        if spec.shape.rank == rank - 1:
            images = images.batch(batch_size)
        for batch in images:
            yield tf.cast(batch, tf.float32)
        return
    try:
        array = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(
            "`images` must be an array of shape (N, "
            f"{', '.join(map(str, input_shape))}) or a tf.data.Dataset, got "
            f"{type(images).__name__}."
        ) from None
    if array.ndim != rank or any(
        want is not None and got != want for got, want in zip(array.shape[1:], input_shape)
    ):
        raise ValueError(
            f"`images` has shape {array.shape}; the model takes (N, "
            f"{', '.join(map(str, input_shape))})."
        )
    for start in range(0, max(len(array), 1), batch_size):
        yield tf.constant(array[start:start + batch_size])


def conditional_predict(model: keras.Model, images, beta, *, batch_size: int = 256) -> ConditionalResult:
    """Runs HD-CNN ``model`` with conditional execution at ``beta`` (module docstring).

    Args:
        model: an HD-CNN (``keras_apps.build("hdcnn", ...)``; see
            :func:`keras_apps.hdcnn.components`).
        images: (N, H, W, C) array, or a tf.data.Dataset of images or of ``(images, y)``
            (batched or not; unbatched ones are batched by ``batch_size``).
        beta: positive number; component k runs where ``B_k >= 1/(beta*K)``, and always
            for the image's top-1 coarse category; ``math.inf`` runs every component.
        batch_size: images per call of the routed graph (arrays and unbatched datasets).

    Returns:
        :class:`ConditionalResult` (probabilities, components run per image, coarse).
    """
    beta = _check_beta(beta)
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    function = _routing_function(model)
    num_coarse = components(model).num_coarse
    beta_tensor = tf.constant(beta, tf.float32)
    outputs = {"predictions": [], "coarse": [], "components_run": []}
    for batch in _batches(images, _input_shape(model), int(batch_size)):
        for key, value in function(batch, beta_tensor).items():
            outputs[key].append(value.numpy())
    if not outputs["predictions"]:
        raise ValueError("`images` is an empty dataset; there is nothing to predict.")
    return ConditionalResult(
        probabilities=np.concatenate(outputs["predictions"]),
        components_run=np.concatenate(outputs["components_run"]),
        coarse=np.concatenate(outputs["coarse"]),
        beta=beta,
        threshold=threshold(beta, num_coarse),
    )


class _ServingModule(tf.Module):
    """The model's variables and the routed ``serve(image, beta)`` function."""

    def __init__(self, model: keras.Model):
        super().__init__(name=f"{model.name}_conditional")
        # the tf.Variables themselves (not Keras' wrappers), which the serving functions
        # capture: a Session-based loader (TF Serving, saved_model_cli) restores them by name
        self.model_variables = [v.value for v in model.variables]
        self.serve = _routing_function(model)


def serving_module(model: keras.Model):
    """``(tf.Module, signatures, defaults)`` of the conditional-execution SavedModel of an
    HD-CNN ``model``: the module tracks the model's variables, ``signatures`` is
    ``{"serving_default": <routed function, inputs image and beta>}`` and ``defaults`` is
    :data:`SERVING_DEFAULTS` (beta = inf: the export then equals the Keras model). This is
    the registry's ``serving`` hint of the HD-CNN presets, used by
    :func:`keras_apps.export.export_model` for ``"saved_model"`` and ``"serving"``."""
    components(model)
    module = _ServingModule(model)
    return module, {"serving_default": module.serve.get_concrete_function()}, dict(SERVING_DEFAULTS)


def export_saved_model(model: keras.Model, path, *, overwrite: bool = False, sample=None) -> pathlib.Path:
    """Writes the conditional-execution SavedModel of HD-CNN ``model`` to the folder ``path``
    (module docstring for its signature) and returns ``path``.

    This is :func:`keras_apps.export.export_model` (format "saved_model") with
    :func:`serving_module` as its serving function, for any HD-CNN (the registered presets
    get the same through their registry ``serving`` hint): written in a staging folder,
    reloaded and verified at beta = inf against ``model.predict`` on ``sample``, and only
    then renamed to ``path``; a failure leaves nothing there.

    Args:
        model: an HD-CNN.
        path: the SavedModel folder to create.
        overwrite: replace an existing SavedModel at ``path``.
        sample: (N, H, W, C) images to verify on (default 8 uniform [0, 1) images; needed
            when the model's input shape is not fully known).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (with ``overwrite``, an
            existing SavedModel is replaced after the new one has verified; a folder that is
            not a SavedModel is never replaced).
        keras_apps.export.ExportVerificationError: the reloaded SavedModel disagrees.
    """
    from keras_apps import export

    components(model)  # an HD-CNN, else one clear error
    return export.export_model(model, "saved_model", output=path, sample=sample,
                               overwrite=overwrite, serving=serving_module).path
