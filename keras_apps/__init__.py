"""keras_apps: the CNN papers of the lecture notes as Keras 3 applications.

    >>> import keras_apps
    >>> keras_apps.list_models("vgg1?")
    ['vgg16', 'vgg19']
    >>> model = keras_apps.build("resnet50", weights=None)
    >>> features = keras_apps.feature_extractor(model)   # dict of named stage outputs

``import keras_apps`` registers every Keras-serialisable object of the package (layers,
metrics, optimizer wrappers), so a ``.keras`` file of any model, method models included,
loads with ``keras.saving.load_model(path, safe_mode=True)`` in a fresh process. The rule
for new code: a subpackage that defines ``@keras.saving.register_keras_serializable``
objects is imported below (layers belong in ``keras_apps/layers/``, which is);
``tests/test_packaging.py`` scans the sources and fails for one that is not.

This import loads Keras and TensorFlow. The ``keras-apps`` command line does not import it
for ``--help``, ``list`` and ``info`` (see the top-level module ``keras_apps_cli``).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras_apps.layers  # noqa: E402,F401  (registers the custom layers for safe_mode loading)
import keras_apps.training  # noqa: E402,F401  (registers the training metrics and optimizers)
import keras_apps.compression  # noqa: E402,F401  (registers the product-quantized layers)
import keras_apps.hdcnn  # noqa: E402,F401  (registers the HD-CNN models and loss)
import keras_apps.growth  # noqa: E402,F401  (grown-network variants and training hints)
from keras_apps.growth import grow  # noqa: E402
from keras_apps.graph import (  # noqa: E402
    apply_layers,
    feature_extractor,
    logits_model,
    split_model,
    with_input_shape,
)
from keras_apps.registry import (  # noqa: E402
    build,
    check_arguments,
    get_spec,
    list_models,
    model_info,
    preprocessing_for,
    register_model,
    training_hints,
)

__version__ = "0.1.0"

__all__ = [
    "apply_layers",
    "build",
    "check_arguments",
    "feature_extractor",
    "grow",
    "get_spec",
    "list_models",
    "logits_model",
    "model_info",
    "preprocessing_for",
    "register_model",
    "split_model",
    "training_hints",
    "with_input_shape",
    "__version__",
]
