"""NIWT step 3 (Selvaraju et al., ECCV 2018, Sec. 3.4): neuron-importance-aware weight
transfer to unseen classes.

The last FC layer (the Dense named ``"predictions"``, scores ``o = h W + b``) grows from
|seen| to |seen| + |unseen| outputs. Each unseen weight vector w_c starts from a draw of the
multivariate normal with the seen weights' mean and covariance (uninformative scores) and is
optimised by Adam so that the importance the network computes for class c (the gradient of
o_c = h . w_c + b_c with respect to layer L's activations, averaged over positions and over a
batch of seen-class images, exactly as :func:`keras_apps.niwt.neuron_importance` computes it)
matches the predicted importance ``a_hat_c = W_k^T k_c`` under the cosine distance. Cosine
ignores scale, so the loss adds ``lam * ||w_c - w_bar||^2``, an L2 pull towards the mean seen
weight ``w_bar`` that keeps unseen weights at the seen weights' scale:

    L(w_c) = 1 - cos(alpha_c(w_c), a_hat_c) + lam * ||w_c - w_bar||^2

Optimisation stops when the loss improves by less than 1% over 40 iterations. Unseen biases
are the mean seen bias (importance does not depend on b_c). The result is one functional
model (same layers and weights, a wider ``predictions``), exportable like any other.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_apps.niwt.importance import (
    ImportanceMapping,
    _as_images,
    check_importance_layer,
    logits_layer_name,
)

__all__ = ["add_unseen_classes", "extend_classifier", "importance_head"]


def _classifier(model: keras.Model, logits_layer):
    name = logits_layer_name(model, logits_layer)
    if name is None:
        raise ValueError(
            f"model {model.name!r} has no layer named 'predictions'; pass `logits_layer=` the Dense layer whose "
            "output is the pre-softmax class scores."
        )
    layer = model.get_layer(name)
    if not isinstance(layer, keras.layers.Dense) or not layer.built:
        raise ValueError(f"`logits_layer`={name!r} is a {type(layer).__name__}; NIWT extends a built Dense classifier.")
    if layer.activation not in (None, keras.activations.linear):
        raise ValueError(f"`logits_layer`={name!r} has activation {layer.activation.__name__}; its output must be "
                         "the pre-softmax scores (put the softmax in a separate layer).")
    return layer


def importance_head(model: keras.Model, layer: str, logits_layer=None):
    """``(features, head)``: ``model.inputs -> layer output`` and ``layer output -> the
    classifier's input h``, the two parts NIWT differentiates through."""
    check_importance_layer(model, layer)
    dense = _classifier(model, logits_layer)
    start = model.get_layer(layer).output
    features = keras.Model(model.inputs, start, name=f"{model.name}_to_{layer}")
    try:
        head = keras.Model(start, dense.input, name=f"{model.name}_{layer}_head")
    except ValueError as error:
        raise ValueError(f"`layer`={layer!r}: the classifier's input does not depend on this layer alone "
                         f"({error}); choose a layer every path to the classifier goes through.") from None
    return features, head


def extend_classifier(model: keras.Model, weights, biases, *, logits_layer=None, columns=None) -> keras.Model:
    """A copy of ``model`` whose classifier Dense also scores new classes.

    Args:
        weights: (D, U) new weight columns; biases: (U,).
        columns: where each output column comes from: a list of ``("old", j)`` /
            ``("new", u)`` of length S + U (default: the old columns, then the new ones).
    """
    dense = _classifier(model, logits_layer)
    current = dense.get_weights()
    kernel, bias = current[0], (current[1] if dense.use_bias else None)
    weights = np.asarray(weights, dtype=kernel.dtype)
    biases = np.asarray(biases, dtype=kernel.dtype)
    if weights.ndim != 2 or weights.shape[0] != kernel.shape[0] or biases.shape != (weights.shape[1],):
        raise ValueError(f"new weights {weights.shape} / biases {biases.shape} for a classifier of input width "
                         f"{kernel.shape[0]}.")
    seen, unseen = kernel.shape[1], weights.shape[1]
    if columns is None:
        columns = [("old", j) for j in range(seen)] + [("new", u) for u in range(unseen)]
    full_kernel = np.stack([kernel[:, j] if src == "old" else weights[:, j] for src, j in columns], axis=1)
    full_bias = np.array([(bias[j] if bias is not None else 0.0) if src == "old" else biases[j] for src, j in columns],
                         dtype=kernel.dtype)

    def clone(layer):
        config = layer.get_config()
        if layer.name == dense.name:
            config["units"] = len(columns)
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    extended = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, extended.layers):
        if old.name == dense.name:
            new.set_weights([full_kernel, full_bias])
        elif old.weights:
            new.set_weights(old.get_weights())
    return extended


def _initial_weights(kernel: np.ndarray, count: int, rng: np.random.RandomState) -> np.ndarray:
    """Draws ``count`` vectors from N(mean, covariance) of the seen weight vectors (columns):
    ``mean + (W - mean) z / sqrt(S - 1)``, z ~ N(0, I_S), which has exactly that covariance."""
    mean = kernel.mean(axis=1, keepdims=True)
    seen = kernel.shape[1]
    if seen < 2:
        return np.repeat(mean, count, axis=1) + rng.normal(0, 1e-3, (kernel.shape[0], count))
    return mean + (kernel - mean) @ rng.normal(size=(seen, count)) / np.sqrt(seen - 1)


def add_unseen_classes(model: keras.Model, attributes_unseen, mapping: ImportanceMapping, images, lam: float = 1e-5,
                       *, layer: str | None = None, logits_layer=None, learning_rate: float = 1e-3,
                       batch_size: int = 32, max_steps: int = 2000, patience: int = 40, tolerance: float = 0.01,
                       classes_per_step: int = 16, seen_ids=None, unseen_ids=None, seed: int = 0,
                       return_history: bool = False):
    """Extends ``model``'s classifier to the unseen classes of ``attributes_unseen`` (NIWT).

    Args:
        model: the seen-class classifier (pre-softmax Dense ``"predictions"``, or ``logits_layer``).
        attributes_unseen: (U, A) attribute vectors of the unseen classes.
        mapping: the fitted :class:`ImportanceMapping` (its ``layer`` is the default ``layer``).
        images: seen-class images (preprocessed model inputs; array or dataset) on which the
            unseen classes' importance is computed.
        lam: strength of the L2 pull towards the mean seen weight (>= 0).
        learning_rate, batch_size: Adam's step and the images per iteration.
        max_steps, patience, tolerance: stop once the loss improved by less than
            ``tolerance`` (1%) over ``patience`` (40) iterations, or after ``max_steps``.
        classes_per_step: unseen classes optimised together (their losses are independent).
        seen_ids, unseen_ids: global class ids of the model's outputs and of the unseen rows;
            when both are given the extended model's columns are in increasing id order
            (column k is class k when the ids are 0..S+U-1), else the unseen classes follow
            the seen ones.
        return_history: also return ``{"loss": [...], "steps": [...]}`` per class group.

    Returns:
        the extended functional model (and the history).
    """
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not np.isfinite(lam) or lam < 0:
        raise ValueError(f"`lam` must be a number >= 0, got {lam!r}.")
    if not isinstance(mapping, ImportanceMapping):
        raise TypeError(f"`mapping` must be an ImportanceMapping (fit_importance_mapping), got {type(mapping).__name__}.")
    for argument, value in (("batch_size", batch_size), ("max_steps", max_steps), ("patience", patience),
                            ("classes_per_step", classes_per_step)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{argument}` must be a positive integer, got {value!r}.")
    if not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be > 0, got {learning_rate!r}.")
    layer = layer or mapping.layer
    if layer is None:
        raise ValueError("`layer` is needed: the mapping does not record the layer its importances come from.")
    attributes_unseen = np.asarray(attributes_unseen, dtype="float32")
    if attributes_unseen.ndim != 2 or attributes_unseen.shape[1] != mapping.num_attributes or not len(attributes_unseen):
        raise ValueError(f"`attributes_unseen` of shape {attributes_unseen.shape}: expected (unseen classes, "
                         f"{mapping.num_attributes}) as the mapping takes {mapping.num_attributes} attributes.")
    dense = _classifier(model, logits_layer)
    kernel = np.asarray(dense.kernel.numpy())
    bias = np.asarray(dense.bias.numpy()) if dense.use_bias else np.zeros(kernel.shape[1], kernel.dtype)
    seen, unseen = kernel.shape[1], len(attributes_unseen)
    columns = None
    if (seen_ids is None) != (unseen_ids is None):
        raise ValueError("pass both `seen_ids` and `unseen_ids` (global ids of the outputs), or neither.")
    if seen_ids is not None:
        seen_ids, unseen_ids = [int(i) for i in seen_ids], [int(i) for i in unseen_ids]
        overlap = sorted(set(seen_ids) & set(unseen_ids))
        if overlap:
            raise ValueError(f"class ids {overlap} are both seen and unseen.")
        if len(seen_ids) != seen or len(unseen_ids) != unseen:
            raise ValueError(f"{len(seen_ids)} seen ids for {seen} outputs and {len(unseen_ids)} unseen ids for "
                             f"{unseen} attribute rows.")
        if len(set(seen_ids + unseen_ids)) != seen + unseen:
            raise ValueError(f"class ids repeat in seen {seen_ids} / unseen {unseen_ids}.")
        where = {c: ("old", j) for j, c in enumerate(seen_ids)} | {c: ("new", u) for u, c in enumerate(unseen_ids)}
        columns = [where[c] for c in sorted(where)]
    features, head = importance_head(model, layer, logits_layer)
    if features.output.shape[-1] != mapping.num_neurons:
        raise ValueError(f"the mapping predicts {mapping.num_neurons} importances but layer {layer!r} has "
                         f"{features.output.shape[-1]} channels.")
    images = _as_images(images)
    activations = features.predict(images, batch_size=64, verbose=0)
    targets = mapping.predict(attributes_unseen)
    rng = np.random.RandomState(seed)
    initial = _initial_weights(kernel, unseen, rng).astype("float32")
    w_bar = tf.constant(kernel.mean(axis=1), dtype="float32")
    axes = list(range(1, activations.ndim - 1))

    def observed_importance(acts, w):
        """Importance of each class column of ``w`` (D, k) on the batch ``acts``: (k, N)."""
        k = tf.shape(w)[1]
        n = tf.shape(acts)[0]
        tiled = tf.repeat(acts, k, axis=0)  # instance-major: row i*k + c
        with tf.GradientTape() as inner:
            inner.watch(tiled)
            h = head(tiled, training=False)
            columns_ = tf.tile(tf.transpose(w), [n, 1])
            score = tf.reduce_sum(h * columns_)
        grads = inner.gradient(score, tiled)
        grads = tf.reduce_mean(grads, axis=axes) if axes else grads
        return tf.reduce_mean(tf.reshape(grads, [n, k, -1]), axis=0)

    new_weights = np.empty_like(initial)
    history = {"loss": [], "steps": []}
    for start in range(0, unseen, classes_per_step):
        group = slice(start, start + classes_per_step)
        w = tf.Variable(initial[:, group])
        target = tf.constant(targets[group], dtype="float32")
        optimizer = keras.optimizers.Adam(learning_rate)

        @tf.function
        def step(acts):
            with tf.GradientTape() as tape:
                alpha = observed_importance(acts, w)
                cosine = tf.reduce_sum(tf.math.l2_normalize(alpha, -1, 1e-12) * tf.math.l2_normalize(target, -1, 1e-12), -1)
                penalty = tf.reduce_sum((w - w_bar[:, None]) ** 2, axis=0)
                loss = tf.reduce_mean(1.0 - cosine + lam * penalty)
            optimizer.apply_gradients([(tape.gradient(loss, w), w)])
            return loss

        losses = []
        for index in range(max_steps):
            pick = rng.choice(len(activations), min(batch_size, len(activations)), replace=False)
            losses.append(float(step(tf.constant(activations[pick]))))
            if index >= patience and min(losses[-patience:]) > (1 - tolerance) * min(losses[:-patience]):
                break
        new_weights[:, group] = w.numpy()
        history["loss"].append(losses)
        history["steps"].append(len(losses))
    extended = extend_classifier(model, new_weights, np.full(unseen, bias.mean(), "float32"),
                                 logits_layer=logits_layer, columns=columns)
    return (extended, history) if return_history else extended
