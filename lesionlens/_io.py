"""File writing for every layer: atomic (temp file in the same folder, then rename, so a reader
or a process killed mid-write never sees half a file), with ordinary permissions, plus JSON and
sha256 helpers. Torch-free: the runtime uses it too."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Type

from .errors import LesionlensError, display_path


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask  # what open() would give a new file (0644 under the usual umask)


def atomic_write(path: "os.PathLike | str", write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes 0600, and some writers (safetensors) recreate the file: set the mode of
        # an ordinary new file after writing
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_bytes(path: "os.PathLike | str", data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: "os.PathLike | str", text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: "os.PathLike | str", data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def read_json(path: "os.PathLike | str", error: Type[LesionlensError] = LesionlensError,
              what: Optional[str] = None) -> Any:
    """Parsed JSON, or `error` naming the file and the reason (missing, unreadable, not JSON)."""
    path = Path(path)
    label = f"{display_path(path)}" + (f" ({what})" if what else "")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{label}: file not found") from None
    except PermissionError:
        raise error(f"{label}: permission denied") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{label}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None


def sha256_file(path: "os.PathLike | str") -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temp_files(folder: "os.PathLike | str") -> int:
    """Delete temp files that atomic_write left behind when a process was killed mid-write
    (`.NAME.XXXX.tmp`); returns how many."""
    removed = 0
    folder = Path(folder)
    if folder.is_dir():
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
            removed += 1
    return removed
