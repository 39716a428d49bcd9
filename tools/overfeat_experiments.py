"""OverFeat localization and detection on BCCD (or any VOC set), measured.

    python tools/overfeat_experiments.py --seeds 0,1,2            # the committed run
    python tools/overfeat_experiments.py --table                  # rebuild README.md from the JSONs
    python tools/overfeat_experiments.py --data voc --model overfeat_accurate --output results/overfeat/voc  # GPU

Protocol. BCCD's ``ImageSets/Main`` lists: the classifier, the regressor and the merge
settings are fitted on ``train`` (205 images), chosen on ``val`` (87; a carve of ``trainval``)
and the ``test`` list (72) is evaluated once per trained system and configuration. Per seed:

Steps 1-3 are :func:`keras_apps.overfeat.fit` (one resumable run folder per seed).

1. **Windows** (:func:`keras_apps.overfeat.windows.sample_windows`): object windows at the
   training scales where each box's longer side is 30-100% of the field of view F (221 for
   the accurate model), jittered by up to half the dense stride, kept when > 50% of the box
   is inside (the paper's rule for the regressor), at most ``--max-per-class`` per class,
   image and scale (BCCD has ~11 red cells per image); background windows where no box of a
   valid size is more than half inside. Cropped once at F x F.
2. **Classifier**: the registered network (``--model``, default the narrow
   ``overfeat_accurate_small``) with classes + background, trained from scratch with
   ``keras_apps.training.fit`` (SGD momentum 0.9, cosine schedule, weight decay 5e-4; random
   horizontal flips; the paper's momentum 0.6 and step schedule need its 90 epochs),
   validation windows from ``val``; inputs preprocessed with ImageNet mean / std.
3. **Regressor** (:func:`keras_apps.overfeat.regression_head`): FC 512-128-4x3 on the frozen
   pool6 features, L2 loss (:class:`BoxRegressionLoss`) on the object windows, flips.
4. **Evaluation** of the joint dense network (:func:`keras_apps.overfeat.dense_system`) on
   whole images, single scale (``--single-scale``) vs multi-scale (``--test-scales``), with
   and without offset max pooling on pool6 (stride 36 -> 12 pixels): the detection score
   threshold and the greedy-merge threshold are chosen on ``val`` by mAP (boxes outside the
   regressor's 30-100% size range dropped), the localization merge threshold, minimum window
   probability and guess rule (boxes by summed confidence, or one per class) by val
   localization error; on ``test``:
   VOC AP per class at IoU 0.5 (all-points), mAP, and the localization error (ILSVRC rule:
   the image's main object -- the class of its largest box, the white cell in 344 of 364
   images -- must be among the top-k guesses with IoU >= 0.5 to one of its boxes), top-1 and
   top-5 (with 3 classes top-5 mostly tests the boxes). Plus the classifier's top-1 error
   on test windows.

``--data voc`` (tfds PASCAL VOC 2007: train / validation / test) or a VOC folder path runs the
same protocol on another set. Every finished step writes one JSON under ``--output`` (``<seed>/<config>.json``); a rerun
skips what exists and resumes interrupted training from its last finished epoch (the run
folders live under ``--runs``). ``--table`` rebuilds ``README.md`` from the JSONs only;
``--figures`` draws example test images with predicted and true boxes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import pickle
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

CONFIGS = (
    ("single", False),
    ("single", True),
    ("multi", False),
    ("multi", True),
)
#: Input preprocessing of the windows and images: ImageNet mean / std ("torch").
PREPROCESSING = "torch"
#: Object windows: boxes whose longer side is 30-100% of the field of view at a scale; the
#: same range filters the regressed boxes at evaluation (the regressor's domain).
SIZE_RANGE = (0.3, 1.0)
PAPER = (
    "Paper (ILSVRC 2013, full-size accurate model, ImageNet): classification 13.6% top-5 error "
    "(6 scales) vs 16.97% (single scale); localization error 29.9%; detection mAP 19.4% "
    "(competition), 24.3% (post-competition)."
)


def config_name(scales: str, offset: bool) -> str:
    return f"{scales}_{'offset' if offset else 'plain'}"


def _floats(text: str) -> tuple:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers > 0, got {text!r}")
    return values


def _probs(text: str) -> tuple:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1), got {text!r}") from None
    if not values or any(not 0 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers in [0, 1), got {text!r}")
    return values


def _seeds(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="bccd",
                   help="bccd (default), a VOC folder path, or the tfds PASCAL VOC: voc, voc/2012")
    p.add_argument("--data-dir", default=None, help="where the data is (a data root, or the tfds data dir)")
    p.add_argument("--download", action="store_true", help="let tfds download and prepare the set")
    p.add_argument("--model", default="overfeat_accurate_small")
    p.add_argument("--seeds", type=_seeds, default=(0, 1, 2))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--regressor-epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.02)
    p.add_argument("--train-scales", type=_floats, default=(0.7, 1.0, 1.4, 2.0))
    p.add_argument("--test-scales", type=_floats, default=(0.7, 1.0, 1.4, 2.0))
    p.add_argument("--single-scale", type=float, default=1.0)
    p.add_argument("--max-per-class", type=int, default=2)
    p.add_argument("--background-per-image", type=int, default=2)
    p.add_argument("--score-thresholds", type=_floats, default=(0.3, 0.5, 0.7))
    p.add_argument("--merge-thresholds", type=_floats, default=(0.25, 0.5, 1.0))
    p.add_argument("--max-boxes", type=int, default=1000,
                   help="most confident window boxes per image that enter the greedy merge (default 1000)")
    p.add_argument("--localization-min-scores", type=_probs, default=(0.0, 0.5, 0.9),
                   help="window probabilities below which localization drops a box, chosen on val")
    p.add_argument("--limit", type=int, default=0, help="images per split (0: all; toy runs)")
    p.add_argument("--output", default=str(REPO / "results" / "overfeat" / "bccd"))
    p.add_argument("--runs", default=str(REPO / "runs" / "overfeat_experiments"))
    p.add_argument("--table", action="store_true", help="only rebuild README.md from the JSONs")
    p.add_argument("--figures", action="store_true", help="draw example test images (seed of --seeds[0])")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ records


def _atomic_json(path: pathlib.Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read(path: pathlib.Path):
    return json.loads(path.read_text()) if path.exists() else None


def _settings(args) -> dict:
    keys = ("model", "epochs", "regressor_epochs", "batch_size", "learning_rate", "train_scales",
            "test_scales", "single_scale", "max_per_class", "background_per_image",
            "score_thresholds", "merge_thresholds", "localization_min_scores", "max_boxes", "limit")
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items() if k in keys}


# --------------------------------------------------------------------------------- data


def load_split(folder, split: str, limit: int):
    records = folder.records(split)
    if limit:
        records = records[:limit]
    images = [folder.image(record) for record in records]
    return records, images


def main_object(record) -> dict:
    """The ILSVRC-style localization target: every box of the class of the largest box."""
    boxes = np.asarray(record["boxes"], np.float32).reshape(-1, 4)
    classes = np.asarray(record["classes"]).reshape(-1)
    if len(boxes) == 0:
        return {"boxes": boxes, "classes": classes.astype(np.int32)}
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    main = classes[int(np.argmax(areas))]
    keep = classes == main
    return {"boxes": boxes[keep], "classes": classes[keep].astype(np.int32)}


# ----------------------------------------------------------------------------- training


def train_system(args, seed, folder, train, val, run_dir: pathlib.Path):
    """:func:`keras_apps.overfeat.pipeline.fit` of one seed (resumable; a finished phase is
    read back): ``(system, classifier, training record)``."""
    from keras_apps.overfeat import pipeline

    result = pipeline.fit(
        args.model, folder, output_dir=run_dir, scales=args.train_scales, epochs=args.epochs,
        regressor_epochs=args.regressor_epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, max_per_class=args.max_per_class,
        background_per_image=args.background_per_image, limit=args.limit or None,
        preprocessing=PREPROCESSING, size_range=SIZE_RANGE, tune=False, seed=seed,
        images={"train": train[1], "val": val[1], "validation": val[1]},
    )
    validation = result.metrics["classifier"].get("validation") or {}
    info = {
        "field_of_view": result.settings["field_of_view"], "stride": result.settings["stride"],
        "train_windows": result.windows["train"], "val_windows": result.windows["validation"],
        "window_val_error": validation.get("top1_error"),
        "classifier_metrics": _jsonable(result.metrics["classifier"]),
        "regressor_metrics": _jsonable(result.metrics["regressor"]),
    }
    return result.system, result.classifier, info


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _preprocess(x):
    from keras_apps.data.preprocessing import preprocess_images

    return preprocess_images(np.asarray(x, np.float32), PREPROCESSING)


# --------------------------------------------------------------------------- evaluation


def _at_scale(predictions, scale: float):
    """The per-scale entries of :func:`dense_predictions` at one scale factor."""
    return [[p for p in per_image if p["requested"] == scale] for per_image in predictions]


def _seconds_per_image(dense, images, scales) -> float:
    """Wall seconds of the dense network over ``images`` at ``scales`` (after a warm-up)."""
    from keras_apps.overfeat import dense_predictions

    dense_predictions(dense, images[:1], scales, preprocess=_preprocess)
    started = time.time()
    dense_predictions(dense, images, scales, preprocess=_preprocess)
    return (time.time() - started) / len(images)


def _top_guesses(merged: dict, k: int, distinct: bool) -> dict:
    """The first ``k`` of merged boxes sorted by score; with ``distinct`` each class's first
    only (``localize(..., distinct_classes=True)``)."""
    order = np.arange(len(merged["classes"]))
    if distinct:
        order = np.sort(np.unique(merged["classes"], return_index=True)[1])
    order = order[:k]
    return {key: merged[key][order] for key in ("boxes", "classes", "scores")}


def evaluate_config(args, predictions, folder, val, test, scales) -> dict:
    """Thresholds chosen on val -- detection (score, merge) by mAP, localization (merge,
    minimum window score) by top-5 localization error -- then the test split once."""
    from keras_apps.overfeat import detect_predictions, localize_predictions
    from keras_apps.overfeat.metrics import detection_ap, localization_error
    from keras_apps.overfeat.pipeline import choose_thresholds

    num_classes = len(folder.class_names)
    val_pred, test_pred = predictions
    val_map, score_threshold, merge_threshold = choose_thresholds(
        None, val[1], val[0], num_classes, scales=scales, score_thresholds=args.score_thresholds,
        merge_thresholds=args.merge_thresholds, predictions=val_pred, box_size_range=SIZE_RANGE,
        max_boxes=args.max_boxes,
    )
    val_main = [main_object(r) for r in val[0]]
    best = None
    for loc_merge in args.merge_thresholds:
        for min_score in args.localization_min_scores:
            # every merged box once; both guess rules read their top 5 from it
            merged = localize_predictions(val_pred, top_k=10**9, classes_per_scale=5, merge_threshold=loc_merge,
                                          min_score=min_score, background_class=num_classes,
                                          box_size_range=SIZE_RANGE, max_boxes=args.max_boxes)
            for distinct in (False, True):
                error = localization_error([_top_guesses(m, 5, distinct) for m in merged], val_main, top_k=5)
                if best is None or error < best[0]:
                    best = (error, loc_merge, min_score, distinct)
    val_loc_error, loc_merge, min_score, distinct = best
    found = detect_predictions(test_pred, score_threshold=score_threshold, merge_threshold=merge_threshold,
                               background_class=num_classes, box_size_range=SIZE_RANGE, max_boxes=args.max_boxes)
    ap = detection_ap(found, test[0], num_classes)
    guesses = localize_predictions(test_pred, top_k=5, classes_per_scale=5, merge_threshold=loc_merge,
                                   min_score=min_score, background_class=num_classes, box_size_range=SIZE_RANGE,
                                   distinct_classes=distinct, max_boxes=args.max_boxes)
    main = [main_object(r) for r in test[0]]
    return {
        "scales": list(scales), "test_images": len(test[1]), "val_images": len(val[1]),
        "val_mAP": float(val_map), "score_threshold": score_threshold, "merge_threshold": merge_threshold,
        "val_localization_error_top5": float(val_loc_error),
        "localization_merge_threshold": float(loc_merge), "localization_min_score": float(min_score),
        "localization_distinct_classes": bool(distinct),
        "test_mAP": float(ap["mAP"]),
        "test_ap": {name: _jsonable(float(v)) for name, v in zip(folder.class_names, ap["ap"])},
        "localization_error_top1": float(localization_error(guesses, main, top_k=1)),
        "localization_error_top5": float(localization_error(guesses, main, top_k=5)),
        "mean_detections": float(np.mean([len(f["scores"]) for f in found])),
    }


def _test_windows(args, classifier, folder, test, seed):
    """``(windows, field of view)``: the test images' windows, sampled as the training
    windows with seed ``20000 + seed``."""
    from keras_apps.overfeat import dense_geometry, to_dense
    from keras_apps.overfeat.windows import sample_windows

    geometry = dense_geometry(to_dense(classifier))
    fov, stride = int(geometry.field_of_view[0]), int(geometry.stride[0])
    windows = sample_windows(test[0], num_classes=len(folder.class_names), field_of_view=fov, stride=stride,
                             scales=args.train_scales, size_range=SIZE_RANGE, max_per_class=args.max_per_class,
                             background_per_image=args.background_per_image, seed=20_000 + seed)
    return windows, fov


def window_test_error(args, classifier, folder, test, seed) -> float:
    """Top-1 error of the classifier on windows of the test images (sampled as the training
    windows, seed ``20000 + seed``), single view."""
    from keras_apps.overfeat.windows import crop_windows

    windows, fov = _test_windows(args, classifier, folder, test, seed)
    crops = crop_windows(test[1], windows, fov)
    scores = classifier.predict(_preprocess(crops), batch_size=args.batch_size, verbose=0)
    return float(np.mean(np.argmax(scores, -1) != windows["label"]))


#: Context crops for the classification comparison: the window's side times this (221 -> 276 px).
CONTEXT = 1.25
#: Dense multi-scale classification sizes of a context crop (square, pixels).
CLASSIFICATION_SCALES = ((245, 245), (276, 276), (313, 313))


def classification_record(args, classifier, folder, test, seed) -> dict:
    """OverFeat's classification protocols (Table 2) on test windows: each sampled test
    window (objects and background, as the training windows; seed ``20000 + seed``) is cut
    with context (``CONTEXT`` times its side, at 276 px) and classified from the centre crop
    alone (the window itself), by 10-view averaging (4 corners + centre of 221 px, flipped)
    and densely at 3 scales with flips and offset pooling (spatial max per class, averaged);
    top-1 error of each."""
    from keras_apps.overfeat import multi_scale_scores, ten_view_scores, to_dense, top_k_error
    from keras_apps.overfeat.windows import Windows, crop_windows

    windows, fov = _test_windows(args, classifier, folder, test, seed)
    side = int(round(fov * CONTEXT))
    centre = (windows["window"][:, :2] + windows["window"][:, 2:]) / 2
    half = (windows["window"][:, 2:3] - windows["window"][:, 0:1]) * CONTEXT / 2
    context = Windows({**windows, "window": np.concatenate([centre - half, centre + half], 1).astype(np.float32)})
    crops = _preprocess(crop_windows(test[1], context, side))
    labels = windows["label"]
    start = (side - fov) // 2
    started = time.time()
    single = classifier.predict(crops[:, start:start + fov, start:start + fov], batch_size=args.batch_size, verbose=0)
    single_seconds = time.time() - started
    started = time.time()
    ten = ten_view_scores(classifier, crops, batch_size=args.batch_size)
    ten_seconds = time.time() - started
    dense = to_dense(classifier, offset_pooling=True)
    started = time.time()
    multi = multi_scale_scores(dense, crops, scales=CLASSIFICATION_SCALES, flips=True, batch_size=args.batch_size)
    multi_seconds = time.time() - started
    count = len(labels)
    return {
        "windows": int(count),
        "top1_error": {"single_view": top_k_error(single, labels, 1), "ten_view": top_k_error(ten, labels, 1),
                       "multi_scale": top_k_error(multi, labels, 1)},
        "seconds_per_window": {"single_view": single_seconds / count, "ten_view": ten_seconds / count,
                               "multi_scale": multi_seconds / count},
        "context": CONTEXT, "multi_scales": [list(s) for s in CLASSIFICATION_SCALES],
    }


def run_seed(args, seed, folder, splits, output: pathlib.Path) -> None:
    """Trains (or reads back) one seed's system and writes its training record and one
    record per configuration. The network runs once per pooling mode over val and test at
    the test scales; the single-scale configurations read the ``--single-scale`` entries."""
    from keras_apps.overfeat import dense_predictions, dense_system

    seed_dir = output / f"seed{seed}"
    wanted = {(s, o): seed_dir / f"{config_name(s, o)}.json" for s, o in CONFIGS}
    if all(p.exists() for p in [*wanted.values(), seed_dir / "training.json", seed_dir / "classification.json"]):
        print(f"seed {seed}: done", flush=True)
        return
    train, val, test = splits
    system, classifier, info = train_system(args, seed, folder, train, val,
                                            pathlib.Path(args.runs) / f"seed{seed}")
    if not (seed_dir / "training.json").exists():
        info["window_test_error"] = window_test_error(args, classifier, folder, test, seed)
        _atomic_json(seed_dir / "training.json", {"seed": seed, "settings": _settings(args), **info})
    if not (seed_dir / "classification.json").exists():
        record = classification_record(args, classifier, folder, test, seed)
        _atomic_json(seed_dir / "classification.json", {"seed": seed, "settings": _settings(args), **record})
        print(f"seed {seed} classification: {record['top1_error']}", flush=True)
    scales = tuple(args.test_scales)
    if args.single_scale not in scales:
        scales = (*scales, args.single_scale)
    for offset in (False, True):
        todo = [(name, wanted[(name, offset)]) for name in ("single", "multi") if not wanted[(name, offset)].exists()]
        if not todo:
            continue
        dense = dense_system(system, offset_pooling=offset)
        cache = pathlib.Path(args.runs) / f"seed{seed}" / f"predictions_{'offset' if offset else 'plain'}.pkl"
        key = {"scales": list(scales), "val": [r["id"] for r in val[0]], "test": [r["id"] for r in test[0]]}
        cached = pickle.loads(cache.read_bytes()) if cache.exists() else None
        if cached is not None and cached["key"] == key:
            predictions, network_seconds = cached["predictions"], cached["seconds"]
        else:
            started = time.time()
            predictions = [dense_predictions(dense, split[1], scales, preprocess=_preprocess) for split in (val, test)]
            network_seconds = time.time() - started
            tmp = cache.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps({"key": key, "predictions": predictions, "seconds": network_seconds}))
            os.replace(tmp, cache)
        for name, path in todo:
            chosen = (args.single_scale,) if name == "single" else tuple(args.test_scales)
            if name == "single":
                pred = tuple(_at_scale(p, args.single_scale) for p in predictions)
            else:
                pred = tuple([[q for q in per_image if q["requested"] in chosen] for per_image in p]
                             for p in predictions)
            record = evaluate_config(args, pred, folder, val, test, chosen)
            record.update(
                offset_pooling=offset,
                test_seconds_per_image=_seconds_per_image(dense, test[1][:8], chosen),
                network_seconds_val_and_test=network_seconds,
            )
            _atomic_json(path, {"seed": seed, "config": config_name(name, offset), "settings": _settings(args), **record})
            print(f"seed {seed} {config_name(name, offset)}: mAP {record['test_mAP']:.3f}, localization error "
                  f"{record['localization_error_top5']:.3f}", flush=True)


# -------------------------------------------------------------------------------- table


def _mean_sd(values) -> str:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "n/a"
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def build_table(output: pathlib.Path) -> str:
    records = [json.loads(p.read_text()) for p in sorted(output.glob("seed*/*.json"))
               if p.name not in ("training.json", "classification.json")]
    classification = [json.loads(p.read_text()) for p in sorted(output.glob("seed*/classification.json"))]
    training = [json.loads(p.read_text()) for p in sorted(output.glob("seed*/training.json"))]
    if not records:
        raise SystemExit(f"No result JSONs under {output}; run the experiment first.")
    seeds = sorted({r["seed"] for r in records})
    class_names = list(records[0]["test_ap"])
    lines = [
        "# OverFeat on BCCD (measured)",
        "",
        f"Rebuilt by `python tools/overfeat_experiments.py --table` from {len(records)} JSONs "
        f"(seeds {', '.join(map(str, seeds))}); mean ± sd over seeds, percent. The test list "
        f"({records[0].get('test_images', 72)} images) is evaluated once per trained system and configuration; "
        f"the thresholds are chosen on the val list ({records[0].get('val_images', 87)} images).",
        "",
        "| configuration | mAP | " + " | ".join(f"AP {c}" for c in class_names)
        + " | loc. error top-1 | loc. error top-5 | s / image |",
        "|---" * (5 + len(class_names)) + "|",
    ]
    for scales_name, offset in CONFIGS:
        name = config_name(scales_name, offset)
        rows = [r for r in records if r["config"] == name]
        if not rows:
            continue
        scales = ", ".join(f"{s:g}" for s in rows[0]["scales"])
        label = f"{'single' if scales_name == 'single' else 'multi'}-scale ({scales}), {'offset pooling' if offset else 'plain pooling'}"
        cells = [
            _mean_sd([r["test_mAP"] for r in rows]),
            *[_mean_sd([r["test_ap"][c] for r in rows]) for c in class_names],
            _mean_sd([r["localization_error_top1"] for r in rows]),
            _mean_sd([r["localization_error_top5"] for r in rows]),
            f"{np.mean([r['test_seconds_per_image'] for r in rows]):.2f}",
        ]
        lines.append(f"| {label} (n={len(rows)}) | " + " | ".join(cells) + " |")
    by = {(r["config"], r["seed"]): r for r in records}

    def paired(a, b, key):
        diffs = [by[(a, seed)][key] - by[(b, seed)][key] for seed in seeds if (a, seed) in by and (b, seed) in by]
        return _mean_sd(diffs) + f" (n={len(diffs)})" if diffs else "n/a"

    comparisons = (
        ("multi-scale - single-scale, plain pooling", "multi_plain", "single_plain"),
        ("multi-scale - single-scale, offset pooling", "multi_offset", "single_offset"),
        ("offset - plain pooling, single scale", "single_offset", "single_plain"),
        ("offset - plain pooling, multi-scale", "multi_offset", "multi_plain"),
    )
    lines += ["", "Differences paired by seed (points):", "",
              "| comparison | mAP | loc. error top-5 |", "|---|---|---|"]
    for label, a, b in comparisons:
        lines.append(f"| {label} | {paired(a, b, 'test_mAP')} | {paired(a, b, 'localization_error_top5')} |")
    if training:
        lines += [
            "",
            "Classifier top-1 error on test windows (object + background windows, single view): "
            + _mean_sd([t.get("window_test_error") for t in training]) + ".",
            "Training windows per class (seed "
            f"{training[0]['seed']}): " + ", ".join(f"{k} {v}" for k, v in training[0]["train_windows"].items())
            + f"; field of view {training[0]['field_of_view']} px, stride {training[0]['stride']} px.",
            "Chosen on val -- detection score / merge threshold; localization merge threshold / minimum "
            "window probability: "
            + "; ".join(f"{r['config']} seed {r['seed']}: {r['score_threshold']:g} / {r['merge_threshold']:g}; "
                        f"{r.get('localization_merge_threshold', r['merge_threshold']):g} / "
                        f"{r.get('localization_min_score', 0):g}"
                        f"{', one box per class' if r.get('localization_distinct_classes') else ''}"
                        for r in records) + ".",
        ]
    if classification:
        names = {"single_view": "centre crop (the window)", "ten_view": "10 views (4 corners + centre, flipped)",
                 "multi_scale": "dense, 3 scales + flips, offset pooling"}
        lines += [
            "",
            f"Classification of test windows with context ({classification[0]['context']:g}x the window, "
            f"{classification[0]['windows']} windows of seed {classification[0]['seed']}; objects and background), "
            f"top-1 error, n={len(classification)} seeds:",
            "",
            "| protocol | top-1 error | ms / window |",
            "|---|---|---|",
        ]
        for key, label in names.items():
            lines.append(f"| {label} | {_mean_sd([c['top1_error'][key] for c in classification])} | "
                         f"{1000 * np.mean([c['seconds_per_window'][key] for c in classification]):.1f} |")
    lines += ["", PAPER, ""]
    return "\n".join(lines)


def write_table(output: pathlib.Path) -> pathlib.Path:
    text = build_table(output)
    path = output / "README.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def draw_figures(args, seed, folder, splits, output: pathlib.Path, count: int = 4) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_apps.overfeat import dense_predictions, dense_system, detect_predictions

    record = _read(output / f"seed{seed}" / f"{config_name('multi', True)}.json")
    if record is None:
        raise SystemExit(f"seed {seed} has no multi_offset result under {output}; run the experiment first.")
    train, val, test = splits
    system, _, _ = train_system(args, seed, folder, train, val, pathlib.Path(args.runs) / f"seed{seed}")
    dense = dense_system(system, offset_pooling=True)
    images, records = test[1][:count], test[0][:count]
    pred = dense_predictions(dense, images, args.test_scales, preprocess=_preprocess)
    found = detect_predictions(pred, score_threshold=record["score_threshold"],
                               merge_threshold=record["merge_threshold"],
                               background_class=len(folder.class_names))
    colours = ("tab:red", "tab:blue", "tab:green", "tab:orange")
    figures = output / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    paths = []
    for image, rec, det in zip(images, records, found):
        fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=80)
        ax.imshow(image)
        for box, c in zip(rec["boxes"], rec["classes"]):
            ax.add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False,
                                       ec=colours[c % 4], lw=1, ls="--"))
        keep = det["scores"] >= np.sort(det["scores"])[-min(len(det["scores"]), 30)] if len(det["scores"]) else []
        for box, c, s in zip(det["boxes"][keep], det["classes"][keep], det["scores"][keep]):
            ax.add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False,
                                       ec=colours[c % 4], lw=2))
            ax.text(box[0], box[1], f"{folder.class_names[c]} {s:.1f}", color=colours[c % 4], fontsize=6)
        ax.set_title(f"{pathlib.Path(rec['image_path']).stem}: predicted (solid) and true (dashed)", fontsize=8)
        ax.axis("off")
        path = figures / f"{pathlib.Path(rec['image_path']).stem}.png"
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    args = parse_args(argv)
    output = pathlib.Path(args.output)
    if args.table:
        print(write_table(output))
        return 0
    from keras_apps.data import detection_folder

    folder = detection_folder(args.data, data_dir=args.data_dir, download=args.download)
    validation = next((s for s in ("val", "validation") if s in folder.splits), None)
    if validation is None or "train" not in folder.splits or "test" not in folder.splits:
        raise SystemExit(f"{folder.root} needs train, val (or validation) and test splits; it has {folder.splits}.")
    splits = tuple(load_split(folder, split, args.limit) for split in ("train", validation, "test"))
    if args.figures:
        for path in draw_figures(args, args.seeds[0], folder, splits, output):
            print(path)
        return 0
    for seed in args.seeds:
        run_seed(args, seed, folder, splits, output)
    print(write_table(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
