"""The README stays true: its model table is generated from the registry, its test command is CI's."""

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
