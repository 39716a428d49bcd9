"""The keras-apps command line: commands, plug-ins, one-line user errors (exit 2), Ctrl-C
(exit 130), flags checked before anything slow, the flags passed to fit/evaluate, quiet
logging, and one end-to-end run (train, evaluate, export every format, reload)."""

import argparse
import ast
import importlib.metadata
import json
import os
import pathlib
import re
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest

import keras_apps
import keras_apps_cli
from keras_apps import cli, training
from keras_apps._cli_index import jsonable

REPO = pathlib.Path(__file__).resolve().parents[1]

PLUGIN = '''"""Greets someone (a plug-in command of the tests)."""

def register(parser):
    parser.add_argument("--who", default="world")
    parser.set_defaults(func=run)


def run(args):
    if args.who == "nobody":
        raise ValueError("--who nobody: there is nobody to greet")
    print(f"hello {args.who}")
'''


def run_cli(*args, cwd, timeout=900):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "keras_apps_cli", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"keras-apps {' '.join(args)}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


def error_line(capsys, command):
    """The single stderr line of a failed command."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"keras-apps {command}: error: "), lines[0]
    assert "Traceback" not in captured.err
    return lines[0]


def test_list_info_and_datasets(capsys):
    assert cli.main(["list", "vgg1?"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["vgg16", "vgg19"]
    assert cli.main(["info", "resnet50"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 25_636_712
    assert cli.main(["datasets"]) == 0
    assert "digits" in capsys.readouterr().out.split()


def test_list_and_info_agree_with_the_registry(capsys):
    assert cli.main(["list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == keras_apps.list_models()
    assert cli.main(["info", "nin_cifar"]) == 0
    info = keras_apps.model_info("nin_cifar")
    assert json.loads(capsys.readouterr().out) == jsonable(info)


def test_errors_are_reported_without_a_traceback(capsys):
    assert cli.main(["info", "resnet5"]) == 2
    line = error_line(capsys, "info")
    assert "Unknown model 'resnet5'" in line and "resnet50" in line and "keras-apps list" in line
    assert cli.main(["list", "zzz*"]) == 1
    with pytest.raises(ValueError, match="Unknown model 'resnet5'"):
        cli.main(["--debug", "info", "resnet5"])


def test_bad_flag_values_are_one_line_with_status_2(capsys):
    for argv, flag in [
        (["summary", "resnet20_cifar", "--classes", "0"], "--classes"),
        (["export", "resnet20_cifar", "--format", "keras", "--classes", "0"], "--classes"),
        (["summary", "resnet20_cifar", "--input-shape", "a,b"], "--input-shape"),
        (["train", "resnet20_cifar", "--validation-fraction", "1.5"], "--validation-fraction"),
        (["train", "resnet20_cifar", "--precision", "float8"], "--precision"),
        (["train", "resnet20_cifar", "--export", "onnx"], "--export"),
    ]:
        assert cli.main(argv) == 2, argv
        captured = capsys.readouterr()
        assert len(captured.err.splitlines()) == 1 and flag in captured.err, captured.err


def test_summary(capsys):
    assert cli.main(["summary", "resnet20_cifar", "--input-shape", "16,16,3", "--classes", "4"]) == 0
    assert "Total params" in capsys.readouterr().out


def test_static_choices_match_the_library():
    from keras_apps import export

    assert keras_apps_cli.STRATEGIES == training.STRATEGIES
    assert keras_apps_cli.LR_SCHEDULES == training.LR_SCHEDULES
    assert keras_apps_cli.PRECISIONS == training.PRECISIONS
    assert keras_apps_cli.EXPORT_FORMATS == export.FORMATS


def test_hints_name_only_flags_that_exist():
    """Every ``--flag`` named in a message of the package is a flag of some command."""
    def parsers(parser):
        found = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found += parsers(sub)
        return found

    # plug-in commands register their flags only when named on the command line
    everything = [keras_apps_cli.build_parser([]),
                  *(keras_apps_cli.build_parser([name]) for name in keras_apps_cli.discover_plugins())]
    flags = {flag for root in everything for p in parsers(root) for a in p._actions
             for flag in a.option_strings}
    named = {}
    for path in [*(REPO / "keras_apps").rglob("*.py"), REPO / "keras_apps_cli.py"]:
        tree = ast.parse(path.read_text())
        # a module that runs another program (saved_model_cli, docker) lists that program's
        # flags in a module-level tuple FOREIGN_FLAGS; they are not keras-apps flags
        foreign = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "FOREIGN_FLAGS" for t in node.targets):
                foreign = {flag for text in ast.literal_eval(node.value)
                           for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)}
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value):
                    if flag not in foreign:
                        named.setdefault(flag, path.name)
    assert {flag: where for flag, where in named.items() if flag not in flags} == {}
    assert {"--overwrite", "--download", "--output", "--data-dir"} <= set(named)


# ------------------------------------------------------------------------------ plug-ins


def test_an_entry_point_plugin_adds_a_command_that_runs(tmp_path, monkeypatch, capsys):
    (tmp_path / "greeting_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = importlib.metadata.EntryPoint(
        name="hello", value="greeting_plugin:register", group=keras_apps_cli.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(keras_apps_cli, "_entry_points", lambda: [entry])
    monkeypatch.delitem(sys.modules, "greeting_plugin", raising=False)

    assert cli.main(["--help"]) == 0
    assert re.search(r"hello\s+Greets someone", capsys.readouterr().out)
    assert "greeting_plugin" not in sys.modules  # --help reads the docstring, imports nothing
    assert cli.main(["hello", "--who", "Ada"]) == 0
    assert capsys.readouterr().out == "hello Ada\n"
    assert cli.main(["hello", "--who", "nobody"]) == 2
    assert "nobody to greet" in error_line(capsys, "hello")


def test_a_method_package_cli_module_becomes_a_command(tmp_path, monkeypatch, capsys):
    package = tmp_path / "fake_method"
    package.mkdir()
    (package / "__init__.py").write_text('"""A fake method package."""\n')
    (package / "cli.py").write_text(PLUGIN)
    monkeypatch.setattr(keras_apps, "__path__", [*keras_apps.__path__, str(tmp_path)])
    monkeypatch.setattr(keras_apps_cli, "_package_dirs", lambda: [tmp_path])
    monkeypatch.setattr(keras_apps_cli, "_entry_points", lambda: [])
    for name in ("keras_apps.fake_method", "keras_apps.fake_method.cli"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    assert cli.main(["--help"]) == 0
    assert re.search(r"fake-method\s+Greets someone", capsys.readouterr().out)
    assert cli.main(["fake-method", "--who", "Grace"]) == 0
    assert capsys.readouterr().out == "hello Grace\n"


def test_a_plugin_may_not_take_a_builtin_name(monkeypatch, capsys):
    entry = importlib.metadata.EntryPoint(
        name="train", value="greeting_plugin:register", group=keras_apps_cli.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(keras_apps_cli, "_entry_points", lambda: [entry])
    assert cli.main(["list", "vgg16"]) == 2
    assert "clashes with a built-in command" in capsys.readouterr().err


# ----------------------------------------------------------------------- train and evaluate


class FakeFit:
    """Stands in for training.fit: records the call, or raises ``error``."""

    def __init__(self, output_dir, error=None):
        self.calls, self.output_dir, self.error = [], output_dir, error

    def __call__(self, model, data, **kwargs):
        self.calls.append((model, data, kwargs))
        if self.error is not None:
            raise self.error
        metrics = {"epochs": kwargs["epochs"], "test": {"top1_error": 0.5}}
        return types.SimpleNamespace(model=None, history={}, metrics=metrics,
                                     output_dir=self.output_dir)


def test_train_passes_the_flags_to_fit(tmp_path, monkeypatch, capsys):
    fit = FakeFit(tmp_path)
    monkeypatch.setattr(training, "fit", fit)
    assert cli.main(["train", "nin_cifar", "--data", "digits", "--width", "0.25", "--epochs", "2",
                     "--precision", "bfloat16", "--validation-fraction", "0.2",
                     "--trainable", "cccp*|conv3", "--download", "--overwrite",
                     "--output", str(tmp_path / "run")]) == 0
    (model, data, kwargs), = fit.calls
    assert (model, data) == ("nin_cifar", "digits")
    assert kwargs["build_kwargs"] == {"width": 0.25}
    assert kwargs["precision"] == "bfloat16"
    assert kwargs["validation_fraction"] == 0.2
    assert kwargs["trainable"] == "cccp*|conv3"
    assert kwargs["download"] is True and kwargs["overwrite"] is True
    assert kwargs["output_dir"] == str(tmp_path / "run")
    assert kwargs["verbose"] == 2  # stdout is not a terminal: no progress bar, no ANSI codes
    out = capsys.readouterr().out
    assert '"top1_error": 0.5' in out and str(tmp_path) in out

    assert cli.main(["train", "resnet20_cifar", "--validation-fraction", "0"]) == 0
    kwargs = fit.calls[-1][2]
    assert kwargs["validation_fraction"] is None and kwargs["overwrite"] is False
    assert kwargs["precision"] == "float32" and kwargs["trainable"] is None


def test_train_refuses_builder_flags_the_model_does_not_take_before_loading(tmp_path, monkeypatch, capsys):
    fit = FakeFit(tmp_path)
    monkeypatch.setattr(training, "fit", fit)
    assert cli.main(["train", "resnet20_cifar", "--width", "0.5"]) == 2
    line = error_line(capsys, "train")
    assert "--width does not apply to resnet20_cifar" in line and "nin_cifar" in line
    assert cli.main(["train", "resnet20_cifar", "--aux-logits"]) == 2
    line = error_line(capsys, "train")
    assert "--aux-logits does not apply to resnet20_cifar" in line and "googlenet" in line
    assert fit.calls == []


def test_train_export_targets_are_checked_before_training(tmp_path, monkeypatch, capsys):
    fit = FakeFit(tmp_path)
    monkeypatch.setattr(training, "fit", fit)
    root = tmp_path / "saved_models"
    root.mkdir()
    (root / "resnet20_cifar.tflite").write_bytes(b"an earlier export")
    assert cli.main(["train", "resnet20_cifar", "--export", "saved_model,tflite",
                     "--export-dir", str(root)]) == 2
    line = error_line(capsys, "train")
    assert "resnet20_cifar.tflite already exists" in line and "--overwrite" in line
    assert fit.calls == []


def test_train_output_that_is_a_file(tmp_path, monkeypatch, capsys):
    fit = FakeFit(tmp_path)
    monkeypatch.setattr(training, "fit", fit)
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    for output, expected in [(afile, "is a file"), (afile / "run", "lies under the file")]:
        assert cli.main(["train", "resnet20_cifar", "--output", str(output)]) == 2
        line = error_line(capsys, "train")
        assert expected in line and "--overwrite" not in line
    assert fit.calls == []


def test_ctrl_c_during_training_prints_one_line_and_exits_130(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(training, "fit", FakeFit(tmp_path, error=KeyboardInterrupt()))
    assert cli.main(["train", "resnet20_cifar"]) == 130
    assert capsys.readouterr().err == (
        "keras-apps train: interrupted; re-run the same command to resume from the last "
        "finished epoch\n"
    )


def test_evaluate_passes_precision_and_download(tmp_path, monkeypatch, capsys):
    calls = []

    def evaluate(model, data, **kwargs):
        calls.append((model, data, kwargs))
        return {"top1_error": 0.25}

    monkeypatch.setattr(training, "evaluate", evaluate)
    out = tmp_path / "eval" / "metrics.json"
    assert cli.main(["evaluate", "run/model.keras", "--data", "digits", "--precision", "bfloat16",
                     "--download", "--output", str(out)]) == 0
    (model, data, kwargs), = calls
    assert (model, data, kwargs["precision"], kwargs["download"]) == (
        "run/model.keras", "digits", "bfloat16", True)
    assert json.loads(out.read_text()) == {"top1_error": 0.25}
    capsys.readouterr()

    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    for output, expected in [(tmp_path, "is a folder"), (afile / "m.json", "lies under the file")]:
        assert cli.main(["evaluate", "run/model.keras", "--output", str(output)]) == 2
        assert expected in error_line(capsys, "evaluate")
    assert len(calls) == 1


def test_evaluate_files_that_are_not_models(tmp_path, capsys):
    missing = tmp_path / "missing.keras"
    other_zip = tmp_path / "other.keras"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    flipped = tmp_path / "flipped.keras"
    keras_apps.build("resnet20_cifar", input_shape=(16, 16, 3), classes=3).save(flipped)
    data = bytearray(flipped.read_bytes())
    data[100::50] = bytes(b ^ 0xFF for b in data[100::50])
    flipped.write_bytes(bytes(data))
    for path in (missing, other_zip, flipped):
        assert cli.main(["evaluate", str(path), "--data", "digits", "--limit", "8"]) == 2, path
        line = error_line(capsys, "evaluate")
        assert path.name in line


def test_a_corrupt_keras_file_is_not_reported_as_missing(tmp_path, capsys):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"\x00not a zip archive" * 8)
    assert cli.main(["export", str(garbage), "--format", "keras", "--root", str(tmp_path)]) == 2
    line = error_line(capsys, "export")
    assert "garbage.keras" in line and "File not found" not in line
    assert [p.name for p in tmp_path.iterdir()] == ["garbage.keras"]


def test_export_errors_name_the_flags_that_apply(tmp_path, capsys):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"\x00not a zip archive" * 8)
    assert cli.main(["export", str(garbage), "--format", "keras", "--classes", "3"]) == 2
    assert "--classes apply to a registry name" in error_line(capsys, "export")

    weights = tmp_path / "corrupt.weights.h5"
    weights.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    assert cli.main(["export", "resnet20_cifar", "--format", "keras", "--weights", str(weights),
                     "--root", str(tmp_path)]) == 2
    assert "corrupt.weights.h5" in error_line(capsys, "export")

    folder = tmp_path / "folder.keras"
    folder.mkdir()
    assert cli.main(["export", "resnet20_cifar", "--format", "keras", "--classes", "3",
                     "--input-shape", "16,16,3", "--output", str(folder)]) == 2
    line = error_line(capsys, "export")
    assert "is a folder" in line and "--overwrite" not in line
    assert cli.main(["export", "resnet20_cifar", "--format", "keras", "--version", "2"]) == 2
    assert "--version applies to --format serving" in error_line(capsys, "export")
    assert cli.main(["export", "resnet20_cifar", "--format", "tflite_int8"]) == 2
    assert "needs --data" in error_line(capsys, "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.weights.h5", "folder.keras",
                                                          "garbage.keras"]


def test_an_existing_export_is_kept_and_the_error_names_the_flag(tmp_path, capsys):
    args = ["export", "resnet20_cifar", "--format", "keras", "--classes", "3",
            "--root", str(tmp_path)]
    assert cli.main(args) == 0
    before = (tmp_path / "resnet20_cifar.keras").read_bytes()
    capsys.readouterr()
    assert cli.main(args) == 2
    line = error_line(capsys, "export")
    assert "already exists" in line and "--overwrite" in line
    assert (tmp_path / "resnet20_cifar.keras").read_bytes() == before
    assert cli.main([*args, "--overwrite"]) == 0


def test_analyze_output_that_is_a_file(tmp_path, capsys):
    afile = tmp_path / "analysis"
    afile.write_text("x")
    assert cli.main(["analyze", "resnet20_cifar", "--no-measure", "--output", str(afile)]) == 2
    line = error_line(capsys, "analyze")
    assert "is a file" in line and "--overwrite" not in line


def test_analyze_writes_the_table_and_charts(tmp_path, capsys):
    out = tmp_path / "analysis"
    assert cli.main(["analyze", "resnet20_cifar", "--batch-sizes", "1,2", "--repeats", "1",
                     "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("analysis.md", "analysis.csv"):
        assert (out / name).is_file() and name in printed
    assert len(list(out.glob("*.png"))) == 3  # operations, memory and latency charts
    assert "resnet20_cifar" in (out / "analysis.md").read_text()


def test_quiet_by_default_and_verbose_on_request(tmp_path, monkeypatch):
    from absl import logging as absl_logging

    seen = []

    def fit(model, data, **kwargs):
        seen.append((os.environ.get("TF_CPP_MIN_LOG_LEVEL"), absl_logging.get_verbosity()))
        return FakeFit(tmp_path)(model, data, **kwargs)

    monkeypatch.setattr(training, "fit", fit)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    before = absl_logging.get_verbosity()
    assert cli.main(["train", "resnet20_cifar"]) == 0
    assert cli.main(["--verbose", "train", "resnet20_cifar"]) == 0
    assert seen == [("3", absl_logging.ERROR), ("0", before)]
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ and absl_logging.get_verbosity() == before


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_train_evaluate_export_every_format_and_reload(tmp_path, capsys):
    """``train`` runs as the console command (a fresh process: its TensorFlow logging is what a
    user sees); ``evaluate`` and ``export`` then run through the same ``cli.main`` in this
    process, on the trained file."""
    from keras_apps import export

    run = tmp_path / "run"
    out = run_cli("train", "resnet20_cifar", "--data", "digits", "--epochs", "1", "--batch-size",
                  "64", "--limit", "256", "--strategy", "one-device", "--output", str(run),
                  cwd=tmp_path)
    # Quiet by default: no TensorFlow C++ log lines, no ANSI codes in piped output.
    assert not re.search(r"^[IWE]\d{4} ", out.stderr + out.stdout, re.MULTILINE), out.stderr
    assert "End of sequence" not in out.stderr and "\x1b[" not in out.stdout
    assert re.search(r"^\d+/\d+ - \d+s .* - loss: ", out.stdout, re.MULTILINE), out.stdout
    assert str(run) in out.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"top1_error", "top5_error", "loss"}

    capsys.readouterr()
    assert cli.main(["evaluate", str(run / "model.keras"), "--data", "digits", "--limit", "256",
                     "--output", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["top1_error"] == pytest.approx(metrics["test"]["top1_error"])
    assert "top-1 error" in capsys.readouterr().out

    model = training.load_model(run / "model.keras")
    images = np.stack([image for image, _ in _digits_images()])[:8]
    expected = model(images).numpy()
    for fmt in export.FORMATS:
        extra = ["--data", "digits"] if fmt == "tflite_int8" else []
        assert cli.main(["export", str(run / "model.keras"), "--format", fmt, "--root",
                         str(tmp_path / "saved_models"), *extra]) == 0, capsys.readouterr().err
        assert f"exported {fmt}: " in capsys.readouterr().out
    exported = sorted(p for p in (tmp_path / "saved_models").iterdir() if not p.name.startswith("."))
    assert len(exported) == len(export.FORMATS)
    for path in exported:
        target = path / "1" if path.is_dir() and (path / "1").is_dir() else path
        predict = export.load_exported(target)
        got = np.asarray(predict(images))
        if "int8" in path.name:
            assert np.mean(np.argmax(got, 1) == np.argmax(expected, 1)) >= 0.75
        else:
            np.testing.assert_allclose(got, expected, atol=1e-4)


def _digits_images():
    from keras_apps import data as kdata

    ds, _ = kdata.load("digits", "test", batch_size=8, augment=False, shuffle=False, limit=8)
    return ds.unbatch()
