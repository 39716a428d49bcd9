"""NIWT steps 1 and 2 (Selvaraju et al., ECCV 2018, Sec. 3.2-3.3): neuron importance and the
linear map from class domain knowledge to importance.

Neuron importance (Grad-CAM's channel weights) of class c at layer L for an instance:

    alpha^n_c = (1 / Z) sum_{i,j} d o_c / d a^n_{ij}

with o_c the pre-softmax score and a^n_{ij} the activation of channel n at position (i, j)
(Z positions); :func:`neuron_importance` computes it for a batch of instances, each for its
own class, with one backward pass per batch. :func:`class_importance` averages per class.

Domain knowledge -> importance: ``a_hat_c = W_k^T k_c`` with ``k_c`` the class's attribute
vector, fitted by gradient descent on the cosine distance ``1 - cos(a_hat_c, a_c)`` between
predicted and observed importance of seen-class instances, early-stopped when the Spearman
rank correlation between predicted and observed (class-mean) importance of held-out seen
classes is highest (:func:`fit_importance_mapping`, :class:`ImportanceMapping`).
"""

from __future__ import annotations

import json
import pathlib
import weakref

import keras
import numpy as np
import scipy.stats
import tensorflow as tf

from keras_apps._atomic import atomic_file

__all__ = [
    "ImportanceMapping",
    "class_importance",
    "fit_importance_mapping",
    "importance_model",
    "logits_layer_name",
    "neuron_importance",
    "rank_correlation",
]

#: The layer every registry family names its pre-softmax classifier.
DEFAULT_LOGITS_LAYER = "predictions"


def logits_layer_name(model: keras.Model, logits_layer: str | None = None) -> str | None:
    """The layer whose output is the pre-softmax score: ``logits_layer``, else the
    registry's ``"predictions"`` Dense when the model has one, else None (the model output)."""
    if logits_layer is not None:
        _get_layer(model, logits_layer, "logits_layer")
        return logits_layer
    names = {layer.name for layer in model.layers}
    return DEFAULT_LOGITS_LAYER if DEFAULT_LOGITS_LAYER in names else None


def _get_layer(model: keras.Model, name, argument: str = "layer"):
    if not isinstance(name, str):
        raise TypeError(f"`{argument}` must be a layer name (str), got {type(name).__name__}: {name!r}.")
    try:
        return model.get_layer(name)
    except ValueError:
        spatial = [l.name for l in model.layers if _rank(l) == 4][-5:]
        raise ValueError(
            f"`{argument}`={name!r}: model {model.name!r} has no layer of that name"
            + (f" (its last layers with a spatial and channel axis: {', '.join(spatial)})." if spatial else ".")
        ) from None


def _rank(layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):
        return None


def check_importance_layer(model: keras.Model, layer: str, *, spatial: bool = False):
    """The named layer, checked to have a channel axis (rank >= 2 output; rank 4 with
    ``spatial``). Raises a ValueError naming the layer and its output shape otherwise."""
    found = _get_layer(model, layer)
    try:
        shape = tuple(found.output.shape)
    except (AttributeError, ValueError):
        raise ValueError(f"`layer`={layer!r} is used more than once or has several outputs; "
                         "choose a layer with one output.") from None
    if len(shape) < 2 or (spatial and len(shape) != 4):
        need = "(batch, height, width, channels)" if spatial else "a channel axis (batch, ..., channels)"
        raise ValueError(f"`layer`={layer!r} outputs shape {shape}: it needs {need}.")
    return found


_MODELS: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


def importance_model(model: keras.Model, layer: str, logits_layer: str | None = None) -> keras.Model:
    """``model.inputs -> [layer output, pre-softmax scores]`` (memoised per model)."""
    check_importance_layer(model, layer)
    logits = logits_layer_name(model, logits_layer)
    cache = _MODELS.setdefault(model, {})
    key = (layer, logits)
    if key not in cache:
        scores = model.get_layer(logits).output if logits else model.outputs[0]
        sub = keras.Model(model.inputs, [model.get_layer(layer).output, scores],
                          name=f"{model.name}_importance")

        @tf.function(reduce_retracing=True)
        def run(images, class_ids):
            with tf.GradientTape() as tape:
                activations, logits_ = sub(images, training=False)
                picked = tf.gather(logits_, class_ids, axis=1, batch_dims=1)
            gradients = tape.gradient(picked, activations)  # instances are independent
            axes = list(range(1, len(activations.shape) - 1))
            importance = tf.reduce_mean(gradients, axis=axes) if axes else gradients
            return importance, activations

        cache[key] = (sub, run)
    return cache[key]


def _as_images(images):
    if isinstance(images, tf.data.Dataset):
        batches = [b[0] if isinstance(b, (tuple, list)) else b for b in images]
        if not batches:
            raise ValueError("`images` is an empty dataset.")
        return np.concatenate([np.asarray(b) for b in batches])
    array = np.asarray(images, dtype="float32")
    if array.ndim < 2 or len(array) == 0:
        raise ValueError(f"`images` must be a non-empty batch (n, height, width, channels), got shape {array.shape}.")
    return array


def _class_ids(class_ids, n: int) -> np.ndarray:
    ids = np.asarray(class_ids)
    if ids.ndim == 0:
        ids = np.full(n, int(ids))
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"`class_ids` must be one int or {n} ints (one per image), got {class_ids!r}.")
    return ids.astype("int32")


def neuron_importance(model: keras.Model, layer: str, images, class_ids, *, logits_layer=None,
                      batch_size: int = 64, return_activations: bool = False):
    """Per-instance neuron importance alpha_c (Grad-CAM channel weights) at ``layer``.

    Args:
        model: a functional classifier.
        layer: name of the layer whose output channels are the neurons (any output with a
            channel axis; the positions are every axis between batch and channels).
        images: (n, ...) model inputs (preprocessed), or a dataset of them / of (images, labels).
        class_ids: one class for all images or one per image: whose score o_c is differentiated.
        logits_layer: the pre-softmax score layer (default ``"predictions"``, else the output).
        batch_size: images per backward pass.
        return_activations: also return the layer's activations.

    Returns:
        float32 (n, channels) importances (and (n, ..., channels) activations).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    sub, run = importance_model(model, layer, logits_layer)
    images = _as_images(images)
    ids = _class_ids(class_ids, len(images))
    classes = sub.outputs[1].shape[-1]
    if ids.min() < 0 or ids.max() >= classes:
        bad = ids[(ids < 0) | (ids >= classes)][0]
        raise ValueError(f"class id {int(bad)} is out of range: the model scores {classes} classes.")
    importances, activations = [], []
    for start in range(0, len(images), batch_size):
        chunk = slice(start, start + batch_size)
        importance, acts = run(tf.constant(images[chunk]), tf.constant(ids[chunk]))
        importances.append(importance.numpy())
        if return_activations:
            activations.append(acts.numpy())
    importances = np.concatenate(importances).astype("float32")
    if return_activations:
        return importances, np.concatenate(activations)
    return importances


def class_importance(importances, class_ids):
    """Per-class mean importance: ``(classes, means)`` with ``classes`` sorted ids."""
    importances = np.asarray(importances, dtype="float32")
    ids = _class_ids(class_ids, len(importances))
    classes = np.unique(ids)
    return classes, np.stack([importances[ids == c].mean(axis=0) for c in classes])


def _ranks(x) -> np.ndarray:
    """Average ranks (ties share their mean rank) along the last axis."""
    return scipy.stats.rankdata(np.asarray(x, dtype="float64"), axis=-1)


def rank_correlation(a, b) -> np.ndarray:
    """Spearman's rank correlation between matching rows of ``a`` and ``b`` (.., N)."""
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean(axis=-1, keepdims=True)
    rb -= rb.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    return np.where(denominator > 0, (ra * rb).sum(-1) / np.where(denominator > 0, denominator, 1), 0.0)


class ImportanceMapping:
    """The linear map ``a_hat = W_k^T k`` from domain knowledge k (A attributes) to neuron
    importance (N neurons of ``layer``); ``weights`` is W_k, shape (A, N).

    ``attribute_scores`` is the inverse direction used for textual explanations: each
    attribute's importance direction is its row of W_k, and an importance vector scores each
    attribute by the cosine between the two (how strongly the decision's neurons are the ones
    that attribute predicts).
    """

    def __init__(self, weights, *, layer: str | None = None, attribute_names=None, history=None,
                 best_step: int | None = None, validation_classes=None):
        self.weights = np.asarray(weights, dtype="float32")
        if self.weights.ndim != 2:
            raise ValueError(f"`weights` must be (attributes, neurons), got shape {self.weights.shape}.")
        if attribute_names is not None and len(attribute_names) != self.weights.shape[0]:
            raise ValueError(
                f"{len(attribute_names)} attribute names for a mapping of {self.weights.shape[0]} attributes."
            )
        self.layer = layer
        self.attribute_names = None if attribute_names is None else tuple(str(a) for a in attribute_names)
        self.history = list(history or [])
        self.best_step = best_step
        self.validation_classes = None if validation_classes is None else [int(c) for c in validation_classes]

    @property
    def num_attributes(self) -> int:
        return self.weights.shape[0]

    @property
    def num_neurons(self) -> int:
        return self.weights.shape[1]

    def _check_attributes(self, attributes) -> np.ndarray:
        attributes = np.asarray(attributes, dtype="float32")
        single = attributes.ndim == 1
        attributes = attributes[None] if single else attributes
        if attributes.ndim != 2 or attributes.shape[1] != self.num_attributes:
            raise ValueError(
                f"attributes of shape {attributes.shape}: this mapping takes {self.num_attributes} attributes per class."
            )
        return attributes, single

    def predict(self, attributes) -> np.ndarray:
        """Predicted importance ``W_k^T k`` of each row of ``attributes`` (C, A) -> (C, N)."""
        attributes, single = self._check_attributes(attributes)
        out = attributes @ self.weights
        return out[0] if single else out

    def attribute_scores(self, importance) -> np.ndarray:
        """Cosine between ``importance`` ((N,) or (n, N)) and every attribute's row of W_k."""
        importance = np.asarray(importance, dtype="float32")
        single = importance.ndim == 1
        importance = importance[None] if single else importance
        if importance.ndim != 2 or importance.shape[1] != self.num_neurons:
            raise ValueError(f"importance of shape {importance.shape}: this mapping has {self.num_neurons} neurons.")
        rows = self.weights / np.maximum(np.linalg.norm(self.weights, axis=1, keepdims=True), 1e-12)
        unit = importance / np.maximum(np.linalg.norm(importance, axis=1, keepdims=True), 1e-12)
        scores = unit @ rows.T
        return scores[0] if single else scores

    def get_config(self) -> dict:
        return {
            "layer": self.layer,
            "attribute_names": list(self.attribute_names) if self.attribute_names else None,
            "history": self.history,
            "best_step": self.best_step,
            "validation_classes": self.validation_classes,
        }

    def save(self, path) -> pathlib.Path:
        """Writes ``path`` (.npz: the weights and the settings as JSON), atomically; an
        existing file is refused (remove it first)."""
        path = pathlib.Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"{path}: an importance mapping is saved as a .npz file.")
        if path.exists():
            raise FileExistsError(f"{path} exists; remove it or choose another path.")
        with atomic_file(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, weights=self.weights, config=np.array(json.dumps(self.get_config())))
        return path

    @classmethod
    def load(cls, path) -> "ImportanceMapping":
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No importance mapping at {path}.")
        with np.load(path, allow_pickle=False) as data:
            return cls(data["weights"], **json.loads(str(data["config"])))

    def __repr__(self) -> str:
        return f"ImportanceMapping(attributes={self.num_attributes}, neurons={self.num_neurons}, layer={self.layer!r})"


def _cosine_distance(predicted, observed):
    predicted = tf.math.l2_normalize(predicted, axis=-1, epsilon=1e-12)
    observed = tf.math.l2_normalize(observed, axis=-1, epsilon=1e-12)
    return 1.0 - tf.reduce_sum(predicted * observed, axis=-1)


def fit_importance_mapping(attributes, importances, class_ids=None, *, validation_classes=None,
                           validation_fraction: float = 0.2, learning_rate: float = 1e-2,
                           max_steps: int = 2000, eval_every: int = 10, patience: int = 20,
                           weight_decay: float = 0.0, seed: int = 0, layer: str | None = None,
                           attribute_names=None) -> ImportanceMapping:
    """Fits W_k (A, N) so that ``W_k^T k_c`` matches observed importances (cosine distance).

    Args:
        attributes: (C, A) class attribute matrix, rows indexed by ``class_ids``; or, with
            ``class_ids=None``, (n, A) rows paired with ``importances`` (each row its own class).
        importances: (n, N) observed importances (per instance, or per-class means).
        class_ids: (n,) class of each importance row (indexes ``attributes``).
        validation_classes: seen classes held out for early stopping; default a seeded
            ``validation_fraction`` of them (at least one; none when there are fewer than 3
            classes, then the last step is kept). ``()`` disables early stopping.
        learning_rate, max_steps, weight_decay: full-batch Adam on the mean cosine distance
            (+ ``weight_decay * ||W_k||^2``).
        eval_every, patience: every ``eval_every`` steps the mean Spearman correlation between
            predicted and observed class-mean importance of the validation classes is
            measured; the best step's W_k is kept (the latest of tied ones) and fitting stops
            after ``patience`` evaluations without a better one.
        layer, attribute_names: recorded in the mapping (``add_unseen_classes`` uses ``layer``).
    """
    attributes = np.asarray(attributes, dtype="float32")
    importances = np.asarray(importances, dtype="float32")
    if importances.ndim != 2 or len(importances) == 0:
        raise ValueError(f"`importances` must be a non-empty (n, neurons) array, got shape {importances.shape}.")
    if attributes.ndim != 2:
        raise ValueError(f"`attributes` must be a (classes, attributes) matrix, got shape {attributes.shape}.")
    if class_ids is None:
        if len(attributes) != len(importances):
            raise ValueError(
                f"{len(attributes)} attribute rows for {len(importances)} importance rows: without `class_ids` "
                "each importance row needs its own attribute row."
            )
        class_ids = np.arange(len(importances))
    ids = _class_ids(class_ids, len(importances))
    if ids.min() < 0 or ids.max() >= len(attributes):
        raise ValueError(
            f"class id {int(ids.max() if ids.max() >= len(attributes) else ids.min())} has no row in the "
            f"{len(attributes)}-class attribute matrix."
        )
    for name, value, low in (("max_steps", max_steps, 1), ("eval_every", eval_every, 1), ("patience", patience, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    if not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be > 0, got {learning_rate!r}.")
    classes = np.unique(ids)
    if validation_classes is None:
        if len(classes) >= 3:
            count = min(max(1, int(round(validation_fraction * len(classes)))), len(classes) - 2)
            validation_classes = np.random.RandomState(seed).choice(classes, count, replace=False)
        else:
            validation_classes = ()
    validation_classes = np.asarray(sorted(int(c) for c in validation_classes), dtype="int64")
    unknown = np.setdiff1d(validation_classes, classes)
    if len(unknown):
        raise ValueError(f"validation classes {unknown.tolist()} have no importance rows; classes present: "
                         f"{classes.tolist()}.")
    train = ~np.isin(ids, validation_classes)
    if not train.any():
        raise ValueError("every class is a validation class: nothing is left to fit the mapping on.")
    k_train = tf.constant(attributes[ids[train]])
    a_train = tf.constant(importances[train])
    rng = np.random.RandomState(seed)
    init = rng.normal(0.0, 1.0 / np.sqrt(attributes.shape[1]), (attributes.shape[1], importances.shape[1]))
    weights = tf.Variable(init.astype("float32"))
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(_cosine_distance(k_train @ weights, a_train))
            total = loss + weight_decay * tf.reduce_sum(weights**2)
        optimizer.apply_gradients([(tape.gradient(total, weights), weights)])
        return loss

    if len(validation_classes):
        val_classes, val_means = class_importance(importances[~train], ids[~train])
        val_attributes = attributes[val_classes]
    history, best, best_step, best_weights, waited = [], -np.inf, max_steps, weights.numpy(), 0
    for index in range(1, max_steps + 1):
        loss = float(step())
        if index % eval_every and index != max_steps:
            continue
        entry = {"step": index, "loss": loss}
        if len(validation_classes):
            correlation = float(rank_correlation(val_attributes @ weights.numpy(), val_means).mean())
            entry["validation_rank_correlation"] = correlation
            waited = 0 if correlation > best else waited + 1
            if correlation >= best:  # a tie keeps the later (better fitted) weights
                best, best_step, best_weights = correlation, index, weights.numpy()
        history.append(entry)
        if len(validation_classes) and waited >= patience:
            break
    if not len(validation_classes):
        best_step, best_weights = index, weights.numpy()
    return ImportanceMapping(best_weights, layer=layer, attribute_names=attribute_names, history=history,
                             best_step=best_step, validation_classes=validation_classes.tolist())
