"""Per-model analysis rows, the Markdown/CSV report and its charts (Canziani et al. 2016).

:func:`analyze` reproduces the paper's comparison for the registered models: accuracy vs
operations vs parameters (their Fig. 2: a bubble chart whose bubble area is the parameter
count), inference time per image vs batch size (Fig. 3) and memory vs batch size (Fig. 4).
Here "operations" are MACs per image (``keras_apps.analysis.flops``), memory is weights plus
the liveness estimate of peak activations (``keras_apps.analysis.memory``), and times are
measured on the current device (``keras_apps.analysis.latency``). Charts are drawn with
matplotlib's Agg canvas (no display, no change to the global pyplot backend).
"""

from __future__ import annotations

import csv
import datetime
import gc
import math
import os
from typing import Callable, Mapping

import keras

from keras_apps import registry
from keras_apps.analysis.accuracy import known_top1
from keras_apps.analysis.flops import flop_report
from keras_apps.analysis.latency import _check_positive_ints, describe_device, measure_latency
from keras_apps.analysis.memory import peak_activation_memory, weight_memory_bytes

__all__ = ["analyze", "analyze_model", "model_table_markdown"]

_MIB = 1024**2


def _format_count(value: int) -> str:
    """``3_864_000_000 -> "3.86 G"``, ``40_550_000 -> "40.55 M"``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return str(value)


def _resolve_input_shape(spec, input_size):
    if input_size is None:
        return None
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise ValueError(f"`input_size` must be None or a positive integer, got {input_size!r}.")
    if input_size < spec.min_size:
        raise ValueError(
            f"`input_size` {input_size} is smaller than the minimum {spec.min_size} that "
            f"{spec.name} accepts."
        )
    return (input_size, input_size) + tuple(spec.input_shape[2:])


def analyze_model(
    model,
    *,
    batch_sizes=(1, 8, 32),
    input_size: int | None = None,
    measure: bool = True,
    repeats: int = 5,
    warmup: int = 1,
    accuracy: float | None = None,
) -> dict:
    """Parameters, MACs, weight and activation memory (and latency) of one model.

    Args:
        model: a registry name (built with ``weights=None`` at the default configuration,
            or at ``input_size`` x ``input_size``) or a functional ``keras.Model``.
        batch_sizes: batch sizes for the activation memory estimate and the timings.
        input_size: square input side; with a built model only if its input accepts it.
        measure: also time inference on the current device (:func:`measure_latency`).
        repeats, warmup: timed and untimed calls per batch size.
        accuracy: top-1 % to chart; default the published figure of
            :mod:`keras_apps.analysis.accuracy` for registry names at their default
            configuration, else None.

    Returns:
        a dict row: ``name, family, paper, input_shape, classes, params, trainable_params,
        weight_bytes, macs, flops, uncounted, top1, top1_source, batch_sizes,
        activation_bytes {bs: bytes}, memory_bytes {bs: weights + activations}``, and with
        ``measure``: ``latency_s, per_image_s, throughput {bs: ...}``.
    """
    batch_sizes = _check_positive_ints("batch_sizes", batch_sizes)
    spec = None
    if isinstance(model, str):
        spec = registry.get_spec(model)
        shape = _resolve_input_shape(spec, input_size)
        model = registry.build(spec.name) if shape is None else registry.build(spec.name, input_shape=shape)
        count_shape = None
    elif isinstance(model, keras.Model):
        count_shape = None
        if input_size is not None:
            if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
                raise ValueError(f"`input_size` must be None or a positive integer, got {input_size!r}.")
            if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
                raise ValueError(
                    f"`input_size` needs a model with one image input (batch, H, W, C); "
                    f"{model.name!r} has inputs {[tuple(x.shape) for x in model.inputs]}."
                )
            _, height, width, channels = model.inputs[0].shape
            for label, dim in (("height", height), ("width", width)):
                if dim is not None and dim != input_size:
                    raise ValueError(
                        f"`input_size` {input_size} does not match the fixed input {label} "
                        f"{dim} of model {model.name!r}; rebuild it for that size."
                    )
            count_shape = (input_size, input_size, channels)
    else:
        raise TypeError(f"`model` must be a registry name or a keras.Model, got {type(model).__name__}.")

    report = flop_report(model, input_shape=count_shape)
    weight_bytes = weight_memory_bytes(model)
    activation = {bs: peak_activation_memory(model, bs, input_shape=count_shape) for bs in batch_sizes}
    input_shape = report.input_shape
    outputs = model.outputs
    classes = int(outputs[0].shape[-1]) if len(outputs) == 1 and outputs[0].shape[-1] else None

    top1, top1_source = None, None
    if accuracy is not None:
        top1, top1_source = float(accuracy), "given"
    elif spec is not None and input_size in (None, spec.input_shape[0]):
        known = known_top1(spec.name, spec.keras_applications)
        if known is not None:
            top1, top1_source = known

    row = {
        "name": spec.name if spec else model.name,
        "family": spec.family if spec else "",
        "paper": spec.paper if spec else "",
        "input_shape": tuple(input_shape),
        "classes": classes,
        "params": int(model.count_params()),
        "trainable_params": int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        "weight_bytes": weight_bytes,
        "macs": report.macs,
        "flops": report.flops,
        "uncounted": report.uncounted,
        "top1": top1,
        "top1_source": top1_source,
        "batch_sizes": batch_sizes,
        "activation_bytes": activation,
        "memory_bytes": {bs: weight_bytes + activation[bs] for bs in batch_sizes},
    }
    if measure:
        timings = measure_latency(
            model, batch_sizes, warmup=warmup, repeats=repeats, input_shape=count_shape
        )
        row["latency_s"] = {bs: t["latency_s"] for bs, t in timings.items()}
        row["per_image_s"] = {bs: t["per_image_s"] for bs, t in timings.items()}
        row["throughput"] = {bs: t["throughput"] for bs, t in timings.items()}
        row["device_peak_bytes"] = {bs: t["device_peak_bytes"] for bs, t in timings.items()}
    return row


def _shape_text(shape) -> str:
    if shape and isinstance(shape[0], tuple):
        return ", ".join(_shape_text(s) for s in shape)
    return "x".join(str(d) for d in shape)


def _csv_columns(batch_sizes, measured):
    columns = [
        "name", "family", "input_shape", "classes", "params", "trainable_params",
        "weight_bytes", "macs", "flops", "top1", "top1_source", "uncounted",
    ]
    columns += [f"activation_bytes_bs{bs}" for bs in batch_sizes]
    columns += [f"memory_bytes_bs{bs}" for bs in batch_sizes]
    if measured:
        columns += [f"latency_s_bs{bs}" for bs in batch_sizes]
        columns += [f"images_per_s_bs{bs}" for bs in batch_sizes]
    return columns


def _write_csv(path, rows, batch_sizes, measured):
    columns = _csv_columns(batch_sizes, measured)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            record = {key: row[key] for key in columns if key in row}
            record["input_shape"] = _shape_text(row["input_shape"])
            record["uncounted"] = "; ".join(row["uncounted"])
            record["top1"] = "" if row["top1"] is None else row["top1"]
            record["top1_source"] = row["top1_source"] or ""
            record["classes"] = "" if row["classes"] is None else row["classes"]
            for bs in batch_sizes:
                record[f"activation_bytes_bs{bs}"] = row["activation_bytes"][bs]
                record[f"memory_bytes_bs{bs}"] = row["memory_bytes"][bs]
                if measured:
                    record[f"latency_s_bs{bs}"] = f"{row['latency_s'][bs]:.6f}"
                    record[f"images_per_s_bs{bs}"] = f"{row['throughput'][bs]:.3f}"
            writer.writerow(record)


def _write_markdown(path, rows, batch_sizes, measured, device, charts):
    lines = [
        "# Model analysis",
        "",
        f"Generated by `keras_apps.analysis.analyze` on {datetime.date.today().isoformat()}.",
        f"Device: {device}.",
        "",
        "- MACs: multiply-accumulates per image of convolutions and dense layers "
        "(BatchNorm folded, elementwise ops not counted); FLOPs = 2 x MACs.",
        "- Memory at batch B: weights + peak live activations (liveness estimate over the "
        "graph, no workspace).",
        "- Top-1: published ImageNet figure of the trained network (source in the CSV), "
        "only at the registered default configuration.",
    ]
    if measured:
        lines.append(
            "- Latency: median of timed `predict_on_batch` calls per batch on this device; "
            "compare models by ratios over alternated runs, not by single timings."
        )
    lines.append("")
    header = ["model", "family", "input", "params", "MACs", "weights MiB", "top-1 %"]
    header += [f"memory MiB bs{bs}" for bs in batch_sizes]
    if measured:
        header += [f"ms/image bs{bs}" for bs in batch_sizes]
        header += [f"img/s bs{bs}" for bs in batch_sizes]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        mark = " *" if row["uncounted"] else ""
        cells = [
            f"{row['name']}{mark}",
            row["family"],
            _shape_text(row["input_shape"]),
            f"{row['params']:,}",
            _format_count(row["macs"]),
            f"{row['weight_bytes'] / _MIB:.1f}",
            "" if row["top1"] is None else f"{row['top1']:.1f}",
        ]
        cells += [f"{row['memory_bytes'][bs] / _MIB:.1f}" for bs in batch_sizes]
        if measured:
            cells += [f"{row['per_image_s'][bs] * 1e3:.1f}" for bs in batch_sizes]
            cells += [f"{row['throughput'][bs]:.1f}" for bs in batch_sizes]
        lines.append("| " + " | ".join(cells) + " |")
    uncounted = [row for row in rows if row["uncounted"]]
    if uncounted:
        lines += ["", "\\* operations without a MAC rule (counted as 0):"]
        for row in uncounted:
            lines.append(f"- {row['name']}: {', '.join(row['uncounted'])}")
    lines.append("")
    for title, chart in charts.items():
        lines.append(f"![{title}]({os.path.basename(chart)})")
        lines.append("")
    with open(path, "w") as handle:
        handle.write("\n".join(lines))


def _figure(ncols=1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5 * ncols, 5.0), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _label_points(axes, xs, ys, names):
    for x, y, name in zip(xs, ys, names):
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)


def _operations_chart(path, rows):
    with_accuracy = [row for row in rows if row["top1"] is not None]
    figure, axes = _figure(2 if with_accuracy else 1)
    max_params = max(row["params"] for row in rows) or 1
    if with_accuracy:
        ax = axes[0]
        xs = [row["macs"] / 1e9 for row in with_accuracy]
        ys = [row["top1"] for row in with_accuracy]
        sizes = [2000 * row["params"] / max_params + 20 for row in with_accuracy]
        ax.scatter(xs, ys, s=sizes, alpha=0.45, edgecolors="k")
        _label_points(ax, xs, ys, [row["name"] for row in with_accuracy])
        ax.set_xlabel("operations (G multiply-accumulates per image)")
        ax.set_ylabel("published ImageNet top-1 accuracy (%)")
        ax.set_title("Accuracy vs operations (bubble area ~ parameters)")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    xs = [row["macs"] / 1e9 for row in rows]
    ys = [row["params"] / 1e6 for row in rows]
    sizes = [2000 * row["params"] / max_params + 20 for row in rows]
    ax.scatter(xs, ys, s=sizes, alpha=0.45, edgecolors="k")
    _label_points(ax, xs, ys, [row["name"] for row in rows])
    if all(x > 0 for x in xs) and all(y > 0 for y in ys):
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_minor_formatter(NullFormatter())  # decade labels only, no overlapping ones
    ax.set_xlabel("operations (G multiply-accumulates per image)")
    ax.set_ylabel("parameters (millions)")
    ax.set_title("Parameters vs operations, all models")
    ax.grid(alpha=0.3, which="both")
    figure.savefig(path, dpi=120)


def _per_batch_chart(path, rows, key, scale, ylabel, title):
    figure, (ax,) = _figure(1)
    if len(rows) > 8:
        figure.set_size_inches(10.0, 6.0)
    import matplotlib

    colors = matplotlib.colormaps["tab20"].colors
    styles = ("-", "--", ":", "-.")
    for index, row in enumerate(rows):
        batch_sizes = list(row["batch_sizes"])
        ax.plot(
            batch_sizes,
            [row[key][bs] * scale for bs in batch_sizes],
            marker="o",
            color=colors[index % len(colors)],
            linestyle=styles[(index // len(colors)) % len(styles)],
            label=row["name"],
        )
    ticks = sorted({bs for row in rows for bs in row["batch_sizes"]})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(bs) for bs in ticks])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=2 if len(rows) > 20 else 1)
    figure.savefig(path, dpi=120)


def analyze(
    pattern: str | None = None,
    *,
    batch_sizes=(1, 8, 32),
    output_dir="analysis",
    input_size: int | None = None,
    measure: bool = True,
    repeats: int = 5,
    accuracies: Mapping[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Analyses the registered models matching ``pattern`` and writes the report.

    Args:
        pattern: fnmatch pattern over registry names (``"resnet*"``); None: all models.
        batch_sizes: batch sizes of the memory estimate and of the timings.
        output_dir: folder for ``analysis.md``, ``analysis.csv`` and the PNG charts
            (created if needed).
        input_size: square input side for every model (default: each model's own).
        measure: time inference on the current device (slow for big models on a CPU).
        repeats: timed calls per model and batch size (median reported).
        accuracies: ``{registry name: top-1 %}`` overriding the published figures of
            :mod:`keras_apps.analysis.accuracy`.
        progress: called with one line per model (e.g. ``print``).

    Returns:
        ``{"rows": [analyze_model rows], "device": str, "paths": {"markdown", "csv",
        "operations_chart", "memory_chart", and with ``measure`` "latency_chart": path}}``.
        ``operations_chart`` has an accuracy panel only if a model has a known accuracy.
    """
    batch_sizes = _check_positive_ints("batch_sizes", batch_sizes)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"`repeats` must be a positive integer, got {repeats!r}.")
    names = registry.list_models(pattern)
    if not names:
        raise ValueError(
            f"No registered model matches the pattern {pattern!r}; "
            f"`keras_apps.list_models()` lists the {len(registry.list_models())} names."
        )
    accuracies = dict(accuracies or {})
    unknown = sorted(set(accuracies) - set(names))
    if unknown:
        raise ValueError(f"`accuracies` names models that are not analysed: {unknown}; analysed: {names}.")
    os.makedirs(output_dir, exist_ok=True)

    rows = []
    for name in names:
        if progress is not None:
            progress(f"analysing {name}")
        rows.append(
            analyze_model(
                name,
                batch_sizes=batch_sizes,
                input_size=input_size,
                measure=measure,
                repeats=repeats,
                accuracy=accuracies.get(name),
            )
        )
        keras.backend.clear_session()
        gc.collect()

    paths = {
        "markdown": os.path.join(output_dir, "analysis.md"),
        "csv": os.path.join(output_dir, "analysis.csv"),
        "operations_chart": os.path.join(output_dir, "operations_vs_parameters.png"),
        "memory_chart": os.path.join(output_dir, "memory_vs_batch_size.png"),
    }
    _operations_chart(paths["operations_chart"], rows)
    _per_batch_chart(
        paths["memory_chart"], rows, "memory_bytes", 1 / _MIB, "weights + peak activations (MiB, estimate)",
        "Memory vs batch size",
    )
    if measure:
        paths["latency_chart"] = os.path.join(output_dir, "latency_vs_batch_size.png")
        _per_batch_chart(
            paths["latency_chart"], rows, "per_image_s", 1e3, "inference time per image (ms)",
            "Inference time per image vs batch size",
        )
    charts = {key: path for key, path in paths.items() if key.endswith("_chart")}
    device = describe_device()
    _write_csv(paths["csv"], rows, batch_sizes, measure)
    _write_markdown(paths["markdown"], rows, batch_sizes, measure, device, charts)
    return {"rows": rows, "device": device, "paths": paths}


def model_table_markdown(pattern: str | None = None) -> str:
    """The README's model table: one row per registered model at its defaults.

    Columns: name, family, default input, classes, parameters (``model.count_params()``),
    MACs and FLOPs (= 2 x MACs) per image at the default input, paper. Every model is built
    (``weights=None``) to count; a ``*`` marks MACs that miss operations without a rule.
    """
    names = registry.list_models(pattern)
    if not names:
        raise ValueError(f"No registered model matches the pattern {pattern!r}.")
    lines = [
        "| Model | Family | Input | Classes | Params | MACs | FLOPs | Paper |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    footnotes = []
    for name in names:
        spec = registry.get_spec(name)
        model = registry.build(name)
        report = flop_report(model)
        mark = ""
        if report.uncounted:
            mark = " *"
            footnotes.append(f"{name}: {', '.join(report.uncounted)}")
        lines.append(
            f"| `{name}` | {spec.family} | {_shape_text(spec.input_shape)} | {spec.classes} | "
            f"{model.count_params():,} | {_format_count(report.macs)}{mark} | "
            f"{_format_count(report.flops)}{mark} | {spec.paper} |"
        )
        del model
        keras.backend.clear_session()
        gc.collect()
    lines += [
        "",
        "MACs: multiply-accumulates per image of convolutions and dense layers at the default "
        "input (BatchNorm folded, elementwise operations not counted; "
        "`keras_apps.analysis.count_flops`); FLOPs = 2 x MACs.",
    ]
    if footnotes:
        lines += ["", "\\* operations without a MAC rule, counted as 0:"]
        lines += [f"- {note}" for note in footnotes]
    return "\n".join(lines) + "\n"
