"""Memory and compute analysis of any registered model (Canziani et al. 2016).

    >>> import keras_apps
    >>> from keras_apps import analysis
    >>> model = keras_apps.build("resnet50")
    >>> analysis.count_flops(model)                  # multiply-accumulates per image
    3857973248
    >>> analysis.weight_memory_bytes(model), analysis.peak_activation_memory(model, 8)
    >>> analysis.measure_latency(model, (1, 8), repeats=3)
    >>> analysis.analyze("resnet*", batch_sizes=(1, 8, 32), output_dir="analysis")

Counting rules: :mod:`keras_apps.analysis.flops` (MACs), :mod:`keras_apps.analysis.memory`
(weights, activation liveness estimate), :mod:`keras_apps.analysis.latency` (timings),
:mod:`keras_apps.analysis.accuracy` (published top-1 figures for the charts).
"""

from keras_apps.analysis.accuracy import KNOWN_TOP1, known_top1
from keras_apps.analysis.flops import FlopReport, count_flops, flop_report, register_mac_counter
from keras_apps.analysis.latency import describe_device, measure_latency
from keras_apps.analysis.memory import (
    ActivationMemory,
    activation_memory,
    peak_activation_memory,
    weight_memory_bytes,
)
from keras_apps.analysis.report import analyze, analyze_model, model_table_markdown

__all__ = [
    "KNOWN_TOP1",
    "ActivationMemory",
    "FlopReport",
    "activation_memory",
    "analyze",
    "analyze_model",
    "count_flops",
    "describe_device",
    "flop_report",
    "known_top1",
    "measure_latency",
    "model_table_markdown",
    "peak_activation_memory",
    "register_mac_counter",
    "weight_memory_bytes",
]
