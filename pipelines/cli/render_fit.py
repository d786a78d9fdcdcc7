"""Tables that fit the terminal: how `render` lays out every table it prints.

The rule: a table fits the console's width (80 columns on a plain terminal), and no
id is ever cut. A cell without whitespace (a source name, run id, eval set, shard
path, release name, a number) is atomic: its column is never narrower than it.
Cells with words (a list of sources, an interval `12.3 [10.1, 14.6]`) wrap between
words. Headers wrap at spaces and after underscores (`accepted_` / `hours`), so a
header costs no more width than its cells. When that is not enough, headers wider than
their cells are abbreviated, with a legend line below the table (`acc = accepted`).
When even that does not fit, the table is printed as one block per row instead: the
row's first cell on its own line, then `header: value` pairs wrapped below it, indented.

Nothing here prints: `fit_table` returns a rich renderable for `render` to print.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

GAP = 2
"""Columns between two table columns (collapsed padding, no vertical rules)."""

_HEADER_PARTS = re.compile(r"[^\s_]+_*|_+")
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?( ?[%×])?$")

Cell = str | Text


def _text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)


def _line_widths(text: Text) -> list[int]:
    return [len(line) for line in text.plain.split("\n")] or [0]


def _longest_word(text: Text) -> int:
    return max((len(word) for word in text.plain.split()), default=0)


def header_lines(header: str, width: int) -> str:
    """`header` wrapped to `width` at spaces and after underscores (never inside a word).

    >>> header_lines("accepted_hours", 8)
    'accepted_\\nhours'
    >>> header_lines("error rate [95 % CI]", 10)
    'error rate\\n[95 % CI]'
    """
    lines: list[str] = []
    current = ""
    for part in _HEADER_PARTS.findall(header):
        glue = "" if not current or current.endswith("_") else " "
        if current and len(current) + len(glue) + len(part) > width:
            lines.append(current)
            current = part
        else:
            current += glue + part
    if current:
        lines.append(current)
    return "\n".join(lines) or header


def _header_min(header: str) -> int:
    return max((len(part) for part in _HEADER_PARTS.findall(header)), default=len(header))


def _abbreviation(header: str, width: int, taken: set[str]) -> str:
    """`header` cut to `width` letters (at least 3), unique among `taken`."""
    size = max(width, 3)
    short = header[:size]
    while short in taken and size < len(header):
        size += 1
        short = header[:size]
    return short


def _layout(headers: Sequence[str], rows: Sequence[Sequence[Text]], width: int):
    """(widths, atomic, numeric): each column's width, whether its cells are atomic, and
    whether they are numbers; widths is None when the table cannot fit `width` without
    cutting an atomic cell."""
    n = len(headers)
    atomic = [all(not any(c.isspace() for c in row[i].plain) for row in rows) for i in range(n)]
    numeric = [
        bool(rows) and all(_NUMBER.match(row[i].plain.strip() or "0") for row in rows)
        for i in range(n)
    ]
    natural, unwrapped, minimum = [], [], []
    for i, header in enumerate(headers):
        cells = [row[i] for row in rows]
        cell_natural = max((max(_line_widths(c)) for c in cells), default=0)
        cell_min = cell_natural if atomic[i] else max((_longest_word(c) for c in cells), default=0)
        natural.append(max(cell_natural, len(header), 1))
        unwrapped.append(max(cell_natural, _header_min(header), 1))
        minimum.append(max(cell_min, _header_min(header), 1))
    budget = width - GAP * (n - 1)
    if sum(minimum) > budget:
        return None, atomic, numeric
    widths = list(natural)
    # Shorten the widest column that can give, one column at a time: first wrap the
    # headers wider than their cells, then cells between words, down to the minimum.
    for floor in (unwrapped, minimum):
        while sum(widths) > budget and any(w > f for w, f in zip(widths, floor, strict=True)):
            widest = max((i for i in range(n) if widths[i] > floor[i]), key=lambda i: widths[i])
            widths[widest] -= 1
    return widths, atomic, numeric


def fit_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], width: int) -> RenderableType:
    """The rows as a table of at most `width` columns: headers wrapped, else headers
    abbreviated with a legend below, else one block per row."""
    texts = [[_text(cell) for cell in row] for row in rows]
    shown = list(headers)
    legend: list[str] = []
    widths, atomic, numeric = _layout(shown, texts, width)
    # Too wide even so: abbreviate, one at a time, the header that saves the most
    # width over its cells, and say so below the table.
    while widths is None:
        cells = [
            max((max(_line_widths(row[i])) for row in texts), default=0) for i in range(len(shown))
        ]
        savings = [
            (_header_min(shown[i]) - max(cells[i], 3), i)
            for i in range(len(shown))
            if shown[i] == headers[i] and _header_min(shown[i]) > max(cells[i], 3)
        ]
        if not savings:
            break
        _, i = max(savings)
        shown[i] = _abbreviation(headers[i], cells[i], set(shown))
        legend.append(f"{shown[i]} = {headers[i]}")
        widths, atomic, numeric = _layout(shown, texts, width)
    if widths is None:
        return _blocks(headers, texts)
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
    )
    for i, header in enumerate(shown):
        table.add_column(
            header_lines(header, widths[i]),
            width=widths[i],
            no_wrap=atomic[i],
            overflow="fold",
            justify="right" if numeric[i] else "left",
        )
    for row in texts:
        table.add_row(*row)
    if not legend:
        return table
    return Group(table, Text("; ".join(legend), style="dim"))


def _blocks(headers: Sequence[str], rows: Sequence[Sequence[Text]]) -> RenderableType:
    """One block per row: the first cell, then `header: value` pairs indented below."""
    blocks: list[RenderableType] = []
    for row in rows:
        first = row[0].copy()
        first.stylize("bold")
        blocks.append(first)
        rest = Text()
        for header, cell in zip(headers[1:], row[1:], strict=True):
            if rest:
                rest.append(", ")
            rest.append(f"{header}: ", style="dim")
            rest.append_text(cell)
        if rest:
            blocks.append(Padding(rest, (0, 0, 0, 2), expand=False))
    return Group(*blocks)
