"""Shared test set-up: quiet TensorFlow, a fixed seed, the path of ../shared/data, the slow
tests first, and a garbage collection after each test that scans only what the tests made."""

import gc
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


def shared_data(*parts) -> pathlib.Path:
    """Path under ../shared/data; the test is skipped with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the ../shared folder beside the repo)")
    return path


def pytest_collection_modifyitems(config, items):
    """Runs the tests marked slow first, each group in its collection order.

    CI runs ``-n 2 --dist loadgroup``: each worker takes the next tests of this order as it
    frees up. With the long end-to-end runs first, they share out over both workers and the
    many short tests even out the end; in file order, a long test of one of the last files
    could run alone while the other worker has nothing left to do.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_collection_finish(session):
    """Takes everything alive after collection (TensorFlow, Keras and every imported module:
    some 400,000 objects, kept for the whole session) out of the garbage collector's
    generations (``gc.freeze``). The collection that ``clear_session`` runs after each test
    then scans only the objects the tests made: about 0.3 s less per test, and what a test
    leaves behind is still freed."""
    gc.collect()
    gc.freeze()
