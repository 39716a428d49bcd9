"""The HD-CNN training pipeline (Yan et al., Sec. 4), one resumable call:

1. **building block**: train the building block on the training split minus a stratified
   (balanced) held-out part (``validation_fraction``);
2. **hierarchy**: its soft confusion matrix on the held-out part -> spectral clustering into
   K coarse categories (overlapping with ``gamma``): :func:`keras_apps.hdcnn.learn_hierarchy`;
3. **build**: shared layers and coarse component initialised from the building block;
4. **fine components**: each pretrained on the images of its fine categories only, with
   local labels, the shared layers frozen (:func:`pretrain_fine_components`);
5. **fine-tuning**: the whole HD-CNN with the log loss plus the coarse consistency term.

Every phase writes its outputs under ``output_dir`` (``building_block/``, ``hierarchy/``,
``fine_component_<k>/``, ``finetune/`` and the final ``model.keras`` + ``metrics.json``);
re-running the same call skips the finished phases and resumes the interrupted one (each
training phase is a :func:`keras_apps.training.fit` run).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import keras
import numpy as np

from keras_apps import data as kdata
from keras_apps import training
from keras_apps._atomic import atomic_file
from keras_apps.hdcnn.hierarchy import Hierarchy, confusion_matrix, learn_hierarchy
from keras_apps.hdcnn.losses import hdcnn_losses
from keras_apps.hdcnn.model import build_hdcnn, components, convention_of, hierarchy_of

__all__ = [
    "HDCNNResult",
    "fit",
    "finetune",
    "held_out_probabilities",
    "hierarchy_from_building_block",
    "pretrain_fine_components",
]

PHASES = ("building_block", "hierarchy", "fine_components", "finetune")


@dataclasses.dataclass
class HDCNNResult:
    """What :func:`fit` returns: the fine-tuned HD-CNN, its hierarchy, the metrics of every
    phase (``{"building_block": ..., "fine_components": [...], "finetune": ...}``) and the
    run's folder."""

    model: keras.Model
    hierarchy: Hierarchy
    metrics: dict
    output_dir: pathlib.Path


def _finished(folder: pathlib.Path) -> bool:
    return (folder / "metrics.json").is_file() and (folder / "model.keras").is_file()


def _read_metrics(folder: pathlib.Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def held_out_probabilities(model, data, *, validation_fraction, validation_seed=0, batch_size=128,
                           data_dir=None, limit=None, preprocessing="dataset", download=False):
    """The building block's class probabilities and the labels of the held-out part of the
    training split (the images :func:`keras_apps.training.fit` validated on)."""
    info = kdata.dataset_info(data, data_dir=data_dir, download=download)
    ds, _ = kdata.load(
        data, info.train_split, data_dir=data_dir, batch_size=batch_size, augment=False,
        shuffle=False, subset="validation", validation_fraction=validation_fraction,
        validation_seed=validation_seed, limit=limit, preprocessing=preprocessing,
        download=download,
    )
    probabilities, labels = [], []
    for images, y in ds:
        probabilities.append(np.asarray(model(images, training=False), np.float64))
        labels.append(np.asarray(y))
    return np.concatenate(probabilities), np.concatenate(labels).astype(np.int64), info


def hierarchy_from_building_block(model, data, n_coarse, *, gamma=None, validation_fraction=0.1,
                                  validation_seed=0, output_dir=None, seed=0, data_dir=None,
                                  limit=None, download=False):
    """Phase 2: the confusion matrix of ``model`` on the held-out part -> the hierarchy.

    With ``output_dir`` it writes ``hierarchy.json``, ``confusion.npy`` and
    ``hierarchy.png`` there, and a finished folder is read back instead of recomputed."""
    folder = None if output_dir is None else pathlib.Path(output_dir)
    if folder is not None and (folder / "hierarchy.json").is_file():
        return Hierarchy.load(folder / "hierarchy.json")
    probabilities, labels, info = held_out_probabilities(
        model, data, validation_fraction=validation_fraction, validation_seed=validation_seed,
        data_dir=data_dir, limit=limit, download=download,
    )
    confusion = confusion_matrix(probabilities, labels, num_classes=probabilities.shape[1])
    overlap = {} if gamma is None else {"probabilities": probabilities, "labels": labels}
    tree = learn_hierarchy(confusion, n_coarse, gamma, seed=seed, class_names=list(info.class_names),
                           **overlap)  # without gamma: the disjoint groups
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(folder / "confusion.npy", suffix=".npy") as tmp:
            np.save(tmp, confusion)
        tree.plot(folder / "hierarchy.png")
        tree.save(folder / "hierarchy.json")  # last: its presence marks the phase finished
    return tree


def _fine_model(model, k):
    parts = components(model)
    image = keras.Input(shape=tuple(model.inputs[0].shape[1:]), name=model.inputs[0].name)
    features = parts.shared(image) if parts.shared is not None else image
    return keras.Model(image, parts.fine[k](features), name=f"fine_component_{k}")


def pretrain_fine_components(model, data, *, output_dir, epochs=5, batch_size=64,
                             learning_rate=0.01, validation_fraction=0.1, validation_seed=0,
                             data_dir=None, limit=None, seed=0, verbose="auto", **fit_kwargs):
    """Phase 4: trains each fine component of ``model`` (in place) on the images of its
    fine categories with local labels 0..|S_k|-1, the shared layers frozen (the whole
    component trains without shared layers). Folder ``<output_dir>/fine_component_<k>``;
    a finished one is loaded instead. Returns the metrics of every component."""
    output_dir = pathlib.Path(output_dir)
    parts = components(model)
    tree = hierarchy_of(model)
    results = []
    for k, members in enumerate(tree.coarse_sets):
        folder = output_dir / f"fine_component_{k}"
        if _finished(folder):
            trained = training.load_model(folder / "model.keras")
            parts.fine[k].set_weights(trained.get_layer(f"fine_component_{k}").get_weights())
            results.append(_read_metrics(folder))
            continue
        net = _fine_model(model, k)
        trainable = f"fine_component_{k}" if parts.shared is not None else None
        run = training.fit(
            net, data, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            classes=list(members), validation_fraction=validation_fraction,
            validation_seed=validation_seed, trainable=trainable, output_dir=folder,
            data_dir=data_dir, limit=limit, seed=seed + 1 + k, verbose=verbose, **fit_kwargs,
        )
        if run.model is not net:  # trained as a copy (another strategy / precision)
            parts.fine[k].set_weights(run.model.get_layer(f"fine_component_{k}").get_weights())
        results.append(run.metrics)
    model.trainable = False  # then True: every layer trainable again
    model.trainable = True
    return results


def _class_counts(data, *, validation_fraction, validation_seed, data_dir, limit, num_classes,
                  download):
    info = kdata.dataset_info(data, data_dir=data_dir, download=download)
    ds, _ = kdata.load(
        data, info.train_split, data_dir=data_dir, batch_size=1024, augment=False, shuffle=False,
        limit=limit, download=download, **({"subset": "training", "validation_fraction": validation_fraction,
                         "validation_seed": validation_seed} if validation_fraction else {}),
    )
    counts = np.zeros(num_classes, np.int64)
    for _, y in ds:
        counts += np.bincount(np.asarray(y), minlength=num_classes)
    return counts


def finetune(model, data, *, output_dir, epochs=5, lam=None, consistency=True, batch_size=64,
             learning_rate=0.001, validation_fraction=0.1, validation_seed=0, data_dir=None,
             limit=None, seed=0, verbose="auto", download=False, **fit_kwargs):
    """Phase 5: global fine-tuning of the whole HD-CNN (every layer trainable) with
    ``E = log loss + lam/2 sum_k (t_k - mean_i B_ik)^2``; ``consistency=False`` drops the
    second term (the paper's ablation). t_k follows the model's convention (paper: from
    the training images per class). Returns the :class:`keras_apps.training.TrainResult`."""
    convention = convention_of(model)
    lam = (convention.lam if lam is None else lam) if consistency else 0.0
    counts = None
    if convention.targets == "paper":
        counts = _class_counts(data, validation_fraction=validation_fraction,
                               validation_seed=validation_seed, data_dir=data_dir, limit=limit,
                               num_classes=int(model.output["predictions"].shape[-1]),
                               download=download)
    model.trainable = False  # then True: resets every layer (see training.set_trainable)
    model.trainable = True
    return training.fit(
        model, data, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        loss=hdcnn_losses(model, lam=lam, class_counts=counts),
        loss_weights={"predictions": 1.0, "coarse": 1.0},
        validation_fraction=validation_fraction, validation_seed=validation_seed,
        output_dir=output_dir, data_dir=data_dir, limit=limit, seed=seed, verbose=verbose,
        download=download, **fit_kwargs,
    )


def _epochs(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}.")
    return value


def fit(
    building_block="nin_cifar",
    data="cifar10",
    *,
    n_coarse: int | None = None,
    gamma: float | None = None,
    hierarchy=None,
    convention: str = "paper",
    lam: float | None = None,
    consistency: bool = True,
    shared_until: str | None = None,
    shared_layers: bool = True,
    building_block_kwargs: dict | None = None,
    fine_classifier_init: str = "random",
    block_epochs: int = 10,
    fine_epochs: int = 5,
    finetune_epochs: int = 5,
    batch_size: int = 64,
    learning_rate: float = 0.05,
    fine_learning_rate: float | None = None,
    finetune_learning_rate: float | None = None,
    validation_fraction: float = 0.1,
    validation_seed: int = 0,
    data_dir=None,
    limit: int | None = None,
    seed: int = 0,
    strategy="auto",
    download: bool = False,
    output_dir="runs/hdcnn",
    overwrite: bool = False,
    verbose="auto",
    evaluate_test: bool = True,
) -> HDCNNResult:
    """Runs the whole HD-CNN pipeline (module docstring) and returns an :class:`HDCNNResult`.

    Args:
        building_block: a registry name (trained in phase 1), or the path of a finished
            :func:`keras_apps.training.fit` run folder or ``.keras`` file of a trained
            building block (phase 1 is skipped; its held-out part must be the same
            ``validation_fraction`` / ``validation_seed``).
        n_coarse: K (default ``Hierarchy.default``'s K for the class count).
        gamma: overlap parameter (u_t = 1/(gamma K)); None: disjoint coarse categories.
        hierarchy: a given hierarchy (Hierarchy, dict or JSON path) instead of phase 2.
        convention, shared_until, shared_layers, fine_classifier_init: see
            :func:`keras_apps.hdcnn.build_hdcnn`.
        lam, consistency: the consistency term of phase 5 (:func:`finetune`).
        block_epochs, fine_epochs, finetune_epochs: epochs of phases 1, 4 and 5 (0 skips
            phase 4 or 5).
        learning_rate: of phase 1 (SGD momentum 0.9, cosine); phases 4 and 5 default to
            it and a tenth of it (the paper lowers the rate for fine-tuning).
        download: let tensorflow-datasets prepare a tfds set (from its manual folder
            offline; see :func:`keras_apps.data.load`).
        strategy: the ``tf.distribute`` strategy of every training phase (a name of
            :data:`keras_apps.training.STRATEGIES` or a strategy).
        output_dir: the run's folder; a finished run is kept unless ``overwrite``.
        evaluate_test: False: no phase reads the test split (a hyperparameter search).
    """
    for key, value in (("block_epochs", block_epochs), ("fine_epochs", fine_epochs),
                       ("finetune_epochs", finetune_epochs)):
        _epochs(key, value)
    output_dir = pathlib.Path(output_dir)
    if _finished(output_dir) and not overwrite:
        raise FileExistsError(
            f"{output_dir} holds a finished HD-CNN run; pass overwrite=True (CLI: --overwrite) "
            "or choose another output_dir."
        )
    if overwrite and output_dir.exists():
        import shutil

        shutil.rmtree(output_dir)
    common = dict(batch_size=batch_size, validation_fraction=validation_fraction,
                  validation_seed=validation_seed, data_dir=data_dir, limit=limit, verbose=verbose,
                  strategy=strategy, download=download, evaluate_test=evaluate_test)
    metrics = {}

    # 1. the building block
    if isinstance(building_block, str) and not building_block.endswith(".keras") \
            and not pathlib.Path(building_block).is_dir():
        folder = output_dir / "building_block"
        if _finished(folder):
            block = training.load_model(folder / "model.keras")
            metrics["building_block"] = _read_metrics(folder)
        else:
            if block_epochs < 1:
                raise ValueError("`block_epochs` must be >= 1 when the building block is trained here.")
            run = training.fit(
                building_block, data, epochs=block_epochs, learning_rate=learning_rate,
                output_dir=folder, seed=seed, build_kwargs=dict(building_block_kwargs or {}),
                **common,
            )
            block, metrics["building_block"] = run.model, run.metrics
    else:
        path = pathlib.Path(building_block)
        model_path = path / "model.keras" if path.is_dir() else path
        block = training.load_model(model_path)
        if (model_path.parent / "metrics.json").is_file():
            metrics["building_block"] = _read_metrics(model_path.parent)
        if building_block_kwargs:
            raise TypeError("`building_block_kwargs` only apply when the building block is trained here.")

    # 2. the hierarchy
    num_classes = int(block.outputs[0].shape[-1])
    if hierarchy is None:
        k = Hierarchy.default(num_classes).num_coarse if n_coarse is None else n_coarse
        tree = hierarchy_from_building_block(
            block, data, k, gamma=gamma, validation_fraction=validation_fraction,
            validation_seed=validation_seed, output_dir=output_dir / "hierarchy", seed=seed,
            data_dir=data_dir, limit=limit, download=download,
        )
    else:
        if n_coarse is not None or gamma is not None:
            raise ValueError("`n_coarse` and `gamma` learn a hierarchy; they do not apply with `hierarchy`.")
        from keras_apps.hdcnn.model import resolve_hierarchy

        tree = resolve_hierarchy(hierarchy, num_classes)
    metrics["hierarchy"] = {"num_coarse": tree.num_coarse,
                            "set_sizes": [len(s) for s in tree.coarse_sets],
                            "memberships": int(tree.memberships().sum())}

    # 3. HD-CNN from the building block
    model = build_hdcnn(block, tree, shared_until, shared_layers=shared_layers,
                        convention=convention, fine_classifier_init=fine_classifier_init)

    # 4. fine components
    if fine_epochs:
        metrics["fine_components"] = pretrain_fine_components(
            model, data, output_dir=output_dir, epochs=fine_epochs,
            learning_rate=fine_learning_rate or learning_rate, seed=seed, **common,
        )

    # 5. global fine-tuning
    folder = output_dir / "finetune"
    if finetune_epochs:
        if _finished(folder):
            model = training.load_model(folder / "model.keras")
            metrics["finetune"] = _read_metrics(folder)
        else:
            run = finetune(
                model, data, output_dir=folder, epochs=finetune_epochs, lam=lam,
                consistency=consistency,
                learning_rate=finetune_learning_rate or learning_rate / 10, seed=seed, **common,
            )
            model, metrics["finetune"] = run.model, run.metrics
    else:
        metrics["finetune"] = {
            "validation": training.evaluate(model, data, split=kdata.dataset_info(
                data, data_dir=data_dir, download=download).train_split,
                                            subset="validation", validation_fraction=validation_fraction,
                                            validation_seed=validation_seed, data_dir=data_dir,
                                            limit=limit, download=download, verbose=0),
        }
        if evaluate_test:
            metrics["finetune"]["test"] = training.evaluate(model, data, data_dir=data_dir,
                                                            limit=limit, download=download,
                                                            verbose=0)
    training.atomic_save_model(model, output_dir / "model.keras")
    training.atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return HDCNNResult(model, tree, metrics, output_dir)
