"""Errors a person can act on.

`InputError` is bad input: the CLI prints its one line on stderr and exits 2. Anything else that
escapes a stage is a failure (exit 1).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class InputError(Exception):
    """Bad input: names where (file, line, field), what was wrong and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ):
        self.message = message
        self.file = None if file is None else str(file)
        self.line = line
        self.field = field
        super().__init__(self.one_line())

    def __reduce__(self):  # keep file/line/field when the error crosses a process pool
        return (_rebuild_input_error, (self.message, self.file, self.line, self.field))

    def one_line(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        text = f"{prefix}: {self.message}" if prefix else self.message
        return " ".join(text.split())  # one line, always

    def at(self, *, file=None, line=None, field=None) -> "InputError":
        """The same error with location filled in where it was missing."""
        return InputError(
            self.message,
            file=self.file if self.file is not None else file,
            line=self.line if self.line is not None else line,
            field=self.field if self.field is not None else field,
        )


def _rebuild_input_error(message, file, line, field) -> InputError:
    return InputError(message, file=file, line=line, field=field)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str], **where) -> InputError:
    choices = sorted(choices)
    return InputError(
        f"unknown {kind} '{name}'{did_you_mean(name, choices)}; available: {', '.join(choices)}",
        **where,
    )
