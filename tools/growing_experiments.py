"""The experiments of "Growing a Brain" (Wang, Ramanan, Hebert, CVPR 2017), measured at a
chosen scale: Tables 1-3 (developmental networks vs fine-tuning, unit counts, scenarios,
with and without normalisation+scaling), Table 4 (learning without forgetting), Tables 6-8
(cumulative growth over two target tasks vs a fixed wide network) and the analyses of
Sec. 5.2 (t-SNE, maximally activating images of old and new units, learning curves).

Per seed it pretrains a source network on the source task, then grows / transfers it and
fine-tunes every variant on target task 1 with :func:`keras_apps.growth.finetune`; the
cumulative rows continue on target task 2. Every finished run is one JSON file
``<output>/<setting>/<row>-seed<seed>.json``; a re-run skips them (trained models are kept
under ``--work`` for the runs that start from them), and ``README.md`` (mean and standard
deviation over seeds) and the plots are rebuilt from the JSON files alone (``--table``).

Protocol: validation carved from each training split (stratified), no model selection on
it beyond what is reported; each test split is evaluated once per model, at the end, in
full (``--limit`` only limits the training split).

    # CPU scale (what results/growing/ holds): CIFAR-10 and Fashion-MNIST from ../shared/data
    python tools/growing_experiments.py --seeds 0,1,2
    # the paper's setting on a GPU: VGG-16 with ImageNet weights, SUN-397 then MIT-67 (tfds)
    python tools/growing_experiments.py --setting paper --source-model vgg16 \\
        --source-weights imagenet --target1 tfds:sun397 --target2 tfds:mit67 \\
        --image-size 224 --limit 0 --units 1024,2048 --depth-units 4096,4096 --download
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: CIFAR-10 ids: the source task is the four vehicles and two animals, target 1 the other
#: four animals (a related task with little data, like SUN-397 after ImageNet); target 2 is
#: Fashion-MNIST (a distant domain, grey images replicated to RGB and resized to 32x32).
SOURCE_CLASSES = (0, 1, 8, 9, 2, 3)  # airplane, automobile, ship, truck, bird, cat
TARGET1_CLASSES = (4, 5, 6, 7)  # deer, dog, frog, horse

LABELS = {
    "ft": "fine-tuning (classic, All)",
    "da": "DA-CNN",
    "wa": "WA-CNN",
    "dwa": "DWA-CNN",
    "wwa": "WWA-CNN",
    "wa_nonorm": "WA-CNN without normalisation+scaling",
    "da_nonorm": "DA-CNN without normalisation+scaling",
}
#: The paper's claims (Sec. 5) that the tables test.
CLAIMS = (
    "WA-CNN with normalisation+scaling beats classic fine-tuning and beats DA-CNN (Tables 1-2)",
    "without normalisation+scaling WA-CNN gains little or loses (Table 3)",
    "WWA-CNN is the best variant (Table 1)",
    "cumulative growth beats a fixed wide network fine-tuned directly and the wide network "
    "trained from scratch (Tables 6-8)",
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", default="cifar10", help="name of the results folder")
    p.add_argument("--source-data", default="cifar10")
    p.add_argument("--source-classes", default=",".join(map(str, SOURCE_CLASSES)))
    p.add_argument("--target1", default="cifar10")
    p.add_argument("--target1-classes", default=",".join(map(str, TARGET1_CLASSES)))
    p.add_argument("--target2", default="fashion_mnist", help="grey sets are delivered as RGB")
    p.add_argument("--target2-classes", default="")
    p.add_argument("--source-model", default="small_alexnet",
                   help="'small_alexnet' (the CPU-scale network below) or a registry name")
    p.add_argument("--source-weights", default=None, help="weights of a registry source model")
    p.add_argument("--width", type=int, default=128, help="fc6/fc7 units of small_alexnet")
    p.add_argument("--filters", default="16,32,64", help="conv widths of small_alexnet")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--download", action="store_true")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--source-limit", type=int, default=6000)
    p.add_argument("--limit", type=int, default=2000, help="target training images (0 = all)")
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--source-epochs", type=int, default=10)
    p.add_argument("--source-learning-rate", type=float, default=0.01)
    p.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs per target task")
    p.add_argument("--learning-rate", type=float, default=0.001,
                   help="base fine-tuning rate (the paper's; new layers learn at 10x)")
    p.add_argument("--retrain-epochs", type=int, default=2, help="LwF re-training on source data")
    p.add_argument("--units", default="32,64", help="new units S (two sizes)")
    p.add_argument("--depth-units", default="64,128", help="fc_a sizes of DA-CNN (two sizes)")
    p.add_argument("--scale-init", type=float, default=10.0)
    p.add_argument("--stages", default="table1,scenarios,lwf,cumulative,analysis")
    p.add_argument("--rows", default="", help="only the Table-1 rows of these kinds (ft,da,wa,dwa,wwa,wa_nonorm)")
    p.add_argument("--scenarios", default="new,fc7-new,fc6-new", help="the scenarios besides 'all'")
    p.add_argument("--output", default=str(ROOT / "results" / "growing"))
    p.add_argument("--work", default=str(ROOT / "runs" / "growing_experiments"))
    p.add_argument("--table", action="store_true", help="only rebuild the table and plots")
    return p.parse_args(argv)


def _ids(text):
    return [int(v) for v in text.split(",") if v.strip()] or None


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def small_alexnet(classes, *, width=128, filters=(16, 32, 64), image_size=32, name="small_alexnet",
                  fc7_width=None):
    """AlexNet's layout at CIFAR scale: three conv-BN-ReLU-pool stages, then fc6, fc7 (ReLU,
    dropout 0.5) and the classifier ``predictions`` (the layer names of AlexNet, so the
    paper's scenarios "fc7-new" / "fc6-new" apply)."""
    import keras

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    for index, f in enumerate(filters, start=1):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = keras.layers.BatchNormalization(name=f"conv{index}_bn")(x)
        x = keras.layers.Activation("relu", name=f"conv{index}_relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(width, activation="relu", name="fc6")(x)
    x = keras.layers.Dropout(0.5, name="drop6")(x)
    x = keras.layers.Dense(fc7_width or width, activation="relu", name="fc7")(x)
    x = keras.layers.Dropout(0.5, name="drop7")(x)
    x = keras.layers.Dense(classes, name="predictions")(x)
    x = keras.layers.Activation("softmax", name="predictions_activation", dtype="float32")(x)
    return keras.Model(inputs, x, name=name)


_TEST_CACHE: dict = {}
#: Arguments that choose what runs, not how: left out of the settings each record keeps.
_NOT_SETTINGS = ("seeds", "stages", "rows", "scenarios", "table", "output", "work")


class Runner:
    """The runs of one seed; each trained model is kept under ``--work`` for its dependants."""

    def __init__(self, args, seed):
        self.args, self.seed = args, seed
        self.folder = pathlib.Path(args.output) / args.setting
        self.work = pathlib.Path(args.work) / args.setting / f"seed{seed}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.units = _ints(args.units)
        self.depth_units = _ints(args.depth_units)

    # ---------------------------------------------------------------- data and records

    def task(self, which):
        a = self.args
        if which == "source":
            return dict(data=a.source_data, classes=_ids(a.source_classes), limit=a.source_limit or None)
        if which == "target1":
            return dict(data=a.target1, classes=_ids(a.target1_classes), limit=a.limit or None)
        return dict(data=a.target2, classes=_ids(a.target2_classes), limit=a.limit or None)

    def _data_kwargs(self, which):
        t = self.task(which)
        kwargs = dict(classes=t["classes"], data_dir=self.args.data_dir, download=self.args.download,
                      image_size=(self.args.image_size, self.args.image_size), channels=3)
        return t["data"], t["limit"], kwargs

    def record_path(self, row):
        return self.folder / f"{row}-seed{self.seed}.json"

    def write(self, row, record):
        from keras_apps.training import atomic_write_text

        settings = {key: value for key, value in vars(self.args).items() if key not in _NOT_SETTINGS}
        record = {"row": row, "seed": self.seed, **record, "settings": settings}
        atomic_write_text(self.record_path(row), json.dumps(record, indent=2) + "\n")
        print(f"[seed {self.seed}] {row}: {json.dumps({k: v for k, v in record.items() if 'accuracy' in k})}",
              flush=True)
        return record

    def test_arrays(self, which):
        """The whole test split of a task as numpy arrays, decoded once per process."""
        import numpy as np

        from keras_apps import data as kdata

        key = (which, self.args.setting)
        if key not in _TEST_CACHE:
            data, _, kwargs = self._data_kwargs(which)
            info = kdata.dataset_info(data, data_dir=kwargs["data_dir"], classes=kwargs["classes"],
                                      download=kwargs["download"])
            split = "test" if "test" in info.splits else "validation"
            ds, _ = kdata.load(data, split, batch_size=500, augment=False, shuffle=False, **kwargs)
            images, labels = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds])
            _TEST_CACHE[key] = (np.concatenate(images), np.concatenate(labels))
        return _TEST_CACHE[key]

    def test_accuracy(self, model, which, output=None):
        """Top-1 accuracy on the whole test split of ``which`` (evaluated once per model)."""
        import tensorflow as tf

        from keras_apps import training

        images, labels = self.test_arrays(which)
        ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(256)
        return training.evaluate(model, ds, verbose=0, output=output)["top1_accuracy"]

    def carved_arrays(self, which):
        """``(train, validation)`` numpy pairs of a task: its training split carved by
        :func:`keras_apps.data.load` (stratified, seeded), decoded once per process."""
        import numpy as np

        from keras_apps import data as kdata

        key = ("carved", which, self.seed, self.args.setting)
        if key not in _TEST_CACHE:
            data, limit, kwargs = self._data_kwargs(which)
            carve = dict(validation_fraction=self.args.validation_fraction, validation_seed=self.seed)
            pairs = []
            for subset in ("training", "validation"):
                ds, _ = kdata.load(data, "train", batch_size=500, augment=False, shuffle=False,
                                   limit=limit, subset=subset, **carve, **kwargs)
                images, labels = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds])
                pairs.append((np.concatenate(images), np.concatenate(labels)))
            _TEST_CACHE[key] = tuple(pairs)
        return _TEST_CACHE[key]

    def pipeline(self, which):
        """The ``(train, validation)`` tf.data pair :func:`keras_apps.training.fit` trains on:
        the carved arrays, reshuffled every epoch with random padded crops and flips (the
        paper's augmentation at this size), seeded by the run's seed."""
        import tensorflow as tf

        (x, y), (vx, vy) = self.carved_arrays(which)
        size = x.shape[1]
        pad = max(1, size // 8)

        def augment(image, label):
            image = tf.image.random_flip_left_right(image)
            padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            return tf.image.random_crop(padded, tf.shape(image)), label

        train = (tf.data.Dataset.from_tensor_slices((x, y))
                 .shuffle(len(x), seed=self.seed, reshuffle_each_iteration=True)
                 .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
                 .batch(self.args.batch_size).prefetch(tf.data.AUTOTUNE))
        val = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(256)
        return train, val

    def fit_kwargs(self, which, epochs, run):
        return dict(
            data=self.pipeline(which), epochs=epochs, seed=self.seed,
            output_dir=self.work / run, verbose=0,
        )

    def _load(self, run):
        from keras_apps import training

        path = self.work / run / "model.keras"
        return training.load_model(path) if path.is_file() else None

    # ---------------------------------------------------------------- the networks

    def source(self, wide_units=0):
        """The source network pretrained on the source task (``wide_units`` more fc7 units:
        the fixed wide network of Tables 6-7)."""
        import keras_apps
        from keras_apps import training

        run = "source" if not wide_units else f"source_wide{wide_units}"
        if self.record_path(run).is_file() and self._finished(run) is not None:
            return self._load(run)
        a = self.args
        classes = len(_ids(a.source_classes) or [])
        if a.source_model == "small_alexnet":
            build = lambda: small_alexnet(  # noqa: E731
                classes, width=a.width, filters=tuple(_ints(a.filters)), image_size=a.image_size,
                name=run,
            )
            if wide_units:
                build = _wide_builder(classes, a, wide_units, run)
        else:
            if wide_units:
                raise ValueError("The fixed wide network is only defined for small_alexnet.")
            build = lambda: keras_apps.build(  # noqa: E731
                a.source_model, weights=a.source_weights, classes=classes,
                input_shape=(a.image_size, a.image_size, 3),
            )
            if a.source_weights:
                return build()
        start = time.perf_counter()
        model, metrics = self._fit_once(run, lambda: training.fit(
            build, learning_rate=a.source_learning_rate, lr_schedule="cosine",
            **self.fit_kwargs("source", a.source_epochs, run)))
        self.write(run, {
            "kind": "source", "validation_accuracy": metrics["validation"]["top1_accuracy"],
            "source_test_accuracy": self.test_accuracy(model, "source"),
            "params": int(model.count_params()), "seconds": time.perf_counter() - start,
        })
        return model

    def _fit_once(self, run, train):
        """``(model, metrics)`` of ``run``: the finished run under ``--work`` (trained, but
        killed before its record was written), else ``train()``'s result."""
        finished = self._finished(run)
        if finished is not None:
            return finished
        result = train()
        return result.model, result.metrics

    def target_run(self, row, build, *, scenario="all", which="target1", base=None, epochs=None,
                   learning_rate=None):
        """Grows / transfers (``build(source_model)``) and fine-tunes on ``which``."""
        from keras_apps import growth

        finished = self._finished(row)
        if finished is not None and self.record_path(row).is_file():
            return finished[0]
        start = time.perf_counter()
        if finished is None:  # else: trained, killed before its record was written
            start_model = base if base is not None else self.source()
            result = growth.finetune(
                build(start_model), scenario=scenario,
                learning_rate=learning_rate or self.args.learning_rate,
                **self.fit_kwargs(which, epochs or self.args.epochs, row),
            )
            finished = result.model, result.metrics
        model, metrics = finished
        record = {
            "kind": which, "scenario": scenario,
            "validation_accuracy": metrics["validation"]["top1_accuracy"],
            "test_accuracy": self.test_accuracy(model, which),
            "params": int(model.count_params()),
            "seconds": time.perf_counter() - start,
        }
        if isinstance(model.output, dict) and "task0" in model.output:
            record["source_test_accuracy"] = self.test_accuracy(model, "source", output="task0")
        self.write(row, record)
        return model

    def _finished(self, run):
        """``(model, metrics)`` of a finished run under ``--work`` (None: not finished)."""
        folder = self.work / run
        if not ((folder / "model.keras").is_file() and (folder / "metrics.json").is_file()):
            return None
        return self._load(run), json.loads((folder / "metrics.json").read_text())

    # ---------------------------------------------------------------- stages

    def table1(self):
        from keras_apps import growth

        s_small, s_large = self.units[:2]
        d_small, d_large = self.depth_units[:2]
        classes = len(_ids(self.args.target1_classes) or [])
        seed = self.seed * 1000
        kw = dict(classes=classes, seed=seed, scale_init=self.args.scale_init)
        plans = {
            "ft": lambda m: growth.transfer(m, classes=classes, seed=seed),
            f"da{d_small}": lambda m: growth.grow(m, "depth", units=d_small, **kw),
            f"da{d_large}": lambda m: growth.grow(m, "depth", units=d_large, **kw),
            f"wa{s_small}": lambda m: growth.grow(m, "width", units=s_small, **kw),
            f"wa{s_large}": lambda m: growth.grow(m, "width", units=s_large, **kw),
            f"dwa{s_small}": lambda m: growth.grow(m, "depth_width", units=s_small, depth_units=d_large, **kw),
            f"dwa{s_large}": lambda m: growth.grow(m, "depth_width", units=s_large, depth_units=d_large, **kw),
            f"wwa{s_small}": lambda m: growth.grow(m, "recursive_width", units=s_small, **kw),
            f"wwa{s_large}": lambda m: growth.grow(m, "recursive_width", units=s_large, **kw),
            f"wa_nonorm{s_small}": lambda m: growth.grow(m, "width", units=s_small, normalize=False, **kw),
        }
        kinds = [kind for kind in self.args.rows.split(",") if kind]
        for row, build in plans.items():
            if not kinds or row.rstrip("0123456789") in kinds:
                self.target_run(row, build)

    def scenarios(self):
        from keras_apps import growth

        classes = len(_ids(self.args.target1_classes) or [])
        seed = self.seed * 1000
        s_small = self.units[0]
        for scenario in [name for name in self.args.scenarios.split(",") if name]:
            self.target_run(f"ft_{scenario}", lambda m: growth.transfer(m, classes=classes, seed=seed),
                            scenario=scenario)
            self.target_run(
                f"wa{s_small}_{scenario}",
                lambda m: growth.grow(m, "width", units=s_small, classes=classes, seed=seed,
                                      scale_init=self.args.scale_init),
                scenario=scenario,
            )

    def lwf(self):
        """Table 4: source accuracy of the grown network after target fine-tuning, then after
        re-training its augmented layers with the source head on source data."""
        from keras_apps import growth

        row = f"wa{self.units[0]}_lwf"
        if self.record_path(row).is_file():
            return
        self.table1()
        grown = self._load(f"wa{self.units[0]}")
        start = time.perf_counter()
        model, _ = self._fit_once(row, lambda: growth.retrain_source(
            grown, learning_rate=self.args.learning_rate,
            **self.fit_kwargs("source", self.args.retrain_epochs, row)))
        self.write(row, {
            "kind": "lwf", "source_test_accuracy": self.test_accuracy(model, "source", output="task0"),
            "test_accuracy": self.test_accuracy(model, "target1"),
            "seconds": time.perf_counter() - start,
        })

    def cumulative(self):
        """Tables 6-8: source -> target 1 -> target 2 growing each time, vs fine-tuning the
        fixed network, vs a fixed wide network with as many units pretrained on the source and
        fine-tuned directly, vs that wide network trained from scratch on target 2."""
        from keras_apps import growth, training

        a = self.args
        s = self.units[0]
        classes2 = self._classes("target2")
        seed = self.seed * 1000 + 7
        self.table1()
        wa1 = self._load(f"wa{s}")
        ft1 = self._load("ft")
        self.target_run(f"cum_wa{s}_t2", lambda m: growth.grow(m, "width", units=s, classes=classes2, seed=seed,
                                                               scale_init=a.scale_init),
                        which="target2", base=wa1)
        self.target_run("ft_t2", lambda m: growth.transfer(m, classes=classes2, seed=seed), which="target2", base=ft1)
        wide = self.source(wide_units=2 * s)
        classes1 = self._classes("target1")
        wide1 = self.target_run(f"wide{2 * s}_t1", lambda m: growth.transfer(m, classes=classes1, seed=seed),
                                base=wide)
        self.target_run(f"wide{2 * s}_t2", lambda m: growth.transfer(m, classes=classes2, seed=seed),
                        which="target2", base=wide1)
        row = f"wide{2 * s}_scratch_t2"
        if not self.record_path(row).is_file():
            start = time.perf_counter()
            build = _wide_builder(classes2, a, 2 * s, row)
            model, metrics = self._fit_once(row, lambda: training.fit(
                build, learning_rate=a.source_learning_rate, lr_schedule="cosine",
                **self.fit_kwargs("target2", a.epochs, row)))
            self.write(row, {
                "kind": "target2", "scenario": "scratch",
                "validation_accuracy": metrics["validation"]["top1_accuracy"],
                "test_accuracy": self.test_accuracy(model, "target2"),
                "params": int(model.count_params()), "seconds": time.perf_counter() - start,
            })

    def _classes(self, which):
        from keras_apps import data as kdata

        data, _, kwargs = self._data_kwargs(which)
        info = kdata.dataset_info(data, data_dir=kwargs["data_dir"], classes=kwargs["classes"],
                                  download=kwargs["download"])
        return info.num_classes

    def analysis(self):
        """Sec. 5.2 on seed 0: t-SNE of fc7 features (fine-tuned vs WA-CNN), the top-5
        target images of old fc7 and new fc7+ units, learning curves of old, new and
        combined units while WA-CNN fine-tunes."""
        if self.seed != _ints(self.args.seeds)[0] or self.record_path("analysis").is_file():
            return
        from keras_apps import growth
        from keras_apps.growth import analysis

        self.table1()
        s = self.units[0]
        figures = self.folder / "figures"
        figures.mkdir(exist_ok=True)
        train, val, display = self.target_arrays("target1")
        names = [f"class {c}" for c in _ids(self.args.target1_classes) or []]
        ft, wa = self._load("ft"), self._load(f"wa{s}")
        record = {"kind": "analysis", "figures": {}}
        for label, model, layer in (("ft", ft, "fc7"), (f"wa{s}", wa, "fc7_concat_g1")):
            features, labels = analysis.layer_features(model, layer, val)
            _, path = analysis.tsne_plot(features, labels, figures / f"tsne_{label}.png", class_names=names,
                                         seed=self.seed, title=f"t-SNE of {layer} ({label}, target-1 validation)")
            record["figures"][f"tsne_{label}"] = path.name
        features, _ = analysis.layer_features(wa, "fc7_concat_g1", val)
        width = self.args.width
        spread = features.std(axis=0)
        old = [int(u) for u in spread[:width].argsort()[::-1][:4]]
        new = [int(width + u) for u in spread[width:].argsort()[::-1][:4]]
        path = analysis.top_activating_grid(
            display, features, old + new, figures / f"top5_wa{s}.png", k=5,
            row_labels=[f"fc7 #{u}" for u in old] + [f"fc7+ #{u - width}" for u in new],
            title=f"Top-5 target-1 validation images of old fc7 and new fc7+ units (WA-CNN, S={s})",
        )
        record["figures"]["top5"] = path.name
        groups = {"old (fc7)": list(range(width)), "new (fc7+)": list(range(width, width + s)),
                  "combined": list(range(width + s))}
        curves = analysis.UnitLearningCurves("fc7_concat_g1", groups, train, val)
        grown = growth.grow(self.source(), "width", units=s, classes=len(names), seed=self.seed * 1000,
                            scale_init=self.args.scale_init)
        growth.finetune(grown, learning_rate=self.args.learning_rate, callbacks=[curves], overwrite=True,
                        **self.fit_kwargs("target1", self.args.epochs, f"wa{s}_curves"))
        path = analysis.learning_curves_plot(curves.curves, figures / f"curves_wa{s}.png", epochs=curves.epochs,
                                             title="Linear-probe accuracy of old, new and combined units")
        record["figures"]["curves"] = path.name
        record["curves"] = {"epochs": curves.epochs, **curves.curves}
        self.write("analysis", record)

    def target_arrays(self, which, count=1000):
        """``(train, validation)`` numpy pairs of a task's carved training split (no
        augmentation) and the validation images' pixels for display."""
        import numpy as np

        from keras_apps import data as kdata

        data, limit, kwargs = self._data_kwargs(which)
        carve = dict(validation_fraction=self.args.validation_fraction, validation_seed=self.seed)
        ds, _ = kdata.load(data, "train", batch_size=500, augment=False, shuffle=False, limit=limit,
                           subset="validation", preprocessing="raw", **carve, **kwargs)
        display = np.concatenate([np.asarray(x) for x, _ in ds])[:count]
        (x, y), (vx, vy) = self.carved_arrays(which)
        return (x[:count], y[:count]), (vx[:count], vy[:count]), display


def _wide_builder(classes, a, extra, name):
    def build():
        return small_alexnet_wide(classes, a, extra, name)

    return build


def small_alexnet_wide(classes, a, extra, name):
    """small_alexnet with ``extra`` more fc7 units (the fixed wide network)."""
    return small_alexnet(classes, width=a.width, filters=tuple(_ints(a.filters)), image_size=a.image_size,
                         name=name, fc7_width=a.width + extra)


# -------------------------------------------------------------------------------- tables


def _load_records(folder):
    records = {}
    for path in sorted(folder.glob("*-seed*.json")):
        record = json.loads(path.read_text())
        records.setdefault(record["row"], []).append(record)
    return records


def _mean_sd(values, scale=100.0):
    values = [v * scale for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.2f} (n=1)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _accuracy(records, row, key="test_accuracy"):
    return [r.get(key) for r in records.get(row, []) if r.get(key) is not None]


def _delta(records, row, base, key="test_accuracy"):
    """Mean ± sd over seeds of the paired difference row - base (pt)."""
    pairs = {r["seed"]: r.get(key) for r in records.get(base, [])}
    diffs = [r.get(key) - pairs[r["seed"]] for r in records.get(row, [])
             if r.get(key) is not None and pairs.get(r["seed"]) is not None]
    return _mean_sd(diffs)


def _label(row):
    kind = row.rstrip("0123456789")
    size = row[len(kind):]
    return f"{LABELS.get(kind, kind)}" + (f", {size} new units" if size else "")


def build_table(args) -> str:
    folder = pathlib.Path(args.output) / args.setting
    records = _load_records(folder)
    recorded = next((r["settings"] for rows in records.values() for r in rows if "settings" in r), None)
    if recorded:  # the settings the runs were made with, whatever this call's flags say
        args = argparse.Namespace(**{**vars(args), **recorded})
    seeds = sorted({r["seed"] for rows in records.values() for r in rows})
    s = _ints(args.units)[0]
    lines = [
        f"# Growing a Brain at CPU scale ({args.setting})",
        "",
        "Generated by `tools/growing_experiments.py` from the JSON files in this folder "
        f"(seeds {', '.join(map(str, seeds)) or 'none yet'}). Accuracy in %, mean ± sd over "
        "seeds; differences are paired by seed. Test splits are evaluated once per model, in "
        "full; validation is carved from each training split.",
        "",
        f"Setting: source = {args.source_data} classes {args.source_classes} "
        f"({args.source_limit or 'all'} training images), target 1 = {args.target1} classes "
        f"{args.target1_classes}, target 2 = {args.target2} ({args.limit or 'all'} training "
        f"images each); source network {args.source_model} (fc6/fc7 {args.width} units, conv "
        f"{args.filters}); {args.source_epochs} source epochs, {args.epochs} fine-tuning epochs, "
        f"base learning rate {args.learning_rate} (new layers x10), step schedule.",
        "",
        "The paper's claims tested here:",
        *[f"- {claim}" for claim in CLAIMS],
        "",
        "## Tables 1-2: developmental networks vs fine-tuning (target 1, scenario All)",
        "",
        "| network | target test acc. | vs fine-tuning (pt) | target val. acc. | params |",
        "|---|---|---|---|---|",
    ]
    table1 = sorted(
        (row for row in records if records[row][0].get("kind") == "target1"
         and records[row][0].get("scenario") == "all" and not row.startswith("wide")),
        key=lambda row: (list(LABELS).index(row.rstrip("0123456789")) if row.rstrip("0123456789") in LABELS
                         else 99, int(row[len(row.rstrip("0123456789")):] or 0), row),
    )
    for row in table1:
        lines.append(
            f"| {_label(row)} (`{row}`) | {_mean_sd(_accuracy(records, row))} | "
            f"{'' if row == 'ft' else _delta(records, row, 'ft')} | "
            f"{_mean_sd(_accuracy(records, row, 'validation_accuracy'))} | {records[row][0].get('params', '')} |"
        )
    lines += [
        "",
        "## Table 3: normalisation and scaling",
        "",
        "| network | with (test acc.) | without | with - without (pt) |",
        "|---|---|---|---|",
    ]
    for kind in ("wa", "da"):
        for row in sorted(r for r in records if r.startswith(f"{kind}_nonorm")):
            size = row[len(f"{kind}_nonorm"):]
            lines.append(
                f"| {LABELS[kind]}, {size} new units | {_mean_sd(_accuracy(records, kind + size))} | "
                f"{_mean_sd(_accuracy(records, row))} | {_delta(records, kind + size, row)} |"
            )
    measured = {r.get("scenario") for rows in records.values() for r in rows if r.get("kind") == "target1"}
    scenario_names = [n for n in ("new", "fc7-new", "fc6-new") if n in measured] + sorted(
        measured - {"new", "fc7-new", "fc6-new", "all", None}) + ["all"]
    lines += [
        "",
        "## Fine-tuning scenarios (target 1 test accuracy)",
        "",
        "| network | " + " | ".join(scenario_names) + " |",
        "|---|" + "---|" * len(scenario_names),
    ]
    for base in ("ft", f"wa{s}"):
        cells = [_mean_sd(_accuracy(records, base if name == "all" else f"{base}_{name}")) for name in scenario_names]
        lines.append(f"| {_label(base)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Table 4: learning without forgetting (source test accuracy of the task0 head)",
        "",
        "| model | source test acc. | target-1 test acc. |",
        "|---|---|---|",
        f"| source network, before transfer | {_mean_sd(_accuracy(records, 'source', 'source_test_accuracy'))} | |",
        f"| fine-tuned (`ft`) | {_mean_sd(_accuracy(records, 'ft', 'source_test_accuracy'))} | "
        f"{_mean_sd(_accuracy(records, 'ft'))} |",
        f"| WA-CNN (`wa{s}`) after target fine-tuning | {_mean_sd(_accuracy(records, f'wa{s}', 'source_test_accuracy'))} | "
        f"{_mean_sd(_accuracy(records, f'wa{s}'))} |",
        f"| WA-CNN after re-training the augmented layers on source data (`wa{s}_lwf`) | "
        f"{_mean_sd(_accuracy(records, f'wa{s}_lwf', 'source_test_accuracy'))} | {_mean_sd(_accuracy(records, f'wa{s}_lwf'))} |",
        "",
        "## Tables 6-8: cumulative growth over two target tasks (target 2 test accuracy)",
        "",
        "| model | target-2 test acc. | vs cumulative growth (pt) | params |",
        "|---|---|---|---|",
    ]
    cumulative = f"cum_wa{s}_t2"
    for row, label in (
        (cumulative, f"WA-CNN grown on target 1 (+{s}) and again on target 2 (+{s})"),
        ("ft_t2", "classic fine-tuning, source -> target 1 -> target 2"),
        (f"wide{2 * s}_t2", f"fixed wide network (fc7 +{2 * s}) pretrained on source, fine-tuned -> 1 -> 2"),
        (f"wide{2 * s}_scratch_t2", "the fixed wide network trained from scratch on target 2"),
    ):
        if row in records:
            lines.append(
                f"| {label} (`{row}`) | {_mean_sd(_accuracy(records, row))} | "
                f"{'' if row == cumulative else _delta(records, row, cumulative)} | {records[row][0].get('params', '')} |"
            )
    wide_source = f"source_wide{2 * s}"
    if wide_source in records:
        lines += [
            "",
            f"Source task (Table 6): the standard network {_mean_sd(_accuracy(records, 'source', 'source_test_accuracy'))}, "
            f"the wide one {_mean_sd(_accuracy(records, wide_source, 'source_test_accuracy'))} (test accuracy).",
        ]
    if "analysis" in records:
        figures = records["analysis"][0]["figures"]
        lines += ["", "## Analyses (seed " + str(records["analysis"][0]["seed"]) + ", target-1 validation images)", ""]
        lines += [f"![{name}](figures/{path})" for name, path in figures.items()]
        curves = records["analysis"][0].get("curves", {})
        if curves:
            lines += ["", "Linear-probe accuracy per epoch of fine-tuning (epoch 0: before):", "",
                      "| units | " + " | ".join(str(e) for e in curves["epochs"]) + " |",
                      "|---|" + "---|" * len(curves["epochs"])]
            for group, values in curves.items():
                if group != "epochs":
                    lines.append(f"| {group} | " + " | ".join(f"{100 * v:.1f}" for v in values) + " |")
    lines += ["", "## Every run", "", "| run | test acc. | val. acc. | source test acc. | n |", "|---|---|---|---|---|"]
    for row in sorted(records):
        if row == "analysis":
            continue
        lines.append(
            f"| `{row}` | {_mean_sd(_accuracy(records, row))} | {_mean_sd(_accuracy(records, row, 'validation_accuracy'))} | "
            f"{_mean_sd(_accuracy(records, row, 'source_test_accuracy'))} | {len(records[row])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = pathlib.Path(args.output) / args.setting
    if not args.table:
        stages = [s for s in args.stages.split(",") if s]
        for seed in _ints(args.seeds):
            runner = Runner(args, seed)
            for stage in stages:
                getattr(runner, stage)()
    folder.mkdir(parents=True, exist_ok=True)
    from keras_apps.training import atomic_write_text

    atomic_write_text(folder / "README.md", build_table(args))
    print(f"table: {folder / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
