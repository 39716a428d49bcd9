"""``keras-apps grow`` / ``keras-apps finetune`` on a tiny model file.

References: the source network itself (grown without normalisation, its kept head computes
exactly what it did), parameter counts added up by hand from the layer sizes, a numpy
top-1 accuracy of the saved models on the digits test images, and which weights changed
between the files of each phase (the scenario and the re-training decide which may)."""

import argparse
import ast
import json
import pathlib
import re

import numpy as np
import pytest

import keras
import keras_apps_cli
from keras_apps import cli, growth
from keras_apps import data as kdata

REPO = pathlib.Path(__file__).resolve().parents[1]
SOURCE = REPO / "keras_apps" / "growth" / "cli.py"
SHAPE = (16, 16, 1)  # digits (32x32x1) is delivered at the model's size


def tiny_model():
    """conv1 (3x3x1x4) -> pool 2 -> flatten (7x7x4) -> fc6 12 -> fc7 8 -> predictions 10."""
    inputs = keras.Input(SHAPE, name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(12, activation="relu", name="fc6")(x)
    x = keras.layers.Dense(8, activation="relu", name="fc7")(x)
    x = keras.layers.Dense(10, name="predictions")(x)
    x = keras.layers.Activation("softmax", name="predictions_activation")(x)
    return keras.Model(inputs, x, name="tiny")


TINY_PARAMS = (9 * 4 + 4) + (196 * 12 + 12) + (12 * 8 + 8) + (8 * 10 + 10)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny source model, a WA-CNN of it for 4 classes, and one without source head."""
    folder = tmp_path_factory.mktemp("growth_cli")
    keras.utils.set_random_seed(7)
    source = tiny_model()
    source.save(folder / "tiny.keras")
    growth.grow(source, "width", units=4, classes=4, seed=0).save(folder / "wa.keras")
    growth.grow(source, "width", units=4, classes=4, seed=0, keep_source=False).save(folder / "bare.keras")
    keras.backend.clear_session()
    return {name: folder / f"{name}.keras" for name in ("tiny", "wa", "bare")}


def error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert re.match(r"keras-apps (grow|finetune): error: ", lines[0]), lines[0]
    return lines[0]


def _parsers(parser):
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


# ------------------------------------------------------------------------------ the command


def test_help_lists_grow_and_finetune(capsys):
    tree = ast.parse(SOURCE.read_text())
    docs = {node.name: ast.get_docstring(node).splitlines()[0] for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("register_")}
    assert cli.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"grow {docs['register_grow']}" in text and f"finetune {docs['register_finetune']}" in text
    for action, flags in (("grow", ("--mode", "--units", "--no-normalize", "--no-keep-source")),
                          ("finetune", ("--scenario", "--new-lr-multiplier", "--retrain-source-data"))):
        assert cli.main([action, "--help"]) == 0
        text = capsys.readouterr().out
        assert all(flag in text for flag in flags), action


def test_every_flag_named_in_a_message_is_a_flag_of_the_command():
    flags = set()
    for command in ("grow", "finetune"):
        root = keras_apps_cli.build_parser([command])
        sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        flags |= {flag for p in _parsers(sub) for a in p._actions for flag in a.option_strings}
    tree = ast.parse(SOURCE.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    named = {
        flag
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value)
    }
    assert named - flags == set()
    assert {"--units", "--data", "--retrain-source-data", "--overwrite"} <= named


# ------------------------------------------------------------------------------------ grow


def test_grow_writes_the_model_and_reports_the_parameters(files, tmp_path, capsys):
    out = tmp_path / "grown.keras"
    argv = ["grow", str(files["tiny"]), "--mode", "wa", "--units", "3", "--classes", "4",
            "--no-normalize", "--seed", "0", "--output", str(out)]
    assert cli.main(argv) == 0
    report = capsys.readouterr().out
    grown = keras.saving.load_model(out, safe_mode=True)
    assert grown.name == "tiny_wa" and set(grown.output) == {"predictions", "task0"}
    assert grown.get_layer("fc7_plus_g1").units == 3
    # fc7+ 12x3+3; the new classifier and the kept source head read the 8 + 3 units
    after = TINY_PARAMS - (8 * 10 + 10) + (12 * 3 + 3) + (11 * 4 + 4) + (11 * 10 + 10)
    assert grown.count_params() == after
    assert f"parameters: {TINY_PARAMS:,} before, {after:,} after (+{after - TINY_PARAMS:,})" in report
    assert "| fc7_plus_g1 | Dense | (3,) | 39 |" in report
    source = keras.saving.load_model(files["tiny"], safe_mode=True)
    images = np.random.RandomState(0).rand(3, *SHAPE).astype("float32")
    np.testing.assert_allclose(grown(images)["task0"], source(images), rtol=1e-5, atol=1e-7)

    before = out.read_bytes()
    assert cli.main(argv) == 2  # an existing file is kept
    assert "exists" in error_line(capsys) and out.read_bytes() == before
    assert cli.main([*argv, "--overwrite", "--mode", "depth"]) == 0
    assert "fc_a_g1" in capsys.readouterr().out


def test_grow_takes_the_class_count_of_the_target_data(files, tmp_path, capsys):
    out = tmp_path / "wwa.keras"
    assert cli.main(["grow", str(files["tiny"]), "--mode", "recursive_width", "--units", "4",
                     "--data", "digits", "--classes-subset", "1,3,5", "--output", str(out)]) == 0
    grown = keras.saving.load_model(out, safe_mode=True)
    assert grown.output["predictions"].shape[-1] == 3
    assert grown.get_layer("fc6_plus_g1").units == 2 and grown.get_layer("fc7_plus_g1").units == 4


@pytest.mark.parametrize("argv,expected", [
    (["--mode", "sideways", "--units", "2"], "unknown growth mode 'sideways'"),
    (["--mode", "width", "--units", "0"], "expected a positive integer"),
    (["--mode", "width"], "--units"),
    (["--mode", "width", "--units", "2", "--at", "conv9"], "conv9"),
    (["--mode", "depth", "--at", "fc6"], "below it"),
    (["--mode", "width", "--units", "2", "--classes", "3", "--data", "digits"], "not allowed with"),
    (["--mode", "width", "--units", "2", "--data-dir", "somewhere"], "--data-dir only apply with --data"),
    (["--mode", "width", "--units", "2", "--scale-init", "0"], "finite number > 0"),
])
def test_grow_refuses_bad_flags_in_one_line(argv, expected, files, tmp_path, capsys):
    out = tmp_path / "grown.keras"
    assert cli.main(["grow", str(files["tiny"]), *argv, "--output", str(out)]) == 2
    assert expected in error_line(capsys)
    assert not out.exists()


def test_grow_refuses_bad_files(files, tmp_path, capsys):
    grow = ["grow", "--mode", "width", "--units", "2"]
    assert cli.main([*grow, str(tmp_path / "missing.keras"), "--output", str(tmp_path / "g.keras")]) == 2
    assert "does not exist" in error_line(capsys)
    assert cli.main([*grow, str(files["tiny"]), "--output", str(tmp_path / "g.h5")]) == 2
    assert ".keras file" in error_line(capsys)


# -------------------------------------------------------------------------------- finetune


@pytest.mark.parametrize("model,argv,expected", [
    ("wa", ["--scenario", "sideways"], "unknown fine-tuning scenario 'sideways'"),
    ("wa", ["--scenario", "fc9-new"], "fc9"),
    ("tiny", [], "was never grown"),
    ("wa", ["--classes-subset", "0,1,2"], "has 3 classes but the model's 'predictions' head has 4"),
    ("bare", ["--retrain-source-data", "digits"], "task0"),
    ("wa", ["--retrain-source-data", "digits", "--retrain-source-classes", "0,1"], "'task0' head has 10"),
    ("wa", ["--retrain-limit", "5"], "--retrain-limit only apply with --retrain-source-data"),
    ("wa", ["--learning-rate", "-1"], "finite number > 0"),
])
def test_finetune_refuses_bad_flags_before_training(model, argv, expected, files, tmp_path, capsys):
    run = tmp_path / "run"
    data = [] if "--classes-subset" in argv else ["--classes-subset", "0,1,2,3"]
    assert cli.main(["finetune", str(files[model]), "--data", "digits", *data, *argv,
                     "--output", str(run)]) == 2
    assert expected in error_line(capsys)
    assert not run.exists()


def _weights(path):
    model = keras.saving.load_model(path, safe_mode=True)
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _numpy_top1(path, output, classes, limit):
    model = keras.saving.load_model(path, safe_mode=True)
    ds, _ = kdata.load("digits", "test", image_size=SHAPE[:2], classes=classes, limit=limit,
                       batch_size=64, augment=False, shuffle=False)
    hits = [np.argmax(np.asarray(model(x)[output]), axis=1) == np.asarray(y) for x, y in ds]
    return float(np.mean(np.concatenate(hits)))


@pytest.mark.slow
def test_finetune_then_retrain_on_the_source_end_to_end(files, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["finetune", str(files["wa"]), "--data", "digits", "--classes-subset", "0,1,2,3",
            "--scenario", "fc7-new", "--epochs", "1", "--batch-size", "32", "--limit", "96",
            "--learning-rate", "0.01", "--retrain-source-data", "digits", "--retrain-epochs", "1",
            "--output", str(run)]
    assert cli.main(argv) == 0
    report = capsys.readouterr().out
    assert "| after fine-tuning |" in report and "| after re-training on the source |" in report
    summary = json.loads((run / "metrics.json").read_text())
    tuned, retrained = run / "finetune" / "model.keras", run / "retrain_source" / "model.keras"
    assert summary["final_model"] == str(retrained)
    assert summary["scenario"] == "fc7-new" and "conv1" not in summary["trainable_layers"]
    for key, path in (("before", files["wa"]), ("after_finetune", tuned), ("after_retrain", retrained)):
        assert summary["source"][key]["top1_accuracy"] == pytest.approx(
            _numpy_top1(path, "task0", None, 96)), key
    assert summary["finetune"]["test"]["top1_accuracy"] == pytest.approx(
        _numpy_top1(tuned, "predictions", [0, 1, 2, 3], 96))
    assert summary["retrain_source"]["target_test"]["top1_accuracy"] == pytest.approx(
        _numpy_top1(retrained, "predictions", [0, 1, 2, 3], 96))

    grown, after, last = _weights(files["wa"]), _weights(tuned), _weights(retrained)
    # fc7-new: below fc7 frozen, the source head never trains on the target
    assert _same(after["conv1"], grown["conv1"]) and _same(after["fc6"], grown["fc6"])
    assert _same(after["task0_predictions"], grown["task0_predictions"])
    assert not _same(after["fc7"], grown["fc7"]) and not _same(after["predictions"], grown["predictions"])
    # re-training on the source: the new units and the source head only
    for name in ("conv1", "fc6", "fc7", "predictions"):
        assert _same(last[name], after[name]), name
    assert not _same(last["fc7_plus_g1"], after["fc7_plus_g1"])
    assert not _same(last["task0_predictions"], after["task0_predictions"])

    assert cli.main(argv) == 2  # a finished run is kept
    assert "holds a finished run" in error_line(capsys)
