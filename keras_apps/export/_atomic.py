"""Atomic writes: an artefact is built in a temporary sibling of its target, then renamed.

The temporary directory lies in the target's parent, so the final rename never crosses a
filesystem. A file target is swapped with one ``os.replace`` (atomic on POSIX and Windows); a
directory target that already exists is first renamed into the temporary directory and moved
back if the second rename fails, so an existing export is never left half-replaced.

The temporary directory is ``.<target name>.tmp-<host>-<pid>-<random>``. A process killed
mid-export cannot remove it, so each new staging first removes the staging folders beside its
target whose owner ran on this host and is no longer alive (on Windows, where the liveness of a pid
is not checked, they are kept).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import socket
import tempfile

__all__ = ["Staging", "remove_stale_staging"]


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_stale_staging(target: os.PathLike | str) -> list[pathlib.Path]:
    """Removes the staging folders in the folder of ``target`` (of any target there) that
    were left by processes of this host that no longer run; returns the removed paths."""
    target = pathlib.Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(r"\..+\.tmp-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[a-z0-9_]+")
    removed = []
    for path in target.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if not match or match["host"] != _host() or _pid_alive(int(match["pid"])):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


class Staging:
    """Context manager giving a temporary path beside ``target`` to build an artefact at.

    Build the artefact at :attr:`staged` (same base name as ``target``; scratch files may go
    under :attr:`tmp`), then call :meth:`commit`. Leaving the block always removes the
    temporary directory; when an exception leaves it, the parent directories that this
    staging created are removed again too, so a failed export leaves no trace.
    """

    def __init__(self, target: os.PathLike | str):
        self.target = pathlib.Path(target)
        self.tmp: pathlib.Path | None = None
        self.staged: pathlib.Path | None = None
        self._created_parents: list[pathlib.Path] = []

    def __enter__(self) -> "Staging":
        missing = []
        parent = self.target.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        try:
            for directory in reversed(missing):
                directory.mkdir()
                self._created_parents.append(directory)
            remove_stale_staging(self.target)
            self.tmp = pathlib.Path(
                tempfile.mkdtemp(
                    prefix=f".{self.target.name}.tmp-{_host()}-{os.getpid()}-",
                    dir=self.target.parent,
                )
            )
        except BaseException:
            self._remove_created_parents()
            raise
        self.staged = self.tmp / self.target.name
        return self

    def commit(self, *, overwrite: bool) -> None:
        """Moves :attr:`staged` onto the target; an existing target needs ``overwrite``."""
        if not os.path.lexists(self.target):
            os.rename(self.staged, self.target)
            return
        if not overwrite:
            raise FileExistsError(
                f"{self.target} already exists; pass overwrite=True to replace it."
            )
        if self.staged.is_dir():
            previous = self.tmp / ".previous"
            os.replace(self.target, previous)
            try:
                os.replace(self.staged, self.target)
            except BaseException:
                os.replace(previous, self.target)
                raise
        else:
            os.replace(self.staged, self.target)

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if exc_type is not None:
            self._remove_created_parents()
        return False

    def _remove_created_parents(self) -> None:
        for directory in reversed(self._created_parents):
            try:
                directory.rmdir()
            except OSError:
                break
