"""NIWT end to end on a dataset of :func:`keras_apps.data.load`: the seen-class network,
neuron importances, the attribute -> importance mapping, the unseen-class weights, and the
GZSL evaluation over the joint label space.

    >>> from keras_apps import niwt
    >>> result = niwt.fit("vgg_niwt_cifar", "cifar10", unseen=(3, 9), epochs=12)
    >>> result.metrics["test"]          # {"acc_s": ..., "acc_u": ..., "H": ...}
    >>> result.model                    # one functional model scoring all 10 classes

Files under ``output_dir``: ``seen/`` (the :func:`keras_apps.training.fit` run of the seen
classes: resumable, a finished one is kept), ``mapping.npz`` (:class:`ImportanceMapping`),
``niwt.keras`` (the extended model, output column k = class k) and ``niwt.json`` (class and
attribute names, seen/unseen ids, layer, preprocessing, settings, metrics). A finished run
with the same settings is loaded instead of recomputed; other settings are refused unless
``overwrite=True``, which deletes the old run (its seen-class network too) first.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil

import keras
import numpy as np

from keras_apps._atomic import atomic_file
from keras_apps.niwt.importance import (
    ImportanceMapping,
    check_importance_layer,
    fit_importance_mapping,
    neuron_importance,
)
from keras_apps.niwt.metrics import gzsl_metrics, per_class_accuracy
from keras_apps.niwt.models import IMPORTANCE_LAYER, vgg_niwt_cifar
from keras_apps.niwt.transfer import add_unseen_classes

__all__ = ["NIWTResult", "default_layer", "evaluate", "fit", "load_arrays", "load_run", "resolve_attributes"]

#: Settings recorded in ``niwt.json``; a re-run must match them to reuse the run.
_SETTING_KEYS = ("model", "data", "unseen", "layer", "lam", "learning_rate", "importance_images", "epochs",
                 "batch_size", "limit", "validation_fraction", "seed", "mapping_validation_classes")


@dataclasses.dataclass
class NIWTResult:
    """What :func:`fit` returns."""

    model: keras.Model
    seen_model: keras.Model
    mapping: ImportanceMapping
    settings: dict
    metrics: dict
    output_dir: pathlib.Path


def resolve_attributes(attributes, data: str):
    """A :class:`keras_apps.niwt.data.ClassAttributes`: given, or by name ("cifar10",
    "awa2", "cub"; default: the dataset's own name)."""
    from keras_apps.niwt import attributes as known

    if attributes is None:
        attributes = data
    if isinstance(attributes, known.ClassAttributes):
        return attributes

    def zsl(name):
        def load():
            from keras_apps.niwt import data as zsl_data

            return getattr(zsl_data, name)()

        return load

    loaders = {"cifar10": known.cifar10_attributes, "awa2": zsl("load_awa2"), "cub": zsl("load_cub"),
               "caltech_birds2011": zsl("load_cub")}
    if attributes not in loaders:
        raise ValueError(f"no class-attribute matrix named {attributes!r}; known: {', '.join(sorted(loaders))}, "
                         "or pass a keras_apps.niwt.ClassAttributes.")
    return loaders[attributes]()


def default_layer(model: keras.Model) -> str:
    """``block3_conv2`` for :func:`vgg_niwt_cifar`, else the last layer with a (batch,
    height, width, channels) output before the classifier."""
    names = [layer.name for layer in model.layers]
    if IMPORTANCE_LAYER in names:
        return IMPORTANCE_LAYER
    spatial = [layer.name for layer in model.layers if len(getattr(layer.output, "shape", ())) == 4]
    if not spatial:
        raise ValueError(f"model {model.name!r} has no layer with a spatial and channel axis; pass `layer=`.")
    return spatial[-1]


def load_arrays(data: str, split: str, *, classes, limit=None, subset=None, validation_fraction=None,
                batch_size: int = 256, data_dir=None):
    """(images, labels) numpy arrays of ``classes`` (labels relabelled 0..k-1 in that order),
    preprocessed as the training runs read them, unshuffled and unaugmented."""
    from keras_apps import data as datasets

    dataset, info = datasets.load(data, split, classes=list(classes), batch_size=batch_size, augment=False,
                                  shuffle=False, limit=limit, subset=subset, data_dir=data_dir,
                                  validation_fraction=validation_fraction)
    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
    if not images:
        raise ValueError(f"{data!r} split {split!r} has no images of classes {list(classes)}.")
    return np.concatenate(images), np.concatenate(labels).astype("int64"), info


def _check_split(attributes, unseen):
    classes = len(attributes.class_names)
    unseen = sorted(int(c) for c in unseen)
    if not unseen or len(set(unseen)) != len(unseen) or unseen[0] < 0 or unseen[-1] >= classes:
        raise ValueError(f"`unseen`={unseen!r}: expected distinct class ids in 0..{classes - 1}.")
    seen = [c for c in range(classes) if c not in unseen]
    if len(seen) < 2:
        raise ValueError(f"`unseen`={unseen!r} leaves {len(seen)} seen class: NIWT needs at least 2.")
    return seen, unseen


def _seen_network(model, data, seen, *, output_dir, epochs, batch_size, learning_rate, limit,
                  validation_fraction, seed, data_dir, verbose):
    from keras_apps import training

    if isinstance(model, keras.Model):
        if model.output.shape[-1] != len(seen):
            raise ValueError(f"the given model scores {model.output.shape[-1]} classes but there are {len(seen)} "
                             "seen classes.")
        return model
    if model == "vgg_niwt_cifar":
        def build():
            return vgg_niwt_cifar(len(seen))

        build.__name__ = "vgg_niwt_cifar"
        model = build
    if (pathlib.Path(output_dir) / "metrics.json").is_file():  # a finished run is kept and reused
        return training.load_model(pathlib.Path(output_dir) / "model.keras")
    result = training.fit(model, data, classes=seen, epochs=epochs, batch_size=batch_size,
                          learning_rate=learning_rate, limit=limit * len(seen) if limit else None,
                          validation_fraction=validation_fraction, seed=seed, data_dir=data_dir,
                          output_dir=output_dir, verbose=verbose)
    return result.model


def evaluate(model: keras.Model, data="cifar10", *, seen, unseen, split: str = "test", limit=None,
             data_dir=None, batch_size: int = 256) -> dict:
    """GZSL metrics of a joint-space model (output column k = class k) on ``split``:
    ``acc_s``, ``acc_u``, ``H`` and the per-class accuracies."""
    classes = sorted(list(seen) + list(unseen))
    images, labels, _ = load_arrays(data, split, classes=classes, limit=limit, data_dir=data_dir,
                                    batch_size=batch_size)
    labels = np.asarray(classes)[labels]
    scores = model.predict(images, batch_size=batch_size, verbose=0)
    metrics = gzsl_metrics(labels, scores, seen, unseen)
    metrics["per_class"] = {int(c): float(a) for c, a in zip(classes, per_class_accuracy(labels, scores, classes))}
    metrics["images"] = int(len(labels))
    return metrics


def _settings(**values) -> dict:
    out = {}
    for key in _SETTING_KEYS:
        value = values[key]
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def fit(model="vgg_niwt_cifar", data="cifar10", *, attributes=None, unseen=(3, 9), layer=None, lam: float = 1e-5,
        learning_rate: float = 1e-2, importance_images: int = 100, mapping_validation_classes=None,
        epochs: int = 12, batch_size: int = 128, backbone_learning_rate: float = 0.05, limit: int | None = None,
        validation_fraction: float = 0.1, seed: int = 0, output_dir="runs/niwt", data_dir=None,
        evaluate_split: str | None = "test", overwrite: bool = False, verbose="auto") -> NIWTResult:
    """Runs NIWT on ``data``.

    Args:
        model: the seen-class network: "vgg_niwt_cifar", a registry name or a function
            returning a model (trained here on the seen classes with
            :func:`keras_apps.training.fit`), or a trained ``keras.Model`` whose outputs are the
            seen classes in increasing id order.
        data: a dataset name of :func:`keras_apps.data.load` (or an image folder).
        attributes: class-attribute matrix (``ClassAttributes`` or a name; default the data's).
        unseen: the unseen class ids (the rest are seen).
        layer: the importance layer (default :func:`default_layer`).
        lam, learning_rate: the L2 strength and Adam step of the unseen-weight optimisation.
        importance_images: training images per seen class whose importances fit the mapping
            (and on which unseen importances are computed).
        mapping_validation_classes: seen ids held out to early-stop the mapping (default 20%).
        epochs, batch_size, backbone_learning_rate, limit (training images per class),
            validation_fraction, seed: the seen-class training run.
        evaluate_split: the split scored once at the end (None: no evaluation).
    """
    attributes = resolve_attributes(attributes, data if isinstance(data, str) else "")
    seen, unseen = _check_split(attributes, unseen)
    if isinstance(importance_images, bool) or not isinstance(importance_images, int) or importance_images < 1:
        raise ValueError(f"`importance_images` must be a positive integer, got {importance_images!r}.")
    output_dir = pathlib.Path(output_dir)
    model_name = model if isinstance(model, str) else getattr(model, "name", getattr(model, "__name__", "model"))
    settings = _settings(model=model_name, data=data, unseen=unseen, layer=layer, lam=lam,
                         learning_rate=learning_rate, importance_images=importance_images, epochs=epochs,
                         batch_size=batch_size, limit=limit, validation_fraction=validation_fraction, seed=seed,
                         mapping_validation_classes=mapping_validation_classes)
    record = output_dir / "niwt.json"
    if record.is_file() and not overwrite:
        saved = json.loads(record.read_text())
        differ = sorted(k for k in settings if saved["settings"].get(k) != settings[k])
        if differ:
            raise ValueError(f"{output_dir} holds a NIWT run with other settings ({', '.join(differ)}); choose "
                             "another output_dir or pass overwrite=True.")
        model_, mapping, _ = load_run(output_dir)
        seen_model = keras.saving.load_model(output_dir / "seen" / "model.keras", safe_mode=True) \
            if (output_dir / "seen" / "model.keras").is_file() else None
        return NIWTResult(model_, seen_model, mapping, saved["settings"], saved["metrics"], output_dir)
    if mapping_validation_classes is not None:
        outside = sorted(set(int(c) for c in mapping_validation_classes) - set(seen))
        if outside:
            raise ValueError(f"`mapping_validation_classes` {outside} are not seen classes (seen: {seen}).")
    if overwrite:  # everything of the old run goes, the seen-class network too
        for stale in ("niwt.json", "niwt.keras", "mapping.npz"):
            (output_dir / stale).unlink(missing_ok=True)
        shutil.rmtree(output_dir / "seen", ignore_errors=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    seen_model = _seen_network(model, data, seen, output_dir=output_dir / "seen", epochs=epochs,
                               batch_size=batch_size, learning_rate=backbone_learning_rate, limit=limit,
                               validation_fraction=validation_fraction, seed=seed, data_dir=data_dir,
                               verbose=verbose)
    layer = layer or default_layer(seen_model)
    check_importance_layer(seen_model, layer)
    images, labels, info = load_arrays(data, "train", classes=seen, subset="training" if validation_fraction else None,
                                       validation_fraction=validation_fraction or None,
                                       limit=importance_images * len(seen), data_dir=data_dir)
    expected = [attributes.class_names[c] for c in seen]
    if list(info.class_names) != expected:
        raise ValueError(f"the classes of {data!r} ({', '.join(map(str, info.class_names[:4]))}, ...) are not the "
                         f"attribute matrix's ({', '.join(expected[:4])}, ...) in the same order; pass attributes "
                         "whose rows follow the dataset's classes (AwA2 / CUB images: tools/niwt_experiments.py "
                         "--data awa2|cub, keras_apps.niwt.data.zsl_images).")
    importances = neuron_importance(seen_model, layer, images, labels)
    validation = None if mapping_validation_classes is None else [seen.index(c) for c in mapping_validation_classes]
    mapping = fit_importance_mapping(attributes.matrix[seen], importances, labels, validation_classes=validation,
                                     seed=seed, layer=layer, attribute_names=attributes.attribute_names)
    extended = add_unseen_classes(seen_model, attributes.matrix[unseen], mapping, images, lam=lam,
                                  learning_rate=learning_rate, seen_ids=seen, unseen_ids=unseen, seed=seed)
    metrics = {}
    if evaluate_split:
        metrics[evaluate_split] = evaluate(extended, data, seen=seen, unseen=unseen, split=evaluate_split,
                                           data_dir=data_dir)
    with atomic_file(output_dir / "mapping.npz", suffix=".npz") as tmp:
        tmp.unlink(missing_ok=True)
        mapping.save(tmp)
    with atomic_file(output_dir / "niwt.keras", suffix=".keras") as tmp:
        extended.save(tmp)
    meta = {
        "settings": settings,
        "layer": layer,
        "class_names": list(attributes.class_names),
        "attribute_names": list(attributes.attribute_names),
        "attributes": np.asarray(attributes.matrix).tolist(),
        "seen": seen,
        "unseen": unseen,
        "preprocessing": info.preprocessing,
        "image_shape": list(info.image_shape),
        "mean": list(info.mean) if info.mean is not None else None,
        "std": list(info.std) if info.std is not None else None,
        "metrics": metrics,
    }
    with atomic_file(record) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    return NIWTResult(extended, seen_model, mapping, settings, metrics, output_dir)


def load_run(path):
    """``(model, mapping, meta)`` of a finished :func:`fit` run folder (or its niwt.keras)."""
    path = pathlib.Path(path)
    folder = path.parent if path.suffix == ".keras" else path
    missing = [name for name in ("niwt.keras", "mapping.npz", "niwt.json") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a finished NIWT run: {', '.join(missing)} missing.")
    model = keras.saving.load_model(folder / "niwt.keras", safe_mode=True)
    return model, ImportanceMapping.load(folder / "mapping.npz"), json.loads((folder / "niwt.json").read_text())

