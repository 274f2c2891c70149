"""Text from files and shards made fit to print on a terminal: a file name, or a value a
shard holds (a row written by hand may hold anything), may carry newlines or terminal
escape sequences, which must not reach the terminal raw nor break a line of a table."""

from __future__ import annotations

import html
import re

# C0 and C1 controls (newline, ESC...), DEL, the Unicode line and paragraph separators, and
# the bidirectional overrides that can make a name read as another.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with each control character spelled as Python would (`\\n`, `\\x1b`)."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def markdown_cell(text: str) -> str:
    """`text` for a cell of a Markdown table: printable, its HTML as text (Markdown renders
    inline HTML: a file named `<img onerror=...>`), and no `|` to end the cell."""
    return html.escape(printable(text), quote=False).replace("|", "\\|")
