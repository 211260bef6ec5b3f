"""Every error lesionlens raises on purpose, in one place and without heavy imports.

`LesionlensError` is the base: the CLI turns one into a single line and exit code 2 (usage or
configuration error); anything else that escapes is a bug, reported with exit code 3 and a
request to rerun with `--debug`. Each class also derives from the built-in exception it
replaced (ValueError, RuntimeError), so `except ValueError` in user code keeps working.
"""

from __future__ import annotations

import os


def one_line(text: object) -> str:
    """`text` with newlines and other control characters escaped, so a file name like
    "a\\nb.png" cannot break an error that must stay on one line."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def display_path(path: "os.PathLike | str") -> str:
    return one_line(os.fspath(path))


class LesionlensError(Exception):
    """Base of every error the project raises on purpose (the user can act on it)."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class UsageError(LesionlensError, ValueError):
    """An argument or option that cannot work (out of range, unknown name, wrong combination)."""


class DatasetError(LesionlensError, ValueError):
    """A dataset cannot be used as given (empty, one class, bad labels, unknown CSV layout...)."""


class ImageDecodeError(LesionlensError, ValueError):
    """An image could not be turned into pixels. `source` names the file, `reason` says why."""

    def __init__(self, source: str, reason: str):
        self.source = one_line(source)
        self.reason = one_line(reason)
        super().__init__(f"{self.source}: {self.reason}")


class RunError(LesionlensError, ValueError):
    """A run directory is missing, incomplete, of another format version or inconsistent."""


class TrainingError(LesionlensError, RuntimeError):
    """Training cannot start or continue as configured."""


class MetadataError(LesionlensError, ValueError):
    """An ONNX model lacks the lesionlens metadata, or its metadata contradicts its graph."""


class ExportError(LesionlensError, RuntimeError):
    """An export failed validation (details in validation.rejected.json)."""


class ExplainError(LesionlensError, ValueError):
    """An explanation that cannot be made: unknown method, option or layer, target out of range,
    a method the architecture does not support."""


class AtlasError(LesionlensError, RuntimeError):
    """No concept atlas, or one built for other weights."""


class HashMismatchError(LesionlensError, RuntimeError):
    """The run's weights are not the weights the ONNX model was exported from."""


class RequestError(LesionlensError, ValueError):
    """A sidecar request it cannot answer (bad image, unknown method, target out of range)."""
