"""Local response normalisation across channels (Krizhevsky, Sutskever, Hinton, NIPS 2012)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_apps")
class LocalResponseNormalization(keras.layers.Layer):
    """Normalises each activation by the energy of its ``size`` neighbouring channels.

    Krizhevsky et al. (2012), Sec. 3.3:
    ``b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2)^beta``
    at every position, with ``n = size`` adjacent channels out of ``N`` (the paper: k=2,
    n=5, alpha=1e-4, beta=0.75). Caffe's LRN (used by GoogLeNet) divides ``alpha`` by ``n``
    and uses ``k=1``: pass ``alpha=alpha_caffe / size, k=1.0`` for it. No parameters.

    Args:
        size: number of adjacent channels ``n`` summed over (odd).
        k, alpha, beta: the constants of the equation above.
    """

    def __init__(self, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75, **kwargs):
        super().__init__(**kwargs)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"`size` must be a positive odd integer, got {size!r}.")
        if k <= 0 or alpha < 0 or beta < 0:
            raise ValueError(
                f"Need k > 0, alpha >= 0 and beta >= 0, got k={k!r}, alpha={alpha!r}, beta={beta!r}."
            )
        self.size = size
        self.k = float(k)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, inputs):
        channels = inputs.shape[-1]
        radius = self.size // 2
        squared = ops.pad(ops.square(inputs), [[0, 0], [0, 0], [0, 0], [radius, radius]])
        window_sum = squared[..., :channels]
        for offset in range(1, self.size):
            window_sum = window_sum + squared[..., offset : offset + channels]
        return inputs / ops.power(self.k + self.alpha * window_sum, self.beta)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "k": self.k, "alpha": self.alpha, "beta": self.beta})
        return config
