"""Deformable ResNets (Dai et al., "Deformable Convolutional Networks", ICCV 2017; Zhu et al.,
"Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019).

The ResNet-50/101 of :mod:`keras_apps.models.resnet` (keras.applications layout and layer
names) with the 3x3 convolutions of some bottleneck stages replaced by
:class:`keras_apps.layers.DeformableConv2D` under the same names (``conv5_block1_2_conv``, ...):

- ``resnet50_dcn`` / ``resnet101_dcn`` (DCNv1): the three 3x3 convolutions of res5 (conv5_x),
  as in Dai et al. Sec. 3 / Table 1.
- ``resnet50_dcnv2`` (DCNv2): modulated deformable convolutions in every 3x3 convolution of
  res3-res5 (conv3_x-conv5_x), as in Zhu et al. Sec. 3.

``deformable_stages`` picks the stages (2-5, i.e. res2-res5) for any of them, e.g.
``keras_apps.build("resnet50_dcn", deformable_stages=(3, 4, 5))``. The offset branches start
at zero, so a DCNv1 network computes exactly its plain ResNet until it learns offsets;
:func:`transfer_resnet_weights` copies a plain ResNet's weights in (the papers start from
ImageNet ResNets).
"""

from __future__ import annotations

import keras

from keras_apps.layers import DeformableConv2D
from keras_apps.models import resnet as _resnet_family
from keras_apps.models.resnet import _features, _resnet
from keras_apps.registry import register_model

PAPER_V1 = "Dai et al., Deformable Convolutional Networks, ICCV 2017"
PAPER_V2 = "Zhu et al., Deformable ConvNets v2: More Deformable, Better Results, CVPR 2019"


def deformable_conv3x3(modulated=False, offset_groups=1):
    """Factory for :func:`keras_apps.models.resnet.bottleneck_block`'s ``conv3x3``."""

    def make(filters, use_bias=True, name=None):
        return DeformableConv2D(
            filters,
            3,
            padding="same",
            modulated=modulated,
            offset_groups=offset_groups,
            use_bias=use_bias,
            kernel_initializer=_resnet_family._KERNEL_INIT,
            name=name,
        )

    return make


def _check_stages(deformable_stages):
    try:
        stages = tuple(sorted({int(s) for s in deformable_stages}))
    except (TypeError, ValueError):
        raise ValueError(
            f"`deformable_stages` must be stage numbers 2-5 (res2-res5), e.g. (5,) or (3, 4, 5); "
            f"got {deformable_stages!r}."
        ) from None
    if not stages or stages[0] < 2 or stages[-1] > 5:
        raise ValueError(
            f"`deformable_stages` must be stage numbers 2-5 (res2-res5), e.g. (5,) or (3, 4, 5); "
            f"got {deformable_stages!r}."
        )
    return stages


def transfer_resnet_weights(model: keras.Model, source: keras.Model) -> int:
    """Copies the weights of a plain ResNet (e.g. ``keras_apps.build("resnet50")``) into the
    deformable one layer by layer name; deformable layers take the 3x3 ``kernel``/``bias``
    and keep their zero offset branch. Returns the number of layers copied."""
    copied = 0
    for layer in model.layers:
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            continue
        weights = other.get_weights()
        if isinstance(layer, DeformableConv2D):
            own = layer.get_weights()
            own[: len(weights)] = weights
            weights = own
        if weights:
            layer.set_weights(weights)
            copied += 1
    return copied


def _register(model_name, blocks, modulated, stages, params, paper):
    @register_model(
        model_name,
        family="resnet_dcn",
        paper=paper,
        input_shape=(224, 224, 3),
        classes=1000,
        params=params,
        feature_layers=_features(blocks),
        min_size=32,
        classifier_layer="predictions",
        logits_layer="predictions",
    )
    def builder(
        include_top=True,
        weights=None,
        input_shape=None,
        input_tensor=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        deformable_stages=stages,
        offset_groups=1,
        name=None,
    ):
        factory = deformable_conv3x3(modulated, offset_groups)
        return _resnet(
            model_name=model_name,
            blocks=blocks,
            block="bottleneck",
            use_bias=True,
            include_top=include_top,
            weights=weights,
            input_shape=input_shape,
            input_tensor=input_tensor,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
            default_input_shape=(224, 224, 3),
            default_classes=1000,
            stage_conv3x3={stage: factory for stage in _check_stages(deformable_stages)},
        )

    depth = 50 if blocks == (3, 4, 6, 3) else 101
    version = "modulated DCNv2" if modulated else "DCNv1"
    builder.__name__ = builder.__qualname__ = model_name
    builder.__doc__ = (
        f"ResNet-{depth} with {version} 3x3 convolutions in stages {stages} by default; "
        "keras.applications arguments plus `deformable_stages` (2-5) and `offset_groups`."
    )
    return builder


resnet50_dcn = _register("resnet50_dcn", (3, 4, 6, 3), False, (5,), 25_885_598, PAPER_V1)
resnet50_dcnv2 = _register("resnet50_dcnv2", (3, 4, 6, 3), True, (3, 4, 5), 26_507_975, PAPER_V2)
resnet101_dcn = _register("resnet101_dcn", (3, 4, 23, 3), False, (5,), 44_956_062, PAPER_V1)
