"""Multi-worker training (MultiWorkerMirroredStrategy through keras_apps.training's engine)
against one device, and fault tolerance with real SIGKILLs: two worker processes on
127.0.0.1 (tests/_train_worker.py)."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_apps import training
from keras_apps.training import engine

REPO = pathlib.Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "_train_worker.py"
TIMEOUT = 600

pytestmark = pytest.mark.xdist_group("distributed")


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "KILL_AT")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO), **extra)
    return env


def _one_device(output, mode):
    out = subprocess.run([sys.executable, str(WORKER), str(output), "one-device", mode],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _start_cluster(output, mode, kill=None):
    """Two worker processes (task 0 is the chief); ``kill`` = (task index, "epoch:step")."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        extra = {"TF_CONFIG": json.dumps(config)}
        if kill is not None and kill[0] == index:
            extra["KILL_AT"] = kill[1]
        processes.append(subprocess.Popen(
            [sys.executable, str(WORKER), str(output), "multi-worker", mode], cwd=REPO,
            env=_env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    return processes


def _finish(processes):
    outputs = [p.communicate(timeout=TIMEOUT) for p in processes]
    for p, (stdout, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-3000:]
    return [stdout for stdout, _ in outputs]


def _weights(run):
    return training.load_model(pathlib.Path(run) / "model.keras").get_weights()


def _assert_same_weights(a, b, atol=1e-4):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=atol, rtol=1e-3)


@pytest.fixture(scope="module")
def plain_reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    _one_device(run, "plain")
    return run


def test_multi_worker_needs_a_valid_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        training.get_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        training.get_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}}))
    with pytest.raises(ValueError, match="'cluster'.*'task'"):
        training.get_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}))
    with pytest.raises(ValueError, match="not a member"):
        training.get_strategy("multi-worker")


def test_the_chief_is_task_chief_else_worker_zero():
    class Resolver:
        def __init__(self, spec, task_type, task_id):
            self.spec, self.task_type, self.task_id = spec, task_type, task_id

        def cluster_spec(self):
            import tensorflow as tf

            return tf.train.ClusterSpec(self.spec)

    class Strategy:
        def __init__(self, *args):
            self.cluster_resolver = Resolver(*args)

    workers = {"worker": ["a:1", "b:1"]}
    assert engine.is_chief(Strategy(workers, "worker", 0))
    assert not engine.is_chief(Strategy(workers, "worker", 1))
    with_chief = {"chief": ["c:1"], **workers}
    assert engine.is_chief(Strategy(with_chief, "chief", 0))
    assert not engine.is_chief(Strategy(with_chief, "worker", 0))
    assert engine.is_chief(training.get_strategy("one-device"))


@pytest.mark.slow
def test_two_workers_reach_the_weights_of_one_device(tmp_path, plain_reference):
    run = tmp_path / "cluster"
    stdout = _finish(_start_cluster(run, "plain"))
    assert all("EPOCHS_RUN 3" in out for out in stdout)
    _assert_same_weights(_weights(run), _weights(plain_reference))
    ours = json.loads((run / "metrics.json").read_text())
    reference = json.loads((plain_reference / "metrics.json").read_text())
    assert ours["test"]["top1_error"] == pytest.approx(reference["test"]["top1_error"], abs=0.01)
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 3
    # only the chief wrote: one set of files, no worker folders, nothing staged
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in plain_reference.iterdir())
    assert not list(run.rglob(".*"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["growth", "hdcnn"])
def test_the_methods_training_phases_run_on_two_workers(tmp_path, mode):
    """Growth's fine-tuning (new layers at a learning-rate multiplier, two outputs) and
    HD-CNN's global fine-tuning (its coarse consistency term, a function of the batch mean)
    give one device's weights."""
    reference = tmp_path / "one"
    _one_device(reference, mode)
    run = tmp_path / "cluster"
    _finish(_start_cluster(run, mode))
    _assert_same_weights(_weights(run), _weights(reference))
    rows = (run / "history.csv").read_text().splitlines()
    assert rows[0] == (reference / "history.csv").read_text().splitlines()[0]  # same logs


def _state_epoch(run):
    path = run / "backup" / "state.json"
    return json.loads(path.read_text())["epoch"] if path.is_file() else 0


@pytest.mark.slow
def test_a_killed_worker_restarts_from_the_last_epoch_with_the_uninterrupted_weights(
    tmp_path, plain_reference
):
    run = tmp_path / "cluster"
    processes = _start_cluster(run, "plain", kill=(1, "1:3"))  # worker 1 dies inside epoch 2
    victim, chief = processes[1], processes[0]
    victim.wait(timeout=TIMEOUT)
    assert victim.returncode == -signal.SIGKILL
    # The chief waits on the dead peer's collectives; the cluster manager kills the job.
    time.sleep(1)
    chief.send_signal(signal.SIGKILL)
    chief.wait(timeout=60)
    assert _state_epoch(run) == 1  # epoch 1 is kept
    assert not (run / "metrics.json").exists()
    restarted = _finish(_start_cluster(run, "plain"))
    assert all("EPOCHS_RUN 2" in out for out in restarted)  # epochs 2 and 3 only
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 3
    _assert_same_weights(_weights(run), _weights(plain_reference))


@pytest.mark.slow
def test_a_killed_single_process_restarts_with_the_uninterrupted_weights(
    tmp_path, plain_reference
):
    run = tmp_path / "one"
    killed = subprocess.run([sys.executable, str(WORKER), str(run), "one-device", "plain"],
                            cwd=REPO, env=_env(KILL_AT="2:2"), capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _state_epoch(run) == 2
    out = _one_device(run, "plain")
    assert "EPOCHS_RUN 1" in out.stdout
    _assert_same_weights(_weights(run), _weights(plain_reference), atol=0)
