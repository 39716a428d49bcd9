"""NIWT (Selvaraju et al., ECCV 2018) measured on CIFAR-10 with the project's class-attribute
matrix (:func:`keras_apps.niwt.data.cifar10_attributes`): GZSL acc_s, acc_u and H of NIWT
against two baselines on the same network's features, and the effect of lambda.

Protocol, per split (``SPLITS``: 8 seen / 2 unseen classes, 3 splits seeded by their index),
xlsa17-style:

1. validation phase: two of the seen classes play the unseen ones. A network is trained on
   the other 6 (``keras_apps.training.fit``, 10% of their training images held out); every
   method's hyper-parameters (NIWT: lambda x learning rate; attribute regression: ridge
   alpha; ALE: learning rate) are chosen by H on the held-out images of the 6 classes (seen)
   and training images of the 2 validation classes (unseen), never used in that phase's
   training;
2. final phase: a network trained on all 8 seen classes; each method with its chosen
   setting is scored once on the CIFAR-10 test split (all 10 classes, joint label space).
   The lambda sweep at the chosen learning rate is also scored on the test split: it is
   the paper's analysis of lambda, not a selection.

NIWT: importances at ``block3_conv2`` (the last convolution; FC layers follow, as in VGG16)
of ``--importance-images`` training images per seen class, the mapping early-stopped on
held-out seen classes (20%), unseen weights optimised on those images. Baselines on the
network's ``fc2`` features (the classifier's input) of the same images: direct attribute
regression (ridge, cosine to the class attributes) and ALE (bilinear compatibility, WAR
ranking loss). Reference row: the seen-class network itself (acc_u = 0 by construction).

Every finished measurement is one JSON file under ``--output`` (``<method>-split<k>.json``,
``lambda-split<k>.json``); a re-run skips them and the training runs under ``--work``
resume. ``--table`` rebuilds ``README.md`` from the JSON files alone.

    python tools/niwt_experiments.py                       # what results/niwt/cifar10 holds
    python tools/niwt_experiments.py --table
    # AwA2 / CUB with their images on your machine (keras_apps.niwt.data.zsl_images: AwA2's
    # JPEGImages/ folder, CUB's CUB_200_2011/images/ or tfds caltech_birds2011): xlsa17's
    # proposed seen/unseen classes (validation: xlsa17's 13 AwA2 classes, else a seeded 20%
    # of the seen ones), split ids are seeds; e.g. the paper's setting on a GPU:
    python tools/niwt_experiments.py --data awa2 --data-dir ~/data/Animals_with_Attributes2 \\
        --backbone vgg16 --weights imagenet --layer block5_conv3 --image-size 224 --limit 0 \\
        --epochs 10 --learning-rate 0.001 --importance-images 100 --test-limit 0

On AwA2 / CUB the "train" / "test" splits are those of :func:`keras_apps.niwt.data.zsl_images`
(an image folder's stratified 80/20 split, or CUB's own split), not xlsa17's image lists.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The paper's GZSL H (%), Selvaraju et al. Table 2 (NIWT-Attributes).
PAPER = {"VGG16 AwA2": 48.1, "VGG16 CUB": 37.0, "ResNet101 AwA2": 40.5, "ResNet101 CUB": 27.7}
LAMS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
NIWT_LEARNING_RATES = (1e-3, 1e-2)
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0)
ALE_LEARNING_RATES = (1e-3, 1e-2, 1e-1)
METHODS = ("seen_only", "attribute_regression", "ale", "niwt")
LABELS = {"seen_only": "seen-class network (no unseen weights)", "attribute_regression":
          "direct attribute regression", "ale": "ALE (bilinear, WAR ranking)", "niwt": "NIWT (attributes)"}

#: Seen/unseen splits of CIFAR-10 (ids: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog,
#: 6 frog, 7 horse, 8 ship, 9 truck): the unseen classes, and the seen classes held out as the
#: validation phase's unseen classes (xlsa17-style: val classes are a subset of the seen ones).
SPLITS = {
    0: {"unseen": (3, 9), "validation": (4, 8)},
    1: {"unseen": (0, 7), "validation": (5, 1)},
    2: {"unseen": (4, 8), "validation": (3, 9)},
}


def dataset(args):
    """``(attributes, splits)`` of ``args.data``: CIFAR-10 with the project's attributes and
    :data:`SPLITS`; AwA2 / CUB with their attribute files and xlsa17's proposed seen/unseen
    classes (every split id a seed; validation classes: xlsa17's where known (AwA2), else a
    seeded 20% of the seen classes)."""
    if getattr(args, "_dataset", None) is None:
        from keras_apps.niwt import data as zsl
        from keras_apps.niwt.attributes import cifar10_attributes

        if args.data == "cifar10":
            args._dataset = cifar10_attributes(), SPLITS
        else:
            attributes = (zsl.load_awa2 if args.data == "awa2" else zsl.load_cub)(args.attributes_dir)
            splits = {}
            for split in (int(v) for v in args.splits.split(",")):
                validation = attributes.validation or tuple(sorted(np.random.RandomState(split).choice(
                    attributes.seen, max(1, round(0.2 * len(attributes.seen))), replace=False).tolist()))
                splits[split] = {"unseen": tuple(attributes.unseen), "validation": tuple(validation)}
            args._dataset = attributes, splits
    return args._dataset


def phase_classes(args, split: int, phase: str):
    """(seen, unseen) class ids of a split's ``"validation"`` or ``"final"`` phase."""
    attributes, splits = dataset(args)
    spec = splits[split]
    seen = [c for c in range(len(attributes.class_names)) if c not in spec["unseen"]]
    if phase == "final":
        return seen, list(spec["unseen"])
    return [c for c in seen if c not in spec["validation"]], list(spec["validation"])


def _zsl_images(args, split, classes, **kwargs):
    from keras_apps.niwt.data import zsl_images

    return zsl_images(args.data, split, class_ids=list(classes), attributes=dataset(args)[0],
                      data_dir=args.data_dir, image_size=args.image_size, **kwargs)


def build_backbone(args, classes: int):
    import keras_apps
    from keras_apps.niwt.models import vgg_niwt_cifar

    if args.backbone == "vgg_niwt_cifar":
        shape = (32, 32, 3) if args.data == "cifar10" else (args.image_size, args.image_size, 3)
        return vgg_niwt_cifar(classes, input_shape=shape, widths=args.widths, fc_units=args.fc_units)
    if args.weights:  # the pretrained network with a fresh classifier of the seen classes
        from keras_apps.growth import transfer

        return transfer(keras_apps.build(args.backbone, weights=args.weights), classes=classes, keep_source=False)
    return keras_apps.build(args.backbone, classes=classes, input_shape=(args.image_size, args.image_size, 3))


def train_backbone(args, split: int, phase: str):
    import tensorflow as tf

    from keras_apps import training

    seen, _ = phase_classes(args, split, phase)

    def build():
        return build_backbone(args, len(seen))

    build.__name__ = args.backbone
    folder = pathlib.Path(args.work) / f"split{split}" / phase
    if (folder / "metrics.json").is_file():  # finished: training.fit keeps it, we reuse it
        return training.load_model(folder / "model.keras")
    common = dict(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=split,
                  output_dir=folder, verbose=2)
    limit = args.limit * len(seen) if args.limit else None
    if args.data == "cifar10":
        return training.fit(build, "cifar10", classes=seen, limit=limit, data_dir=args.data_dir,
                            validation_fraction=args.validation_fraction, **common).model
    local = np.full(len(dataset(args)[0].class_names), -1, "int32")
    local[seen] = np.arange(len(seen))
    table = tf.constant(local)
    pair = []
    for subset in ("training", "validation"):
        ds, _ = _zsl_images(args, "train", seen, subset=subset, validation_fraction=args.validation_fraction,
                            batch_size=args.batch_size, seed=split, limit=limit if subset == "training" else None)
        pair.append(ds.map(lambda x, y: (x, tf.gather(table, y))))
    return training.fit(build, tuple(pair), **common).model


def _arrays(args, split, classes, **kwargs):
    """(images, global labels, info) of ``classes``, unshuffled and unaugmented."""
    if args.data == "cifar10":
        from keras_apps.niwt.pipeline import load_arrays

        images, labels, info = load_arrays("cifar10", split, classes=classes, data_dir=args.data_dir, **kwargs)
        return images, np.asarray(classes)[labels], info
    ds, info = _zsl_images(args, split, classes, augment=False, shuffle=False, batch_size=64, **kwargs)
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    if not batches:
        raise ValueError(f"{args.data} split {split!r} has no images of classes {list(classes)}.")
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]).astype("int64"), info


def phase_data(args, split: int, phase: str):
    """Images (global labels) of a phase: the importance / baseline training pool of the seen
    classes, and the evaluation images (validation: held-out seen + validation-class
    training images; final: the test split), and the evaluation images' DatasetInfo."""
    seen, unseen = phase_classes(args, split, phase)
    carve = dict(validation_fraction=args.validation_fraction)
    pool = _arrays(args, "train", seen, subset="training", limit=args.importance_images * len(seen), **carve)[:2]
    if phase == "final":
        *evaluation, info = _arrays(args, "test", sorted(seen + unseen), limit=args.test_limit or None)
    else:
        held_out = _arrays(args, "train", seen, subset="validation", **carve)
        novel = _arrays(args, "train", unseen, limit=args.validation_unseen * len(unseen))
        evaluation, info = [np.concatenate(pair) for pair in zip(held_out[:2], novel[:2])], held_out[2]
    return seen, unseen, pool, tuple(evaluation), info


def _features(model, images):
    import keras

    extractor = keras.Model(model.inputs, model.get_layer("predictions").input)
    return extractor.predict(images, batch_size=256, verbose=0)


def run_phase(args, split: int, phase: str, chosen=None) -> dict:
    """Every method's metrics in one phase: a grid per method (validation phase), or the
    chosen settings + the lambda sweep (final phase)."""
    from keras_apps.niwt.baselines import ALE, AttributeRegression
    from keras_apps.niwt.importance import fit_importance_mapping, neuron_importance
    from keras_apps.niwt.metrics import gzsl_metrics
    from keras_apps.niwt.pipeline import default_layer
    from keras_apps.niwt.transfer import add_unseen_classes

    attributes = dataset(args)[0].matrix
    backbone = train_backbone(args, split, phase)
    layer = args.layer or default_layer(backbone)
    seen, unseen, (pool_x, pool_y), (eval_x, eval_y), info = phase_data(args, split, phase)
    local = np.searchsorted(seen, pool_y)  # the network's output index of each pool image

    classes = sorted(seen + unseen)  # the phase's joint label space, column k = classes[k]
    position = {c: k for k, c in enumerate(classes)}
    y = np.array([position[c] for c in eval_y])

    def score(scores):
        metrics = gzsl_metrics(y, scores, [position[c] for c in seen], [position[c] for c in unseen])
        return {k: float(metrics[k]) for k in ("acc_s", "acc_u", "H")}

    out = {"seen": seen, "unseen": unseen, "images": int(len(eval_y))}
    joint = np.full((len(eval_x), len(classes)), -np.inf, "float32")
    joint[:, [position[c] for c in seen]] = backbone.predict(eval_x, batch_size=256, verbose=0)
    out["seen_only"] = {"default": score(joint)}

    train_features, eval_features = _features(backbone, pool_x), _features(backbone, eval_x)
    grid = {"attribute_regression": [{"alpha": a} for a in RIDGE_ALPHAS],
            "ale": [{"learning_rate": lr} for lr in ALE_LEARNING_RATES]}
    for method, settings in grid.items():
        out[method] = {}
        for setting in settings if chosen is None else [chosen[method]]:
            model = (AttributeRegression(**setting) if method == "attribute_regression"
                     else ALE(epochs=args.ale_epochs, seed=split, **setting))
            if method == "ale":
                model.fit(train_features, pool_y, attributes, seen)
            else:
                model.fit(train_features, pool_y, attributes)
            out[method][json.dumps(setting)] = score(model.scores(eval_features, attributes)[:, classes])

    started = time.time()
    importances = neuron_importance(backbone, layer, pool_x, local)
    mapping = fit_importance_mapping(attributes[seen], importances, local, seed=split, layer=layer)
    out["mapping"] = {"best_step": mapping.best_step, "validation_classes": [seen[c] for c in mapping.validation_classes],
                      "validation_rank_correlation": max((h.get("validation_rank_correlation", float("nan"))
                                                          for h in mapping.history), default=None)}
    niwt_grid = ([{"lam": lam, "learning_rate": lr} for lam in args.lams for lr in args.niwt_learning_rates]
                 if chosen is None else [{"lam": lam, "learning_rate": chosen["niwt"]["learning_rate"]} for lam in args.lams])
    out["niwt"] = {}
    for setting in niwt_grid:
        extended, history = add_unseen_classes(backbone, attributes[unseen], mapping, pool_x, seed=split,
                                               seen_ids=seen, unseen_ids=unseen, return_history=True,
                                               max_steps=args.max_steps, **setting)
        result = score(extended.predict(eval_x, batch_size=256, verbose=0))
        result["steps"] = history["steps"]
        out["niwt"][json.dumps(setting)] = result
    out["niwt_seconds"] = time.time() - started
    if phase == "final" and split == args.explain_split and args.explanations:
        best = add_unseen_classes(backbone, attributes[unseen], mapping, pool_x, seed=split, seen_ids=seen,
                                  unseen_ids=unseen, max_steps=args.max_steps, **chosen["niwt"])
        out["explanations"] = write_explanations(args, best, mapping, layer, eval_x, eval_y, info, seen, unseen)
    return out


def write_explanations(args, model, mapping, layer, images, labels, info, seen, unseen):
    """Grad-CAM + textual explanations of the model's decision on the first correctly
    classified test image of each unseen class and of one seen class (the class's first
    image when none is), as pictures under ``<output>/explanations``."""
    from keras_apps import data
    from keras_apps.niwt.explain import explain

    attributes = dataset(args)[0]
    predicted = model.predict(images, batch_size=256, verbose=0).argmax(axis=1)
    folder = pathlib.Path(args.output) / "explanations"
    written = []
    for class_id in list(unseen) + [seen[0]]:
        hits = np.flatnonzero((labels == class_id) & (predicted == class_id))
        if not len(hits):  # none correct: explain the decision on the class's first image
            hits = np.flatnonzero(labels == class_id)
        index = int(hits[0])
        raw = np.clip(data.denormalize(images[index], info), 0, 255).astype("uint8")
        name = attributes.class_names[class_id]
        result = explain(model, raw, layer=layer, mapping=mapping,
                         attribute_names=attributes.attribute_names, class_names=attributes.class_names,
                         preprocess=lambda picture: data.normalize(picture.astype("float32"), info),
                         path=folder / f"{'unseen' if class_id in unseen else 'seen'}_{name}.png", overwrite=True)
        written.append({"test_index": index, "class": name, "unseen": class_id in unseen,
                        "decision": result["class_name"],
                        "caption": result["caption"], "picture": pathlib.Path(result["path"]).name})
    return written


def choose(validation: dict) -> dict:
    """Each method's setting with the highest validation H."""
    chosen = {}
    for method in ("attribute_regression", "ale", "niwt"):
        best = max(validation[method].items(), key=lambda item: item[1]["H"])
        chosen[method] = json.loads(best[0])
    return chosen


def write_json(path: pathlib.Path, value) -> None:
    from keras_apps._atomic import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1) + "\n")


def run_split(args, split: int) -> None:
    output = pathlib.Path(args.output)
    files = [output / f"{m}-split{split}.json" for m in METHODS] + [output / f"lambda-split{split}.json"]
    if all(f.is_file() for f in files):
        print(f"split {split}: done", flush=True)
        return
    validation = run_phase(args, split, "validation")
    chosen = choose(validation)
    final = run_phase(args, split, "final", chosen)
    common = {"split": split, "seen": final["seen"], "unseen": final["unseen"],
              "data": args.data, "validation_classes": list(dataset(args)[1][split]["validation"]),
              "test_images": final["images"],
              "mapping": final["mapping"], "scale": scale(args)}
    for method in METHODS:
        setting = "default" if method == "seen_only" else json.dumps(chosen[method])
        test = final[method][setting] if method != "niwt" else final["niwt"][json.dumps(
            {"lam": chosen["niwt"]["lam"], "learning_rate": chosen["niwt"]["learning_rate"]})]
        write_json(output / f"{method}-split{split}.json", {
            **common, "method": method, "chosen": None if method == "seen_only" else chosen[method],
            "validation": validation[method], "test": test,
            **({"explanations": final["explanations"]} if method == "niwt" and "explanations" in final else {}),
        })
    write_json(output / f"lambda-split{split}.json", {**common, "learning_rate": chosen["niwt"]["learning_rate"],
                                                       "test": final["niwt"], "chosen_lam": chosen["niwt"]["lam"]})
    print(f"split {split}: " + ", ".join(
        f"{m} H={json.loads((output / f'{m}-split{split}.json').read_text())['test']['H']:.3f}" for m in METHODS),
        flush=True)


def scale(args) -> dict:
    return {"epochs": args.epochs, "limit_per_class": args.limit, "widths": list(args.widths),
            "fc_units": args.fc_units, "importance_images_per_class": args.importance_images,
            "validation_fraction": args.validation_fraction, "max_steps": args.max_steps}


def _mean_std(values):
    values = [100 * v for v in values]
    if len(values) < 2:
        return f"{values[0]:.1f}" if values else "-"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(output: pathlib.Path) -> str:
    rows = {m: sorted(output.glob(f"{m}-split*.json")) for m in METHODS}
    records = {m: [json.loads(p.read_text()) for p in paths] for m, paths in rows.items()}
    data = next((r.get("data", "cifar10") for rs in records.values() for r in rs), "cifar10")
    title = {"cifar10": "CIFAR-10", "awa2": "AwA2", "cub": "CUB-200-2011"}.get(data, data)
    lines = [f"# NIWT on {title} (generalised zero-shot, joint label space)", "",
             "Written by `tools/niwt_experiments.py --table` from the JSON files here. Mean ± standard deviation "
             "over the seen/unseen splits (`SPLITS` in the script), per-class mean top-1 accuracy (%) on the "
             "test split; every method's setting chosen by validation H (see the script's docstring).", "",
             "| method | splits | acc_s | acc_u | H | chosen settings |", "|---|---|---|---|---|---|"]
    for method in METHODS:
        rs = records[method]
        if not rs:
            continue
        settings = "; ".join(f"split {r['split']}: {json.dumps(r['chosen'])}" for r in rs if r["chosen"]) or "-"
        lines.append(f"| {LABELS[method]} | {len(rs)} | " + " | ".join(
            _mean_std([r["test"][k] for r in rs]) for k in ("acc_s", "acc_u", "H")) + f" | {settings} |")
    lines += ["", "Paper (Selvaraju et al. 2018, Table 2, NIWT-Attributes GZSL H, ImageNet-pretrained backbones, "
              "AwA2 / CUB with 85 / 312 expert attributes): " + ", ".join(f"{k} {v}" for k, v in PAPER.items()) + ".", ""]
    sweeps = [json.loads(p.read_text()) for p in sorted(output.glob("lambda-split*.json"))]
    if sweeps:
        lines += ["## Effect of lambda (test split, at each split's chosen learning rate)", "",
                  "| lambda | acc_s | acc_u | H |", "|---|---|---|---|"]
        lams = sorted({json.loads(k)["lam"] for r in sweeps for k in r["test"]})
        for lam in lams:
            picked = [v for r in sweeps for k, v in r["test"].items() if json.loads(k)["lam"] == lam]
            lines.append(f"| {lam:g} | " + " | ".join(_mean_std([p[k] for p in picked]) for k in ("acc_s", "acc_u", "H")) + " |")
        lines += ["", "Chosen lambda per split (validation H): " + ", ".join(
            f"split {r['split']}: {r['chosen_lam']:g}" for r in sweeps) + "."]
    if records["niwt"]:
        r = records["niwt"][0]
        lines += ["", f"Scale: {json.dumps(r['scale'])}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="cifar10", choices=("cifar10", "awa2", "cub"),
                   help="cifar10 (../shared/data), or AwA2 / CUB images on your machine (--data-dir)")
    p.add_argument("--splits", default="0,1,2", help="CIFAR-10: SPLITS ids; AwA2 / CUB: seeds of xlsa17's split")
    p.add_argument("--backbone", default="vgg_niwt_cifar", help="vgg_niwt_cifar or a registered model")
    p.add_argument("--weights", default=None, help="registered backbones: e.g. imagenet")
    p.add_argument("--layer", default=None, help="importance layer (default: block3_conv2 / the last conv)")
    p.add_argument("--image-size", type=int, default=224, help="AwA2 / CUB image size")
    p.add_argument("--attributes-dir", default=None, help="where zsl/awa2, zsl/cub are (default: data roots)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--limit", type=int, default=1000, help="training images per seen class (0: all)")
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument("--widths", default="16,32,64")
    p.add_argument("--fc-units", type=int, default=256)
    p.add_argument("--importance-images", type=int, default=200, help="training images per seen class")
    p.add_argument("--validation-unseen", type=int, default=300, help="images per validation class")
    p.add_argument("--test-limit", type=int, default=0, help="test images in all (0: the whole split)")
    p.add_argument("--ale-epochs", type=int, default=20)
    p.add_argument("--lams", default=",".join(f"{v:g}" for v in LAMS), help="the lambda grid")
    p.add_argument("--niwt-learning-rates", default=",".join(f"{v:g}" for v in NIWT_LEARNING_RATES),
                   help="NIWT's Adam step grid")
    p.add_argument("--max-steps", type=int, default=2000, help="cap on NIWT's unseen-weight iterations")
    p.add_argument("--no-explanations", dest="explanations", action="store_false")
    p.add_argument("--explain-split", type=int, default=0, help="the split whose final model is explained")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--work", default="runs/niwt_experiments")
    p.add_argument("--output", default=None, help="where the JSON files go (default results/niwt/<data>)")
    p.add_argument("--table", action="store_true", help="only rebuild README.md from the JSON files")
    args = p.parse_args(argv)
    args.widths = tuple(int(w) for w in args.widths.split(","))
    args.lams = tuple(float(v) for v in args.lams.split(","))
    args.niwt_learning_rates = tuple(float(v) for v in args.niwt_learning_rates.split(","))
    args.output = args.output or f"results/niwt/{args.data}"
    output = pathlib.Path(args.output)
    if not args.table:
        for split in (int(s) for s in args.splits.split(",")):
            run_split(args, split)
    from keras_apps._atomic import atomic_file

    output.mkdir(parents=True, exist_ok=True)
    with atomic_file(output / "README.md") as tmp:
        tmp.write_text(table(output))
    print((output / "README.md").read_text())


if __name__ == "__main__":
    main()
