"""Training, evaluation and distribution strategies for any model.

``fit`` / ``evaluate`` (:mod:`keras_apps.training.loop`), per-layer learning-rate
multipliers (``with_lr_multipliers``), freezing by layer-name pattern (``set_trainable``),
the ties-aware top-k metric (``TopKAccuracy``), mixed precision (``precision_policy``,
``with_precision``) and ``tf.distribute`` strategies by name.
"""

from keras_apps.training.freezing import set_trainable
from keras_apps.training.loop import (
    LR_SCHEDULES,
    TrainResult,
    atomic_save_model,
    atomic_write_text,
    classification_metrics,
    compile_for_classification,
    evaluate,
    fit,
    learning_rate_schedule,
    load_model,
    model_precision,
    outputs_probabilities,
    with_precision,
)
from keras_apps.training.metrics import TopKAccuracy, top_k_accuracy
from keras_apps.training.multipliers import with_lr_multipliers
from keras_apps.training.precision import PRECISIONS, precision_policy
from keras_apps.training.strategy import STRATEGIES, get_strategy

__all__ = [
    "LR_SCHEDULES",
    "PRECISIONS",
    "STRATEGIES",
    "TopKAccuracy",
    "TrainResult",
    "atomic_save_model",
    "atomic_write_text",
    "classification_metrics",
    "compile_for_classification",
    "evaluate",
    "fit",
    "get_strategy",
    "learning_rate_schedule",
    "load_model",
    "model_precision",
    "outputs_probabilities",
    "precision_policy",
    "set_trainable",
    "top_k_accuracy",
    "with_lr_multipliers",
    "with_precision",
]
