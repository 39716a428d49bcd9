"""Keras Tuner searches over any registered model and over the methods.

- :mod:`~keras_apps.tuning.hypermodels`: :class:`ModelHyperModel` (every family: the
  builder's own width/depth/dropout/... arguments, depth variants, learning rate and
  optimizer), :class:`GrowthHyperModel` (mode, units, scale init) and
  :class:`HDCNNHyperModel` (K, gamma, lambda, split layer);
- :mod:`~keras_apps.tuning.search`: :func:`search` (random, Hyperband or Bayesian
  optimisation on the held-out validation split; results table and plot; the best model
  saved and scored once on the test split), keras-tuner's distributed chief/worker mode.

    >>> from keras_apps import tuning
    >>> result = tuning.search("nin_cifar", "digits", tuner="random", max_trials=4, epochs=1,
    ...                        output_dir="tuning/nin", image_size=(16, 16), limit=300)
    >>> result.best_hyperparameters, result.metrics["test"]["top1_error"]
"""

from keras_apps.tuning.hypermodels import (
    BUILDER_SPACE,
    TRAINING_SPACE,
    GrowthHyperModel,
    HDCNNHyperModel,
    ModelHyperModel,
    family_variants,
    tunable_arguments,
)
from keras_apps.tuning.search import (
    OBJECTIVES,
    TUNERS,
    SearchResult,
    make_tuner,
    role,
    search,
    write_results,
)

__all__ = [
    "BUILDER_SPACE",
    "OBJECTIVES",
    "TRAINING_SPACE",
    "TUNERS",
    "GrowthHyperModel",
    "HDCNNHyperModel",
    "ModelHyperModel",
    "SearchResult",
    "family_variants",
    "make_tuner",
    "role",
    "search",
    "tunable_arguments",
    "write_results",
]
