"""Atomic file writes: write to a temporary sibling, then rename over the target."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


@contextlib.contextmanager
def atomic_file(path, suffix: str = ".tmp"):
    """Yields a temporary path beside ``path``; on success it is renamed to ``path``
    (``os.replace``: readers see the old file or the new one, never a partial one), on any
    error it is removed and ``path`` is left as it was. ``suffix`` keeps writers that check
    extensions happy (``model.save`` needs ``.keras``)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield pathlib.Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
