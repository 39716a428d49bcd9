"""Parameter compression by product quantization (HD-CNN, Yan et al. 2015, "Test-time
efficiency"; Gong et al. 2014).

    >>> from keras_apps.compression import compress_model
    >>> small, report = compress_model(model, s=2, k=64)          # every large Dense/Conv2D
    >>> small, report = compress_model(hdcnn, "fine_component_*/*", s=2, k=64)  # nested models
    >>> report["totals"]["factor"], report["layers"]["fine_component_0/conv2_fine_0"]["factor"]

- :func:`product_quantize` / :func:`reconstruct` / :func:`compression_factor`: the matrix
  method (``W`` ``m x n`` -> uint8 codes ``(m, n/s)`` + float32 codebooks ``(k, n)``; factor
  ``32mn / (32kn + 8mn/s)``).
- :func:`compress_model`: a copy of a model whose chosen Dense/Conv2D layers become
  :class:`ProductQuantizedDense` / :class:`ProductQuantizedConv2D`, which run from the codes
  (their ``.keras`` files store the uint8 codes, so they are smaller on disk too).
"""

from keras_apps.compression.compress import DEFAULT_MIN_SIZE, compress_model, kernel_matrix
from keras_apps.compression.layers import ProductQuantizedConv2D, ProductQuantizedDense
from keras_apps.compression.product_quantization import (
    MAX_CODEBOOK_SIZE,
    compression_factor,
    product_quantize,
    reconstruct,
)

__all__ = [
    "DEFAULT_MIN_SIZE",
    "MAX_CODEBOOK_SIZE",
    "ProductQuantizedConv2D",
    "ProductQuantizedDense",
    "compress_model",
    "compression_factor",
    "kernel_matrix",
    "product_quantize",
    "reconstruct",
]

# tfmot pruning / QAT / int8 TFLite (keras_apps.compression.optimize) and the Keras 3 ->
# tf_keras bridge load tf_keras and tensorflow-model-optimization; they are imported on first
# use, so `import keras_apps` stays as light as before.
_LAZY = {
    "optimize_model": "keras_apps.compression.optimize",
    "prune_model": "keras_apps.compression.optimize",
    "quantization_aware": "keras_apps.compression.optimize",
    "qat_tflite": "keras_apps.compression.optimize",
    "kernel_sparsity": "keras_apps.compression.optimize",
    "zipped_size": "keras_apps.compression.optimize",
    "to_tf_keras": "keras_apps.compression.tfmot_bridge",
    "to_keras": "keras_apps.compression.tfmot_bridge",
    "UnsupportedLayerError": "keras_apps.compression.tfmot_bridge",
}
__all__ += sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
