"""Developmental networks: "Growing a Brain: Fine-Tuning by Increasing Model Capacity"
(Wang, Ramanan, Hebert, CVPR 2017).

- :func:`grow`: DA-, WA-, DWA- and WWA-CNN from any trained classifier (and from a grown
  one: cumulative growth); :func:`transfer`: classic fine-tuning's target network.
- :func:`finetune` with the paper's scenarios (``"new"``, ``"fc7-new"``, ``"fc6-new"``,
  ``"all"``), new layers at 10x the learning rate; :func:`retrain_source` (learning without
  forgetting); :func:`new_layers`, :func:`scenario_layers`, :func:`task_heads`.
- :mod:`keras_apps.growth.analysis`: t-SNE, maximally activating images per unit and
  learning curves of old, new and combined units.
"""

from keras_apps.growth.core import (
    ABBREVIATIONS,
    MODES,
    SCENARIOS,
    generation,
    grow,
    top_representation_layer,
    transfer,
)
from keras_apps.growth.finetune import (
    finetune,
    new_layers,
    retrain_source,
    scenario_layers,
    task_heads,
)
from keras_apps.growth import models  # noqa: F401  (registers alexnet_da ... vgg16_wwa)

__all__ = [
    "ABBREVIATIONS",
    "MODES",
    "SCENARIOS",
    "finetune",
    "generation",
    "grow",
    "new_layers",
    "retrain_source",
    "scenario_layers",
    "task_heads",
    "top_representation_layer",
    "transfer",
]
