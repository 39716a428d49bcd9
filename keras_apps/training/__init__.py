"""Training, evaluation and distribution strategies for any registered model."""

from keras_apps.training.loop import (
    LR_SCHEDULES,
    TrainResult,
    atomic_save_model,
    atomic_write_text,
    compile_for_classification,
    evaluate,
    fit,
    learning_rate_schedule,
    load_model,
)
from keras_apps.training.strategy import STRATEGIES, get_strategy

__all__ = [
    "LR_SCHEDULES",
    "STRATEGIES",
    "TrainResult",
    "atomic_save_model",
    "atomic_write_text",
    "compile_for_classification",
    "evaluate",
    "fit",
    "get_strategy",
    "learning_rate_schedule",
    "load_model",
]
