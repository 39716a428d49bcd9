"""NIWT (Selvaraju et al., ECCV 2018): zero-shot classes from attributes, with explanations.

    keras-apps niwt fit --data cifar10 --unseen 3,9 --epochs 12 --output runs/niwt
    keras-apps niwt evaluate --run runs/niwt
    keras-apps niwt explain photo.jpg --run runs/niwt --top-k 5 --output explanations

``fit`` is :func:`keras_apps.niwt.fit`: the seen-class network (``--model``; its training run
is resumable under ``<output>/seen``), neuron importances at ``--layer``, the attribute ->
importance mapping and the unseen-class weights (``--lam``), then the GZSL metrics (acc_s,
acc_u, H) on the test split; it writes ``niwt.keras`` (one model over all classes, output
k = class k), ``mapping.npz`` and ``niwt.json`` under ``--output``. ``evaluate`` scores a
finished run on a split. ``explain`` writes, per image, a picture with its Grad-CAM heatmap
(of the decision, or of ``--class``) and the caption of the top attributes, plus
``explanations.json``; existing files are kept unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from keras_apps_cli import _global_options, _non_negative_float, _positive_float, _positive_int, _read_image

__all__ = ["register", "run"]

ACTIONS = ("fit", "evaluate", "explain")


def _ids(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated class ids such as 3,9, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one class id, got {text!r}")
    return values


def register(parser: argparse.ArgumentParser) -> None:
    """Adds ``fit``, ``evaluate`` and ``explain`` to the ``keras-apps niwt`` parser."""
    parser.description = __doc__.split("\n\n")[0]
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=type(parser))
    options = _global_options(suppress=True)
    p = actions.add_parser("fit", parents=[options], help="seen-class network, mapping and unseen weights",
                           description="Runs keras_apps.niwt.fit (see keras-apps niwt --help).")
    p.set_defaults(interrupted="interrupted; re-run the same command to resume the seen-class training")
    p.add_argument("--model", default="vgg_niwt_cifar", help="vgg_niwt_cifar or a registered model")
    p.add_argument("--data", default="cifar10", help="dataset name or image folder (default cifar10)")
    p.add_argument("--data-dir", default=None, help="where the dataset is")
    p.add_argument("--attributes", default=None, help="class-attribute matrix: cifar10, awa2, cub (default: --data)")
    p.add_argument("--unseen", type=_ids, default=(3, 9), help="comma-separated unseen class ids (default 3,9)")
    p.add_argument("--layer", default=None, help="importance layer (default: the last convolution)")
    p.add_argument("--lam", type=_non_negative_float, default=1e-5, help="L2 strength (default 1e-5)")
    p.add_argument("--learning-rate", type=_positive_float, default=1e-2, help="unseen-weight Adam step")
    p.add_argument("--importance-images", type=_positive_int, default=100, help="training images per seen class")
    p.add_argument("--epochs", type=_positive_int, default=12, help="seen-class training epochs")
    p.add_argument("--batch-size", type=_positive_int, default=128)
    p.add_argument("--limit", type=_positive_int, default=None, help="training images per seen class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="runs/niwt", help="run folder (default runs/niwt)")
    p.add_argument("--overwrite", action="store_true", help="recompute a finished run with other settings")

    p = actions.add_parser("evaluate", parents=[options], help="GZSL acc_s, acc_u, H of a finished run",
                           description="GZSL metrics of a finished run on a split of its dataset.")
    p.set_defaults(interrupted="interrupted")
    p.add_argument("--run", required=True, help="a niwt fit --output folder")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=_positive_int, default=None, help="use only the first N images")
    p.add_argument("--data-dir", default=None)

    p = actions.add_parser("explain", parents=[options], help="Grad-CAM and top attributes of decisions",
                           description="Writes a captioned Grad-CAM picture per image and explanations.json.")
    p.set_defaults(interrupted="interrupted")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, GIF)")
    p.add_argument("--run", required=True, help="a niwt fit --output folder")
    p.add_argument("--class", dest="class_name", default=None, help="explain this class (default: the decision)")
    p.add_argument("--top-k", type=_positive_int, default=5, help="attributes in each caption (default 5)")
    p.add_argument("--output", default="niwt_explain", help="folder for the pictures and explanations.json")
    p.add_argument("--overwrite", action="store_true", help="replace existing pictures / JSON")


def _preprocess(meta: dict):
    """Raw RGB picture -> the run's model input (resized to its image shape, then its
    preprocessing: the training data's mean/std for "dataset")."""
    import numpy as np
    import tensorflow as tf

    from keras_apps.data import normalize
    from keras_apps.data.channels import convert_channels
    from keras_apps.data.preprocessing import preprocess_images

    height, width = meta["image_shape"][:2]
    mode = meta["preprocessing"]

    def preprocess(picture):
        x = tf.image.resize(np.asarray(picture, np.float32), (height, width)).numpy()
        x = convert_channels(x, meta["image_shape"][2])
        if mode == "dataset":
            return normalize(x, meta["mean"], meta["std"])
        return preprocess_images(x, mode)

    return preprocess


def fit(args) -> int:
    from keras_apps import niwt

    result = niwt.fit(args.model, args.data, attributes=args.attributes, unseen=args.unseen, layer=args.layer,
                      lam=args.lam, learning_rate=args.learning_rate, importance_images=args.importance_images,
                      epochs=args.epochs, batch_size=args.batch_size, limit=args.limit, seed=args.seed,
                      output_dir=args.output, data_dir=args.data_dir, overwrite=args.overwrite)
    test = result.metrics.get("test", {})
    print(json.dumps({"output": str(result.output_dir), **{k: test.get(k) for k in ("acc_s", "acc_u", "H")}}))
    return 0


def evaluate(args) -> int:
    from keras_apps import niwt

    model, _, meta = niwt.load_run(args.run)
    metrics = niwt.evaluate(model, meta["settings"]["data"], seen=meta["seen"], unseen=meta["unseen"],
                            split=args.split, limit=args.limit, data_dir=args.data_dir)
    print(json.dumps({"run": str(args.run), "split": args.split, **metrics}))
    return 0


def explain(args) -> int:
    from keras_apps._atomic import atomic_file
    from keras_apps import niwt

    paths = [pathlib.Path(p) for p in args.images]
    output = pathlib.Path(args.output)
    pictures = [output / f"{p.stem}.png" for p in paths]
    if len({p.name for p in pictures}) != len(pictures):
        raise ValueError("Two images share a file name stem; their pictures would overwrite each other.")
    existing = [p for p in [*pictures, output / "explanations.json"] if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass --overwrite to replace it.")
    model, mapping, meta = niwt.load_run(args.run)
    names = meta["class_names"]
    class_id = None
    if args.class_name is not None:
        if args.class_name not in names:
            raise ValueError(f"--class {args.class_name!r} is not one of the run's classes: {', '.join(names)}.")
        class_id = names.index(args.class_name)
    preprocess = _preprocess(meta)
    records = []
    for path, picture in zip(paths, pictures):
        result = niwt.explain(model, _read_image(path), layer=meta["layer"], mapping=mapping,
                              attribute_names=meta["attribute_names"], class_names=names, class_id=class_id,
                              top_k=args.top_k, path=picture, overwrite=args.overwrite, preprocess=preprocess)
        records.append({"image": str(path), "picture": str(picture), "class": result["class_name"],
                        "unseen": result["class_id"] in meta["unseen"], "probability": result["probability"],
                        "attributes": [[a, float(s)] for a, s in result["attributes"]], "caption": result["caption"]})
        print(f"{path.name}: {result['caption']}")
    with atomic_file(output / "explanations.json") as tmp:
        tmp.write_text(json.dumps({"run": str(args.run), "explanations": records}, indent=1) + "\n")
    return 0


def run(args) -> int:
    """Runs ``keras-apps niwt fit|evaluate|explain``."""
    return {"fit": fit, "evaluate": evaluate, "explain": explain}[args.action](args)
