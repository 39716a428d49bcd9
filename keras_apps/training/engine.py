"""The training engine: one custom ``strategy.run`` loop for every ``tf.distribute`` strategy.

Keras 3 ``Model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras#20585), so
:func:`keras_apps.training.fit` trains through :func:`run_epochs` on every strategy (one device,
mirrored GPUs, several workers): the single-device and multi-worker paths are the same code.
It keeps what ``Model.fit`` offers a compiled model: the compiled loss (with ``loss_weights``)
and metrics, the optimizer as it is (learning-rate multipliers, loss scaling for
``mixed_float16``), Keras callbacks (``History``, ``TensorBoard``, ``EarlyStopping`` through
``model.stop_training``, the progress bar) and the ``loss`` / ``val_<metric>`` log names.

The global batch is the unit. Every replica (on every worker) receives a contiguous slice of
each batch the input pipeline produces, and its loss is weighted by the slice's share of the
batch, so one step's gradient is that of the mean loss over the whole global batch, whatever
the number of replicas: the same data, seed and global batch give the same weights on one
device and on several workers (up to float reduction order), provided the model's forward
pass does not depend on the replica's batch alone (``BatchNormalization`` normalises over the
replica's slice unless built with ``synchronized=True``; dropout masks differ per replica).
The weighting relies on Keras scaling each compiled loss by 1/replicas, which it does for
losses whose ``call`` returns per-sample values; a ``call`` returning one scalar is left
unscaled by Keras, so a batch-level loss returns its value repeated per sample (HD-CNN's
``CoarseConsistencyLoss``) and reads its batch statistic with :func:`global_batch_mean`. Regularisation losses added by layers (``model.losses``) are summed
on every replica, as in ``Model.fit``.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf


def cluster_task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """``(task_type, task_id)`` of this process in a multi-worker cluster, ``(None, 0)``
    otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except on a worker of a cluster
    that is not its chief (task ``chief``, else ``worker`` 0)."""
    task_type, task_id = cluster_task(strategy)
    if task_type is None or task_type == "chief":
        return True
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in spec


def global_batch_mean(values):
    """The mean of ``values`` (N, ...) over axis 0, over the whole global batch: inside a
    replica of a strategy with several replicas (this engine's ``strategy.run``), the sums and
    counts of every replica's slice are all-reduced (differentiably: the gradient is
    all-reduced back), so a loss that is a non-linear function of a batch mean (HD-CNN's
    coarse consistency term) is the same, and has the same gradient, on one device and on
    many. Elsewhere, the plain mean."""
    values = tf.convert_to_tensor(values)
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tf.reduce_mean(values, axis=0)
    total = tf.reduce_sum(values, axis=0)
    count = tf.cast(tf.shape(values)[0], values.dtype)
    total, count = context.all_reduce(tf.distribute.ReduceOp.SUM, [total, count])
    return total / count


def _first_leaf(structure):
    return next(t for t in tf.nest.flatten(structure) if t is not None)


def distribute(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """``dataset`` (of global batches) as a distributed dataset of ``strategy``: each batch is
    cut into ``num_replicas_in_sync`` contiguous slices (sizes differing by at most one), and
    each input pipeline (one per worker) keeps the slices of its own replicas, so the replicas
    of one step together see exactly one batch of ``dataset``. Each element is ``(slice,
    global_batch_size)``."""

    def dataset_fn(context: tf.distribute.InputContext):
        replicas = context.num_replicas_in_sync
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def slices(*element):
            element = element[0] if len(element) == 1 else element
            size = tf.shape(_first_leaf(element))[0]

            def take(i):
                index = tf.cast(first, tf.int64) + i
                start = (index * tf.cast(size, tf.int64)) // replicas
                end = ((index + 1) * tf.cast(size, tf.int64)) // replicas
                part = tf.nest.map_structure(
                    lambda t: None if t is None else t[start:end], element
                )
                return part, size

            return tf.data.Dataset.range(local).map(take)

        sliced = dataset.flat_map(slices)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return sliced.with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)


def _unpack(data):
    if isinstance(data, (tuple, list)):
        return (tuple(data) + (None, None))[:3]
    return data, None, None


class _Steps:
    """The compiled train and test steps of one model under one strategy."""

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy):
        self.model = model
        self.strategy = strategy
        with strategy.scope():
            self.loss = keras.metrics.Mean(name="loss")
        jit = model.jit_compile is True
        self._train_replica = tf.function(self._train_replica_fn, jit_compile=jit)
        self._test_replica = tf.function(self._test_replica_fn, jit_compile=jit)
        self.train_step = tf.function(self._train_step)
        self.test_step = tf.function(self._test_step)

    def _weighted_loss(self, x, y, y_pred, sample_weight, training):
        # compute_loss is the replica's mean loss divided by the number of replicas; weight it
        # by the replica's share of the global batch instead.
        loss = self.model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                       training=training)
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        return loss * tf.cast(replicas, loss.dtype)

    def _update_loss(self, mean_loss, x, global_size):
        local = tf.shape(_first_leaf(x))[0]
        self.loss.update_state(mean_loss, sample_weight=local)
        share = tf.cast(local, mean_loss.dtype) / tf.cast(global_size, mean_loss.dtype)
        return mean_loss * share

    def _train_replica_fn(self, data, global_size):
        x, y, sample_weight = _unpack(data)
        model = self.model
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            mean_loss = self._weighted_loss(x, y, y_pred, sample_weight, True)
            loss = self._update_loss(mean_loss, x, global_size)
            scaled = model.optimizer.scale_loss(loss)
        variables = model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        model.optimizer.apply_gradients(zip(gradients, variables))
        model.compute_metrics(x, y, y_pred, sample_weight)
        return loss

    def _test_replica_fn(self, data, global_size):
        x, y, sample_weight = _unpack(data)
        y_pred = self.model(x, training=False)
        mean_loss = self._weighted_loss(x, y, y_pred, sample_weight, False)
        self.model.compute_metrics(x, y, y_pred, sample_weight)
        return self._update_loss(mean_loss, x, global_size)

    def _train_step(self, iterator):
        data, global_size = next(iterator)
        losses = self.strategy.run(self._train_replica, args=(data, global_size))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def _test_step(self, element):
        data, global_size = element
        losses = self.strategy.run(self._test_replica, args=(data, global_size))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def reset(self):
        self.model.reset_metrics()
        self.loss.reset_state()

    def results(self) -> dict:
        logs = {k: v for k, v in self.model.get_metrics_result().items()}
        logs["loss"] = self.loss.result()
        return {key: float(np.asarray(value)) for key, value in logs.items()}


def _build(model: keras.Model, strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """Creates the optimizer's, compiled loss's and metrics' variables in ``strategy``'s
    scope (they cannot be created inside ``strategy.run``), from one example of zeros shaped
    like ``dataset``'s elements (a real example when a shape is not known)."""
    spec = dataset.element_spec
    shapes = [s.shape[1:] for s in tf.nest.flatten(spec) if s is not None]
    if all(shape.is_fully_defined() for shape in shapes):
        example = tf.nest.map_structure(
            lambda s: None if s is None else tf.zeros([1, *s.shape[1:]], s.dtype), spec
        )
    else:
        example = tf.nest.map_structure(
            lambda t: None if t is None else t[:1], next(iter(dataset.take(1)))
        )
    x, y, sample_weight = _unpack(example)
    with strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        y_pred = model(x, training=False)
        model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
        model.compute_metrics(x, y, y_pred, sample_weight)
        model.reset_metrics()


def _restarts_each_epoch(dataset: tf.data.Dataset, steps: int) -> bool:
    """Whether each epoch starts a new pass over ``dataset`` (a finite dataset of at most
    ``steps`` batches) or continues one iterator (an infinite stream, as the named datasets'
    training pipelines are)."""
    cardinality = int(dataset.cardinality())
    return 0 <= cardinality <= steps


def run_epochs(
    model: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset | None = None,
    *,
    strategy: tf.distribute.Strategy,
    epochs: int,
    steps_per_epoch: int,
    initial_epoch: int = 0,
    callbacks=(),
    verbose=1,
) -> None:
    """Trains the compiled ``model`` (built in ``strategy``'s scope) for epochs
    ``initial_epoch .. epochs - 1`` of ``steps_per_epoch`` global batches of ``train``,
    evaluating ``validation`` after each one, with Keras ``callbacks``.

    Epoch logs are ``loss`` and the compiled metrics' names, then ``val_`` + each of them.
    Every process of a multi-worker cluster runs this same loop (the collective operations
    must match); only the callbacks a process was given differ.
    """
    if model.optimizer is None:
        raise ValueError("run_epochs needs a compiled model (model.compile(...)).")
    steps_per_epoch = int(steps_per_epoch)
    _build(model, strategy, train)
    steps = _Steps(model, strategy)
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=False, add_progbar=verbose != 0, verbose=verbose,
        epochs=epochs, steps=steps_per_epoch, model=model,
    )
    restart_each_epoch = _restarts_each_epoch(train, steps_per_epoch)
    distributed_train = distribute(strategy, train)
    distributed_validation = distribute(strategy, validation) if validation is not None else None
    iterator = None if restart_each_epoch else iter(distributed_train)
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, epochs):
        steps.reset()
        callback_list.on_epoch_begin(epoch)
        if restart_each_epoch or iterator is None:
            iterator = iter(distributed_train)
        total, done = 0.0, 0
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            try:
                loss = steps.train_step(iterator)
            except (tf.errors.OutOfRangeError, StopIteration):
                iterator = None  # a finite dataset ended early: the next epoch starts anew
                break
            total, done = total + float(loss), done + 1
            callback_list.on_train_batch_end(step, {"loss": total / done})
            if model.stop_training:
                break
        logs = steps.results()
        if distributed_validation is not None:
            steps.reset()
            callback_list.on_test_begin()
            for element in distributed_validation:  # ends on every worker together
                steps.test_step(element)
            logs.update({f"val_{key}": value for key, value in steps.results().items()})
            callback_list.on_test_end(logs)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)


def tf_config() -> dict | None:
    """The parsed ``TF_CONFIG`` environment variable (None when unset)."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}): {text[:200]!r}.") from err
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not \
            isinstance(config.get("task"), dict):
        raise ValueError(
            "TF_CONFIG must be a JSON object with 'cluster' ({'worker': ['host:port', ...]}) "
            f"and 'task' ({{'type': 'worker', 'index': 0}}), got {text[:200]!r}."
        )
    return config
