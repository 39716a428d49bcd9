"""The keras-apps command line, end to end: train, evaluate, export to every format, reload."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_apps import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd, timeout=900):
    out = subprocess.run([sys.executable, "-m", "keras_apps.cli", *args], cwd=cwd,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"keras-apps {' '.join(args)}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_list_info_and_datasets(capsys):
    assert cli.main(["list", "vgg*"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["vgg16", "vgg19"]
    assert cli.main(["info", "resnet50"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 25_636_712
    assert cli.main(["datasets"]) == 0
    assert "digits" in capsys.readouterr().out.split()


def test_errors_are_reported_without_a_traceback(capsys):
    assert cli.main(["info", "resnet5"]) == 2
    err = capsys.readouterr().err
    assert "Unknown model 'resnet5'" in err and "resnet50" in err
    assert cli.main(["list", "zzz*"]) == 1


def test_summary(capsys):
    assert cli.main(["summary", "resnet20_cifar", "--input-shape", "16,16,3", "--classes", "4"]) == 0
    assert "Total params" in capsys.readouterr().out


@pytest.mark.slow
def test_train_evaluate_export_every_format_and_reload(tmp_path):
    from keras_apps import export, training

    run = tmp_path / "run"
    run_cli("train", "resnet20_cifar", "--data", "digits", "--epochs", "1", "--batch-size", "64",
            "--limit", "256", "--strategy", "one-device", "--output", str(run), cwd=tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"top1_error", "top5_error", "loss"}

    out = run_cli("evaluate", str(run / "model.keras"), "--data", "digits", "--limit", "256",
                  "--output", str(tmp_path / "eval.json"), cwd=tmp_path)
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["top1_error"] == pytest.approx(metrics["top1_error"])
    assert "top-1 error" in out

    model = training.load_model(run / "model.keras")
    images = np.stack([image for image, _ in _digits_images()])[:8]
    expected = model(images).numpy()
    for fmt in export.FORMATS:
        extra = ["--data", "digits"] if fmt == "tflite_int8" else []
        run_cli("export", str(run / "model.keras"), "--format", fmt, "--root",
                str(tmp_path / "saved_models"), *extra, cwd=tmp_path)
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


def test_analyze_writes_the_table_and_charts(tmp_path, capsys):
    out = tmp_path / "analysis"
    assert cli.main(["analyze", "resnet20_cifar", "--batch-sizes", "1,2", "--repeats", "1",
                     "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("analysis.md", "analysis.csv"):
        assert (out / name).is_file() and name in printed
    assert len(list(out.glob("*.png"))) == 3  # operations, memory and latency charts
    assert "resnet20_cifar" in (out / "analysis.md").read_text()


def test_an_existing_export_is_kept_and_the_error_names_the_flag(tmp_path, capsys):
    args = ["export", "resnet20_cifar", "--format", "keras", "--classes", "3",
            "--root", str(tmp_path)]
    assert cli.main(args) == 0
    before = (tmp_path / "resnet20_cifar.keras").read_bytes()
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert (tmp_path / "resnet20_cifar.keras").read_bytes() == before
    assert cli.main([*args, "--overwrite"]) == 0
