"""Custom Keras layers of keras_apps: every one serialisable (no Lambda layers), so `.keras`
files load with ``safe_mode=True``."""

from keras_apps.layers.deformable import DeformableConv2D
from keras_apps.layers.local_response_normalization import LocalResponseNormalization
from keras_apps.layers.normalize_scale import L2NormalizeScale
from keras_apps.layers.offset_pooling import OffsetMaxPooling2D
from keras_apps.layers.shortcut import ZeroPaddingShortcut
from keras_apps.layers.squeeze_excitation import SqueezeExcitation

__all__ = [
    "DeformableConv2D",
    "L2NormalizeScale",
    "LocalResponseNormalization",
    "OffsetMaxPooling2D",
    "SqueezeExcitation",
    "ZeroPaddingShortcut",
]
