"""The README stays true: its model table is generated from the registry, its test command is CI's."""

import os
import pathlib
import subprocess
import sys

import keras
import pytest

from keras_apps import analysis, registry

REPO = pathlib.Path(__file__).resolve().parents[1]


#: ``tools/gen_model_table.py --check``, with every model built under
#: ``keras.StatelessScope(initialize_variables=False)`` (its variables get their shapes but no
#: initial values: the table's parameter and MAC counts depend on shapes only, and drawing the
#: initial values was most of the check's time) and the imported modules taken out of the
#: garbage collection that follows each model (``gc.freeze``). The table is the same, byte for
#: byte, as the script's own run.
_TABLE_CHECK = """
import gc, runpy, sys
import keras
from keras_apps import registry

build = registry.build


def build_without_initial_values(*args, **kwargs):
    with keras.StatelessScope(initialize_variables=False):
        return build(*args, **kwargs)


registry.build = build_without_initial_values
gc.collect()
gc.freeze()
sys.argv = ["tools/gen_model_table.py", "--check"]
runpy.run_path("tools/gen_model_table.py", run_name="__main__")
"""


@pytest.mark.slow
def test_model_table_is_up_to_date():
    out = subprocess.run([sys.executable, "-c", _TABLE_CHECK], cwd=REPO, capture_output=True,
                         text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]


def test_a_model_built_without_initial_values_gives_the_same_table(monkeypatch):
    """What the check above relies on (a stale table fails it loudly either way)."""
    expected = analysis.model_table_markdown("resnet20_cifar")
    build = registry.build

    def build_without_initial_values(*args, **kwargs):
        with keras.StatelessScope(initialize_variables=False):
            return build(*args, **kwargs)

    monkeypatch.setattr(registry, "build", build_without_initial_values)
    assert analysis.model_table_markdown("resnet20_cifar") == expected


def test_readme_test_command_is_the_one_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = "python -m pytest -n 2 --dist loadgroup -q"
    assert command in readme and command in ci


def _python_block(section: str) -> str:
    readme = (REPO / "README.md").read_text()
    body = readme[readme.index(f"## {section}"):]
    start = body.index("```python\n") + len("```python\n")
    return body[start:body.index("```", start)]


def _shrunk(code: str, replacements) -> str:
    """``code`` with smaller epochs, data limits and K: it runs as written, at toy size. Each
    replaced text must be in the block, so an edit of the README cannot silently undo one."""
    for old, new in replacements:
        assert code.count(old) == 1, f"{old!r} is not once in the README block"
        code = code.replace(old, new)
    return code


@pytest.mark.slow
def test_readme_training_block_runs_and_runs_again(tmp_path):
    # The second run finds the first one's run folders and exports (as a user who ran the
    # main command first does): it must not fail with FileExistsError.
    code = _shrunk(_python_block("Python training API"), [
        ("epochs=5, batch_size=64,", "epochs=1, batch_size=64, limit=128,"),
        ("epochs=2", "epochs=1"),
        ("classes=[3, 5, 7], batch_size=32)", "classes=[3, 5, 7], batch_size=32, limit=64)"),
    ])
    for attempt in range(2):
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                             text=True, timeout=900,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert out.returncode == 0, f"run {attempt + 1}: {out.stderr[-3000:]}"
    assert (tmp_path / "runs" / "custom" / "metrics.json").is_file()


@pytest.mark.slow
def test_readme_hdcnn_block_runs(tmp_path):
    code = _shrunk(_python_block("HD-CNN"), [
        ("block_epochs=3", "block_epochs=1"), ("limit=500", "limit=200"), ("n_coarse=3", "n_coarse=2"),
    ])
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "runs" / "hdcnn_digits" / "metrics.json").is_file()
    assert (tmp_path / "saved_models" / "hdcnn_conditional" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_readme_growing_block_runs(tmp_path):
    code = _shrunk(_python_block("Growing a Brain"), [
        ("epochs=3, limit=500,", "epochs=1, limit=200,"), ("epochs=2,\n", "epochs=1,\n"),
    ])
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    for run in ("grow_source", "grow_target", "grow_lwf"):
        assert (tmp_path / "runs" / run / "metrics.json").is_file()
    assert "['predictions', 'task0', 'task1'] 2" in out.stdout


@pytest.mark.slow
def test_readme_overfeat_block_runs(tmp_path):
    if not (REPO.parent / "shared" / "data" / "detection" / "bccd" / "BCCD").is_dir():
        pytest.skip("BCCD is not in ../shared/data/detection/bccd (see ../shared/data/PROVENANCE.md)")
    code = _shrunk(_python_block("OverFeat"), [
        ("epochs=3,\n", "epochs=1,\n"), ("regressor_epochs=2, limit=40,", "regressor_epochs=1, limit=12,"),
        ('records("test")[:8]', 'records("test")[:2]'),
    ])
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                           "KERAS_APPS_DATA": str(REPO.parent / "shared" / "data")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "runs" / "overfeat" / "system.keras").is_file()
    assert "['RBC', 'WBC', 'Platelets']" in out.stdout


@pytest.mark.slow
def test_readme_niwt_block_runs(tmp_path):
    from keras_apps.data import cifar10

    if cifar10.find_shards(REPO.parent / "shared" / "data")[0] is None:
        pytest.skip("CIFAR-10 JPEG shards are not in ../shared/data (see ../shared/data/PROVENANCE.md)")
    code = _shrunk(_python_block("NIWT"), [
        ("epochs=3, limit=300,", "epochs=1, limit=40,"), ("importance_images=50,", "importance_images=10,"),
    ])
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                           "KERAS_APPS_DATA": str(REPO.parent / "shared" / "data")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "runs" / "niwt" / "niwt.keras").is_file()
    assert "(None, 10)" in out.stdout
