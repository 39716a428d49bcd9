"""``keras-apps hdcnn``: listed by ``--help`` with its docstring's first line; ``fit`` passes
every flag to ``keras_apps.hdcnn.fit`` and refuses bad flags in one line (exit 2) before
anything runs; Ctrl-C exits 130 with the resume hint; ``predict`` reports the error and the
fine components run as a numpy re-computation of the paper's rule gives them; one slow
end-to-end run of both."""

import argparse
import ast
import json
import os
import pathlib
import re
import subprocess
import sys
import types

import numpy as np
import pytest

import keras
import keras_apps_cli
from keras_apps import cli, hdcnn
from keras_apps import data as kdata
from keras_apps.hdcnn import Hierarchy

REPO = pathlib.Path(__file__).resolve().parents[1]
SOURCE = REPO / "keras_apps" / "hdcnn" / "cli.py"

#: digits: 10 classes, 32x32x1. P^d in three groups, each set widened by one neighbour.
FINE_TO_COARSE = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
COARSE_SETS = [[0, 1, 2, 3], [3, 4, 5, 6], [0, 6, 7, 8, 9]]


class FakeFit:
    """Stands in for ``keras_apps.hdcnn.fit``: records the call, or raises ``error``."""

    def __init__(self, output_dir, error=None):
        self.calls, self.output_dir, self.error = [], pathlib.Path(output_dir), error

    def __call__(self, building_block, data, **kwargs):
        self.calls.append((building_block, data, kwargs))
        if self.error is not None:
            raise self.error
        metrics = {
            "building_block": {"test": {"top1_error": 0.125}},
            "hierarchy": {"num_coarse": 3, "set_sizes": [4, 4, 5], "memberships": 13},
            "finetune": {"test": {"top1_error": 0.0625}},
        }
        return types.SimpleNamespace(model=None, hierarchy=None, metrics=metrics,
                                     output_dir=self.output_dir)


def error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert re.match(r"keras-apps hdcnn( fit| predict)?: error: ", lines[0]), lines[0]
    assert "Traceback" not in captured.err
    return lines[0]


def _parsers(parser):
    """``parser`` and every parser below it (sub-commands and their actions)."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


# ---------------------------------------------------------------------------- the command


def test_help_lists_hdcnn_with_the_first_line_of_its_docstring(capsys):
    first_line = ast.get_docstring(ast.parse(SOURCE.read_text())).splitlines()[0]
    assert cli.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"hdcnn {first_line}" in out
    assert cli.main(["hdcnn", "--help"]) == 0
    out = capsys.readouterr().out
    assert "fit" in out and "predict" in out


def test_every_flag_named_in_a_message_is_a_flag_of_the_command():
    parser = keras_apps_cli.build_parser(["hdcnn"])
    flags = {flag for p in _parsers(parser) for a in p._actions for flag in a.option_strings}
    tree = ast.parse(SOURCE.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    named = {
        flag
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value)
    }
    assert named - flags == set()
    assert {"--coarse", "--gamma", "--hierarchy", "--shared-until", "--beta"} <= named


def test_fit_passes_every_flag_to_hdcnn_fit(tmp_path, monkeypatch, capsys):
    fit = FakeFit(tmp_path / "run")
    monkeypatch.setattr(hdcnn, "fit", fit)
    assert cli.main([
        "hdcnn", "fit", "--building-block", "nin_cifar", "--data", "digits", "--coarse", "3",
        "--gamma", "5", "--convention", "release", "--lam", "2.5", "--shared-until", "drop2",
        "--fine-classifier-init", "building_block", "--width", "0.25", "--block-epochs", "4",
        "--fine-epochs", "0", "--finetune-epochs", "2", "--batch-size", "32",
        "--learning-rate", "0.02", "--fine-learning-rate", "0.01", "--finetune-learning-rate",
        "0.001", "--validation-fraction", "0.2", "--validation-seed", "3", "--limit", "500",
        "--seed", "7", "--strategy", "one-device", "--output", str(tmp_path / "run"), "--overwrite",
    ]) == 0
    (block, data, kwargs), = fit.calls
    assert (block, data) == ("nin_cifar", "digits")
    assert kwargs == {
        "n_coarse": 3, "gamma": 5.0, "hierarchy": None, "convention": "release", "lam": 2.5,
        "consistency": True, "shared_until": "drop2", "shared_layers": True,
        "building_block_kwargs": {"width": 0.25}, "fine_classifier_init": "building_block",
        "block_epochs": 4, "fine_epochs": 0, "finetune_epochs": 2, "batch_size": 32,
        "learning_rate": 0.02, "fine_learning_rate": 0.01, "finetune_learning_rate": 0.001,
        "validation_fraction": 0.2, "validation_seed": 3, "data_dir": None, "limit": 500,
        "seed": 7, "strategy": "one-device", "output_dir": str(tmp_path / "run"),
        "overwrite": True, "verbose": 2,  # stdout is not a terminal: one plain line per epoch
    }
    out = capsys.readouterr().out
    assert str(tmp_path / "run" / "model.keras") in out
    assert "| building block (nin_cifar) | 12.50 |" in out
    assert "| HD-CNN, K=3 | 6.25 |" in out
    assert "(learned, overlapping with gamma 5)" in out and "set sizes 4, 4, 5 (13 memberships)" in out


def test_fit_defaults_and_the_switches(tmp_path, monkeypatch, capsys):
    fit = FakeFit(tmp_path / "run")
    monkeypatch.setattr(hdcnn, "fit", fit)
    path = tmp_path / "tree.json"
    Hierarchy(FINE_TO_COARSE, COARSE_SETS).save(path)
    assert cli.main(["hdcnn", "fit", "--data", "digits", "--width", "0.25", "--hierarchy", str(path),
                     "--no-consistency", "--no-shared-layers"]) == 0
    block, data, kwargs = fit.calls[-1]
    assert (block, data) == ("nin_cifar", "digits")
    assert (kwargs["hierarchy"], kwargs["n_coarse"], kwargs["gamma"]) == (str(path), None, None)
    assert (kwargs["consistency"], kwargs["lam"]) == (False, None)
    assert (kwargs["shared_layers"], kwargs["shared_until"]) == (False, None)
    assert (kwargs["convention"], kwargs["fine_classifier_init"]) == ("paper", "random")
    assert (kwargs["block_epochs"], kwargs["fine_epochs"], kwargs["finetune_epochs"]) == (10, 5, 5)
    assert (kwargs["batch_size"], kwargs["learning_rate"], kwargs["validation_fraction"]) == (64, 0.05, 0.1)
    assert (kwargs["output_dir"], kwargs["overwrite"], kwargs["strategy"]) == ("runs/hdcnn", False, "auto")
    assert f"(from {path})" in capsys.readouterr().out

    assert cli.main(["hdcnn", "fit", "--data", "digits", "--width", "0.25"]) == 0
    kwargs = fit.calls[-1][2]
    assert (kwargs["n_coarse"], kwargs["gamma"]) == (None, None)
    assert kwargs["building_block_kwargs"] == {"width": 0.25}
    assert "(learned, disjoint)" in capsys.readouterr().out


def test_a_trained_building_block_file_is_passed_through(tmp_path, monkeypatch, capsys):
    fit = FakeFit(tmp_path / "run")
    monkeypatch.setattr(hdcnn, "fit", fit)
    block = keras_apps_build_block()
    block.save(tmp_path / "block.keras")
    assert cli.main(["hdcnn", "fit", "--building-block", str(tmp_path / "block.keras"),
                     "--data", "digits", "--coarse", "2", "--block-epochs", "0"]) == 0
    block_arg, _, kwargs = fit.calls[-1]
    assert block_arg == str(tmp_path / "block.keras") and kwargs["building_block_kwargs"] is None
    capsys.readouterr()
    assert cli.main(["hdcnn", "fit", "--building-block", str(tmp_path / "block.keras"),
                     "--data", "digits", "--width", "0.5"]) == 2
    assert "--width applies to a building block trained here" in error_line(capsys)
    assert len(fit.calls) == 1


def keras_apps_build_block():
    import keras_apps

    return keras_apps.build("nin_cifar", input_shape=(32, 32, 1), classes=10, width=0.25)


@pytest.mark.parametrize("argv, expected", [
    (["--gamma", "0"], "argument --gamma: expected a finite number > 0, got '0'"),
    (["--gamma", "-1"], "argument --gamma"),
    (["--coarse", "1"], "argument --coarse: K must be an integer >= 2"),
    (["--coarse", "two"], "argument --coarse"),
    (["--building-block", "nin_cifr"], "Unknown model 'nin_cifr'. Closest names: nin_cifar"),
    (["--building-block", "hdcnn"], "--building-block hdcnn is an HD-CNN"),
    (["--building-block", "runs/none/model.keras"], "runs/none/model.keras does not exist"),
    (["--hierarchy", "tree.json", "--coarse", "3"],
     "--coarse learns a hierarchy; does not apply with --hierarchy"),
    (["--hierarchy", "tree.json", "--coarse", "3", "--gamma", "5"], "--coarse and --gamma learn a hierarchy"),
    (["--hierarchy", "missing.json"], "--hierarchy missing.json: no such file"),
    (["--no-shared-layers", "--shared-until", "drop1"],
     "--shared-until does not apply with --no-shared-layers"),
    (["--no-consistency", "--lam", "5"], "--lam weighs the coarse consistency term"),
    (["--building-block", "resnet20_cifar", "--width", "0.5"], "--width does not apply to resnet20_cifar"),
    (["--coarse", "11"], "--coarse 11: K must be at most the 10 classes of --data digits"),
    (["--shared-until", "pool9"], "--shared-until: the building block 'nin_cifar' has no layer 'pool9'"),
    (["--block-epochs", "0"], "--block-epochs must be >= 1"),
    (["--fine-epochs", "-1"], "argument --fine-epochs"),
    (["--validation-fraction", "0"], "argument --validation-fraction: expected a fraction 0 < F < 1"),
    (["--convention", "caffe"], "argument --convention: invalid choice"),
    (["--output", "afile.txt"], "--output afile.txt is a file"),
    (["--data", "no_such_set"], "no_such_set"),
])
def test_bad_flags_fail_in_one_line_before_anything_runs(argv, expected, tmp_path, monkeypatch, capsys):
    fit = FakeFit(tmp_path / "run")
    monkeypatch.setattr(hdcnn, "fit", fit)
    monkeypatch.chdir(tmp_path)
    Hierarchy(FINE_TO_COARSE, COARSE_SETS).save(tmp_path / "tree.json")
    (tmp_path / "afile.txt").write_text("x")
    base = ["--data", "digits", "--width", "0.25"] if "--building-block" not in argv else ["--data", "digits"]
    assert cli.main(["hdcnn", "fit", *base, *argv]) == 2
    assert expected in error_line(capsys)
    assert fit.calls == []


def test_a_hierarchy_of_another_class_count_is_refused(tmp_path, monkeypatch, capsys):
    fit = FakeFit(tmp_path / "run")
    monkeypatch.setattr(hdcnn, "fit", fit)
    path = tmp_path / "k5.json"
    Hierarchy.default(20, 5).save(path)
    assert cli.main(["hdcnn", "fit", "--data", "digits", "--hierarchy", str(path)]) == 2
    assert "covers 20 fine categories but --data digits has 10 classes" in error_line(capsys)
    assert fit.calls == []


def test_a_finished_run_is_kept_unless_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    (run / "model.keras").write_bytes(b"a finished run")
    assert cli.main(["hdcnn", "fit", "--data", "digits", "--width", "0.25", "--output", str(run)]) == 2
    line = error_line(capsys)
    assert "holds a finished HD-CNN run" in line and "--overwrite" in line
    assert (run / "model.keras").read_bytes() == b"a finished run"


def test_ctrl_c_prints_the_resume_hint_and_exits_130(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hdcnn, "fit", FakeFit(tmp_path, error=KeyboardInterrupt()))
    assert cli.main(["hdcnn", "fit", "--data", "digits", "--width", "0.25"]) == 130
    assert capsys.readouterr().err == (
        "keras-apps hdcnn: interrupted; re-run the same command to resume (finished phases are "
        "kept, the interrupted one resumes from its last finished epoch)\n"
    )


# ------------------------------------------------------------------------------- predict


@pytest.fixture
def small_hdcnn(tmp_path):
    model = hdcnn.build_hdcnn("nin_cifar", Hierarchy(FINE_TO_COARSE, COARSE_SETS), input_shape=(32, 32, 1),
                              classes=10, building_block_kwargs={"width": 0.25})
    path = tmp_path / "hdcnn.keras"
    model.save(path)
    return model, path


def _digits_test(limit):
    ds, _ = kdata.load("digits", "test", batch_size=64, augment=False, shuffle=False, limit=limit)
    images, labels = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


def test_predict_reports_what_the_routing_rule_gives(small_hdcnn, tmp_path, capsys):
    model, path = small_hdcnn
    images, labels = _digits_test(60)
    K = len(COARSE_SETS)
    scatter = keras.Model(model.inputs, model.get_layer("fine_scatter").output)
    fine = np.asarray(scatter.predict(images, verbose=0), np.float64)  # (N, K, C), zeros off S_k
    B = np.asarray(model.predict(images, verbose=0)["coarse"], np.float64)
    # A beta whose threshold 1/(beta K) is the median of B: some images run 1, some more.
    beta = 1.0 / (K * float(np.median(B)))
    cut = 1.0 / (beta * K)
    ran = (B >= cut) | (np.arange(K)[None, :] == np.argmax(B, axis=1)[:, None])
    assert 1 < ran.sum(axis=1).mean() < K
    # the paper: p = sum_{k run} B_k p_k / sum_{k run} B_k
    p = np.einsum("nk,nkc->nc", B * ran, fine) / (B * ran).sum(axis=1, keepdims=True)
    full = np.einsum("nk,nkc->nc", B, fine) / B.sum(axis=1, keepdims=True)

    out = tmp_path / "eval" / "conditional.json"
    assert cli.main(["hdcnn", "predict", str(path), "--data", "digits", "--limit", "60",
                     "--beta", f"inf,{beta!r}", "--batch-size", "16", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert (result["split"], result["examples"], result["num_coarse"]) == ("test", 60, K)
    everything, routed = result["sweep"]
    assert everything["beta"] == "inf" and everything["threshold"] == 0.0
    assert everything["mean_components_run"] == K
    assert everything["top1_error"] == pytest.approx(np.mean(np.argmax(full, 1) != labels))
    assert routed["beta"] == pytest.approx(beta) and routed["threshold"] == pytest.approx(cut)
    assert routed["mean_components_run"] == pytest.approx(ran.sum(axis=1).mean())
    assert routed["top1_error"] == pytest.approx(np.mean(np.argmax(p, 1) != labels))
    assert all(row["seconds"] > 0 for row in result["sweep"])
    assert f"| inf | 0.0000 | {K:.2f} of {K} |" in printed
    assert f"{ran.sum(axis=1).mean():.2f} of {K}" in printed


def test_predict_errors(small_hdcnn, tmp_path, capsys):
    _, path = small_hdcnn
    plain = tmp_path / "plain.keras"
    keras_apps_build_block().save(plain)
    for argv, expected in [
        ([str(plain)], "is not an HD-CNN"),
        ([str(path), "--beta", "0"], "argument --beta: expected positive numbers or inf"),
        ([str(path), "--beta", "4,x"], "argument --beta"),
        ([str(path), "--output", str(tmp_path)], "is a folder"),
        ([str(tmp_path / "missing.keras")], "does not exist"),
        ([str(path), "--data", "digits", "--split", "nope"], "nope"),
    ]:
        data = [] if "--data" in argv else ["--data", "digits"]
        assert cli.main(["hdcnn", "predict", *argv, *data, "--limit", "8"]) == 2, argv
        assert expected in error_line(capsys), argv


# ---------------------------------------------------------------------------- end to end


def run_cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "keras_apps_cli", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"keras-apps {' '.join(args)}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_fit_then_predict_end_to_end(tmp_path, capsys):
    """``fit`` runs as the console command (a fresh process: its TensorFlow logging is what a
    user sees); the refused re-run and ``predict`` then run through ``cli.main`` in this
    process, on the finished run."""
    run = tmp_path / "run"
    command = ["hdcnn", "fit", "--building-block", "nin_cifar", "--data", "digits", "--coarse", "2",
               "--gamma", "5", "--width", "0.25", "--limit", "200", "--block-epochs", "1",
               "--fine-epochs", "1", "--finetune-epochs", "1", "--strategy", "one-device",
               "--output", str(run)]
    out = run_cli(*command, cwd=tmp_path)
    assert not re.search(r"^[IWE]\d{4} ", out.stderr + out.stdout, re.MULTILINE), out.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    tree = Hierarchy.load(run / "hierarchy" / "hierarchy.json")
    assert tree.num_coarse == 2 and metrics["hierarchy"]["set_sizes"] == [len(s) for s in tree.coarse_sets]
    for name in ("building_block", "hierarchy", "fine_component_0", "finetune"):
        assert (run / name).is_dir() and str(run / name) in out.stdout
    assert (run / "fine_component_1" / "model.keras").is_file()
    block_error = 100 * metrics["building_block"]["test"]["top1_error"]
    hdcnn_error = 100 * metrics["finetune"]["test"]["top1_error"]
    assert f"| building block (nin_cifar) | {block_error:.2f} |" in out.stdout
    assert f"| HD-CNN, K=2 | {hdcnn_error:.2f} |" in out.stdout
    assert f"set sizes {', '.join(str(len(s)) for s in tree.coarse_sets)}" in out.stdout

    capsys.readouterr()
    assert cli.main(command) == 2 and "--overwrite" in error_line(capsys)

    report = tmp_path / "conditional.json"
    assert cli.main(["hdcnn", "predict", str(run / "model.keras"), "--data", "digits", "--limit", "200",
                     "--beta", "inf,1", "--output", str(report)]) == 0
    everything, routed = json.loads(report.read_text())["sweep"]
    # every component run: the error training.evaluate measured on the same test images
    assert everything["top1_error"] == pytest.approx(metrics["finetune"]["test"]["top1_error"])
    assert everything["mean_components_run"] == 2 and 1 <= routed["mean_components_run"] <= 2
