"""One process of the distributed-training tests (tests/test_distributed.py).

``python tests/_train_worker.py OUTPUT STRATEGY [MODE]`` trains on the digits through
``keras_apps.training.fit`` into OUTPUT with STRATEGY (``TF_CONFIG`` names this process's task
under ``multi-worker``). MODE: ``plain`` (a registered NIN), ``growth`` (a width-grown NIN
fine-tuned with the new layers' learning-rate multiplier, keras_apps.growth.finetune) or
``hdcnn`` (HD-CNN's global fine-tuning with its consistency loss, keras_apps.hdcnn.finetune).
With ``KILL_AT=epoch:step`` it kills itself with SIGKILL after that training step.

The networks have no batch normalisation or dropout: the forward pass of each replica's slice
of a batch is then that of the whole batch, so one device must reach the cluster's weights.
"""

import os
import signal
import sys

import keras

from keras_apps import training

BLOCK = {"width": 0.25, "batch_norm": False, "dropout": 0.0}
RUN = dict(epochs=3, batch_size=32, limit=256, verbose=0)


class KillAt(keras.callbacks.Callback):
    def __init__(self, epoch, step):
        super().__init__()
        self.kill_epoch, self.kill_step, self.epoch = epoch, step, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, step, logs=None):
        if self.epoch == self.kill_epoch and step == self.kill_step:
            print("KILLED", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


def main(output_dir, strategy_name, mode="plain"):
    kill = os.environ.get("KILL_AT")
    callbacks = [KillAt(*map(int, kill.split(":")))] if kill else []
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs anything else.
    strategy = training.get_strategy(strategy_name)
    if mode == "plain":
        result = training.fit("nin_cifar", "digits", strategy=strategy, build_kwargs=BLOCK,
                              learning_rate=0.05, output_dir=output_dir, callbacks=callbacks,
                              **RUN)
    else:
        import keras_apps

        keras.utils.set_random_seed(0)
        with strategy.scope():
            block = keras_apps.build("nin_cifar", input_shape=(32, 32, 1), classes=10, **BLOCK)
            if mode == "growth":
                from keras_apps import growth

                model = growth.grow(block, "width", units=8, seed=0)
            else:
                from keras_apps import hdcnn

                model = hdcnn.build_hdcnn(block, hdcnn.Hierarchy([0, 0, 1, 1, 2, 2, 0, 1, 2, 0]))
        if mode == "growth":
            result = growth.finetune(model, "digits", strategy=strategy, output_dir=output_dir,
                                     learning_rate=0.002, callbacks=callbacks, **RUN)
        else:
            result = hdcnn.finetune(model, "digits", strategy=strategy, output_dir=output_dir,
                                    learning_rate=0.01, callbacks=callbacks, **RUN)
    print("EPOCHS_RUN", len(result.history.get("loss", [])), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
