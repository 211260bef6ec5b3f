"""Text from data (class names, file and folder names, run names, error reasons) made safe for
the place it is written to. Every HTML, Markdown and spreadsheet sink calls one of these, even
for names the readers have already checked: model metadata and paths come from elsewhere too.
Torch-free."""

from __future__ import annotations

import html
import re

# Markdown punctuation that changes what a renderer makes of the text: emphasis, code, links
# and images, tables, headings, escapes. `<`, `>` and `&` become entities (raw HTML is off).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#!~])")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# OWASP's list: a cell starting with one of these is a formula to Excel, LibreOffice, Sheets
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def html_text(value: object) -> str:
    """`value` as HTML text (element content or a quoted attribute value)."""
    return html.escape(str(value), quote=True)


def md_text(value: object) -> str:
    """`value` as literal Markdown text: no HTML, no emphasis, no link, no table cell break, on
    one line (a newline would end a list item or a table row)."""
    text = html.escape(str(value).replace("\r", " ").replace("\n", " "), quote=False)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def spreadsheet_cell(value: object) -> str:
    """A CSV text cell a spreadsheet will show as text, never run as a formula: a leading
    `= + - @`, tab or carriage return is prefixed with an apostrophe (OWASP's advice; the
    apostrophe is how spreadsheets mark literal text). Only for text cells: numbers are
    written as numbers."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def strip_ansi(text: str) -> str:
    """`text` without terminal colour codes (a notebook's traceback carries them)."""
    return _ANSI.sub("", text)
