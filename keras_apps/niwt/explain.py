"""NIWT's explanations (Selvaraju et al., ECCV 2018, Sec. 3.5): visual (Grad-CAM) and
textual (the inverse of the attribute -> importance mapping) reasons for a decision, seen or
unseen: the extended network is still end to end, so both apply unchanged.

- Visual, Grad-CAM (Selvaraju et al., ICCV 2017): with ``alpha^n_c`` the neuron importance
  of class c for channel n at a convolutional layer (:func:`~keras_apps.niwt.importance.
  neuron_importance`) and ``A^n`` that channel's activation map,
  ``L_c = ReLU(sum_n alpha^n_c A^n)``, here scaled by its maximum to [0, 1] and resized to
  the image (:func:`grad_cam`, drawn over the picture by :func:`overlay`).
- Textual: the decision's importance vector ``alpha_c`` scored against each attribute by
  the mapping's inverse (``mapping.attribute_scores``); the attributes with the highest
  scores are the explanation (:func:`textual_explanation`).

:func:`explain` does both for one picture and writes the figure with its caption
"<class>: <p> — because: attr1, attr2, ...".
"""

from __future__ import annotations

import numbers
import os
import pathlib

import keras
import numpy as np
import tensorflow as tf

from keras_apps._atomic import atomic_file
from keras_apps.niwt.importance import check_importance_layer, neuron_importance

__all__ = ["grad_cam", "overlay", "textual_explanation", "explain"]


def _size(size, default) -> tuple[int, int]:
    if size is None:
        return int(default[0]), int(default[1])
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in size)
    ):
        raise ValueError(f"`size` must be (height, width) positive integers, got {size!r}.")
    return int(size[0]), int(size[1])


def _resize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, h, w) maps resized to ``size`` bilinearly (tf.image.resize), clipped to [0, 1]."""
    if maps.shape[1:] != size:
        maps = tf.image.resize(maps[..., None], size, method="bilinear").numpy()[..., 0]
    return np.clip(maps, 0.0, 1.0).astype(np.float32)


def _cam(importances: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """ReLU(sum_n alpha_n A^n) per image, divided by its maximum (an all-zero map stays 0)."""
    cam = np.maximum(np.einsum("nhwk,nk->nhw", activations.astype(np.float64), importances), 0.0)
    peak = cam.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, cam / np.where(peak > 0, peak, 1.0), 0.0)


def grad_cam(model: keras.Model, layer: str, images, class_ids, *, logits_layer=None, size=None) -> np.ndarray:
    """Grad-CAM maps of ``class_ids`` at the convolutional ``layer``.

    Args:
        model: a functional classifier.
        layer: name of a layer with output (batch, h, w, channels).
        images: (n, H, W, C) model inputs (preprocessed).
        class_ids: one class for every image, or one per image.
        logits_layer: the pre-softmax score layer (default: ``"predictions"`` when the model
            has it, else the model output), as in ``neuron_importance``.
        size: (height, width) of the maps; default (H, W), the input images' size.

    Returns:
        float32 (n, height, width) in [0, 1]: ``ReLU(sum_n alpha^n_c A^n)`` over its maximum,
        bilinearly resized.

    Raises:
        ValueError: a layer without spatial axes (named, with its output shape), an unknown
            layer, images that are not a non-empty (n, H, W, C) batch, a bad ``size``.
    """
    check_importance_layer(model, layer, spatial=True)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"`images` must be a non-empty batch (n, height, width, channels), got shape {images.shape}.")
    target = _size(size, images.shape[1:3])
    importances, activations = neuron_importance(
        model, layer, images, class_ids, logits_layer=logits_layer, return_activations=True
    )
    return _resize(_cam(importances, activations), target)


def _rgb_uint8(image) -> np.ndarray:
    """(H, W, 3) uint8 from a uint8 picture, or a float one in [0, 1] (else [0, 255])."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"`image` must be a picture (H, W, 3), (H, W, 1) or (H, W), got shape {image.shape}.")
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"`image` must hold numbers, got dtype {image.dtype}.")
    image = image.astype(np.float64)
    if not np.all(np.isfinite(image)):
        raise ValueError("`image` holds NaN or infinite values.")
    if image.min() >= 0 and image.max() <= 1:
        image = image * 255.0
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def overlay(image, heatmap, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """The heatmap, coloured by the matplotlib colormap ``cmap``, blended over the image:
    ``(1 - alpha) * image + alpha * cmap(heatmap)``.

    Args:
        image: (H, W, 3) (or grey (H, W) / (H, W, 1)) uint8 picture, or floats in [0, 1]
            (floats outside [0, 1] are read as 0..255).
        heatmap: (h, w) values in [0, 1] (clipped), resized bilinearly to (H, W) if needed.
        alpha: weight of the heatmap colour, in [0, 1].

    Returns:
        (H, W, 3) uint8 RGB.
    """
    import matplotlib

    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"`alpha` must be a number in [0, 1], got {alpha!r}.")
    try:
        colormap = matplotlib.colormaps[cmap]
    except (KeyError, TypeError):
        raise ValueError(f"`cmap`={cmap!r} is not a matplotlib colormap (e.g. 'jet', 'viridis', 'inferno').") from None
    rgb = _rgb_uint8(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2 or heatmap.size == 0:
        raise ValueError(f"`heatmap` must be a (height, width) map, got shape {heatmap.shape}.")
    if not np.all(np.isfinite(heatmap)):
        raise ValueError("`heatmap` holds NaN or infinite values.")
    heatmap = _resize(np.clip(heatmap, 0.0, 1.0)[None], rgb.shape[:2])[0]
    colour = colormap(heatmap)[..., :3] * 255.0
    blended = (1.0 - alpha) * rgb.astype(np.float64) + alpha * colour
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def textual_explanation(mapping, importance, attribute_names, top_k: int = 5) -> list:
    """The attributes that best explain an importance vector, by the mapping's inverse.

    Args:
        mapping: an object with ``attribute_scores(importance) -> (A,)`` (an
            :class:`~keras_apps.niwt.importance.ImportanceMapping`).
        importance: (N,) neuron importance of one decision.
        attribute_names: the A attribute names, in the mapping's order.
        top_k: how many attributes (all A when there are fewer).

    Returns:
        ``[(attribute_name, score), ...]``, highest score first (ties: the earlier attribute).
    """
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer, got {top_k!r}.")
    if not hasattr(mapping, "attribute_scores"):
        raise ValueError(f"`mapping` must have an `attribute_scores(importance)` method, got {type(mapping).__name__}.")
    importance = np.asarray(importance, dtype=np.float32)
    if importance.ndim != 1:
        raise ValueError(f"`importance` must be one decision's (N,) vector, got shape {importance.shape}.")
    scores = np.asarray(mapping.attribute_scores(importance), dtype=np.float64).reshape(-1)
    names = [str(name) for name in attribute_names]
    if len(names) != scores.shape[0]:
        raise ValueError(f"{len(names)} attribute names for the mapping's {scores.shape[0]} attribute scores.")
    order = np.argsort(-scores, kind="stable")[: min(int(top_k), len(names))]
    return [(names[k], float(scores[k])) for k in order]


def _probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The model's class probabilities for one input: its output when that is a
    distribution (non-negative, sums to 1), else the softmax of the output."""
    outputs = model(x, training=False)
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    out = np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float64).reshape(-1)
    if out.min() >= 0 and abs(out.sum() - 1.0) < 1e-3:
        return out
    out = np.exp(out - out.max())
    return out / out.sum()


def _figure(path: pathlib.Path, picture: np.ndarray, blended: np.ndarray, caption: str, title: str) -> None:
    """Writes the picture and the Grad-CAM overlay side by side with the caption (Agg, no
    display), atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.6), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    left.imshow(picture)
    left.set_title("image")
    right.imshow(blended)
    right.set_title(title)
    for axis in (left, right):
        axis.axis("off")
    figure.suptitle(caption, wrap=True)
    figure.tight_layout()
    with atomic_file(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")


def explain(model: keras.Model, image, *, layer: str, mapping, attribute_names, class_names, class_id=None,
            top_k: int = 5, path=None, overwrite: bool = False, preprocess=None, logits_layer=None) -> dict:
    """Visual and textual explanation of one decision, optionally written as a picture.

    Args:
        model: the classifier (seen, or seen + unseen after ``add_unseen_classes``).
        image: the raw (H, W, 3) picture (uint8, or floats), as it is shown.
        layer: the convolutional layer of the importances (the mapping's layer).
        mapping: the attribute -> importance mapping (``attribute_scores``).
        attribute_names: the mapping's A attribute names. class_names: one per model output.
        class_id: the decision to explain; None explains the model's top-1 decision.
        top_k: attributes in the explanation.
        path: where to write the png (image | Grad-CAM overlay, captioned); None writes nothing.
        overwrite: replace an existing ``path`` (else FileExistsError).
        preprocess: callable raw picture -> model input (H', W', C'); default identity.
        logits_layer: the pre-softmax score layer (default ``"predictions"``).

    Returns:
        ``{"class_id", "class_name", "probability", "heatmap" ((H, W) float32 in [0, 1]),
        "attributes" ([(name, score), ...]), "caption", "path" (str or None)}``. The
        probability is the model's output for the class (its softmax when the output is not
        a distribution).
    """
    if path is not None:
        path = pathlib.Path(os.fspath(path))
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    if preprocess is not None and not callable(preprocess):
        raise ValueError(f"`preprocess` must be a callable (picture -> model input), got {preprocess!r}.")
    check_importance_layer(model, layer, spatial=True)
    picture = _rgb_uint8(image)
    x = np.asarray(preprocess(image) if preprocess is not None else image, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"the model input for one picture must be (height, width, channels), got shape {x.shape}.")
    x = x[None]
    probabilities = _probabilities(model, x)
    names = [str(name) for name in class_names]
    if len(names) != probabilities.shape[0]:
        raise ValueError(f"{len(names)} class names for a model with {probabilities.shape[0]} outputs.")
    if class_id is None:
        class_id = int(np.argmax(probabilities))
    elif (isinstance(class_id, bool) or not isinstance(class_id, numbers.Integral)
          or not 0 <= class_id < len(names)):
        raise ValueError(f"`class_id` must be an int in 0..{len(names) - 1}, got {class_id!r}.")
    class_id = int(class_id)
    importances, activations = neuron_importance(
        model, layer, x, class_id, logits_layer=logits_layer, return_activations=True
    )
    heatmap = _resize(_cam(importances, activations), picture.shape[:2])[0]
    attributes = textual_explanation(mapping, importances[0], attribute_names, top_k)
    probability = float(probabilities[class_id])
    caption = f"{names[class_id]}: {probability:.2f} — because: " + ", ".join(name for name, _ in attributes)
    if path is not None:
        _figure(path, picture, overlay(picture, heatmap), caption, f"Grad-CAM: {names[class_id]}")
    return {
        "class_id": class_id,
        "class_name": names[class_id],
        "probability": probability,
        "heatmap": heatmap,
        "attributes": attributes,
        "caption": caption,
        "path": None if path is None else str(path),
    }
