"""Reading JSON trajectory files as they are published: compressed or not, JSONL or JSON.

- Compression by suffix: `.gz` (gzip) and `.zst` (zstandard, through pyarrow's codec).
- A UTF-8 byte-order mark at the start is skipped (Windows editors and some exporters write one).
- `.jsonl`-style files are read line by line (streaming); a file whose first non-blank byte is
  `[` is a JSON list of items; one whose whole text is a single JSON object is one item.

`json_items` yields `(line, item)` for good items and `(line, InputError)` for a bad line, so
that a caller can stop at the first bad record (the default) or skip it and report it.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from dreamgym_cli.errors import InputError

MAX_LINE_BYTES = 64 << 20  # one record larger than this is almost surely a broken file
BOM = b"\xef\xbb\xbf"
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}


def compression(path: Path) -> str | None:
    return COMPRESSIONS.get(path.suffix.lower())


def data_suffix(path: Path) -> str:
    """The suffix that says what the data is: 'x.jsonl.gz' -> '.jsonl'."""
    name = path.name.lower()
    for ext in COMPRESSIONS:
        if name.endswith(ext):
            name = name[: -len(ext)]
    return Path(name).suffix


def open_bytes(path: Path) -> IO[bytes]:
    """A binary stream of the file's decompressed bytes, a leading BOM skipped."""
    if not path.exists():
        raise InputError("no such file", file=path)
    if path.is_dir():
        raise InputError("is a directory, expected a trajectory file", file=path)
    kind = compression(path)
    try:
        if kind == "gzip":
            stream: IO[bytes] = gzip.open(path, "rb")
        elif kind == "zstd":
            stream = io.BufferedReader(_ArrowReader(pa.CompressedInputStream(
                pa.OSFile(str(path), "rb"), "zstd")), buffer_size=1 << 20)
        else:
            stream = open(path, "rb", buffering=1 << 20)
        head = stream.peek(3)[:3] if hasattr(stream, "peek") else b""
        if head == BOM:
            stream.read(3)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"cannot read as {kind or 'a plain file'} ({e})", file=path) from None
    return stream


class _ArrowReader(io.RawIOBase):
    """pyarrow's NativeFile as a raw stream, so io.BufferedReader can give it peek/readline."""

    def __init__(self, native):
        self.native = native

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.native.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.native.close()
        super().close()


def read_all(path: Path) -> bytes:
    """The whole decompressed content (BOM skipped); InputError for a corrupt archive."""
    with open_bytes(path) as f:
        try:
            return f.read()
        except (OSError, EOFError, pa.ArrowException) as e:
            raise InputError(f"corrupt {compression(path)} data ({e})", file=path) from None


def first_bytes(path: Path, n: int = 4096) -> bytes:
    with open_bytes(path) as f:
        try:
            return f.read(n)
        except (OSError, EOFError, pa.ArrowException) as e:
            raise InputError(f"corrupt {compression(path)} data ({e})", file=path) from None


def json_items(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, item) per record, or (line, InputError) for a record that does not parse.

    An error that ends the file's readability (not UTF-8 in a JSON list, truncated list) is
    raised: no later record could be trusted.
    """
    head = first_bytes(path).lstrip()
    if head.startswith(b"["):
        yield from _list_items(path)
        return
    if head.startswith(b"{") and not _has_second_record(path):
        yield from _single_object(path)
        return
    yield from _lines(path)


def _has_second_record(path: Path) -> bool:
    """True when the first line holds a complete JSON value (then the file is JSONL)."""
    with open_bytes(path) as f:
        first = f.readline(MAX_LINE_BYTES)
    try:
        json.loads(first)
        return True
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def _lines(path: Path) -> Iterator[tuple[int, Any]]:
    loads = json.loads
    with open_bytes(path) as f:
        lineno = 0
        try:
            for raw in iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""):
                lineno += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    raise InputError(f"line is longer than {MAX_LINE_BYTES >> 20} MiB; expected "
                                     "one record per line", file=path, line=lineno)
                try:
                    yield lineno, loads(raw)
                except json.JSONDecodeError as e:
                    if raw.strip():
                        yield lineno, _decode_error(path, lineno, raw, e)
                except UnicodeDecodeError as e:
                    yield lineno, InputError(f"not UTF-8 (byte {e.start + 1} of the line)",
                                             file=path, line=lineno)
        except (OSError, EOFError, pa.ArrowException) as e:
            raise InputError(f"corrupt {compression(path)} data after line {lineno} ({e})",
                             file=path, line=lineno + 1) from None


def _decode_error(path: Path, lineno: int, raw: bytes, e: json.JSONDecodeError) -> InputError:
    text = raw.decode("utf-8", errors="replace").rstrip()
    if lineno == 1 and text.strip() == "[":
        return InputError("expected one JSON object per line (JSONL), found the start of a JSON "
                          "list", file=path, line=1)
    truncated = "Unterminated" in e.msg or e.pos >= len(text)
    what = "truncated JSON" if truncated else "not valid JSON"
    return InputError(f"{what}: {e.msg} at column {e.colno}", file=path, line=lineno)


def _text(path: Path) -> str:
    data = read_all(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 (byte {e.start + 1} of the file)", file=path,
                         line=data.count(b"\n", 0, e.start) + 1) from None


def _single_object(path: Path) -> Iterator[tuple[int, Any]]:
    text = _text(path)
    try:
        item = json.loads(text)
    except json.JSONDecodeError as e:
        what = "truncated JSON" if e.pos >= len(text.rstrip()) else "not valid JSON"
        raise InputError(f"{what}: {e.msg} at column {e.colno}", file=path,
                         line=e.lineno) from None
    yield 1, item


def _list_items(path: Path) -> Iterator[tuple[int, Any]]:
    """Items of a JSON list, each with the line it starts on."""
    text = _text(path)
    decoder = json.JSONDecoder()
    lines = _LineCounter(text)
    pos = text.index("[") + 1
    while True:
        start = _skip_ws(text, pos)
        if start < len(text) and text[start] == "]":
            if _skip_ws(text, start + 1) != len(text):
                raise InputError("unexpected text after the closing ']'", file=path,
                                 line=lines.at(start))
            return
        try:
            item, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError as e:
            what = "truncated JSON" if e.pos >= len(text.rstrip()) else "not valid JSON"
            raise InputError(f"{what}: {e.msg}", file=path, line=e.lineno) from None
        yield lines.at(start), item
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            raise InputError("truncated JSON: expected ',' or ']' after an item", file=path,
                             line=lines.at(min(pos, len(text))))


class _LineCounter:
    """Line numbers of increasing offsets in a text, counted incrementally."""

    def __init__(self, text: str):
        self.text, self.offset, self.line = text, 0, 1

    def at(self, offset: int) -> int:
        self.line += self.text.count("\n", self.offset, offset)
        self.offset = offset
        return self.line


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
