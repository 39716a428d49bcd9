"""Keras Tuner searches: the hp -> builder mapping read off built models, the three tuners
end to end on digits, the validation objective (re-scored independently), the test split
read once after the search, the CLI, refusals, resumption, the methods and distributed
chief/worker search on 127.0.0.1."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import keras_tuner
import numpy as np
import pytest

from keras_apps import data as kdata
from keras_apps import training, tuning
from keras_apps.tuning import search as search_module

REPO = pathlib.Path(__file__).resolve().parents[1]
#: A tiny, fast search: NIN at a quarter width on 16x16 digits.
TINY = dict(image_size=(16, 16), limit=100, batch_size=50,
            space={"width": 0.25, "batch_norm": True, "dropout": [0.0, 0.2],
                   "learning_rate": (0.01, 0.1), "optimizer": "sgd"})


def _hp(hypermodel, **values):
    """HyperParameters with the search space of ``hypermodel`` declared and ``values`` set."""
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    for key, value in values.items():
        assert key in hp.values, f"{key} is not a hyperparameter ({sorted(hp.values)})"
        hp.values[key] = value
    return hp


def _layers(model, cls):
    return [layer for layer in model.layers if type(layer) is cls]


# --- the search space is the builder's own arguments, read off the built model ----------

def test_tunable_arguments_are_the_builders_own():
    assert tuning.tunable_arguments("nin_cifar") == ["width", "dropout", "batch_norm"]
    assert tuning.tunable_arguments("vgg16") == ["dropout"]
    assert tuning.tunable_arguments("efficientnet_b0") == ["drop_connect_rate"]
    assert tuning.tunable_arguments("se_resnet50") == ["reduction"]
    assert tuning.tunable_arguments("resnet20_cifar") == ["shortcut"]
    assert tuning.tunable_arguments("resnet50") == []
    assert set(tuning.family_variants("resnet20_cifar")) == {
        "resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar", "resnet110_cifar"}
    assert tuning.family_variants("resnet20_cifar")[0] == "resnet20_cifar"


def test_nin_width_dropout_and_batch_norm_are_what_the_hp_asked():
    hm = tuning.ModelHyperModel("nin_cifar", input_shape=(16, 16, 1), classes=10)
    for width, dropout, batch_norm in ((0.25, 0.2, False), (0.5, 0.4, True)):
        model = hm.build(_hp(hm, width=width, dropout=dropout, batch_norm=batch_norm))
        convs = {layer.name: layer.filters for layer in _layers(model, keras.layers.Conv2D)}
        # the paper's widths 192/160/96 (block 1), 192 (block 2), scaled and rounded
        assert convs["conv1"] == round(192 * width)
        assert convs["cccp1"] == round(160 * width)
        assert convs["cccp2"] == round(96 * width)
        rates = {layer.rate for layer in _layers(model, keras.layers.Dropout)}
        assert rates == {dropout}
        assert bool(_layers(model, keras.layers.BatchNormalization)) is batch_norm
        assert model.output.shape[-1] == 10


def test_depth_variants_and_shortcut_are_what_the_hp_asked():
    hm = tuning.ModelHyperModel("resnet20_cifar", input_shape=(16, 16, 1), classes=10,
                                variants=["resnet20_cifar", "resnet32_cifar"])
    for variant, blocks in (("resnet20_cifar", 9), ("resnet32_cifar", 15)):  # depth 6n+2, 3n blocks
        for shortcut in ("A", "B"):
            model = hm.build(_hp(hm, variant=variant, shortcut=shortcut))
            assert len(_layers(model, keras.layers.Add)) == blocks
            projections = [layer for layer in _layers(model, keras.layers.Conv2D)
                           if layer.kernel_size == (1, 1)]
            assert len(projections) == (2 if shortcut == "B" else 0)  # the two stage changes


def test_space_narrows_or_fixes_and_refuses_what_the_builder_lacks():
    hm = tuning.ModelHyperModel("vgg16", input_shape=(32, 32, 3), classes=10,
                                space={"dropout": [0.1, 0.3], "optimizer": "adam"})
    hp = keras_tuner.HyperParameters()
    hm.build(hp)
    assert set(hp.values) == {"variant", "dropout", "learning_rate", "optimizer"}
    assert hp.values["optimizer"] == "adam" and hp.values["dropout"] in (0.1, 0.3)
    with pytest.raises(ValueError, match="'width'.*does not tune; it tunes: dropout"):
        tuning.ModelHyperModel("vgg16", input_shape=(32, 32, 3), classes=10, space={"width": [0.5]})
    with pytest.raises(ValueError, match="Unknown model 'resnet_20'"):
        tuning.ModelHyperModel("resnet_20", input_shape=(32, 32, 3), classes=10)


# --- bad input: one clear error each -------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"tuner": "grid"}, "Unknown tuner 'grid'; choose one of random, hyperband, bayes"),
    ({"max_trials": 0}, "`max_trials` must be an integer >= 1, got 0"),
    ({"objective": "test_top1"}, "Unknown objective 'test_top1'"),
    ({"validation_fraction": 0.0}, "needs a held-out validation split"),
])
def test_bad_search_arguments_fail_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tuning.search("nin_cifar", "digits", output_dir=tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("argv, message", [
    (["--tuner", "grid"], "argument --tuner: invalid choice: 'grid'"),
    (["--max-trials", "0"], "argument --max-trials: expected a positive integer, got '0'"),
])
def test_cli_bad_flags_are_one_line_errors(capsys, argv, message):
    import keras_apps_cli

    assert keras_apps_cli.main(["tune", "nin_cifar", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_cli_unknown_model_is_a_one_line_error(capsys, tmp_path):
    import keras_apps_cli

    assert keras_apps_cli.main(["tune", "resnet_20", "--output", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-apps tune: error: Unknown model 'resnet_20'")
    assert len(err.splitlines()) == 1


# --- searches end to end ---------------------------------------------------------------------

@pytest.fixture
def loads(monkeypatch):
    """Every keras_apps.data.load call as (split, subset)."""
    calls = []
    original = kdata.load

    def recording(name, split="train", **kwargs):
        calls.append((split, kwargs.get("subset")))
        return original(name, split, **kwargs)

    monkeypatch.setattr(kdata, "load", recording)
    return calls


def _validation_top1(path, limit, image_size):
    return training.evaluate(path, "digits", split="train", subset="validation",
                             validation_fraction=0.1, limit=limit, image_size=image_size,
                             verbose=0)["top1_accuracy"]


@pytest.mark.slow
def test_random_search_objective_is_the_validation_metric_and_test_is_read_once(tmp_path, loads):
    out = tmp_path / "random"
    result = tuning.search("nin_cifar", "digits", tuner="random", max_trials=3, epochs=2,
                           output_dir=out, **TINY)
    # trials train on the (training, validation) pair: the test split is read once, at the
    # end, after the best model's validation score
    assert loads == [("train", "training"), ("train", "validation"),
                     ("train", "validation"), ("test", None)]
    rows = json.loads((out / "results.json").read_text())["trials"]
    assert len(rows) == 3 and len({row["trial_id"] for row in rows}) == 3
    assert all(row["status"] == "COMPLETED" for row in rows)
    for row in rows:  # each trial's keras_apps run saw only tf.data, no dataset name
        config = json.loads((out / "tuner" / f"trial_{row['trial_id']}" / "run" / "config.json").read_text())
        assert config["data"] == "tf.data"
        assert row["hyperparameters"]["dropout"] in (0.0, 0.2)
        assert 0.01 <= row["hyperparameters"]["learning_rate"] <= 0.1
    best = max(rows, key=lambda row: row["objective"])
    assert result.best_trial_id == best["trial_id"]
    # the objective, re-scored independently on the held-out part of the training split
    examples = result.metrics["validation"]["examples"]
    rescored = _validation_top1(out / "best" / "model.keras", TINY["limit"], TINY["image_size"])
    assert rescored == pytest.approx(best["objective"], abs=1.0 / examples + 1e-6)
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert metrics["objective"] == {"name": "val_top1", "value": pytest.approx(best["objective"])}
    assert metrics["test"]["split"] == "test"
    assert metrics["test"]["examples"] == TINY["limit"]
    table = (out / "results.md").read_text().splitlines()
    assert table[0].startswith("| trial | status | val_top1 |") and len(table) == 2 + 3
    csv_rows = (out / "results.csv").read_text().splitlines()
    assert len(csv_rows) == 4 and csv_rows[0].startswith("trial_id,status,val_top1")
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"

    # a finished search is kept
    with pytest.raises(FileExistsError, match="finished search"):
        tuning.search("nin_cifar", "digits", max_trials=3, epochs=2, output_dir=out, **TINY)
    # an interrupted one (no results yet) resumes from keras-tuner's project: no trial again
    stamps = {p: p.stat().st_mtime_ns for p in (out / "tuner").glob("trial_*/run/metrics.json")}
    (out / "results.json").unlink()
    again = tuning.search("nin_cifar", "digits", max_trials=3, epochs=2, output_dir=out, **TINY)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again.best_trial_id == result.best_trial_id


@pytest.mark.slow
def test_hyperband_continues_trials_from_their_parents(tmp_path):
    out = tmp_path / "hyperband"
    # max_epochs 3, factor 3: a bracket of 1-epoch trials whose best goes on to epoch 3
    result = tuning.search("nin_cifar", "digits", tuner="hyperband", max_trials=4, epochs=3,
                           output_dir=out, **TINY)
    rows = result.rows
    assert 1 < len(rows) <= 4 and all(row["status"] == "COMPLETED" for row in rows)
    continued = [row for row in rows if row["hyperparameters"].get("tuner/initial_epoch", 0) > 0]
    assert continued, rows
    for row in continued:
        history = (out / "tuner" / f"trial_{row['trial_id']}" / "run" / "history.csv").read_text()
        epochs = row["hyperparameters"]["tuner/epochs"] - row["hyperparameters"]["tuner/initial_epoch"]
        assert len(history.strip().splitlines()) == 1 + epochs  # only the remaining epochs
    rescored = _validation_top1(out / "best" / "model.keras", TINY["limit"], TINY["image_size"])
    examples = result.metrics["validation"]["examples"]
    assert rescored == pytest.approx(result.metrics["objective"]["value"], abs=1.0 / examples + 1e-6)


@pytest.mark.slow
def test_bayesian_optimization_minimising_val_loss(tmp_path):
    out = tmp_path / "bayes"
    result = tuning.search("nin_cifar", "digits", tuner="bayes", max_trials=3, epochs=1,
                           objective="val_loss", output_dir=out, **TINY)
    rows = result.rows
    assert len(rows) == 3 and all(row["status"] == "COMPLETED" for row in rows)
    assert result.metrics["objective"]["value"] == pytest.approx(min(r["objective"] for r in rows))
    loss = training.evaluate(out / "best" / "model.keras", "digits", split="train",
                             subset="validation", validation_fraction=0.1, limit=TINY["limit"],
                             image_size=TINY["image_size"], verbose=0)["loss"]
    assert loss == pytest.approx(result.metrics["objective"]["value"], rel=1e-3)


@pytest.mark.slow
def test_cli_search_then_export_of_the_best_model(tmp_path, capsys):
    import keras_apps_cli

    out = tmp_path / "cli"
    argv = ["tune", "nin_cifar", "--data", "digits", "--tuner", "random", "--max-trials", "2",
            "--epochs", "1", "--limit", "100", "--image-size", "16,16", "--batch-size", "50",
            "--output", str(out)]
    assert keras_apps_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| trial | status | val_top1 |" in printed and str(out / "best" / "model.keras") in printed
    rows = json.loads((out / "results.json").read_text())["trials"]
    assert len(rows) == 2
    target = tmp_path / "exported.keras"
    assert keras_apps_cli.main(["export", str(out / "best" / "model.keras"), "--format", "keras",
                                "--output", str(target)]) == 0
    best = training.load_model(out / "best" / "model.keras")
    x = np.random.default_rng(0).normal(size=(3, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(training.load_model(target)(x), best(x), rtol=1e-6, atol=1e-6)
    capsys.readouterr()
    assert keras_apps_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "finished search" in err and "--overwrite" in err and len(err.splitlines()) == 1


# --- the methods -------------------------------------------------------------------------------

def _toy_source(path):
    inputs = keras.Input((16, 16, 1), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.ReLU(name="conv_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(8, activation="relu", name="fc7")(x)
    x = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name="toy")
    model.save(path)
    return model


def _dense_units(model):
    return sum(layer.units for layer in _layers(model, keras.layers.Dense))


def test_growth_hypermodel_grows_what_the_hp_asked(tmp_path):
    source = _toy_source(tmp_path / "toy.keras")
    hm = tuning.GrowthHyperModel(tmp_path / "toy.keras", classes=10)
    assert hm.default_units == (2, 4, 8)  # a quarter, half and all of fc7
    for mode in ("width", "depth"):
        grown = hm.build(_hp(hm, mode=mode, units=4))
        assert _dense_units(grown) - _dense_units(source) == 4  # fc7's new units / fc_a
        assert grown.output.shape[-1] == 10 and not isinstance(grown.output, dict)
    with pytest.raises(ValueError, match=r"Unknown growth mode\(s\) \['tall'\]"):
        tuning.GrowthHyperModel(source, classes=10, space={"mode": ["tall"]})


@pytest.mark.slow
def test_growth_search_runs_through_finetune(tmp_path):
    _toy_source(tmp_path / "toy.keras")
    hm = tuning.GrowthHyperModel(tmp_path / "toy.keras", classes=10,
                                 space={"mode": ["width", "depth"], "optimizer": "sgd"})
    result = tuning.search(hm, "digits", tuner="random", max_trials=2, epochs=1,
                           output_dir=tmp_path / "grow", image_size=(16, 16), limit=100,
                           batch_size=50)
    assert [row["status"] for row in result.rows] == ["COMPLETED", "COMPLETED"]
    assert result.best_hyperparameters["mode"] in ("width", "depth")
    assert result.best_model.output.shape[-1] == 10


def test_hdcnn_hypermodel_declares_its_space_and_refuses_hyperband(tmp_path):
    hm = tuning.HDCNNHyperModel("nin_cifar", space={"n_coarse": [2, 3], "gamma": [0.0, 5.0]})
    hp = keras_tuner.HyperParameters()
    args = hm.declare(hp)
    assert set(hp.values) == {"n_coarse", "gamma", "lambda", "learning_rate", "shared_until"}
    assert hp.values["shared_until"] == "drop1"  # the release's split layer for NIN
    hp.values.update(n_coarse=3, gamma=0.0)
    args = hm.declare(hp)
    assert args["n_coarse"] == 3 and args["gamma"] is None  # 0: disjoint coarse categories
    with pytest.raises(ValueError, match="use 'random' or 'bayes'"):
        tuning.make_tuner("hyperband", hm, directory=tmp_path, max_trials=2, max_epochs=2)


@pytest.mark.slow
def test_hdcnn_search_runs_the_pipeline_per_trial(tmp_path, loads):
    hm = tuning.HDCNNHyperModel("nin_cifar", building_block_kwargs={"width": 0.25},
                                space={"n_coarse": [2, 3], "gamma": [3.0, 5.0]})
    out = tmp_path / "hdcnn"
    result = tuning.search(hm, "digits", tuner="random", max_trials=2, epochs=1, output_dir=out,
                           limit=200, batch_size=64)
    assert [row["status"] for row in result.rows] == ["COMPLETED", "COMPLETED"]
    block = out / "building_block" / "metrics.json"
    assert "test" not in json.loads(block.read_text())  # trained once on the pair
    for row in result.rows:
        trial = out / "tuner" / f"trial_{row['trial_id']}" / "run"
        tree = json.loads((trial / "hierarchy" / "hierarchy.json").read_text())
        assert len(tree["coarse_sets"]) == row["hyperparameters"]["n_coarse"]
        metrics = json.loads((trial / "metrics.json").read_text())
        assert row["objective"] == pytest.approx(metrics["finetune"]["validation"]["top1_accuracy"])
    assert sorted(result.best_model.output) == ["coarse", "predictions"]
    # no phase of any trial read the test split: only the best model is scored on it, once
    assert [call for call in loads if call[0] == "test"] == [("test", None)]


# --- distributed: keras-tuner's chief and two workers on 127.0.0.1 -------------------------

@pytest.mark.slow
def test_distributed_chief_and_two_workers_run_every_trial_once(tmp_path):
    out = tmp_path / "dist"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-c", "import sys, keras_apps_cli; sys.exit(keras_apps_cli.main(sys.argv[1:]))",
               "tune", "nin_cifar", "--data", "digits", "--tuner", "random", "--max-trials", "4",
               "--epochs", "1", "--limit", "100", "--image-size", "16,16", "--batch-size", "50",
               "--output", str(out)]
    processes = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=str(port), TF_CPP_MIN_LOG_LEVEL="3")
        processes[tuner_id] = subprocess.Popen(command, env=env, cwd=REPO, text=True,
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            outputs[tuner_id] = process.communicate(timeout=420)[0]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for tuner_id, process in processes.items():
        assert process.returncode == 0, (tuner_id, outputs[tuner_id][-3000:])
    rows = json.loads((out / "results.json").read_text())["trials"]
    ids = [row["trial_id"] for row in rows]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert all(row["status"] == "COMPLETED" for row in rows)
    # one output folder: every trial trained exactly once (one run folder, one epoch)
    runs = sorted((out / "tuner").glob("trial_*/run/history.csv"))
    assert len(runs) == 4
    assert all(len(p.read_text().strip().splitlines()) == 2 for p in runs)
    assert (out / "best" / "model.keras").is_file()
    assert "worker" in outputs["tuner0"] and "worker" in outputs["tuner1"]
    assert "| trial | status | val_top1 |" in outputs["chief"]
