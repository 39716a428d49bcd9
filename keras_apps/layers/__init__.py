"""Custom Keras layers of keras_apps: every one serialisable (no Lambda layers), so `.keras`
files load with ``safe_mode=True``."""

from keras_apps.layers.shortcut import ZeroPaddingShortcut

__all__ = ["ZeroPaddingShortcut"]
