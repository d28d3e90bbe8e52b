"""Fast reading of large rating files, with errors that name the line.

Rating files run to tens of millions of lines, so they are parsed by
pyarrow's multi-threaded CSV reader in blocks, each block converted straight
to compact NumPy arrays. Nothing loops over rows in Python on the way in;
when a file is bad, a slower single-threaded pass finds the first offending
line so that the error can name it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ratinggan.data.dataset import DataError

logger = logging.getLogger(__name__)

BLOCK_SIZE = 1 << 20
# pyarrow's streaming reader reads blocks ahead on a background thread (its
# queue holds up to 32) and keeps the blocks being parsed, so tens of blocks
# are in memory at once: about 80 blocks' worth, measured on a 24 MB ml-1m
# file. Blocks are therefore sized to the file, within these bounds. Fixed
# 1 MB blocks doubled the parse's peak on that file; on a 650 MB file they
# add little, and smaller ones would only add per-block overhead.
MIN_BLOCK_SIZE = 1 << 16
BLOCKS_PER_FILE = 512
# Separators tried when a line has the wrong number of fields, to say which
# one the file seems to use.
KNOWN_SEPARATORS = {"::": "'::'", "\t": "tab", ",": "','", ";": "';'"}
KNOWN_SEPARATORS |= {"|": "'|'"}


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a rating file is laid out: separator, header and column order.

    ``columns`` names the fields of a line in order; the ones called
    ``user``, ``item``, ``rating`` and ``timestamp`` are read, others are
    skipped. ``header`` is the expected first line, or ``None`` when the file
    has no header.
    """

    separator: str
    columns: tuple[str, ...]
    header: tuple[str, ...] | None = None

    @property
    def first_data_line(self) -> int:
        return 2 if self.header is not None else 1


TAB_LAYOUT = Layout("\t", ("user", "item", "rating", "timestamp"))
COLONS_LAYOUT = Layout("::", ("user", "item", "rating", "timestamp"))
CSV_LAYOUT = Layout(
    ",",
    ("user", "item", "rating", "timestamp"),
    header=("userId", "movieId", "rating", "timestamp"),
)

COLUMN_TYPES = {
    "user": pa.int32(),
    "item": pa.int32(),
    "rating": pa.float32(),
    "timestamp": pa.int64(),
}
STORED_TYPES = {
    "user": np.int32,
    "item": np.int32,
    "rating": np.float32,
    "timestamp": np.int64,
}
COLUMN_MEANING = {
    "user": "an integer user ID (at most 9 digits)",
    "item": "an integer movie ID (at most 9 digits)",
    "rating": "a number",
    "timestamp": "an integer timestamp",
}


@dataclasses.dataclass
class RawRatings:
    """Rating rows as read, with raw IDs. Mutable so that ``index_ratings``
    can release each array once mapped, bounding peak memory."""

    users: np.ndarray  # int32 [n], raw user IDs
    items: np.ndarray  # int32 [n], raw movie IDs
    ratings: np.ndarray  # float32 [n]
    timestamps: np.ndarray | None  # int64 [n]

    def __len__(self) -> int:
        return len(self.users)


def check_file(path: Path) -> None:
    """Raises ``DataError`` for a missing or empty file."""
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")


def block_size(file_size: int) -> int:
    """pyarrow's read block for a file of ``file_size`` bytes: about
    1/``BLOCKS_PER_FILE`` of it, within ``MIN_BLOCK_SIZE``..``BLOCK_SIZE``,
    so the blocks in flight stay small next to the parsed arrays."""
    return min(BLOCK_SIZE, max(MIN_BLOCK_SIZE, file_size // BLOCKS_PER_FILE))


def _arrow_options(layout: Layout, file_size: int, use_threads: bool = True):
    """pyarrow options for a layout, with the column names and types.

    A ``::`` separator is read as ``:`` with an empty field between every two
    real ones; those fields are typed ``null``, so any text in them fails.
    """
    if layout.separator == "::":
        names = []
        for index, name in enumerate(layout.columns):
            if index:
                names.append(f"_gap{index}")
            names.append(name)
        delimiter = ":"
    else:
        names = list(layout.columns)
        delimiter = layout.separator
    types = {
        name: COLUMN_TYPES.get(name, pa.string())
        for name in names
        if not name.startswith("_gap")
    }
    types |= {name: pa.null() for name in names if name.startswith("_gap")}
    read = pcsv.ReadOptions(
        column_names=names,
        skip_rows=1 if layout.header is not None else 0,
        block_size=block_size(file_size),
        use_threads=use_threads,
    )
    parse = pcsv.ParseOptions(delimiter=delimiter, quote_char=False)
    convert = pcsv.ConvertOptions(
        column_types=types,
        include_columns=[
            n for n in names if n in COLUMN_TYPES or n.startswith("_gap")
        ],
        null_values=[""],
        strings_can_be_null=False,
    )
    return names, read, parse, convert


def _check_header(path: Path, layout: Layout) -> None:
    with open(path, "rb") as file:
        first = file.readline()
    text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    fields = tuple(
        field.strip().strip('"') for field in text.split(layout.separator)
    )
    if fields[: len(layout.header)] != layout.header:
        raise DataError(
            path,
            f"expected the header {layout.separator.join(layout.header)!r}, "
            f"found {text[:80]!r}",
            1,
        )


def read_ratings(path: Path, layout: Layout) -> RawRatings:
    """Reads every rating line of ``path`` into NumPy arrays.

    A byte-order mark and CRLF line endings are accepted; blank lines are
    skipped. Any other problem raises ``DataError`` naming the line.
    """
    path = Path(path)
    check_file(path)
    if layout.header is not None:
        _check_header(path, layout)

    file_size = path.stat().st_size
    names, read, parse, convert = _arrow_options(layout, file_size)
    # Every line holds at least one character per field plus a separator or
    # newline, which bounds the row count. The arrays are allocated at that
    # bound but only the pages written become resident, so the parse needs
    # no second copy to join blocks.
    capacity = file_size // (2 * len(layout.columns)) + 1
    arrays = {
        name: np.empty(capacity, STORED_TYPES[name])
        for name in COLUMN_TYPES
        if name in layout.columns
    }
    filled = 0
    try:
        # The system allocator hands freed blocks back at once; Arrow's
        # default pool keeps them, adding tens of MB to the peak.
        reader = pcsv.open_csv(
            path,
            read_options=read,
            parse_options=parse,
            convert_options=convert,
            memory_pool=pa.system_memory_pool(),
        )
        for batch in reader:
            rows = batch.num_rows
            for name, array in arrays.items():
                column = batch.column(name)
                if column.null_count:
                    raise pa.ArrowInvalid("empty field")
                array[filled : filled + rows] = column.to_numpy()
            filled += rows
    except pa.ArrowInvalid:
        raise _diagnose(path, layout) from None
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text: {error}") from None

    if filled == 0:
        raise DataError(path, "holds no rating lines")
    arrays = {name: array[:filled] for name, array in arrays.items()}
    return RawRatings(
        users=arrays["user"],
        items=arrays["item"],
        ratings=arrays["rating"],
        timestamps=arrays.get("timestamp"),
    )


def _separator_guess(text: str, expected: str) -> str:
    for separator, name in KNOWN_SEPARATORS.items():
        if separator != expected and separator in text:
            return f"; the line looks separated by {name}"
    return ""


def _diagnose(path: Path, layout: Layout) -> DataError:
    """Finds the first bad line of a file pyarrow refused, single-threaded.

    Reads every field as text, records the first line with a wrong field
    count, and checks each typed column for the first value that does not
    convert. Row counts from pyarrow skip blank lines, so the row is mapped
    back to its physical line at the end.
    """
    names, read, parse, _ = _arrow_options(
        layout, path.stat().st_size, use_threads=False
    )
    first_bad_count = []

    def on_invalid_row(row) -> str:
        if not first_bad_count:
            first_bad_count.append((row.number, row.actual_columns, row.text))
        return "skip"

    parse = pcsv.ParseOptions(
        delimiter=parse.delimiter,
        quote_char=False,
        invalid_row_handler=on_invalid_row,
    )
    as_text = pcsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        strings_can_be_null=False,
    )
    expected_fields = len(layout.columns)
    separator_name = KNOWN_SEPARATORS.get(
        layout.separator, repr(layout.separator)
    )
    rows_before = 0
    header_rows = 1 if layout.header is not None else 0
    reader = pcsv.open_csv(
        path, read_options=read, parse_options=parse, convert_options=as_text
    )
    for batch in reader:
        bad_value = _first_bad_value(batch, names)
        value_line = (
            None
            if bad_value is None
            else header_rows + rows_before + bad_value[0] + 1
        )
        count_line = first_bad_count[0][0] if first_bad_count else None
        # Lines with a wrong field count are skipped from the batches, so a
        # value's line is then underestimated, never past the count error.
        if count_line is not None and (
            value_line is None or count_line <= value_line
        ):
            _, actual, text = first_bad_count[0]
            if layout.separator == "::":
                actual = (actual + 1) // 2
            return DataError(
                path,
                f"expected {expected_fields} fields separated by "
                f"{separator_name}, found {actual}"
                + _separator_guess(text, layout.separator),
                physical_line(path, count_line),
            )
        if bad_value is not None:
            _, name, value = bad_value
            line = physical_line(path, value_line)
            if name.startswith("_gap") or value == "":
                return DataError(
                    path,
                    f"expected {expected_fields} fields separated by "
                    f"{separator_name}, found a malformed line",
                    line,
                )
            return DataError(
                path,
                f"field {name!r} should be {COLUMN_MEANING[name]}, "
                f"got {value[:40]!r}",
                line,
            )
        rows_before += batch.num_rows
    return DataError(path, "cannot be parsed")


def _first_bad_value(batch: pa.RecordBatch, names: list[str]):
    """``(row, column, text)`` of the batch's first unconvertible value."""
    found = None
    for name in names:
        column = batch.column(name)
        if name.startswith("_gap"):
            bad = pc.not_equal(column, "")
        else:
            pattern = (
                r"^\s*[-+]?\d{1,9}\s*$"
                if COLUMN_TYPES[name] == pa.int32()
                else r"^\s*[-+]?\d+\s*$"
                if COLUMN_TYPES[name] == pa.int64()
                else r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
            )
            bad = pc.invert(pc.match_substring_regex(column, pattern))
        index = pc.index(bad, True).as_py()
        if index >= 0 and (found is None or index < found[0]):
            found = (index, name, column[index].as_py())
    return found


def physical_line(path: Path, nonblank_line: int) -> int:
    """Maps a count of non-blank lines (1-based) to the line number in the
    file, which counts blank lines too.

    pyarrow skips blank lines when it numbers rows. Files rarely hold any,
    so a fast scan checks first; only then are lines walked one by one.
    """
    if not _has_blank_lines(path):
        return nonblank_line
    seen = 0
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            if line.strip(b"\r\n"):
                seen += 1
                if seen == nonblank_line:
                    return number
    return nonblank_line


def physical_lines(path: Path, nonblank_lines: np.ndarray) -> np.ndarray:
    """``physical_line`` for many lines at once (sorted ascending)."""
    if not _has_blank_lines(path):
        return nonblank_lines
    return np.array([physical_line(path, int(n)) for n in nonblank_lines])


def _has_blank_lines(path: Path) -> bool:
    """Whether any line is blank; trailing ones count too (harmless: the
    slow path then gives the same numbers)."""
    tail = b""
    with open(path, "rb") as file:
        if file.read(1) in (b"\n", b"\r"):
            return True
        file.seek(0)
        while block := file.read(BLOCK_SIZE):
            joined = tail + block
            if b"\n\n" in joined or b"\n\r\n" in joined:
                return True
            tail = block[-2:]
    return False
