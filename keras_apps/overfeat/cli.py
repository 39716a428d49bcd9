"""OverFeat (Sermanet et al., ICLR 2014): train a detector; classify, localize and detect objects in images.

    keras-apps overfeat fit --data bccd --epochs 10 --output runs/overfeat
    keras-apps overfeat classify photo.jpg --model runs/overfeat/classifier.keras --scales 1,1.2
    keras-apps overfeat localize blood.jpg --model runs/overfeat/system.keras --top-k 5
    keras-apps overfeat detect ../shared/data/detection/bccd/BCCD/JPEGImages/BloodImage_0000*.jpg \\
        --model runs/overfeat/system.keras --output detections

``fit`` is :func:`keras_apps.overfeat.fit`: the classifier (``--model``, a registered OverFeat
network, with the set's classes + background) on windows of the training split at each
``--scales``, then the box regressor on its frozen features, the detection thresholds chosen on
the validation split; it writes ``system.keras`` and ``system.json`` under ``--output`` (the
phases are resumable runs there: re-running the same command resumes an interrupted one and
keeps finished ones).

For the other actions, ``--model`` is a ``.keras`` file (``classify``: any classifier, or a registry name; ``localize``
and ``detect``: a system of :func:`keras_apps.overfeat.overfeat_system` -- classifier and box
regressor -- as :func:`keras_apps.overfeat.save_system` writes it, with its settings in the
``.json`` beside it: class names, background, preprocessing, scales, offset pooling and the
thresholds; the flags override them). Every image is evaluated densely at each ``--scales``
(factors of its size) with horizontal flips for ``classify``, optionally with
``--offset-pooling``; ``localize`` gives the ``--top-k`` merged (class, box) guesses,
``detect`` every merged box of the windows whose object probability reaches
``--score-threshold``. Under ``--output`` (default ``overfeat_<action>``) it writes each image
with its boxes or classes drawn (``<image stem>.png``, matplotlib) and ``predictions.json``
with every prediction (boxes in the image's pixels, x1, y1, x2, y2); existing files are kept
unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from keras_apps_cli import _global_options, _positive_float, _positive_int, _read_image

__all__ = ["register", "run"]

ACTIONS = ("fit", "classify", "localize", "detect")


def _scales(text: str) -> tuple:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated factors such as 1,1.4,2, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"scales must be factors > 0, got {text!r}")
    return values


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def register(parser: argparse.ArgumentParser) -> None:
    """Adds ``classify``, ``localize`` and ``detect`` to the ``keras-apps overfeat`` parser."""
    parser.description = __doc__.split("\n\n")[0]
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION",
                                    parser_class=type(parser))
    options = _global_options(suppress=True)
    p = actions.add_parser("fit", parents=[options], help="train the classifier and the box regressor on a VOC set",
                           description="Runs keras_apps.overfeat.fit (see keras-apps overfeat --help).")
    p.set_defaults(interrupted="interrupted; re-run the same command to resume (finished phases are kept)")
    p.add_argument("--model", default="overfeat_accurate_small", help="registered OverFeat network")
    p.add_argument("--data", default="bccd", help="bccd, or a PASCAL VOC folder (default bccd)")
    p.add_argument("--data-dir", default=None, help="where the dataset is")
    p.add_argument("--scales", type=_scales, default=(0.7, 1.0, 1.4, 2.0),
                   help="comma-separated image scales of the windows (default 0.7,1,1.4,2)")
    p.add_argument("--epochs", type=_positive_int, default=10, help="classifier epochs (default 10)")
    p.add_argument("--regressor-epochs", type=_positive_int, default=4, help="regressor epochs (default 4)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--learning-rate", type=_positive_float, default=0.02)
    p.add_argument("--limit", type=_positive_int, default=None, help="use only the first N images per split")
    p.add_argument("--no-tune", action="store_true", help="keep the default thresholds (no validation pass)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="runs/overfeat", help="run folder (default runs/overfeat)")
    helps = {
        "classify": "multi-scale + flip classification (spatial max per class, averaged)",
        "localize": "the top-k merged (class, box) guesses per image",
        "detect": "every merged box of the windows above the score threshold",
    }
    for action in ACTIONS[1:]:
        p = actions.add_parser(action, parents=[options], help=helps[action], description=helps[action])
        p.set_defaults(interrupted="interrupted")
        p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, GIF)")
        p.add_argument("--model", required=True,
                       help="a .keras file (with its .json settings), or a registry name for classify")
        p.add_argument("--scales", type=_scales, default=None,
                       help="comma-separated factors of the image size (default: the model's settings, else 1)")
        p.add_argument("--offset-pooling", action=argparse.BooleanOptionalAction, default=None,
                       help="offset max pooling on the last pooling layer (default: the model's settings)")
        p.add_argument("--class-names", default=None,
                       help="comma-separated object class names (default: the model's settings, else class_<i>)")
        p.add_argument("--preprocessing", default=None,
                       help="input preprocessing mode of raw pixels (default: the model's settings, else torch "
                            "= ImageNet mean/std)")
        p.add_argument("--top-k", type=_positive_int, default=5, help="guesses / classes reported (default 5)")
        if action != "classify":
            p.add_argument("--merge-threshold", type=_positive_float, default=None,
                           help="greedy merge stops when the best match score exceeds this")
            p.add_argument("--background", action=argparse.BooleanOptionalAction, default=None,
                           help="the classifier's last class is a background class (default: the settings)")
        if action == "detect":
            p.add_argument("--score-threshold", type=_probability, default=None,
                           help="a window's object probability needed (default: the settings, else 0.5)")
        p.add_argument("--output", default=None, help="folder for the pictures and predictions.json")
        p.add_argument("--overwrite", action="store_true", help="replace existing pictures / JSON")


def _model(args):
    import keras_apps
    from keras_apps.overfeat import load_system

    path = pathlib.Path(args.model)
    if path.suffix == ".keras" or path.exists():
        if path.is_dir():
            candidates = [path / "system.keras", path / "model.keras"]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise FileNotFoundError(f"{path} holds neither system.keras nor model.keras.")
            path = found[0]
        return load_system(path)
    if args.action != "classify":
        raise ValueError(
            f"--model {args.model!r}: {args.action} needs a trained system (.keras with a box regressor), "
            "see keras_apps.overfeat.save_system."
        )
    if args.model not in keras_apps.list_models():
        raise ValueError(f"--model {args.model!r} is neither a .keras file nor a registered model name.")
    model = keras_apps.build(args.model)
    return model, {}


def _settings(args, meta: dict, classes: int) -> dict:
    background = getattr(args, "background", None)
    background = meta.get("background", False) if background is None else background
    if args.action == "classify":
        background = meta.get("background", False)
    names = args.class_names.split(",") if args.class_names else meta.get("class_names")
    objects = classes - (1 if background else 0)
    if names is None:
        names = [f"class_{i}" for i in range(objects)]
    if len(names) != objects:
        raise ValueError(
            f"{len(names)} class names ({', '.join(names)}) for a model with {objects} object classes"
            f"{' (+ background)' if background else ''}."
        )
    return {
        "class_names": list(names),
        "background": bool(background),
        "preprocessing": args.preprocessing or meta.get("preprocessing", "torch"),
        "scales": tuple(args.scales or meta.get("scales") or (1.0,)),
        "offset_pooling": meta.get("offset_pooling", False) if args.offset_pooling is None else args.offset_pooling,
        "box_size_range": meta.get("box_size_range"),
        "merge_threshold": getattr(args, "merge_threshold", None) or meta.get("merge_threshold", 0.5),
        "score_threshold": (
            getattr(args, "score_threshold", None)
            if getattr(args, "score_threshold", None) is not None
            else meta.get("score_threshold", 0.5)
        ),
    }


def _targets(args, paths):
    output = pathlib.Path(args.output or f"overfeat_{args.action}")
    pictures = [output / f"{p.stem}.png" for p in paths]
    if len({p.name for p in pictures}) != len(pictures):
        raise ValueError("Two images share a file name stem; their pictures would overwrite each other.")
    existing = [p for p in [*pictures, output / "predictions.json"] if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass --overwrite to replace it.")
    return output, pictures


def _draw(image, picture: pathlib.Path, title: str, boxes=(), labels=()):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_apps._atomic import atomic_file

    fig, ax = plt.subplots(figsize=(image.shape[1] / 100 + 0.5, image.shape[0] / 100 + 0.7), dpi=100)
    ax.imshow(image)
    colours = plt.get_cmap("tab10")
    for box, (label, colour) in zip(boxes, labels):
        x1, y1, x2, y2 = (float(v) for v in box)
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colours(colour % 10), lw=2))
        ax.text(x1, y1, label, color="white", fontsize=7,
                bbox={"facecolor": colours(colour % 10), "alpha": 0.8, "pad": 1, "lw": 0})
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    with atomic_file(picture, suffix=".png") as tmp:
        fig.savefig(tmp, bbox_inches="tight", format="png")
    plt.close(fig)


def run(args) -> int:
    """Runs ``keras-apps overfeat classify|localize|detect``."""
    import numpy as np

    from keras_apps._atomic import atomic_file
    from keras_apps.data.preprocessing import check_mode, preprocess_images
    from keras_apps.overfeat import classify, inference

    if args.action == "fit":
        return fit(args)
    paths = [pathlib.Path(p) for p in args.images]
    output, pictures = _targets(args, paths)
    images = [_read_image(p) for p in paths]
    model, meta = _model(args)
    scores_shape = model.output["scores"].shape if isinstance(model.output, dict) else model.outputs[0].shape
    settings = _settings(args, meta, int(scores_shape[-1]))
    mode = check_mode(settings["preprocessing"], channels=3)

    def preprocess(x):
        return preprocess_images(np.asarray(x, np.float32), mode)

    names = settings["class_names"]
    records = []
    if args.action == "classify":
        dense = inference.dense_system(model, offset_pooling=settings["offset_pooling"])
        for path, image, picture in zip(paths, images, pictures):
            sizes = [inference._scale_size(s, *image.shape[:2]) for s in settings["scales"]]
            batch = preprocess(image[None])
            scores = classify.multi_scale_scores(
                dense, batch, scales=sizes, flips=True,
                output="scores" if isinstance(dense.output, dict) else None,
            )[0]
            if settings["background"]:
                scores = scores[:-1]
            order = np.argsort(-scores, kind="stable")[: args.top_k]
            top = [{"class": names[i], "class_id": int(i), "score": float(scores[i])} for i in order]
            records.append({"image": str(path), "top": top})
            _draw(image, picture, ", ".join(f"{t['class']} {t['score']:.2f}" for t in top))
    else:
        background = len(names) if settings["background"] else None
        common = {
            "scales": settings["scales"], "merge_threshold": settings["merge_threshold"],
            "background_class": background, "preprocess": preprocess,
            "offset_pooling": settings["offset_pooling"], "box_size_range": settings["box_size_range"],
        }
        if args.action == "localize":
            found = inference.localize(model, images, top_k=args.top_k, **common)
        else:
            found = inference.detect(model, images, score_threshold=settings["score_threshold"], **common)
        for path, image, picture, result in zip(paths, images, pictures, found):
            boxes = [
                {"class": names[int(c)], "class_id": int(c), "score": float(s), "box": [float(v) for v in b]}
                for b, c, s in zip(result["boxes"], result["classes"], result["scores"])
            ]
            records.append({"image": str(path), "boxes": boxes})
            _draw(image, picture, f"{path.name}: {len(boxes)} boxes",
                  [b["box"] for b in boxes], [(f"{b['class']} {b['score']:.2f}", b["class_id"]) for b in boxes])
    payload = {"action": args.action, "model": str(args.model), "settings": {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}, "predictions": records}
    with atomic_file(output / "predictions.json") as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    for record in records:
        if args.action == "classify":
            print(f"{record['image']}: " + ", ".join(f"{t['class']} {t['score']:.3f}" for t in record["top"]))
        else:
            print(f"{record['image']}: {len(record['boxes'])} boxes"
                  + "".join(f"\n  {b['class']} {b['score']:.3f} {[round(v, 1) for v in b['box']]}"
                            for b in record["boxes"][: args.top_k]))
    print(f"wrote {len(pictures)} pictures and {output / 'predictions.json'}")
    return 0


def fit(args) -> int:
    """``keras-apps overfeat fit``."""
    from keras_apps.overfeat import pipeline

    result = pipeline.fit(
        args.model, args.data, data_dir=args.data_dir, output_dir=args.output, scales=args.scales,
        epochs=args.epochs, regressor_epochs=args.regressor_epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, limit=args.limit, tune=not args.no_tune, seed=args.seed,
    )
    windows = ", ".join(f"{k} {v}" for k, v in result.windows["train"].items())
    validation = result.metrics["classifier"].get("validation") or {}
    print(f"training windows: {windows}")
    if "top1_error" in validation:
        print(f"classifier top-1 error on validation windows: {validation['top1_error']:.4f}")
    if "validation_mAP" in result.settings:
        print(f"validation mAP {result.settings['validation_mAP']:.4f} at score threshold "
              f"{result.settings['score_threshold']:g}, merge threshold {result.settings['merge_threshold']:g}")
    print(f"wrote {result.output_dir / 'system.keras'} and {result.output_dir / 'system.json'}")
    return 0
