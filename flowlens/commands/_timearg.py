"""Click types for times (`--at`) and diagram notes (`--note`); bad syntax exits 2 through click.

A time is one of:
  ``end`` / ``start``            the last / first packet of the capture
  ``+12.5s``, ``+250ms``, ``+2m`` an offset (``s`` if no unit) from a reference: the capture's first
                                 packet for ``states --at``, the connection's first packet for notes
  ``-5s``                        a negative offset: before the reference (``states --at`` rejects
                                 it, as it rejects any time before the first packet; notes too)
  ``1700000000.25``              epoch seconds
  ``2023-11-14T22:13:20.25Z``    ISO 8601; without a zone it is read as UTC, like the output
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import click

from ..reports.ladder import Note

__all__ = ["DURATION", "NOTE", "TIME", "TimeSpec", "parse_time"]

_UNITS = {
    "": Decimal(1),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
    "us": Decimal("0.000001"),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_OFFSET = re.compile(r"^([+-])\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|ms|us|m|h)?$")
_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(s|ms|us|m|h)?$")
_EPOCH = re.compile(r"^\d+(?:\.\d*)?$")


@dataclass(slots=True, frozen=True)
class TimeSpec:
    """A parsed time, resolved against a capture with `resolve`."""

    kind: str  # "end", "start", "offset" (ns after the reference, < 0 before) or "abs" (epoch ns)
    ns: int = 0
    text: str = ""

    def resolve(self, first_ns: int, last_ns: int) -> int:
        """Epoch ns; `first_ns` is the reference of offsets, `last_ns` the moment of `end`."""
        if self.kind == "end":
            return last_ns
        if self.kind == "start":
            return first_ns
        if self.kind == "offset":
            return first_ns + self.ns
        return self.ns


def _ns(number: str, unit: str = "") -> int:
    return int(Decimal(number) * _UNITS[unit] * 1_000_000_000)


def parse_time(text: str) -> TimeSpec:
    """`end`, `start`, `+12.5s` / `-5s`, epoch seconds or ISO 8601 -> TimeSpec; ValueError
    otherwise."""
    t = text.strip()
    low = t.lower()
    if low in ("end", "start"):
        return TimeSpec(low, 0, t)
    m = _OFFSET.match(low)
    if m:
        ns = _ns(m.group(2), m.group(3) or "")
        return TimeSpec("offset", -ns if m.group(1) == "-" else ns, t)
    if _EPOCH.match(t):
        try:
            return TimeSpec("abs", _ns(t), t)
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
            raise ValueError(t) from exc
    try:
        when = _dt.datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time (use end, +12.5s, epoch seconds or ISO 8601 like 2023-11-14T22:13:20Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
    delta = when - epoch
    return TimeSpec(
        "abs", (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000, t
    )


class _TimeType(click.ParamType):
    name = "TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, TimeSpec):
            return value
        try:
            return parse_time(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _DurationType(click.ParamType):
    """`5`, `5s`, `250ms`, `2m` -> seconds (float), strictly positive."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            m = _DURATION.match(str(value).strip().lower())
            if not m:
                self.fail(f"{value!r} is not a duration (like 10s, 250ms, 2m)", param, ctx)
            seconds = float(Decimal(m.group(1)) * _UNITS[m.group(2) or ""])
        if seconds <= 0:
            self.fail(f"{value!r} is not a positive duration", param, ctx)
        return seconds


class _NoteType(click.ParamType):
    """`FRAME=text`, `+1.5s=text` (from the connection's first packet), `EPOCH=text`, `ISO=text`."""

    name = "WHERE=TEXT"

    def convert(self, value, param, ctx):
        if isinstance(value, Note):
            return value
        where, sep, text = str(value).partition("=")
        where, text = where.strip(), text.strip()
        if not sep or not where or not text:
            self.fail(f"{value!r}: expected FRAME=text or +SECONDS=text", param, ctx)
        if where.isdigit():
            frame = int(where)
            if frame < 1:
                self.fail(f"{value!r}: frames count from 1", param, ctx)
            return Note(text, frame=frame)
        try:
            spec = parse_time(where)
        except ValueError as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)
        if spec.kind == "offset":
            if spec.ns < 0:
                self.fail(f"{value!r}: a note cannot fall before its first packet", param, ctx)
            return Note(text, offset_ns=spec.ns)
        if spec.kind == "abs":
            return Note(text, ts_ns=spec.ns)
        self.fail(f"{value!r}: a note needs a frame number or a time, not {where!r}", param, ctx)


TIME = _TimeType()
NOTE = _NoteType()
DURATION = _DurationType()
