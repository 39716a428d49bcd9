"""Published ImageNet top-1 accuracies, for the accuracy axis of the operations chart.

These are the figures of trained networks from the cited sources, attached to an analysed
model only at its registered default configuration (the networks here are not trained by the
analysis). Protocols differ between sources, as noted: keras.applications' table is
single-crop 224x224 with its released weights, as is torchvision's (whose ResNet-18/34
layout the registry's ``resnet18``/``resnet34`` follow); Krizhevsky et al. (2012) average
one network's predictions over ten 224x224 patches (corners, centre and their mirrors).

Lookup (:func:`known_top1`): the registry name, then the ``keras_applications`` name the
registry entry declares. A model found in neither is charted without an accuracy (it still
appears on the parameters-vs-operations panel).
"""

from __future__ import annotations

__all__ = ["KNOWN_TOP1", "known_top1"]

_KERAS_DOCS = "keras.io/api/applications (single crop, 224x224)"
_TORCHVISION = "pytorch.org/vision/stable/models, IMAGENET1K_V1 weights (single crop, 224x224)"
_EFFICIENTNET_PAPER = "Tan & Le 2019, Table 2"

#: name -> (top-1 accuracy in %, source). Keys are registry names or keras.applications names.
KNOWN_TOP1: dict[str, tuple[float, str]] = {
    "VGG16": (71.3, _KERAS_DOCS),
    "VGG19": (71.3, _KERAS_DOCS),
    "ResNet50": (74.9, _KERAS_DOCS),
    "ResNet101": (76.4, _KERAS_DOCS),
    "ResNet152": (76.6, _KERAS_DOCS),
    "DenseNet121": (75.0, _KERAS_DOCS),
    "DenseNet169": (76.2, _KERAS_DOCS),
    "DenseNet201": (77.3, _KERAS_DOCS),
    "EfficientNetB0": (77.1, _EFFICIENTNET_PAPER),
    "EfficientNetB1": (79.1, _EFFICIENTNET_PAPER),
    "EfficientNetB2": (80.1, _EFFICIENTNET_PAPER),
    "EfficientNetB3": (81.6, _EFFICIENTNET_PAPER),
    "EfficientNetB4": (82.9, _EFFICIENTNET_PAPER),
    "EfficientNetB5": (83.6, _EFFICIENTNET_PAPER),
    "EfficientNetB6": (84.0, _EFFICIENTNET_PAPER),
    "EfficientNetB7": (84.3, _EFFICIENTNET_PAPER),
    "resnet18": (69.758, _TORCHVISION),
    "resnet34": (73.314, _TORCHVISION),
    "alexnet": (59.3, "Krizhevsky et al. 2012, Table 2 (1 CNN, ILSVRC-2012 validation, 10 patches)"),
}


def known_top1(name: str, keras_applications: str | None = None) -> tuple[float, str] | None:
    """``(top-1 %, source)`` for a registry name or its keras.applications twin, else None."""
    if name in KNOWN_TOP1:
        return KNOWN_TOP1[name]
    if keras_applications and keras_applications in KNOWN_TOP1:
        return KNOWN_TOP1[keras_applications]
    return None
