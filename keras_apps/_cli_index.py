"""Writes ``keras_apps/_model_index.json``: the registry's ``model_info`` of every model, so
``keras-apps list`` and ``keras-apps info`` answer without importing TensorFlow.

    python -m keras_apps._cli_index      # after adding a model or changing its metadata

``tests/test_packaging.py`` fails while the file differs from what this writes.
"""

from __future__ import annotations

import json
import pathlib
from typing import Mapping

INDEX = pathlib.Path(__file__).with_name("_model_index.json")


def jsonable(value, where: str = "info"):
    """``model_info`` as JSON values: tuples become lists, functions their dotted names."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    raise TypeError(f"{where} = {value!r} ({type(value).__name__}) has no JSON form.")


def build_index() -> dict:
    import keras_apps

    return {name: jsonable(keras_apps.model_info(name), name) for name in keras_apps.list_models()}


def render(index: dict) -> str:
    return json.dumps(index, indent=1) + "\n"


def main() -> None:
    from keras_apps._atomic import atomic_file

    with atomic_file(INDEX) as tmp:
        tmp.write_text(render(build_index()), encoding="utf-8")
    print(f"wrote {INDEX}")


if __name__ == "__main__":
    main()
