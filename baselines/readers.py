"""Read a training data file row by row, or in column chunks, without loading it whole.

Four formats, told by the file's extension unless given:

=============  ============================  ==========================================
format         extensions                    read with
=============  ============================  ==========================================
``csv``        ``.csv``                      :mod:`csv` (a header row names the columns)
``jsonl``      ``.jsonl``, ``.ndjson``,      :mod:`json`, one object per line
               ``.json``
``avro``       ``.avro``                     :mod:`fastavro` (an object container file)
``parquet``    ``.parquet``, ``.pq``         ``pyarrow`` (optional: ``pip install pyarrow``)
=============  ============================  ==========================================

A value is missing when it is ``None`` (JSON ``null``, Avro/Parquet null), an
empty string, or — in CSV only, where every field is text — one of
:data:`CSV_MISSING` (``NA``, ``NaN``, ``null``, ...); a missing CSV field
comes back as ``None``. Other CSV fields come back as written (strings): the
profiler (:mod:`.profile`) decides which are numbers. A key a JSON line does
not have is missing too.

Reading is streamed: CSV, JSON lines and Avro are read sequentially through a
1 MiB buffer (which also computes the file's SHA-256 on the way), Parquet one
record batch at a time. :attr:`TrainingFile.bytes_read` says how far reading
got, for progress bars. A file that cannot be read raises
:class:`~.model.BaselineError` naming the file and the line (CSV, JSON lines)
or row (Avro, Parquet).

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "train.csv"
    >>> _ = path.write_text("amount,channel\\n12.5,web\\n,app\\n")
    >>> list(read_rows(path))
    [{'amount': '12.5', 'channel': 'web'}, {'amount': None, 'channel': 'app'}]
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from .model import BaselineError

__all__ = [
    "CSV_MISSING",
    "FORMATS",
    "Chunk",
    "TrainingFile",
    "detect_format",
    "read_rows",
]

#: The formats :class:`TrainingFile` reads.
FORMATS: tuple[str, ...] = ("csv", "jsonl", "avro", "parquet")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".avro": "avro",
               ".parquet": "parquet", ".pq": "parquet"}
_ALIASES = {"json": "jsonl", "ndjson": "jsonl"}
#: CSV fields read as missing (besides the empty field): what pandas and R write for a missing value.
CSV_MISSING = frozenset({"NA", "N/A", "NaN", "nan", "NULL", "null", "None"})
_BUFFER = 1 << 20
#: Rows per chunk when none is given.
DEFAULT_CHUNK_ROWS = 4096


class Chunk(NamedTuple):
    """Consecutive rows of a file, by column.

    ``start`` is the 0-based index of the chunk's first data row, ``rows`` how
    many rows it has; ``columns`` maps each column present in the chunk to its
    ``rows`` values (``None`` where missing).
    """

    start: int
    rows: int
    columns: dict[str, list[Any]]


def detect_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The format of ``path``: ``format`` if given (``json`` and ``ndjson`` mean
    ``jsonl``), else the one its extension names.

    Example:
        >>> detect_format("train.ndjson"), detect_format("x.data", "csv")
        ('jsonl', 'csv')
        >>> detect_format("train.xlsx")
        Traceback (most recent call last):
        ...
        driftline.baselines.model.BaselineError: cannot tell the format of train.xlsx from its extension: name one of csv, jsonl, avro, parquet
    """
    if format is not None:
        name = _ALIASES.get(format.lower(), format.lower())
        if name not in FORMATS:
            raise BaselineError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
        return name
    found = _EXTENSIONS.get(Path(path).suffix.lower())
    if found is None:
        raise BaselineError(f"cannot tell the format of {Path(path).name} from its extension: "
                            f"name one of {', '.join(FORMATS)}")
    return found


class _Tap(io.RawIOBase):
    """A raw binary file that counts and hashes the bytes read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.count += n
            self.sha256.update(memoryview(buffer)[:n])
        return n or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


class TrainingFile:
    """A training data file, read in chunks of rows as often as needed (one pass per call).

    Parameters
    ----------
    path
        The file.
    format
        ``csv``, ``jsonl``, ``avro`` or ``parquet``; by default told by the
        file's extension (:func:`detect_format`).

    Attributes
    ----------
    size
        The file's size in bytes.
    bytes_read
        Bytes read so far by the current (or last) pass: for progress. Parquet
        is read by row group, so there it is an estimate (the share of rows read).
    columns
        The columns the file declares (CSV header, Avro or Parquet schema),
        known once a pass has started; ``None`` for JSON lines, whose rows
        each name their own.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "train.jsonl"
        >>> _ = path.write_text('{"x": 1, "y": "a"}\\n{"x": 2.5}\\n{"y": "b"}\\n')
        >>> data = TrainingFile(path)
        >>> [(c.start, c.rows, c.columns) for c in data.chunks(rows=2)]
        [(0, 2, {'x': [1, 2.5], 'y': ['a', None]}), (2, 1, {'y': ['b']})]
        >>> data.bytes_read == data.size
        True
    """

    def __init__(self, path: str | os.PathLike[str], format: str | None = None) -> None:
        self.path = Path(path)
        self.format = detect_format(self.path, format)
        try:
            self.size = self.path.stat().st_size
        except OSError as exc:
            raise BaselineError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        if not self.path.is_file():
            raise BaselineError(f"cannot read {self.path}: not a file")
        self.bytes_read = 0
        self.columns: list[str] | None = None
        self._sha256: str | None = None

    @property
    def name(self) -> str:
        """The file's name, without its folder."""
        return self.path.name

    def sha256(self) -> str:
        """The file's SHA-256 (hex): from the last complete sequential pass, else read now."""
        if self._sha256 is None:
            with self.path.open("rb") as f:
                self._sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        return self._sha256

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each row as a dict: column → value.

        A CSV, Avro or Parquet row has every column, ``None`` where missing; a
        JSON line, which declares no columns, only its non-missing values.
        """
        sparse = self.format == "jsonl"
        for chunk in self.chunks():
            names = list(chunk.columns)
            for values in zip(*chunk.columns.values()):
                if sparse:
                    yield {name: value for name, value in zip(names, values) if value is not None}
                else:
                    yield dict(zip(names, values))

    def chunks(self, rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Chunk]:
        """The file's rows, ``rows`` at a time, by column: one pass over the file."""
        if rows < 1:
            raise ValueError(f"rows per chunk must be at least 1, not {rows}")
        self.bytes_read = 0
        if self.format == "parquet":
            yield from self._parquet_chunks(rows)
            return
        try:
            raw = self.path.open("rb", buffering=0)
        except OSError as exc:
            raise BaselineError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        tap = _Tap(raw)
        with io.BufferedReader(tap, _BUFFER) as buffered:
            reader = {"csv": self._csv_chunks, "jsonl": self._jsonl_chunks, "avro": self._avro_chunks}[self.format]
            for chunk in reader(buffered, tap, rows):
                yield chunk
            while buffered.read(_BUFFER):  # hash every byte, even after the last row
                pass
            self.bytes_read = tap.count
            self._sha256 = tap.sha256.hexdigest()

    def _error(self, where: str, message: str) -> BaselineError:
        return BaselineError(f"{self.name}: {where}: {message}")

    # -- CSV ----------------------------------------------------------------------

    def _lines(self, buffered: io.BufferedReader) -> Iterator[str]:
        """The file's lines as text, decoded one by one so that a bad byte is found on its line."""
        for number, line in enumerate(buffered, 1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise self._error(f"line {number}", f"not UTF-8 text ({exc.reason} at byte {exc.start + 1} of the line)") from None
            yield text[1:] if number == 1 and text.startswith("\ufeff") else text

    def _csv_chunks(self, buffered: io.BufferedReader, tap: _Tap, rows: int) -> Iterator[Chunk]:
        reader = csv.reader(self._lines(buffered))
        try:
            header = next(reader, None)
            if header is None:
                raise self._error("line 1", "the file is empty (a CSV file needs a header row)")
            if any(not name for name in header) or len(set(header)) != len(header):
                raise self._error("line 1", f"the header needs distinct, non-empty column names: {header}")
            self.columns = list(header)
            width = len(header)
            start, batch = 0, []
            for record in reader:
                if len(record) != width:
                    if not record:  # a blank line
                        continue
                    raise self._error(f"line {reader.line_num}", f"{len(record)} fields, but the header has {width}")
                batch.append(record)
                if len(batch) == rows:
                    self.bytes_read = tap.count
                    yield self._csv_chunk(header, start, batch)
                    start, batch = start + len(batch), []
            if batch:
                yield self._csv_chunk(header, start, batch)
        except csv.Error as exc:
            raise self._error(f"line {reader.line_num}", f"not valid CSV ({exc})") from None

    @staticmethod
    def _csv_chunk(header: list[str], start: int, batch: list[list[str]]) -> Chunk:
        columns = {}
        for name, values in zip(header, zip(*batch)):
            if not CSV_MISSING.isdisjoint(values):
                columns[name] = [None if not v or v in CSV_MISSING else v for v in values]
            elif "" in values:
                columns[name] = [v or None for v in values]
            else:
                columns[name] = list(values)
        return Chunk(start, len(batch), columns)

    # -- JSON lines ---------------------------------------------------------------

    def _chunked(self, records: Iterator[dict[str, Any]], tap: _Tap, rows: int) -> Iterator[Chunk]:
        """Chunks of ``rows`` dict rows (the last one shorter), noting the bytes read at each."""
        start, batch = 0, []
        for record in records:
            batch.append(record)
            if len(batch) == rows:
                self.bytes_read = tap.count
                yield _dict_chunk(start, batch)
                start, batch = start + len(batch), []
        if batch:
            yield _dict_chunk(start, batch)

    def _jsonl_chunks(self, buffered: io.BufferedReader, tap: _Tap, rows: int) -> Iterator[Chunk]:
        return self._chunked(self._jsonl_rows(buffered), tap, rows)

    def _jsonl_rows(self, buffered: io.BufferedReader) -> Iterator[dict[str, Any]]:
        for line_number, line in enumerate(self._lines(buffered), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                if line_number == 1 and line.lstrip().startswith("["):
                    raise self._error("line 1", "a JSON array, not JSON lines (one object per line): "
                                                "convert it with  jq -c '.[]'") from None
                raise self._error(f"line {line_number}", f"not valid JSON ({exc.msg}, column {exc.colno})") from None
            if not isinstance(row, dict):
                raise self._error(f"line {line_number}", f"a JSON line must be an object, not {type(row).__name__}")
            yield row

    # -- Avro ---------------------------------------------------------------------

    def _avro_chunks(self, buffered: io.BufferedReader, tap: _Tap, rows: int) -> Iterator[Chunk]:
        import fastavro

        try:
            reader = fastavro.reader(buffered)
        except Exception as exc:  # noqa: BLE001 - fastavro raises plain ValueError/EOFError/...
            raise self._error("header", f"not an Avro container file ({exc})") from None
        schema = reader.writer_schema
        if isinstance(schema, dict) and schema.get("type") == "record":
            self.columns = [f["name"] for f in schema.get("fields", [])]
        return self._chunked(self._avro_rows(reader), tap, rows)

    def _avro_rows(self, reader: Any) -> Iterator[dict[str, Any]]:
        records = iter(reader)
        row = 0
        while True:
            row += 1
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001
                raise self._error(f"row {row}", f"cannot decode the Avro record ({exc})") from None
            if not isinstance(record, dict):
                raise self._error(f"row {row}", "the Avro schema must be a record")
            yield record

    # -- Parquet ------------------------------------------------------------------

    def _parquet_chunks(self, rows: int) -> Iterator[Chunk]:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise BaselineError(f"{self.name}: reading Parquet needs pyarrow: pip install pyarrow") from None
        import pyarrow as pa

        try:
            parquet = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise self._error("footer", f"not a Parquet file ({exc})") from None
        self.columns = list(parquet.schema_arrow.names)
        total = parquet.metadata.num_rows
        start = 0
        with parquet:
            batches = parquet.iter_batches(batch_size=rows)
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except (pa.ArrowException, OSError) as exc:
                    raise self._error(f"row {start + 1}", f"cannot read the Parquet data ({exc})") from None
                if not batch.num_rows:
                    continue
                columns = {name: batch.column(i).to_pylist() for i, name in enumerate(batch.schema.names)}
                for values in columns.values():  # an empty string is missing, as in the other formats
                    if "" in values:
                        values[:] = [None if v == "" else v for v in values]
                self.bytes_read = self.size * (start + batch.num_rows) // max(total, 1)
                yield Chunk(start, batch.num_rows, columns)
                start += batch.num_rows
        self.bytes_read = self.size


def _dict_chunk(start: int, batch: list[dict[str, Any]]) -> Chunk:
    first = tuple(batch[0])
    if all(tuple(row) == first for row in batch):  # the usual case (always for Avro): the same keys in the same order
        columns = dict(zip(first, map(list, zip(*(row.values() for row in batch)))))
    else:
        names: dict[str, None] = {}
        for row in batch:
            names.update(dict.fromkeys(row))
        columns = {name: [row.get(name) for row in batch] for name in names}
    for name, values in columns.items():
        if "" in values:
            columns[name] = [None if v == "" else v for v in values]
    return Chunk(start, len(batch), columns)


def read_rows(path: str | os.PathLike[str], format: str | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a training file, one dict at a time (streamed: see :class:`TrainingFile`).

    A missing value is ``None``; a JSON line holds only its non-missing values
    (see :meth:`TrainingFile.rows`).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "bad.csv"
        >>> _ = path.write_text("a,b\\n1,2\\n3\\n")
        >>> list(read_rows(path))
        Traceback (most recent call last):
        ...
        driftline.baselines.model.BaselineError: bad.csv: line 3: 1 fields, but the header has 2
    """
    return TrainingFile(path, format).rows()
