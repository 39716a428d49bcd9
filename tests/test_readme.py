"""The README stays true: its model table is generated from the registry, its test command is CI's."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_model_table_is_up_to_date():
    out = subprocess.run([sys.executable, "tools/gen_model_table.py", "--check"], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]


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


@pytest.mark.slow
def test_readme_training_block_runs_and_runs_again(tmp_path):
    # The second run finds the first one's run folders and exports (as a user who ran the
    # main command first does): it must not fail with FileExistsError.
    code = _python_block("Python training API")
    assert "epochs=5" in code and "epochs=2" in code
    code = code.replace("epochs=5", "epochs=1").replace("epochs=2", "epochs=1")
    for attempt in range(2):
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                             text=True, timeout=900,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert out.returncode == 0, f"run {attempt + 1}: {out.stderr[-3000:]}"
    assert (tmp_path / "runs" / "custom" / "metrics.json").is_file()


@pytest.mark.slow
def test_readme_hdcnn_block_runs(tmp_path):
    code = _python_block("HD-CNN")
    assert "block_epochs=3" in code and "limit=500" in code
    code = code.replace("block_epochs=3", "block_epochs=1").replace("limit=500", "limit=200")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "runs" / "hdcnn_digits" / "metrics.json").is_file()
    assert (tmp_path / "saved_models" / "hdcnn_conditional" / "saved_model.pb").is_file()
