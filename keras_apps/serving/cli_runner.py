"""Runs exported signatures through TensorFlow's own ``saved_model_cli run``.

``saved_model_cli`` loads the SavedModel with the TF1 loader in a ``Session`` (as TF Serving
does), feeds the signature's inputs by key and saves each output as ``<outdir>/<key>.npy``;
it is an independent check of an export before it is served.

    >>> from keras_apps.serving import CliRun, run_saved_model_cli
    >>> outputs = run_saved_model_cli([CliRun("saved_models/hdcnn/1", images, beta=4.0)])[0]
    >>> outputs["predictions"]

:func:`run_saved_model_cli` runs each request either as its own ``saved_model_cli`` process
(``batch=False``: the installed console script, ~6-8 s of TensorFlow start-up each) or all
of them in one Python process that calls the same entry point,
``tensorflow.python.tools.saved_model_cli.main``, once per request with that request's
command line (``batch=True``, the default: one start-up for all; absl flags are reset to
their defaults between calls, so no request inherits another's flags).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np

#: Flags of saved_model_cli, the program this module runs (not keras-apps flags).
FOREIGN_FLAGS = ("--dir", "--tag_set", "--signature_def", "--inputs", "--outdir", "--overwrite",
                 "--input_exprs")

__all__ = ["CliRun", "SavedModelCliError", "cli_arguments", "run_saved_model_cli"]

#: One Python process running several ``saved_model_cli`` command lines (JSON on stdin).
_BATCH_DRIVER = """
import json, sys
from absl import flags
from tensorflow.python.tools import saved_model_cli
for argv in json.load(sys.stdin):
    flags.FLAGS.unparse_flags()
    sys.argv = ["saved_model_cli", *argv]
    try:
        saved_model_cli.main()
    except SystemExit as exit:
        if exit.code not in (None, 0):
            raise
    print("KERAS_APPS_RUN_DONE", flush=True)
"""


class SavedModelCliError(RuntimeError):
    """``saved_model_cli run`` failed; the message carries the end of its output."""


@dataclasses.dataclass(frozen=True, eq=False)
class CliRun:
    """One ``saved_model_cli run``: a SavedModel folder, the images, the signature and its
    scalar inputs (passed with ``--input_exprs``, e.g. ``beta=4.0``; ``inf`` is written as
    ``1e999``, which Python's literal parser reads as infinity)."""

    directory: os.PathLike | str
    images: np.ndarray
    signature_name: str = "serving_default"
    input_key: str = "image"
    scalar_inputs: dict = dataclasses.field(default_factory=dict)

    def __init__(self, directory, images, signature_name="serving_default", input_key="image",
                 **scalar_inputs):
        object.__setattr__(self, "directory", directory)
        object.__setattr__(self, "images", np.asarray(images))
        object.__setattr__(self, "signature_name", signature_name)
        object.__setattr__(self, "input_key", input_key)
        object.__setattr__(self, "scalar_inputs", dict(scalar_inputs))


def _literal(key: str, value) -> str:
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"Scalar input {key!r} is NaN; saved_model_cli --input_exprs cannot pass NaN.")
    if math.isinf(value):
        return "1e999" if value > 0 else "-1e999"
    return repr(value)


def cli_arguments(run: CliRun, images_file, outdir) -> list:
    """The ``saved_model_cli`` arguments (after the program name) of ``run``, with its images
    saved at ``images_file`` and outputs written under ``outdir``."""
    arguments = [
        "run", "--dir", str(run.directory), "--tag_set", "serve",
        "--signature_def", run.signature_name,
        "--inputs", f"{run.input_key}={images_file}",
        "--outdir", str(outdir), "--overwrite",
    ]
    if run.scalar_inputs:
        exprs = ";".join(f"{k}={_literal(k, v)}" for k, v in sorted(run.scalar_inputs.items()))
        arguments += ["--input_exprs", exprs]
    return arguments


def _check_feeds(run: CliRun) -> None:
    """The signature exists and the run feeds exactly its inputs (saved_model_cli would
    otherwise fail deep in a Session with "You must feed a value for placeholder")."""
    from keras_apps.serving.signatures import signatures

    infos = signatures(run.directory)
    if run.signature_name not in infos:
        raise ValueError(
            f"{run.directory} has no signature {run.signature_name!r}; its signatures: "
            f"{', '.join(infos) or 'none'}."
        )
    wanted = set(infos[run.signature_name].inputs)
    given = {run.input_key, *run.scalar_inputs}
    if given != wanted:
        raise ValueError(
            f"Signature {run.signature_name!r} of {run.directory} takes the inputs "
            f"{sorted(wanted)}; the run feeds {sorted(given)} (scalar inputs are keywords of "
            "CliRun, e.g. CliRun(path, images, beta=4.0); saved_model_cli has no defaults)."
        )


def _tail(text: str, limit: int = 3000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _run(command, stdin, timeout, env) -> None:
    try:
        process = subprocess.run(command, input=stdin, capture_output=True, text=True,
                                 timeout=timeout, env=env)
    except subprocess.TimeoutExpired as err:
        raise SavedModelCliError(f"saved_model_cli did not finish within {timeout} s.") from err
    if process.returncode != 0:
        raise SavedModelCliError(
            f"saved_model_cli exited with status {process.returncode}:\n"
            f"{_tail(process.stdout + process.stderr)}"
        )


def _executable() -> list:
    beside = pathlib.Path(sys.executable).with_name("saved_model_cli")
    found = str(beside) if beside.is_file() else shutil.which("saved_model_cli")
    if found is None:
        raise FileNotFoundError(
            "The saved_model_cli console script (installed with tensorflow) was not found next "
            f"to {sys.executable} or on PATH."
        )
    return [found]


def run_saved_model_cli(runs, *, batch: bool = True, workdir=None, timeout: float = 300.0) -> list:
    """Runs every :class:`CliRun` through ``saved_model_cli run`` and returns, per run, the
    dict ``output key -> array`` loaded from the ``.npy`` files it wrote.

    Args:
        runs: :class:`CliRun` objects.
        batch: one process for all runs (see the module docstring) or one
            ``saved_model_cli`` process per run.
        workdir: folder for the input and output ``.npy`` files (created if missing; default
            a temporary folder, removed afterwards).
        timeout: seconds allowed for the whole batch, or for each process.

    Raises:
        SavedModelCliError: ``saved_model_cli`` failed (its output is in the message).
    """
    runs = list(runs)
    if not runs or not all(isinstance(r, CliRun) for r in runs):
        raise ValueError("`runs` must be a non-empty list of CliRun.")
    for run in runs:
        _check_feeds(run)
    temporary = tempfile.TemporaryDirectory(prefix="saved_model_cli_") if workdir is None else None
    root = pathlib.Path(temporary.name if temporary else workdir)
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    try:
        argvs, outdirs = [], []
        for i, run in enumerate(runs):
            images_file = root / f"run{i}_{run.input_key}.npy"
            np.save(images_file, run.images)
            outdir = root / f"run{i}_out"
            if outdir.exists():
                shutil.rmtree(outdir)
            argvs.append(cli_arguments(run, images_file, outdir))
            outdirs.append(outdir)
        if batch:
            _run([sys.executable, "-c", _BATCH_DRIVER], json.dumps(argvs), timeout, env)
        else:
            program = _executable()
            for argv in argvs:
                _run(program + argv, None, timeout, env)
        results = []
        for outdir in outdirs:
            if not outdir.is_dir():
                raise SavedModelCliError(f"saved_model_cli wrote no outputs to {outdir}.")
            results.append({p.stem: np.load(p) for p in sorted(outdir.glob("*.npy"))})
        return results
    finally:
        if temporary is not None:
            temporary.cleanup()
