"""keras_apps: the CNN papers of the lecture notes as Keras 3 applications.

    >>> import keras_apps
    >>> keras_apps.list_models("vgg*")
    ['vgg16', 'vgg19']
    >>> model = keras_apps.build("resnet50", weights=None)
    >>> features = keras_apps.feature_extractor(model)   # dict of named stage outputs
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras_apps.layers  # noqa: E402,F401  (registers the custom layers for safe_mode loading)
from keras_apps.graph import apply_layers, feature_extractor, split_model  # noqa: E402
from keras_apps.registry import build, get_spec, list_models, model_info, register_model  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "apply_layers",
    "split_model",
    "build",
    "feature_extractor",
    "get_spec",
    "list_models",
    "model_info",
    "register_model",
    "__version__",
]
