"""A folder whose files change only as one set: every file of a new export (or audit, or
explanation evaluation, or concept atlas) appears at the same instant, and a process killed at
any moment leaves the old set or the new one, never a mix. Torch-free.

    DIR/model.onnx      -> .lesionlens-set/current/model.onnx      (one link per file of the set)
    DIR/validation.json -> .lesionlens-set/current/validation.json
    DIR/.lesionlens-set/current -> sets/<id>                       (swapped by one rename)
    DIR/.lesionlens-set/sets/<id>/...                             (the files themselves)

Readers open DIR/<name> as before; the path resolves through `current`, which one rename
switches from the old set to the new. A set is built in its own folder under sets/, then made
current; whatever a killed process left there (a half-built set) is removed by the next writer.
Only one writer at a time per folder (an advisory lock; a second one is refused at once).
A folder written before sets existed (real files) is adopted as the current set first, each
step keeping every name readable.

    fileset = FileSet(out, members=lambda name: name.endswith(".onnx"))
    with fileset.staging() as stage:       # stage.path: an empty folder for the new set
        build_everything_into(stage.path)  # an exception leaves the folder as it was
        stage.publish()
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from .errors import UsageError, display_path

CONTROL = ".lesionlens-set"


class Stage:
    """The folder a new set is written into; `publish()` makes it the folder's current set."""

    def __init__(self, fileset: "FileSet", path: Path):
        self.fileset, self.path, self.published = fileset, path, False

    def publish(self) -> None:
        self.fileset._publish(self.path)
        self.published = True


class FileSet:
    def __init__(self, folder: "os.PathLike | str", members: Callable[[str], bool] = lambda name: True):
        """`members(name)`: whether a file of a folder written before sets existed belongs to
        this set (adopted and later replaced); other files in the folder are never touched."""
        self.folder = Path(folder)
        self.control = self.folder / CONTROL
        self.sets = self.control / "sets"
        self.current = self.control / "current"
        self.members = members

    # ---- reading --------------------------------------------------------------------------

    def current_set(self) -> Optional[Path]:
        """The real folder of the current set (None before the first publish)."""
        return self.current.resolve() if self.current.is_dir() else None

    # ---- writing --------------------------------------------------------------------------

    @contextmanager
    def staging(self) -> Iterator[Stage]:
        self.sets.mkdir(parents=True, exist_ok=True)
        lock = open(self.control / "lock", "w")
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"{display_path(self.folder)}: another lesionlens process is writing this "
                                 "folder; wait for it to finish") from None
            self._remove_stale_sets()
            path = self.sets / f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
            path.mkdir()
            stage = Stage(self, path)
            try:
                yield stage
            finally:
                if not stage.published:
                    shutil.rmtree(path, ignore_errors=True)
        finally:
            lock.close()  # releases the lock

    def _publish(self, staged: Path) -> None:
        names = sorted(p.name for p in staged.iterdir())
        self._adopt_legacy()
        for name in names:  # a name new to this set links into `current` before it exists there
            self._link(name)
        self._point_current_at(staged)
        for entry in self.folder.iterdir():  # names the old set had and this one has not
            if entry.name not in names and self._is_our_link(entry):
                entry.unlink()
        self._remove_stale_sets()

    # ---- the steps --------------------------------------------------------------------------

    def _link_target(self, name: str) -> str:
        return f"{CONTROL}/current/{name}"

    def _is_our_link(self, entry: Path) -> bool:
        return entry.is_symlink() and os.readlink(entry) == self._link_target(entry.name)

    def _link(self, name: str) -> None:
        entry = self.folder / name
        if self._is_our_link(entry):
            return
        if entry.is_dir() and not entry.is_symlink():
            # a directory cannot be replaced by a rename: move it aside (it belongs to no set)
            entry.rename(self.control / f"aside-{name}-{secrets.token_hex(4)}")
        tmp = self.folder / f".{name}.{secrets.token_hex(4)}.link"
        os.symlink(self._link_target(name), tmp)
        os.replace(tmp, entry)

    def _point_current_at(self, target: Path) -> None:
        tmp = self.control / f".current.{secrets.token_hex(4)}"
        os.symlink(f"sets/{target.name}", tmp)
        os.replace(tmp, self.current)  # the one rename that switches every file at once
        _fsync_dir(self.control)

    def _adopt_legacy(self) -> None:
        """Files a folder held before it had sets become the current set, so that replacing
        them is the same one-rename switch (each legacy name keeps its content until then).
        Resumable: a writer killed halfway leaves plain files the current set also holds,
        and the next one turns them into links."""
        if not self.current.is_symlink():
            legacy = [e for e in self.folder.iterdir()
                      if e.name != CONTROL and not e.is_symlink() and self.members(e.name)]
            if not legacy:
                return
            adopted = self.sets / f"adopted-{secrets.token_hex(4)}"
            adopted.mkdir()
            for entry in legacy:
                if entry.is_dir():
                    shutil.copytree(entry, adopted / entry.name, copy_function=_link_or_copy)
                else:
                    _link_or_copy(entry, adopted / entry.name)
            self._point_current_at(adopted)
        current = self.current.resolve()
        for entry in list(self.folder.iterdir()):
            if (entry.name != CONTROL and not entry.is_symlink() and self.members(entry.name)
                    and os.path.lexists(current / entry.name)):
                self._link(entry.name)

    def _remove_stale_sets(self) -> None:
        """Every set but the current one (half-built sets of killed writers, replaced sets),
        and directories moved aside."""
        keep = self.current.resolve() if self.current.is_symlink() else None
        for entry in self.sets.iterdir():
            if keep is None or entry.resolve() != keep:
                shutil.rmtree(entry, ignore_errors=True)
        for entry in self.control.glob("aside-*"):
            shutil.rmtree(entry, ignore_errors=True)
        for entry in self.control.glob(".current.*"):
            entry.unlink(missing_ok=True)
        for entry in self.folder.glob(".*.link"):
            if entry.is_symlink():
                entry.unlink()


def _link_or_copy(src: "os.PathLike | str", dst: "os.PathLike | str") -> None:
    try:
        os.link(src, dst)  # no copy of a 100 MB model where the file system allows
    except OSError:
        shutil.copy2(src, dst)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
