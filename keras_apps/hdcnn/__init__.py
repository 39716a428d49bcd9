"""HD-CNN (Yan et al., ICCV 2015): hierarchical deep CNNs around any registered building block.

    >>> import keras_apps
    >>> model = keras_apps.build("hdcnn")                      # NIN, CIFAR-100, default K=9
    >>> model = keras_apps.build("hdcnn", classes=10, hierarchy=tree,
    ...                          building_block_kwargs={"width": 0.25})
    >>> from keras_apps import hdcnn
    >>> result = hdcnn.fit("nin_cifar", "cifar10", n_coarse=3, gamma=5)   # the whole method
    >>> out = hdcnn.conditional_predict(result.model, images, beta=4)     # skips components

- the model (:mod:`~keras_apps.hdcnn.model`): shared layers, coarse component with the
  fine-to-coarse aggregation, K fine components, probabilistic averaging; the paper's and
  the authors' release conventions;
- the category hierarchy (:mod:`~keras_apps.hdcnn.hierarchy`): :class:`Hierarchy`,
  :func:`learn_hierarchy` (spectral clustering of the confusion matrix, overlapping sets);
- the objective (:mod:`~keras_apps.hdcnn.losses`): :func:`coarse_consistency_loss`;
- the multi-phase training (:mod:`~keras_apps.hdcnn.pipeline`): :func:`fit`;
- conditional execution and its SavedModel (:mod:`~keras_apps.hdcnn.conditional`).

Product quantization of the weights is :mod:`keras_apps.compression`.
"""

from keras_apps.hdcnn.conditional import (
    ConditionalResult,
    conditional_predict,
    export_saved_model,
    serving_module,
)
from keras_apps.hdcnn.hierarchy import Hierarchy, confusion_matrix, learn_hierarchy
from keras_apps.hdcnn.losses import CoarseConsistencyLoss, coarse_consistency_loss, hdcnn_losses
from keras_apps.hdcnn.model import (
    CONVENTIONS,
    SHARED_UNTIL,
    Convention,
    HDCNNComponents,
    build_hdcnn,
    components,
    convention_of,
    hierarchy_of,
    resolve_hierarchy,
)
from keras_apps.hdcnn.pipeline import (
    HDCNNResult,
    finetune,
    fit,
    held_out_probabilities,
    hierarchy_from_building_block,
    pretrain_fine_components,
)

__all__ = [
    "CONVENTIONS",
    "SHARED_UNTIL",
    "CoarseConsistencyLoss",
    "ConditionalResult",
    "Convention",
    "HDCNNComponents",
    "HDCNNResult",
    "Hierarchy",
    "build_hdcnn",
    "coarse_consistency_loss",
    "components",
    "conditional_predict",
    "confusion_matrix",
    "convention_of",
    "export_saved_model",
    "finetune",
    "fit",
    "hdcnn_losses",
    "held_out_probabilities",
    "hierarchy_from_building_block",
    "hierarchy_of",
    "learn_hierarchy",
    "pretrain_fine_components",
    "resolve_hierarchy",
    "serving_module",
]
