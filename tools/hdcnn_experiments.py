"""The experiments of HD-CNN (Yan et al., ICCV 2015, Tables 1-2), measured at a chosen scale.

Per seed it trains the building block, learns the hierarchy on the held-out part of the
training split, and builds, pretrains and fine-tunes the HD-CNN variants of the paper's
ablations; then it measures model averaging of two building blocks, the conditional
execution sweep over beta and the product-quantization sweep. Every finished measurement
is one JSON file ``<output>/<data>/<row>-seed<seed>.json``; a re-run skips them (the
training runs under ``--work`` resume too), and ``README.md`` (the table, mean and standard
deviation over seeds, next to the paper's figures) and the plots are rebuilt from the JSON
files alone (``--table``).

Protocol: validation carved from the training split (stratified, ``--validation-fraction``),
which is also the held-out set the hierarchy is learned on; no model selection; the test
split is evaluated once per model, at the end.

    # CPU scale (what results/hdcnn/ holds): CIFAR-10 from ../shared/data, NIN width 0.25
    python tools/hdcnn_experiments.py --data cifar10 --seeds 0,1,2
    # the paper's scale on a GPU: CIFAR-100 (tfds), full-width NIN, K=9, gamma=5
    python tools/hdcnn_experiments.py --data cifar100 --width 1 --coarse 9 --limit 0 \\
        --block-epochs 100 --fine-epochs 20 --finetune-epochs 20 --validation-fraction 0.2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The HD-CNN variants of the paper's ablations: which hierarchy, consistency term, shared
#: layers, and which pretrained fine components they start from.
VARIANTS = {
    "hdcnn": dict(hierarchy="overlapping", consistency=True, shared_layers=True),
    "hdcnn_no_consistency": dict(hierarchy="overlapping", consistency=False, shared_layers=True),
    "hdcnn_disjoint": dict(hierarchy="disjoint", consistency=True, shared_layers=True),
    "hdcnn_no_shared": dict(hierarchy="overlapping", consistency=True, shared_layers=False),
}

#: The paper's CIFAR-100 figures quoted by the issue (Yan et al. Table 1; 10-view test error,
#: %); the disjoint and no-shared-layer rows are compared in the paper's text, not quoted here.
PAPER = {
    "building_block": "35.27",
    "model_averaging": "35.13",
    "hdcnn_before_finetune": "",
    "hdcnn": "32.62",
    "hdcnn_no_consistency": "33.21",
    "hdcnn_disjoint": "",
    "hdcnn_no_shared": "",
}
PAPER_CONDITIONAL = "0.28 s -> 0.10 s per image at +0.21 pt error (ImageNet, Table 2)"
PAPER_COMPRESSION = "447 MB -> 286 MB at +0.16 pt error (ImageNet, Table 2)"

LABELS = {
    "building_block": "building block alone (NIN)",
    "model_averaging": "model averaging of 2 building blocks",
    "hdcnn_before_finetune": "HD-CNN, fine components pretrained, before fine-tuning",
    "hdcnn": "HD-CNN overlapping, consistency term",
    "hdcnn_no_consistency": "HD-CNN overlapping, no consistency term",
    "hdcnn_disjoint": "HD-CNN disjoint, consistency term",
    "hdcnn_no_shared": "HD-CNN overlapping, no shared layers",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="cifar10", help="keras_apps dataset name (cifar10, cifar100, digits)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--download", action="store_true",
                   help="let tensorflow-datasets prepare a tfds set (cifar100: from its manual folder)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--building-block", default="nin_cifar")
    p.add_argument("--width", type=float, default=0.25, help="building block width multiplier")
    p.add_argument("--coarse", type=int, default=3, help="K coarse categories")
    p.add_argument("--gamma", type=float, default=5.0, help="overlap: u_t = 1/(gamma K)")
    p.add_argument("--convention", default="paper", choices=("paper", "release"))
    p.add_argument("--limit", type=int, default=5000, help="training images (balanced); 0 = all")
    p.add_argument("--validation-fraction", type=float, default=0.04)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--block-epochs", type=int, default=10)
    p.add_argument("--fine-epochs", type=int, default=1)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--betas", default="inf,8,4,2,1.5,1")
    p.add_argument("--compression", default="2x16,2x64,3x64", help="s x k settings")
    p.add_argument("--timing-images", type=int, default=1000)
    p.add_argument("--timing-repeats", type=int, default=3)
    p.add_argument("--output", default=str(ROOT / "results" / "hdcnn"))
    p.add_argument("--work", default=str(ROOT / "runs" / "hdcnn_experiments"))
    p.add_argument("--stages", default="train,averaging,timing,conditional,compression")
    p.add_argument("--table", action="store_true", help="only rebuild the table and plots")
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    args.betas = [float(b) for b in args.betas.split(",") if b]
    if any(b <= 0 for b in args.betas):
        p.error(f"--betas must be > 0, got {args.betas}")
    args.compression = [tuple(int(v) for v in c.split("x")) for c in args.compression.split(",") if c]
    args.stages = set(args.stages.split(","))
    args.limit = args.limit or None
    return args


def _record_path(args, row, seed):
    return pathlib.Path(args.output) / args.data / f"{row}-seed{seed}.json"


def _write(path: pathlib.Path, record: dict) -> dict:
    from keras_apps.training import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)
    return record


def _common(args, seed):
    return dict(batch_size=args.batch_size, validation_fraction=args.validation_fraction,
                validation_seed=0, data_dir=args.data_dir, limit=args.limit, verbose=0,
                strategy="one-device", download=args.download)


def _test_arrays(args):
    """The test split as arrays (images preprocessed like training, labels)."""
    import numpy as np

    from keras_apps import data as kdata

    ds, _ = kdata.load(args.data, "test", data_dir=args.data_dir, batch_size=500, augment=False,
                       shuffle=False, limit=args.limit, download=args.download)
    images, labels = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def _model_bytes(model) -> int:
    """Memory of the model's weights (every variable of the model, no optimizer state):
    4 bytes per float32 value, 1 per uint8 product-quantization code."""
    import numpy as np

    return int(sum(np.dtype(w.dtype).itemsize * int(np.prod(w.shape)) for w in model.weights))


def _probabilities(model, images, batch_size=500):
    import numpy as np

    out = model.predict(images, batch_size=batch_size, verbose=0)
    return np.asarray(out["predictions"] if isinstance(out, dict) else out, np.float64)


def _seconds_per_image(function, images, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(images)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / len(images)


def _error(probabilities, labels) -> float:
    import numpy as np

    return float(np.mean(np.argmax(probabilities, axis=1) != labels))


class Seed:
    """The models of one seed, trained (or read back) on demand."""

    def __init__(self, args, seed):
        self.args, self.seed = args, seed
        self.work = pathlib.Path(args.work) / args.data / f"seed{seed}"
        self._block = self._tree = None

    def block(self):
        from keras_apps import training

        if self._block is None:
            folder = self.work / "building_block"
            start = time.perf_counter()
            if (folder / "metrics.json").is_file():
                self._block = training.load_model(folder / "model.keras")
            else:
                run = training.fit(
                    self.args.building_block, self.args.data, epochs=self.args.block_epochs,
                    learning_rate=self.args.learning_rate, seed=self.seed, output_dir=folder,
                    build_kwargs={"width": self.args.width}, **_common(self.args, self.seed),
                )
                self._block = run.model
            path = _record_path(self.args, "building_block", self.seed)
            if not path.is_file():
                metrics = json.loads((folder / "metrics.json").read_text())
                _write(path, self._record("building_block", self._block, metrics,
                                          time.perf_counter() - start))
        return self._block

    def hierarchy(self, kind):
        from keras_apps import hdcnn

        if self._tree is None:
            self._tree = hdcnn.hierarchy_from_building_block(
                self.block(), self.args.data, self.args.coarse, gamma=self.args.gamma,
                validation_fraction=self.args.validation_fraction, output_dir=self.work / "hierarchy",
                seed=self.seed, data_dir=self.args.data_dir, limit=self.args.limit,
                download=self.args.download,
            )
        if kind == "disjoint":
            return hdcnn.Hierarchy(self._tree.fine_to_coarse, class_names=self._tree.class_names)
        return self._tree

    def hdcnn(self, variant):
        """The fine-tuned model of ``variant`` (trained here when its run is not finished)."""
        from keras_apps import hdcnn, training

        spec = VARIANTS[variant]
        folder = self.work / variant
        path = _record_path(self.args, variant, self.seed)
        if (folder / "metrics.json").is_file() and path.is_file():
            return training.load_model(folder / "model.keras")
        start = time.perf_counter()
        model = hdcnn.build_hdcnn(
            self.block(), self.hierarchy(spec["hierarchy"]), shared_layers=spec["shared_layers"],
            convention=self.args.convention,
        )
        fine_folder = self.work / f"fine_{spec['hierarchy']}{'' if spec['shared_layers'] else '_no_shared'}"
        common = _common(self.args, self.seed)
        hdcnn.pretrain_fine_components(
            model, self.args.data, output_dir=fine_folder, epochs=self.args.fine_epochs,
            learning_rate=self.args.learning_rate, seed=self.seed, **common,
        )
        if variant == "hdcnn" and not _record_path(self.args, "hdcnn_before_finetune", self.seed).is_file():
            metrics = {"test": training.evaluate(model, self.args.data, data_dir=self.args.data_dir,
                                                 limit=self.args.limit, download=self.args.download,
                                                 verbose=0)}
            _write(_record_path(self.args, "hdcnn_before_finetune", self.seed),
                   self._record("hdcnn_before_finetune", model, metrics, time.perf_counter() - start))
        run = hdcnn.finetune(
            model, self.args.data, output_dir=folder, epochs=self.args.finetune_epochs,
            consistency=spec["consistency"], learning_rate=self.args.learning_rate / 10,
            seed=self.seed, **common,
        )
        _write(path, self._record(variant, run.model, run.metrics, time.perf_counter() - start))
        return run.model

    def _record(self, row, model, metrics, seconds):
        tree = None
        if row != "building_block":
            from keras_apps import hdcnn

            tree = hdcnn.hierarchy_of(model)
        return {
            "row": row,
            "seed": self.seed,
            "data": self.args.data,
            "settings": {k: getattr(self.args, k) for k in (
                "building_block", "width", "coarse", "gamma", "convention", "limit",
                "validation_fraction", "batch_size", "learning_rate", "block_epochs",
                "fine_epochs", "finetune_epochs")},
            "test_top1_error": metrics["test"]["top1_error"],
            "validation_top1_error": metrics.get("validation", {}).get("top1_error"),
            "params": int(model.count_params()),
            "model_bytes": _model_bytes(model),
            "seconds": seconds,
            "set_sizes": None if tree is None else [len(s) for s in tree.coarse_sets],
        }


def run_averaging(args, seeds, test):
    """Model averaging of the building blocks of seed s and the next seed."""
    if len(seeds) < 2:
        return
    images, labels = test
    for i, seed in enumerate(seeds):
        path = _record_path(args, "model_averaging", seed)
        if path.is_file():
            continue
        other = seeds[(i + 1) % len(seeds)]
        a, b = Seed(args, seed).block(), Seed(args, other).block()
        start = time.perf_counter()
        p = (_probabilities(a, images) + _probabilities(b, images)) / 2
        _write(path, {"row": "model_averaging", "seed": seed, "partner_seed": other, "data": args.data,
                      "test_top1_error": _error(p, labels),
                      "params": int(a.count_params() + b.count_params()),
                      "model_bytes": _model_bytes(a) + _model_bytes(b),
                      "seconds": time.perf_counter() - start})


def run_conditional(args, seed, model, test):
    """Error, components run and time of conditional execution over beta, against the
    full model on the same images (timed alternately)."""
    import numpy as np

    from keras_apps import hdcnn

    images, labels = test
    path = _record_path(args, "conditional", seed)
    if path.is_file():
        return
    full = _probabilities(model, images)
    timing = images[: args.timing_images]
    rows = []
    for beta in args.betas:
        result = hdcnn.conditional_predict(model, images, beta)
        full_times, cond_times = [], []
        # The reference is the same routed function at beta = inf (every component on every
        # image): the same code path, so the ratio is the computation skipped, not
        # model.predict's per-call overhead. Alternated, so load changes hit both alike.
        for _ in range(args.timing_repeats):
            full_times.append(_seconds_per_image(
                lambda x: hdcnn.conditional_predict(model, x, math.inf, batch_size=250), timing, 1))
            cond_times.append(_seconds_per_image(
                lambda x: hdcnn.conditional_predict(model, x, beta, batch_size=250), timing, 1))
        rows.append({
            "beta": beta,
            "threshold": 1.0 / (beta * len(hdcnn.components(model).fine)),
            "test_top1_error": _error(result.probabilities, labels),
            "full_test_top1_error": _error(full, labels),
            "mean_components_run": float(np.mean(result.components_run)),
            "seconds_per_image": statistics.median(cond_times),
            "full_seconds_per_image": statistics.median(full_times),
            "time_ratio": statistics.median(cond_times) / statistics.median(full_times),
        })
    _write(path, {"row": "conditional", "seed": seed, "data": args.data, "sweep": rows,
                  "num_coarse": len(hdcnn.components(model).fine)})


def run_timing(args, seed, test):
    """Inference time per image of each model of Table 1 (``model.predict``, batches of
    250), the models timed in turn, median over repeats."""
    from keras_apps import training

    path = _record_path(args, "timing", seed)
    if path.is_file():
        return
    work = Seed(args, seed)
    models = {"building_block": work.block()}
    for variant in VARIANTS:
        folder = work.work / variant
        if (folder / "model.keras").is_file():
            models[variant] = training.load_model(folder / "model.keras")
    images = test[0][: args.timing_images]
    times = {row: [] for row in models}
    for model in models.values():
        model.predict(images[:250], batch_size=250, verbose=0)  # trace once before timing
    for _ in range(args.timing_repeats):
        for row, model in models.items():
            times[row].append(_seconds_per_image(
                lambda x, m=model: m.predict(x, batch_size=250, verbose=0), images, 1))
    _write(path, {"row": "timing", "seed": seed, "data": args.data, "images": len(images),
                  "seconds_per_image": {row: statistics.median(t) for row, t in times.items()}})


def run_compression(args, seed, model, test):
    """Model size and error after product quantization of every Dense/Conv2D kernel."""
    from keras_apps import compression

    images, labels = test
    path = _record_path(args, "compression", seed)
    if path.is_file():
        return
    base_error = _error(_probabilities(model, images), labels)
    base_bytes = _model_bytes(model)
    rows = []
    for s, k in args.compression:
        start = time.perf_counter()
        compressed, report = compression.compress_model(model, s=s, k=k, seed=seed)
        layers = report["layers"].values()
        rows.append({
            "s": s, "k": k,
            "test_top1_error": _error(_probabilities(compressed, images), labels),
            "model_bytes": _model_bytes(compressed),
            "layers_factor": sum(r["bytes_before"] for r in layers) / sum(r["bytes_after"] for r in layers),
            "total_factor": report["totals"]["factor"],
            "layers": len(report["layers"]),
            "skipped": len(report.get("skipped", {})),
            "seconds": time.perf_counter() - start,
        })
    _write(path, {"row": "compression", "seed": seed, "data": args.data, "base_test_top1_error": base_error,
                  "base_model_bytes": base_bytes, "sweep": rows})


def _load_records(args):
    folder = pathlib.Path(args.output) / args.data
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*-seed*.json"))] if folder.is_dir() else []
    return records


def _mean_sd(values, scale=100.0, digits=2):
    values = [v * scale for v in values]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def build_table(args) -> str:
    """README.md of ``<output>/<data>`` from the JSON records alone; also the plots."""
    records = _load_records(args)
    by_row = {}
    for r in records:
        by_row.setdefault(r["row"], []).append(r)
    settings = next((r["settings"] for r in records if "settings" in r), {})
    lines = [
        f"# HD-CNN experiments on {args.data}, as measured",
        "",
        "Written by `tools/hdcnn_experiments.py` from the JSON files beside this file (one per "
        "finished run); mean ± standard deviation over seeds. Validation carved from the training "
        "split (also the held-out set of the hierarchy); the test split evaluated once per model.",
        "",
        f"Settings: `{json.dumps(settings, sort_keys=True)}`.",
        "",
        "## Table 1: test top-1 error (%)",
        "",
        "| model | seeds | test top-1 error (%) | params | float32 weights (MB) | inference (ms/image) | training (min) | paper, CIFAR-100 (%) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    timing = by_row.get("timing", [])
    for row in ("building_block", "model_averaging", "hdcnn_before_finetune", *VARIANTS):
        rs = by_row.get(row, [])
        if not rs:
            continue
        per_image = [t["seconds_per_image"][row] for t in timing if row in t["seconds_per_image"]]
        inference = _mean_sd(per_image, scale=1000.0) if per_image else "-"
        minutes = "-" if row in ("model_averaging", "hdcnn_before_finetune") else \
            f"{statistics.mean(r['seconds'] for r in rs) / 60:.1f}"
        lines.append(
            f"| {LABELS[row]} | {len(rs)} | {_mean_sd([r['test_top1_error'] for r in rs])} | "
            f"{int(statistics.mean(r['params'] for r in rs)):,} | "
            f"{statistics.mean(4 * r['params'] for r in rs) / 1e6:.2f} | {inference} | {minutes} | {PAPER[row]} |"
        )
    lines += [
        "",
        "Training minutes are wall time of each run (building block: phase 1; HD-CNN rows: "
        "fine-component pretraining, where not shared with an earlier row, and fine-tuning), "
        "measured while other work shared the 2 CPU cores: a rough guide, not a benchmark. "
        "Inference: `model.predict` per image, the models of a seed timed in turn.",
    ]
    conditional = by_row.get("conditional", [])
    if conditional:
        lines += [
            "",
            "## Table 2a: conditional execution (fine component k runs when B_k >= 1/(beta K))",
            "",
            f"Paper: {PAPER_CONDITIONAL}. Times are per image, median of alternated repeats: "
            "the routed prediction at beta and at beta = inf (every component on every image, "
            "the same code path) timed in turn on the same images.",
            "",
            "| beta | threshold | components run (mean) | test top-1 error (%) | error vs all components (pt) | time vs all components |",
            "|---|---|---|---|---|---|",
        ]
        for i, first in enumerate(conditional[0]["sweep"]):
            rows = [r["sweep"][i] for r in conditional]
            lines.append(
                f"| {first['beta']:g} | {first['threshold']:.3f} | "
                f"{statistics.mean(r['mean_components_run'] for r in rows):.2f} of {conditional[0]['num_coarse']} | "
                f"{_mean_sd([r['test_top1_error'] for r in rows])} | "
                f"{_mean_sd([r['test_top1_error'] - r['full_test_top1_error'] for r in rows])} | "
                f"{_mean_sd([r['time_ratio'] for r in rows], scale=1.0)} |"
            )
    compressed = by_row.get("compression", [])
    if compressed:
        lines += [
            "",
            "## Table 2b: product quantization of every Dense/Conv2D kernel",
            "",
            f"Paper: {PAPER_COMPRESSION}.",
            "",
            "| s x k | kernels compressed | factor on the compressed kernels | weights (MB) | size vs uncompressed | test top-1 error (%) | error change (pt) |",
            "|---|---|---|---|---|---|---|",
        ]
        for i, first in enumerate(compressed[0]["sweep"]):
            rows = [(r, r["sweep"][i]) for r in compressed]
            lines.append(
                f"| {first['s']} x {first['k']} | {first['layers']} | "
                f"{statistics.mean(c['layers_factor'] for _, c in rows):.2f} | "
                f"{statistics.mean(c['model_bytes'] for _, c in rows) / 1e6:.2f} | "
                f"{statistics.mean(c['model_bytes'] / r['base_model_bytes'] for r, c in rows):.2f} | "
                f"{_mean_sd([c['test_top1_error'] for _, c in rows])} | "
                f"{_mean_sd([c['test_top1_error'] - r['base_test_top1_error'] for r, c in rows])} |"
            )
    text = "\n".join(lines) + "\n"
    folder = pathlib.Path(args.output) / args.data
    folder.mkdir(parents=True, exist_ok=True)
    from keras_apps.training import atomic_write_text

    atomic_write_text(folder / "README.md", text)
    _plots(folder, conditional, compressed)
    return text


def _plots(folder, conditional, compressed):
    if not conditional and not compressed:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_apps._atomic import atomic_file

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for r in conditional:
        sweep = r["sweep"]
        axes[0].plot([s["mean_components_run"] for s in sweep], [100 * s["test_top1_error"] for s in sweep],
                     "o-", label=f"seed {r['seed']}")
    axes[0].set_xlabel("fine components run per image (mean)")
    axes[0].set_ylabel("test top-1 error (%)")
    axes[0].set_title("conditional execution")
    for r in compressed:
        axes[1].plot([c["model_bytes"] / 1e6 for c in r["sweep"]] + [r["base_model_bytes"] / 1e6],
                     [100 * c["test_top1_error"] for c in r["sweep"]] + [100 * r["base_test_top1_error"]],
                     "o", label=f"seed {r['seed']}")
    axes[1].set_xlabel("weights (MB)")
    axes[1].set_ylabel("test top-1 error (%)")
    axes[1].set_title("product quantization")
    for ax in axes:
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    with atomic_file(folder / "sweeps.png", suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.table:
        test = None
        seeds = [Seed(args, s) for s in args.seeds]
        for seed in seeds:
            if "train" in args.stages:
                seed.block()
                for variant in args.variants:
                    seed.hdcnn(variant)
            build_table(args)
        if "averaging" in args.stages:
            test = test or _test_arrays(args)
            run_averaging(args, args.seeds, test)
        for seed in seeds:
            if "hdcnn" not in args.variants:
                break
            if "timing" in args.stages:
                test = test or _test_arrays(args)
                run_timing(args, seed.seed, test)
            if "conditional" in args.stages or "compression" in args.stages:
                test = test or _test_arrays(args)
                model = seed.hdcnn("hdcnn")
                if "conditional" in args.stages:
                    run_conditional(args, seed.seed, model, test)
                if "compression" in args.stages:
                    run_compression(args, seed.seed, model, test)
    print(build_table(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
