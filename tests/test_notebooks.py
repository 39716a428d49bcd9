"""Every notebook in notebooks/ runs from top to bottom without an error.

The test runs each notebook's cells as written, on less data and fewer epochs (as
tests/test_readme.py does for the README's code blocks): :data:`TOY_SIZES` lists the
replacements, and each replaced text must occur once in its notebook, so an edit of a notebook
cannot silently undo one. What a shrunk run no longer shows is checked elsewhere: the
quickstart's "ResNet-20 reaches < 0.5 top-1 error on the digits" by
tests/test_training.py::test_training_reduces_the_loss_on_real_digits (same model, data, batch
size and learning rate; 3 epochs at 16x16 where the notebook runs 4 at 32x32)."""

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

#: notebook stem -> (text in a code cell, what the test runs instead)
TOY_SIZES = {
    "deformable": [
        ("limit=6000", "limit=512"),
        ("history = model.fit(train_ds, epochs=4, verbose=0)",
         "history = model.fit(train_ds, epochs=1, verbose=0)"),
        ("limit=1000", "limit=200"),
    ],
    "growing": [
        ("epochs=4, limit=600,", "epochs=1, limit=200,"),
        ("scenario='all', epochs=3, limit=400,", "scenario='all', epochs=1, limit=200,"),
    ],
    "hdcnn": [
        ("'--limit', '500', '--block-epochs', '3',",
         "'--limit', '200', '--block-epochs', '1', '--coarse', '2',"),
        ("'--betas', 'inf,2,1', '--timing-images', '100',", "'--betas', 'inf,1', '--timing-images', '32',"),
    ],
    "niwt": [
        ("classes=seen, epochs=4, limit=400 * len(seen),", "classes=seen, epochs=1, limit=30 * len(seen),"),
        ("validation_fraction=0.1, limit=100 * len(seen))", "validation_fraction=0.1, limit=10 * len(seen))"),
        ("unseen=unseen, limit=2000)", "unseen=unseen, limit=200)"),
    ],
    "overfeat": [
        ("epochs=3,\n", "epochs=1,\n"),
        ("regressor_epochs=2, limit=30,", "regressor_epochs=1, limit=10,"),
        ("records('test')[:4]", "records('test')[:2]"),
    ],
    "quickstart": [
        ("epochs=4, batch_size=32,", "epochs=1, batch_size=32, limit=256,"),
        ("assert metrics['top1_error'] < 0.5, metrics",
         "assert 0.0 <= metrics['top1_error'] <= 1.0, metrics"),
    ],
}


def _shrink(notebook, replacements):
    for old, new in replacements:
        cells = [cell for cell in notebook.cells if cell.cell_type == "code" and old in cell.source]
        assert len(cells) == 1 and cells[0].source.count(old) == 1, f"{old!r} is not once in a cell"
        cells[0].source = cells[0].source.replace(old, new)


def test_there_are_notebooks():
    assert any(p.name == "quickstart.ipynb" for p in NOTEBOOKS)
    assert set(TOY_SIZES) <= {p.stem for p in NOTEBOOKS}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    _shrink(notebook, TOY_SIZES.get(path.stem, []))
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    errors = [
        output for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.get("outputs", []) if output.get("output_type") == "error"
    ]
    assert not errors
