"""What a class name may be, and the file names built from one. Torch-free: the readers, the run
directory, the ONNX metadata and the generator all check names here.

A class name comes from data (a CSV cell, a column header, a folder name, model metadata) and
then travels into file names, HTML pages, Markdown reports and spreadsheets. So the rule is
narrow enough that a name is harmless as a single path component and readable as plain text:

- 1 to 64 characters;
- letters and digits of any script, space, and `_ - . + ( )`;
- it starts with a letter or digit and does not end with a space or a dot.

That admits every label of the ISIC challenges and ordinary ones like "seborrheic keratosis"
or "Nevus (benign)"; it refuses `../x`, `a/b`, `<script>`, `=HYPERLINK(...)`, control and
bidirectional-override characters, and names a file system cannot hold. Names that differ
only in case are refused within one class list (a case-insensitive disk would merge their
folders). File names never use the raw name anyway: `class_slug` gives an index and an ASCII
slug.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional, Sequence

MAX_CLASS_NAME = 64
ALLOWED_PUNCTUATION = "_ .+()-"
CLASS_NAME_RULE = ("1-64 characters: letters, digits, space and _ - . + ( ), starting with a letter or digit, "
                   "not ending with a space or a dot")


def class_name_problem(name: object) -> Optional[str]:
    """Why `name` is not a valid class name, as a predicate ("contains '<', '>'"), or None."""
    if not isinstance(name, str):
        return f"is not a string ({type(name).__name__})"
    if not name:
        return "is empty"
    if len(name) > MAX_CLASS_NAME:
        return f"has {len(name)} characters (at most {MAX_CLASS_NAME})"
    bad = sorted({c for c in name if not (c.isalnum() or c in ALLOWED_PUNCTUATION)})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:8]) + (" ..." if len(bad) > 8 else "")
        return f"contains {shown} (a class name has {CLASS_NAME_RULE})"
    if not name[0].isalnum():
        return f"does not start with a letter or digit (a class name has {CLASS_NAME_RULE})"
    if name.endswith((" ", ".")):
        return f"ends with a space or a dot (a class name has {CLASS_NAME_RULE})"
    return None


def class_list_problem(names: Sequence[object]) -> Optional[str]:
    """Why a list of class names cannot be used together (an invalid name, or two that differ
    only in case), or None."""
    for name in names:
        problem = class_name_problem(name)
        if problem:
            return f"class name {_shown(name)} {problem}"
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(str(name).casefold(), str(name))
        if other != name:
            return f"class names {_shown(other)} and {_shown(name)} differ only in case"
    return None


def class_slug(index: int, name: str) -> str:
    """A file-name part for class `index` called `name`: the index (what makes it unique) and a
    short ASCII slug (what makes it readable), e.g. `1-melanoma`, `0-seborrheic-keratosis`."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", str(name)).strip("-").lower()[:24].strip("-")
    return f"{int(index)}-{slug or 'class'}"


def _shown(name: object) -> str:
    """A name as an error message may show it: repr (quotes, escapes), cut at 80 characters."""
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


def invalid_names(names: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """(line, reason) for each (line, name) whose name is not a valid class name."""
    return [(line, f"{_shown(name)} {problem}") for line, name in names
            if (problem := class_name_problem(name))]
