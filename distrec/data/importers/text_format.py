"""What a delimited text file looks like, from its first lines: delimiter, header, field count,
and whether each line is one event of an interaction log. Importers check this before writing
anything, so a file of another format is refused with the importer that fits it, never imported
as garbage.
"""

from __future__ import annotations

import csv
import itertools
import re
from dataclasses import dataclass

from distrec.data.importers.common import require_file
from distrec.errors import DataError
from distrec.storage import filesystem

DELIMITERS = (",", "\t", ";", "|")
SAMPLE_LINES = 200
SAMPLE_BYTES = 1 << 20
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{1,2}:\d{2}.*)?$|^\d{1,2}:\d{2}(:\d{2})?")
# header names that mark each role of an interaction log, best first
SESSION_NAMES = ("session", "user", "uid", "visitor")
ITEM_NAMES = ("item", "product", "movie", "article", "track", "song", "sku", "iid")
TIME_NAMES = ("timestamp", "time", "ts", "date", "frame")
LABEL_NAMES = ("click", "label", "conversion", "purchase", "is_click", "clk")


def is_number(text: str) -> bool:
    return bool(_NUMBER.match(text.strip()))


def is_date_time(text: str) -> bool:
    return bool(_DATE_TIME.match(text.strip()))


def delimiter_name(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(delimiter, repr(delimiter))


def shell_quoted(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else f"'{delimiter}'"


@dataclass(frozen=True)
class TextLayout:
    path: str
    delimiter: str
    header: tuple[str, ...] | None  # column names when line 1 names the columns
    lines: tuple[str, ...]  # the sampled lines, line 1 first (blank lines left out)
    rows: tuple[tuple[str, ...], ...]  # the sampled data lines (header excluded), split

    @property
    def fields(self) -> int:
        return len(self.header) if self.header else max((len(r) for r in self.rows), default=0)

    @property
    def first_data_line(self) -> int:
        return 2 if self.header else 1

    def column_values(self, i: int) -> list[str]:
        return [r[i] for r in self.rows if i < len(r)]


def sample_lines(path: str, limit: int = SAMPLE_LINES) -> list[str]:
    """The first ``limit`` non-blank lines of a (possibly compressed, possibly remote) text file."""
    require_file(path)
    fs, fs_path = filesystem(path)
    with fs.open(fs_path, "rb", compression="infer") as fh:
        data = fh.read(SAMPLE_BYTES)
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if len(data) == SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    lines = [line.rstrip("\r") for line in lines if line.strip()][:limit]
    if not lines:
        raise DataError(f"{path}: file is empty; expected delimited text")
    return lines


def detect_layout(path: str, delimiter: str | None = None, header: bool | None = None) -> TextLayout:
    """The layout of ``path``; ``delimiter`` and ``header`` are detected unless given."""
    lines = sample_lines(path)
    delimiter = delimiter or _detect_delimiter(lines)
    split = [tuple(_split(line, delimiter)) for line in lines]
    if header is None:
        header = _looks_like_header(split)
    names = tuple(f.strip() for f in split[0]) if header else None
    rows = tuple(split[1:] if header else split)
    return TextLayout(path, delimiter, names, tuple(lines), rows)


def _split(line: str, delimiter: str) -> list[str]:
    return [f.strip().strip('"') for f in next(csv.reader([line], delimiter=delimiter))]


def _detect_delimiter(lines: list[str]) -> str:
    """csv.Sniffer's choice among DELIMITERS, else the one splitting every line the same way
    into the most fields; a comma when no line holds any of them (one column)."""
    try:
        found = csv.Sniffer().sniff("\n".join(lines[:50]), delimiters="".join(DELIMITERS)).delimiter
        if all(found in line for line in lines[:50]):
            return found
    except csv.Error:
        pass
    best, best_key = ",", (False, 0)
    for d in DELIMITERS:
        counts = [line.count(d) for line in lines[:50]]
        key = (len(set(counts)) == 1 and counts[0] > 0, min(counts))
        if key > best_key:
            best, best_key = d, key
    return best


def _looks_like_header(split: list[tuple[str, ...]]) -> bool:
    """Line 1 names columns when none of its fields is a number or a date but, in some column,
    the lines after it hold numbers or dates. (A file of text only is taken to have no header:
    the importers that need names check them against line 1 themselves.)"""
    first, rest = split[0], split[1:]
    if not rest or any(is_number(f) or is_date_time(f) for f in first):
        return False
    for i in range(len(first)):
        values = [r[i] for r in rest if i < len(r) and r[i]]
        if values and sum(is_number(v) or is_date_time(v) for v in values) >= 0.9 * len(values):
            return True
    return False


# --- interaction logs: one event (session or user, item, time, ...) per line -----------------------


def time_column(layout: TextLayout) -> int | None:
    """The column holding dates/times (or, failing that, epoch seconds/milliseconds), if any."""
    for i in range(layout.fields):
        values = [v for v in layout.column_values(i) if v]
        if values and all(is_date_time(v) for v in values):
            return i
    for i in range(1, layout.fields):
        values = [v for v in layout.column_values(i) if v]
        if values and all(is_number(v) and 9e8 < float(v) < 1e14 for v in values):
            return i
    return None


def guess_interaction_columns(layout: TextLayout) -> tuple[str | int, str | int, str | int | None] | None:
    """(session, item, time) columns of an interaction log: header names, else 0-based positions;
    None when the roles cannot be told apart."""
    if layout.header:
        names = [n.lower() for n in layout.header]

        def find(keys, taken=()):
            for key in keys:
                for i, n in enumerate(names):
                    if key in n and i not in taken:
                        return i
            return None

        session = find(SESSION_NAMES)
        item = find(ITEM_NAMES, (session,))
        time = find(TIME_NAMES, (session, item))
        if session is None or item is None:
            return None
        return layout.header[session], layout.header[item], None if time is None else layout.header[time]
    time = time_column(layout)
    others = [i for i in range(layout.fields) if i != time]
    if len(others) < 2:
        return None
    return others[0], others[1], time


def looks_like_event_log(layout: TextLayout, pad_token: str | None = None) -> str | None:
    """Why the lines look like one event each (not one sequence each), or None.

    Logs are narrow tables whose first column (the session) repeats on consecutive lines, or
    whose lines carry a date/time; a sequence per line does neither."""
    if layout.header and guess_interaction_columns(layout):
        return f"line 1 is a header naming columns ({layout.delimiter.join(layout.header)})"
    for row_no, row in enumerate(layout.rows):
        for i, value in enumerate(row):
            if is_date_time(value):
                line = layout.first_data_line + row_no
                return f"line {line} has a date/time in field {i + 1} ({value!r})"
    widths = {len(r) for r in layout.rows}
    firsts = [r[0] for r in layout.rows if r and r[0] != pad_token]
    repeats = sum(a == b for a, b in itertools.pairwise(firsts))
    if len(widths) == 1 and 2 <= widths.pop() <= 6 and len(firsts) >= 4 and repeats >= len(firsts) / 2:
        return (f"every line has {len(layout.rows[0])} fields and field 1 repeats on consecutive lines "
                f"({firsts[0]!r}, {firsts[1]!r}, ...), as a session id does")
    return None


def label_columns(layout: TextLayout) -> list[str]:
    """Header names that are click/conversion labels: the file is a click table."""
    return [n for n in layout.header or () if n.lower() in LABEL_NAMES]


def interactions_command(layout: TextLayout) -> str:
    """The ``distrec data import interactions`` call that reads this log, as far as it can tell."""
    columns = guess_interaction_columns(layout)
    parts = [f"distrec data import interactions {layout.path} OUT"]
    if layout.delimiter != ",":
        parts.append(f"--delimiter {shell_quoted(layout.delimiter)}")
    if columns:
        parts.append("--columns " + ",".join(str(c) for c in columns if c is not None))
        if not layout.header:
            parts.append("(0-based positions of session, item, time)")
    else:
        parts.append("--columns SESSION,ITEM,TIME")
    return " ".join(parts)
