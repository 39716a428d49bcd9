"""Tensor operations that Keras does not provide (TensorFlow backend)."""

from keras_apps.ops.deform_conv import deform_conv2d

__all__ = ["deform_conv2d"]
