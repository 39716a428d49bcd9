"""The test every custom layer goes through (after keras-hub's ``TestCase.run_layer_test``).

    >>> from keras_apps.testing import run_layer_test
    >>> layer = run_layer_test(SqueezeExcitation, {"reduction": 2}, x, expected_output_shape=x.shape)

:func:`run_layer_test` checks, for one layer configuration and one input batch:

1. serialisation: ``get_config`` is JSON-serialisable, ``from_config(get_config())`` (and
   ``serialize_keras_object``/``deserialize_keras_object``) reproduces the config, and the
   revived layer computes the same outputs with the same weights (a constructor argument
   missing from the config shows here when ``init_kwargs`` are not the defaults);
2. shapes: the symbolic output (``keras.KerasTensor`` inputs, with the batch size known and
   unknown) has the eager output's shape and dtype, and ``expected_output_shape`` if given;
3. a ``.keras`` round trip of a model around the layer, loaded with ``safe_mode=True``,
   gives identical outputs;
4. the gradient with respect to every floating input is finite, and one SGD step
   (``model.fit``, graph mode) changes every trainable weight;
5. a forward pass under the ``"mixed_bfloat16"`` policy computes in bfloat16, keeps float32
   weights and stays within ``bfloat16_tolerance`` (relative to the output's largest
   magnitude) of the float32 output with the same weights;
6. under ``tf.distribute.MirroredStrategy`` the layer predicts the eager outputs and one SGD
   step gives the weights of the same step taken without a strategy.

The strategy is a real ``MirroredStrategy`` over the first two logical devices (GPUs, else
CPUs) or, on a machine with one, over that device alone (one replica). TensorFlow fixes its
logical devices when it first initialises them, so a test process that wants two replicas on
a CPU must call :func:`configure_cpu_replicas` before anything touches TensorFlow devices
(``tests/test_layers.py`` re-runs every case that way in a subprocess).
"""

from __future__ import annotations

import json
import pathlib
import tempfile

import keras
import numpy as np
import tensorflow as tf

__all__ = ["configure_cpu_replicas", "mirrored_strategy", "run_layer_test"]


def configure_cpu_replicas(count: int = 2) -> None:
    """Splits the physical CPU into ``count`` logical devices (before TF initialises them)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def mirrored_strategy(max_replicas: int = 2) -> tf.distribute.MirroredStrategy:
    """``MirroredStrategy`` over up to ``max_replicas`` logical GPUs, else logical CPUs."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices[:max_replicas]])


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape=None,
    *,
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
    run_training_check=True,
    run_precision_check=True,
    run_distribution_check=True,
    bfloat16_tolerance=0.05,
    strategy=None,
):
    """Runs the checks above on ``layer_cls(**init_kwargs)`` called on ``input_data`` (an
    array, or a list of arrays for a layer called on a list); returns the float32 layer
    the checks compared against (built), so the caller can compare ``layer(input_data)``
    with an independent reference.

    ``strategy`` overrides the :func:`mirrored_strategy` of the distribution check.
    Raises ``AssertionError`` naming the failed check.
    """
    init_kwargs = dict(init_kwargs)
    inputs = _as_list(input_data)
    multi = isinstance(input_data, (list, tuple))

    layer = layer_cls(**init_kwargs)
    output = _call(layer, inputs, multi)
    output_np = _to_numpy(output)
    reference = layer
    if expected_output_shape is not None:
        _check(
            tuple(output_np.shape) == tuple(expected_output_shape),
            f"eager output shape {tuple(output_np.shape)} != expected {tuple(expected_output_shape)}",
        )
    _check(np.all(np.isfinite(output_np)), "the eager output has non-finite values")
    _check_weight_counts(layer, expected_num_trainable_weights, expected_num_non_trainable_weights)

    _check_serialization(layer_cls, layer, inputs, multi, output_np)
    _check_symbolic(layer_cls, init_kwargs, inputs, multi, output)
    _check_saving(layer_cls, reference, init_kwargs, inputs, multi, output_np)
    if run_training_check:
        stepped = _check_training(layer_cls, reference, init_kwargs, inputs, multi)
    if run_precision_check:
        _check_bfloat16(layer_cls, reference, init_kwargs, inputs, multi, output_np, bfloat16_tolerance)
    if run_distribution_check:
        _check_distributed(
            layer_cls, reference, init_kwargs, inputs, multi, output_np,
            stepped if run_training_check else None, strategy or mirrored_strategy(),
        )
    return reference


# -- the checks --------------------------------------------------------------------------------


def _check_serialization(layer_cls, layer, inputs, multi, output_np):
    config = layer.get_config()
    try:
        config_json = json.dumps(config, sort_keys=True)
    except TypeError as error:
        raise AssertionError(f"{layer_cls.__name__}.get_config() is not JSON-serialisable: {error}") from None
    revived = layer_cls.from_config(json.loads(config_json))
    _check(
        json.dumps(revived.get_config(), sort_keys=True) == config_json,
        f"from_config(get_config()) changes the config:\n{config}\n->\n{revived.get_config()}",
    )
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    deserialized = keras.saving.deserialize_keras_object(serialized)
    _check(type(deserialized) is layer_cls, f"deserialize_keras_object gives {type(deserialized).__name__}")
    _check(
        json.dumps(deserialized.get_config(), sort_keys=True) == config_json,
        "serialize/deserialize_keras_object changes the config",
    )
    _call(revived, inputs, multi)
    _copy_weights(layer, revived)
    _check_equal(
        _to_numpy(_call(revived, inputs, multi)), output_np,
        "the layer revived from its config computes different outputs with the same weights "
        "(a constructor argument missing from get_config?)",
    )


def _check_symbolic(layer_cls, init_kwargs, inputs, multi, eager_output):
    for batch in (inputs[0].shape[0], None):
        symbolic = [keras.KerasTensor((batch, *x.shape[1:]), dtype=str(x.dtype)) for x in inputs]
        out = _call(layer_cls(**init_kwargs), symbolic, multi)
        expected = (batch, *eager_output.shape[1:])
        _check(
            tuple(out.shape) == tuple(expected),
            f"symbolic output shape {tuple(out.shape)} != eager {tuple(expected)} (batch {batch})",
        )
        _check(
            keras.backend.standardize_dtype(out.dtype) == keras.backend.standardize_dtype(eager_output.dtype),
            f"symbolic output dtype {out.dtype} != eager {eager_output.dtype}",
        )


def _check_saving(layer_cls, reference, init_kwargs, inputs, multi, output_np):
    model = _model(layer_cls, init_kwargs, inputs, multi)
    _copy_weights(reference, model.layers[-1])
    expected = _to_numpy(model(_model_inputs(inputs, multi)))
    _check_close(expected, output_np, 1e-5, "a functional model around the layer computes other outputs")
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "layer.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    _check(type(loaded.layers[-1]) is layer_cls, f"the loaded model holds {type(loaded.layers[-1]).__name__}")
    _check_equal(
        _to_numpy(loaded(_model_inputs(inputs, multi))), expected,
        "the .keras file loaded with safe_mode=True computes different outputs",
    )


def _check_training(layer_cls, reference, init_kwargs, inputs, multi):
    floating = [i for i, x in enumerate(inputs) if np.issubdtype(x.dtype, np.floating)]
    tensors = [tf.convert_to_tensor(x) for x in inputs]
    with tf.GradientTape() as tape:
        for i in floating:
            tape.watch(tensors[i])
        loss = tf.reduce_sum(tf.square(_call(reference, tensors, multi)))
    for i, grad in zip(floating, tape.gradient(loss, [tensors[i] for i in floating])):
        _check(grad is not None, f"no gradient reaches input {i}")
        _check(np.all(np.isfinite(grad.numpy())), f"the gradient with respect to input {i} is not finite")

    if not reference.trainable_weights:
        return []
    model = _model(layer_cls, init_kwargs, inputs, multi)
    _copy_weights(reference, model.layers[-1])
    before = [w.numpy().copy() for w in model.layers[-1].trainable_weights]
    target = _target(reference, inputs, multi)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=False)
    history = model.fit(_model_inputs(inputs, multi), target, batch_size=len(target), epochs=1,
                        shuffle=False, verbose=0)
    _check(np.isfinite(history.history["loss"][0]), "the training loss is not finite")
    after = [w.numpy() for w in model.layers[-1].trainable_weights]
    for weight, old, new in zip(model.layers[-1].trainable_weights, before, after):
        _check(np.all(np.isfinite(new)), f"weight {weight.path} is not finite after one step")
        _check(not np.array_equal(old, new), f"one training step leaves weight {weight.path} unchanged")
    return after


def _check_bfloat16(layer_cls, reference, init_kwargs, inputs, multi, output_np, tolerance):
    layer = layer_cls(**{**init_kwargs, "dtype": "mixed_bfloat16"})
    _call(layer, inputs, multi)
    _copy_weights(reference, layer)
    for weight in layer.weights:
        if not keras.backend.is_float_dtype(weight.dtype):
            continue  # integer weights (e.g. 8-bit product-quantization codes) keep their dtype
        _check(
            keras.backend.standardize_dtype(weight.dtype) == "float32",
            f"under mixed_bfloat16 weight {weight.path} is {weight.dtype}, not float32",
        )
    out = _call(layer, inputs, multi)
    _check(
        keras.backend.standardize_dtype(out.dtype) == "bfloat16",
        f"under mixed_bfloat16 the output is {out.dtype}, not bfloat16",
    )
    symbolic = [keras.KerasTensor(x.shape, dtype=str(x.dtype)) for x in inputs]
    spec = _call(layer_cls(**{**init_kwargs, "dtype": "mixed_bfloat16"}), symbolic, multi)
    _check(
        keras.backend.standardize_dtype(spec.dtype) == "bfloat16",
        f"under mixed_bfloat16 the symbolic output is {spec.dtype}, not bfloat16",
    )
    out = _to_numpy(out).astype("float32")
    _check(np.all(np.isfinite(out)), "the bfloat16 output has non-finite values")
    scale = max(float(np.max(np.abs(output_np))), 1e-6)
    error = float(np.max(np.abs(out - output_np))) / scale
    _check(error <= tolerance, f"bfloat16 output differs from float32 by {error:.3g} of its scale (> {tolerance})")


def _check_distributed(layer_cls, reference, init_kwargs, inputs, multi, output_np, stepped, strategy):
    with strategy.scope():
        model = _model(layer_cls, init_kwargs, inputs, multi)
        _copy_weights(reference, model.layers[-1])
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=False)
    replicas = strategy.num_replicas_in_sync
    predicted = model.predict(_model_inputs(inputs, multi), batch_size=len(output_np), verbose=0)
    _check_close(
        predicted, output_np, 1e-5,
        f"under MirroredStrategy ({replicas} replica(s)) the layer predicts other outputs",
    )
    if not stepped:
        return
    target = _target(reference, inputs, multi)
    model.fit(_model_inputs(inputs, multi), target, batch_size=len(target), epochs=1, shuffle=False, verbose=0)
    for weight, expected in zip(model.layers[-1].trainable_weights, stepped):
        _check_close(
            weight.numpy(), expected, 1e-5,
            f"under MirroredStrategy ({replicas} replica(s)) one SGD step gives another {weight.path}",
        )


# -- helpers -----------------------------------------------------------------------------------


def _as_list(input_data):
    items = list(input_data) if isinstance(input_data, (list, tuple)) else [input_data]
    arrays = [np.asarray(keras.ops.convert_to_numpy(x)) for x in items]
    if len({a.shape[0] for a in arrays}) != 1:
        raise ValueError(f"Every input needs the same batch size, got shapes {[a.shape for a in arrays]}.")
    return arrays


def _call(layer, inputs, multi):
    return layer(list(inputs) if multi else inputs[0])


def _to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _model(layer_cls, init_kwargs, inputs, multi):
    symbolic = [keras.Input(shape=x.shape[1:], dtype=str(x.dtype)) for x in inputs]
    outputs = _call(layer_cls(**init_kwargs), symbolic, multi)
    return keras.Model(symbolic if multi else symbolic[0], outputs)


def _model_inputs(inputs, multi):
    return list(inputs) if multi else inputs[0]


def _target(reference, inputs, multi):
    shape = _to_numpy(_call(reference, inputs, multi)).shape
    return np.random.default_rng(0).standard_normal(shape).astype("float32")


def _copy_weights(source, target):
    _check(
        [w.shape for w in source.weights] == [w.shape for w in target.weights],
        f"the weights of two {type(source).__name__} layers with the same config differ: "
        f"{[w.shape for w in source.weights]} vs {[w.shape for w in target.weights]}",
    )
    target.set_weights(source.get_weights())


def _check_weight_counts(layer, trainable, non_trainable):
    if trainable is not None:
        _check(len(layer.trainable_weights) == trainable,
               f"{len(layer.trainable_weights)} trainable weights, expected {trainable}")
    if non_trainable is not None:
        _check(len(layer.non_trainable_weights) == non_trainable,
               f"{len(layer.non_trainable_weights)} non-trainable weights, expected {non_trainable}")


def _check(condition, message):
    if not condition:
        raise AssertionError(message)


def _check_equal(actual, expected, message):
    if not np.array_equal(actual, expected):
        raise AssertionError(f"{message} (max difference {float(np.max(np.abs(actual - expected))):.3g})")


def _check_close(actual, expected, tolerance, message):
    actual, expected = np.asarray(actual, "float64"), np.asarray(expected, "float64")
    scale = max(float(np.max(np.abs(expected))), 1.0)
    difference = float(np.max(np.abs(actual - expected)))
    if difference > tolerance * scale:
        raise AssertionError(f"{message} (max difference {difference:.3g})")
