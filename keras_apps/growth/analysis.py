"""Analyses of developmental networks ("Growing a Brain", Wang, Ramanan, Hebert, CVPR 2017).

The paper looks inside a grown network in three ways, all reproduced here for any functional
Keras model, a named layer and groups of its units given as explicit index arrays (e.g. the
old FC7 units ``np.arange(4096)`` and the new FC7+ units ``np.arange(4096, 6144)`` of a
width-augmented network):

- t-SNE of a layer's features, coloured by class (:func:`tsne_plot`);
- the top-k maximally activating images of chosen units, old next to new
  (:func:`top_activating`, :func:`top_activating_grid`);
- learning curves of old, new and combined units: how well a linear classifier on each group
  of units separates the target classes, before and after each epoch of fine-tuning
  (:func:`unit_groups_accuracy`, :class:`UnitLearningCurves`, :func:`learning_curves_plot`).

Features come from :func:`layer_features` (``keras_apps.graph.feature_extractor`` on the named
layer, global-averaged over the spatial axes of a 4-D output). Images are the float32
batches that ``keras_apps.data.load`` yields (preprocessed); the image grid takes the
displayable pixels separately (``keras_apps.data.denormalize`` gives them). Figures are drawn
on matplotlib's Agg canvas (the global pyplot backend is left alone) and written atomically.
"""

from __future__ import annotations

import os
import pathlib
from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_apps import graph
from keras_apps._atomic import atomic_file

__all__ = [
    "UnitLearningCurves",
    "layer_features",
    "learning_curves_plot",
    "top_activating",
    "top_activating_grid",
    "tsne_plot",
    "unit_groups_accuracy",
]

#: Pixel layout of :func:`top_activating_grid` (inches at ``_GRID_DPI``; all exact in binary,
#: so the PNG is exactly ``LABEL + k * CELL`` by ``TITLE + rows * CELL`` pixels).
_GRID_DPI = 128
_GRID_CELL_IN = 1.0  # 128 px per image
_GRID_LABEL_IN = 1.5  # 192 px row-label column
_GRID_TITLE_IN = 0.375  # 48 px title band (only with a title)


# -- validation helpers --------------------------------------------------------------------


def _positive_int(name: str, value, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        allowed = "None or a positive integer" if allow_none else "a positive integer"
        raise ValueError(f"`{name}` must be {allowed}, got {value!r}.")
    return int(value)


def _features_2d(name: str, features) -> np.ndarray:
    array = np.asarray(features)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"`{name}` must be a numeric array [images, units], got shape {array.shape} and "
            f"dtype {array.dtype}."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"`{name}` is empty (shape {array.shape}): it needs images and units.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` has {int(np.sum(~np.isfinite(array)))} non-finite values.")
    return array.astype(np.float64, copy=False)


def _class_ids(name: str, labels, count: int | None = None) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"`{name}` must be integer class ids [images], got shape {array.shape} and dtype "
            f"{array.dtype} (one-hot labels: pass their argmax)."
        )
    if count is not None and len(array) != count:
        raise ValueError(f"`{name}` has {len(array)} entries but the features have {count} rows.")
    return array.astype(np.int64, copy=False)


def _index_array(name: str, indices, size: int | None = None) -> np.ndarray:
    """A non-empty 1-D array of distinct unit indices in ``[0, size)``."""
    array = np.asarray(indices)
    if array.dtype == bool or array.ndim != 1 or not (
        np.issubdtype(array.dtype, np.integer) or array.size == 0
    ):
        raise ValueError(
            f"{name} must be a 1-D array of integer unit indices, got shape {array.shape} and "
            f"dtype {array.dtype} (a boolean mask: pass np.flatnonzero(mask))."
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty: it must name at least one unit.")
    array = array.astype(np.int64)
    high = "" if size is None else f" and below {size}"
    bad = array[(array < 0) | (array >= (size if size is not None else np.iinfo(np.int64).max))]
    if bad.size:
        raise ValueError(
            f"{name} has out-of-range unit indices {bad[:8].tolist()}: indices must be >= 0{high}."
        )
    values, counts = np.unique(array, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"{name} repeats unit indices {values[counts > 1][:8].tolist()}.")
    return array


def _check_groups(groups, size: int | None = None) -> dict[str, np.ndarray]:
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError(
            "`groups` must be a non-empty mapping name -> unit indices, e.g. {'old': "
            f"np.arange(4096), 'new': np.arange(4096, 6144)}}, got {groups!r}."
        )
    checked = {}
    for name, indices in groups.items():
        if not isinstance(name, str):
            raise ValueError(f"Group names must be strings, got {name!r}.")
        checked[name] = _index_array(f"Group {name!r}", indices, size)
    return checked


def _figure(width: float, height: float, dpi: int = 100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path, dpi: int = 100) -> pathlib.Path:
    path = pathlib.Path(os.fspath(path))
    with atomic_file(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    return path


# -- features ------------------------------------------------------------------------------


def _batches(data, batch_size: int, input_rank: int | None):
    """``(images, labels)`` numpy batches of a tf.data.Dataset or an (images, labels) pair."""
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) not in (2, 3) or not isinstance(spec[0], tf.TensorSpec):
            raise ValueError(
                "A dataset for layer_features must yield (images, labels) with one image tensor, "
                f"got elements {spec}."
            )
        if input_rank is not None and spec[0].shape.rank == input_rank - 1:
            data = data.batch(batch_size)
        for element in data.as_numpy_iterator():
            yield element[0], element[1]
        return
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(
            "`data` must be a tf.data.Dataset of (images, labels) or an (images, labels) pair "
            f"of arrays, got {type(data).__name__}."
        )
    images, labels = np.asarray(data[0]), np.asarray(data[1])
    if images.ndim == 0 or labels.ndim == 0 or len(images) != len(labels):
        raise ValueError(
            f"`data` has images of shape {images.shape} and labels of shape {labels.shape}: "
            "they must have the same number of rows."
        )
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size], labels[start : start + batch_size]


def _extract(extractor, key: str, data, *, limit, batch_size, input_rank):
    features, labels, seen = [], [], 0
    for images, batch_labels in _batches(data, batch_size, input_rank):
        if isinstance(batch_labels, dict):
            raise ValueError(
                f"layer_features needs integer labels per image, got a dict of labels "
                f"{sorted(batch_labels)} (load the data with label='fine')."
            )
        if limit is not None:
            images, batch_labels = images[: limit - seen], batch_labels[: limit - seen]
        if len(images) == 0:
            break
        output = np.asarray(extractor.predict_on_batch(images)[key], dtype=np.float32)
        if output.ndim > 2:
            output = output.mean(axis=tuple(range(1, output.ndim - 1)))
        features.append(output.reshape(len(output), -1))
        labels.append(_class_ids("labels", batch_labels, len(output)))
        seen += len(output)
        if limit is not None and seen >= limit:
            break
    if not features:
        raise ValueError("`data` is empty: it yielded no images.")
    return np.concatenate(features), np.concatenate(labels)


def _extractor(model, layer: str):
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a functional keras.Model, got {type(model).__name__}.")
    graph.get_layer(model, layer)
    extractor = graph.feature_extractor(model, [layer])
    inputs = extractor.inputs
    input_rank = len(inputs[0].shape) if len(inputs) == 1 else None
    return extractor, input_rank


def layer_features(model, layer: str, data, *, limit: int | None = None, batch_size: int = 128):
    """The output of ``layer`` for every image of ``data``, as numpy ``(features, labels)``.

    ``data``: a ``tf.data.Dataset`` of ``(images, labels)`` (batched as
    ``keras_apps.data.load`` yields it, or unbatched: then batched by ``batch_size``), or an
    ``(images, labels)`` pair of arrays. ``limit``: only the first ``limit`` images. A 4-D
    output [B, H, W, C] is averaged over its spatial axes (every axis between batch and
    channels for other ranks above 2). Returns features float32 [N, C] and labels int64 [N].
    The model runs in inference mode (``predict_on_batch``).
    """
    extractor, input_rank = _extractor(model, layer)
    limit = _positive_int("limit", limit, allow_none=True)
    batch_size = _positive_int("batch_size", batch_size)
    return _extract(extractor, layer, data, limit=limit, batch_size=batch_size, input_rank=input_rank)


# -- t-SNE ---------------------------------------------------------------------------------


def _class_colours(num_classes: int):
    import matplotlib

    if num_classes <= 10:
        return list(matplotlib.colormaps["tab10"].colors)
    if num_classes <= 20:
        return list(matplotlib.colormaps["tab20"].colors)
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(i / max(1, num_classes - 1)) for i in range(num_classes)]


def tsne_plot(
    features,
    labels,
    path,
    *,
    class_names: Sequence[str] | None = None,
    perplexity: float = 30.0,
    seed: int = 0,
    title: str | None = None,
    max_points: int | None = 2000,
):
    """A 2-D t-SNE of ``features`` [N, C] scattered by class; returns ``(embedding, path)``.

    ``sklearn.manifold.TSNE(2, init="pca", random_state=seed, perplexity=p)`` with
    ``p = min(perplexity, (n - 1) / 3)`` (below n/3, so small sets embed too). With more than
    ``max_points`` rows (None: no cap) the rows ``np.sort(np.random.default_rng(seed)
    .permutation(N)[:max_points])`` are embedded, and the embedding [n, 2] follows them.
    ``class_names[label]`` names the legend entries (default the class ids); more than 30
    classes get a colour bar instead of a legend.
    """
    features = _features_2d("features", features)
    labels = _class_ids("labels", labels, len(features))
    if features.shape[1] < 2:
        raise ValueError(
            f"t-SNE with init='pca' needs at least 2 feature columns, got {features.shape[1]}."
        )
    if isinstance(perplexity, bool) or not isinstance(perplexity, (int, float)) or not perplexity > 0:
        raise ValueError(f"`perplexity` must be a positive number, got {perplexity!r}.")
    max_points = _positive_int("max_points", max_points, allow_none=True)
    if labels.min() < 0:
        raise ValueError(f"`labels` must be class ids >= 0, got {int(labels.min())}.")
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if len(class_names) <= labels.max():
            raise ValueError(
                f"`class_names` has {len(class_names)} names but the labels go up to "
                f"{int(labels.max())}."
            )
    if max_points is not None and len(features) > max_points:
        rows = np.sort(np.random.default_rng(seed).permutation(len(features))[:max_points])
        features, labels = features[rows], labels[rows]
    n = len(features)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}.")

    from sklearn.manifold import TSNE

    embedding = TSNE(
        n_components=2, init="pca", random_state=seed, perplexity=min(float(perplexity), (n - 1) / 3)
    ).fit_transform(features)

    figure = _figure(7.5, 6.0)
    ax = figure.add_subplot(1, 1, 1)
    classes = np.unique(labels)
    num_classes = int(labels.max()) + 1
    colours = _class_colours(num_classes)
    for c in classes:
        members = labels == c
        name = class_names[c] if class_names is not None else str(c)
        ax.scatter(embedding[members, 0], embedding[members, 1], s=8, color=colours[c], label=name)
    if len(classes) <= 30:
        ax.legend(fontsize=7, markerscale=2, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  ncols=1 if len(classes) <= 15 else 2, frameon=False)
    else:
        import matplotlib

        mappable = matplotlib.cm.ScalarMappable(
            norm=matplotlib.colors.Normalize(0, num_classes - 1), cmap=matplotlib.colormaps["turbo"]
        )
        figure.colorbar(mappable, ax=ax, label="class id")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE of {n} feature vectors ({len(classes)} classes)")
    figure.set_layout_engine("constrained")
    return embedding, _save(figure, path)


# -- maximally activating images -----------------------------------------------------------


def top_activating(features, k: int = 5) -> np.ndarray:
    """Indices [units, k] of the ``k`` images with the highest activation of each unit.

    Row u lists the images in decreasing order of ``features[:, u]``; equal activations keep
    the lower image index first (a stable sort).
    """
    features = _features_2d("features", features)
    k = _positive_int("k", k)
    if k > len(features):
        raise ValueError(f"`k` must be at most the number of images, {len(features)}; got {k}.")
    return np.argsort(-features, axis=0, kind="stable")[:k].T.astype(np.int64)


def _display_pixels(display_images, count: int) -> np.ndarray:
    images = np.asarray(display_images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or not np.issubdtype(images.dtype, np.number):
        raise ValueError(
            "`display_images` must be [N, H, W] or [N, H, W, 1 | 3] pixels, got shape "
            f"{np.asarray(display_images).shape}."
        )
    if len(images) != count:
        raise ValueError(
            f"`display_images` has {len(images)} images but the features have {count} rows."
        )
    if images.dtype != np.uint8:
        low, high = float(np.min(images)), float(np.max(images))
        if not (np.isfinite(low) and np.isfinite(high)) or low < 0.0 or high > 255.0:
            raise ValueError(
                f"`display_images` must be pixels in [0, 255], got values in [{low:g}, {high:g}] "
                "(preprocessed images: keras_apps.data.denormalize(images, info) gives pixels)."
            )
        images = np.round(images).astype(np.uint8)
    return images


def top_activating_grid(
    display_images,
    features,
    units,
    path,
    *,
    k: int = 5,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> pathlib.Path:
    """An image grid: one row per unit in ``units``, its top-``k`` images left to right.

    ``display_images`` [N, H, W(, 1 | 3)] are the pixels of the images whose features
    [N, units] were given (uint8, or floats in [0, 255]). ``row_labels`` (default ``"unit
    i"``) name the rows, e.g. ``["fc7 #3", "fc7+ #0"]`` for old next to new units; each image
    shows its activation. The PNG is ``192 + 128 k`` pixels wide and ``128 * len(units)``
    high (plus 48 with a title). Returns the path.
    """
    features = _features_2d("features", features)
    units = _index_array("`units`", [units] if np.isscalar(units) else units, features.shape[1])
    k = _positive_int("k", k)
    if k > len(features):
        raise ValueError(f"`k` must be at most the number of images, {len(features)}; got {k}.")
    images = _display_pixels(display_images, len(features))
    if row_labels is None:
        row_labels = [f"unit {u}" for u in units]
    else:
        row_labels = [str(label) for label in row_labels]
        if len(row_labels) != len(units):
            raise ValueError(
                f"`row_labels` has {len(row_labels)} labels for {len(units)} units."
            )
    top = top_activating(features[:, units], k)

    rows = len(units)
    title_in = _GRID_TITLE_IN if title else 0.0
    width = _GRID_LABEL_IN + k * _GRID_CELL_IN
    height = title_in + rows * _GRID_CELL_IN
    figure = _figure(width, height, dpi=_GRID_DPI)
    cell_w, cell_h = _GRID_CELL_IN / width, _GRID_CELL_IN / height
    pad = 0.04
    for r, (unit, label) in enumerate(zip(units, row_labels)):
        bottom = (rows - 1 - r) * cell_h
        figure.text(
            0.5 * _GRID_LABEL_IN / width, bottom + 0.5 * cell_h, label,
            ha="center", va="center", fontsize=9, wrap=True,
        )
        for c, image_index in enumerate(top[r]):
            left = (_GRID_LABEL_IN + c * _GRID_CELL_IN) / width
            ax = figure.add_axes(
                (left + pad * cell_w, bottom + pad * cell_h, (1 - 2 * pad) * cell_w, (1 - 2 * pad) * cell_h)
            )
            pixels = images[image_index]
            if pixels.shape[-1] == 1:
                ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(pixels, interpolation="nearest")
            ax.text(
                0.02, 0.02, f"{features[image_index, unit]:.3g}", transform=ax.transAxes,
                fontsize=6, color="white", va="bottom", ha="left",
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0},
            )
            ax.set_axis_off()
    if title:
        figure.text(0.5, 1.0 - 0.5 * title_in / height, title, ha="center", va="center", fontsize=11)
    return _save(figure, path, dpi=_GRID_DPI)


# -- learning curves of unit groups --------------------------------------------------------


def unit_groups_accuracy(
    train_features,
    train_labels,
    eval_features,
    eval_labels,
    groups: Mapping[str, object],
    *,
    C: float = 1.0,
    max_iter: int = 1000,
) -> dict[str, float]:
    """``{group: accuracy}`` of a linear classifier on each group of units.

    For each group (e.g. ``{"old": fc7, "new": fc7_plus, "combined": both}``, unit index
    arrays) a multinomial ``sklearn.linear_model.LogisticRegression(C=C, max_iter=max_iter)``
    on standardised features (``StandardScaler`` fit on the training rows) is fit on the
    training features of those units only; the value is its accuracy on the eval features.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_features = _features_2d("train_features", train_features)
    eval_features = _features_2d("eval_features", eval_features)
    if train_features.shape[1] != eval_features.shape[1]:
        raise ValueError(
            f"`train_features` have {train_features.shape[1]} units but `eval_features` have "
            f"{eval_features.shape[1]}."
        )
    train_labels = _class_ids("train_labels", train_labels, len(train_features))
    eval_labels = _class_ids("eval_labels", eval_labels, len(eval_features))
    if len(np.unique(train_labels)) < 2:
        raise ValueError(
            f"`train_labels` hold a single class ({int(train_labels[0])}): a classifier needs two or more."
        )
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
        raise ValueError(f"`C` must be a positive number, got {C!r}.")
    max_iter = _positive_int("max_iter", max_iter)
    groups = _check_groups(groups, train_features.shape[1])
    accuracies = {}
    for name, units in groups.items():
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=float(C), max_iter=max_iter))
        classifier.fit(train_features[:, units], train_labels)
        accuracies[name] = float(np.mean(classifier.predict(eval_features[:, units]) == eval_labels))
    return accuracies


class UnitLearningCurves(keras.callbacks.Callback):
    """Records :func:`unit_groups_accuracy` of the units of ``layer`` during fine-tuning.

    Before training (epoch 0, "before fine-tuning") and after every epoch, the features of
    ``layer`` of the model being trained are extracted from ``train_data`` and ``eval_data``
    (the forms :func:`layer_features` takes; pass data without augmentation) and a linear
    classifier per group is fit and scored. ``self.curves = {group: [acc_0, acc_1, ...]}``
    and ``self.epochs = [0, 1, ...]``: epochs of fine-tuning this callback has seen, so a
    later ``fit`` with the same callback continues the curves (no second epoch-0 point).
    """

    def __init__(
        self,
        layer: str,
        groups: Mapping[str, object],
        train_data,
        eval_data,
        *,
        limit: int | None = None,
        batch_size: int = 128,
        C: float = 1.0,
        max_iter: int = 1000,
    ):
        super().__init__()
        if not isinstance(layer, str):
            raise TypeError(f"`layer` must be a layer name (str), got {type(layer).__name__}: {layer!r}.")
        self.layer = layer
        self.groups = _check_groups(groups)
        self.train_data = train_data
        self.eval_data = eval_data
        self.limit = _positive_int("limit", limit, allow_none=True)
        self.batch_size = _positive_int("batch_size", batch_size)
        if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
            raise ValueError(f"`C` must be a positive number, got {C!r}.")
        self.C = float(C)
        self.max_iter = _positive_int("max_iter", max_iter)
        self.curves: dict[str, list[float]] = {name: [] for name in self.groups}
        self.epochs: list[int] = []
        self._extractor = None

    def set_model(self, model):
        super().set_model(model)
        self._extractor = None

    def _features(self, data):
        if self._extractor is None:
            self._extractor = _extractor(self.model, self.layer)
        extractor, input_rank = self._extractor
        return _extract(
            extractor, self.layer, data, limit=self.limit, batch_size=self.batch_size, input_rank=input_rank
        )

    def _record(self, epoch: int):
        train_features, train_labels = self._features(self.train_data)
        eval_features, eval_labels = self._features(self.eval_data)
        accuracies = unit_groups_accuracy(
            train_features, train_labels, eval_features, eval_labels, self.groups,
            C=self.C, max_iter=self.max_iter,
        )
        for name, accuracy in accuracies.items():
            self.curves[name].append(accuracy)
        self.epochs.append(epoch)

    def on_train_begin(self, logs=None):
        if not self.epochs:
            self._record(0)

    def on_epoch_end(self, epoch, logs=None):
        self._record(self.epochs[-1] + 1 if self.epochs else 1)


def learning_curves_plot(
    curves: Mapping[str, Sequence[float]],
    path,
    *,
    epochs: Sequence[int] | None = None,
    title: str | None = None,
) -> pathlib.Path:
    """Accuracy of each unit group against epochs of fine-tuning; returns the path.

    ``curves``: ``{group: [acc_0, acc_1, ...]}`` (``UnitLearningCurves.curves``), all of one
    length; ``epochs`` the x values (default 0, 1, ...; ``UnitLearningCurves.epochs``).
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"`curves` must be a non-empty mapping group -> accuracies, got {curves!r}.")
    values = {}
    for name, points in curves.items():
        array = np.asarray(points, dtype=np.float64) if np.ndim(points) == 1 else None
        if array is None or array.size == 0 or not np.all(np.isfinite(array)):
            raise ValueError(f"Curve {name!r} must be a non-empty sequence of finite numbers, got {points!r}.")
        values[str(name)] = array
    lengths = {name: len(array) for name, array in values.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"All curves must have the same length, got {lengths}.")
    length = next(iter(lengths.values()))
    xs = np.arange(length) if epochs is None else np.asarray(epochs)
    if xs.shape != (length,) or not np.issubdtype(xs.dtype, np.number):
        raise ValueError(f"`epochs` must be {length} numbers, one per point, got {epochs!r}.")

    figure = _figure(6.0, 4.2)
    ax = figure.add_subplot(1, 1, 1)
    for name, array in values.items():
        ax.plot(xs, array, marker="o", label=name)
    ax.set_xlabel("epochs of fine-tuning")
    ax.set_ylabel("accuracy")
    if np.issubdtype(xs.dtype, np.integer):
        ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "Learning curves of unit groups")
    figure.set_layout_engine("constrained")
    return _save(figure, path)
