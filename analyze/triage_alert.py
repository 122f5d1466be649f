"""Read an alert of `analyze run --format json` to find the event `analyze explain` tells about.

`--alert` takes the alert itself (a JSON object as text), `-` for standard input, or a file of
alerts, one JSON object per line (what `analyze run --format json -o FILE` writes). A file with
several alerts needs `--index N` (1-based, as editors number lines): explaining the wrong alert
would mislead, so no default is guessed.

The event is `output_fields["evt.num"]`, which `analyze run` always writes. Falco's own alerts
lack it; for them the alert's time (`output_fields["evt.time"]`, else `time`) is used, and
`analyze.triage_explain` looks the event up by its exact time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from analyze.triage_db import TriageError


@dataclass(frozen=True)
class AlertRef:
    """What an alert says about its event."""

    where: str  # for messages: "alerts.json line 3", "the --alert text", "standard input"
    evt_num: int | None
    time_ns: int | None  # output_fields evt.time (ns), when present
    time_text: str | None  # the alert's `time` (RFC 3339), resolved by the caller
    rule: str
    priority: str
    output: str


def read_alert(value: str, index: int | None = None, stdin: IO[str] | None = None) -> AlertRef:
    """The alert `value` names (JSON text, `-` for `stdin`, or a file) and `index` picks."""
    if value.lstrip().startswith("{"):
        return parse_alert(value, "the --alert text")
    if value == "-":
        if stdin is None:
            raise TriageError("--alert -: no standard input to read the alert from.")
        return pick(stdin.read().splitlines(), index, "standard input")
    path = Path(value)
    if not path.is_file():
        raise TriageError(f"--alert {value}: no such file, and not an alert's JSON text.")
    return pick(path.read_text(encoding="utf-8", errors="replace").splitlines(), index, str(path))


def pick(lines: list[str], index: int | None, source: str) -> AlertRef:
    """The `index`-th (1-based) alert among the non-blank `lines`."""
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise TriageError(f"{source} holds no alert.")
    if index is None:
        if len(numbered) > 1:
            raise TriageError(
                f"{source} holds {len(numbered):,} alerts; pick one with --index N "
                f"(1 to {len(numbered):,})."
            )
        index = 1
    if not 1 <= index <= len(numbered):
        raise TriageError(f"--index {index}: {source} holds {len(numbered):,} alert(s).")
    line_no, line = numbered[index - 1]
    return parse_alert(line, f"{source} line {line_no}")


def parse_alert(text: str, where: str) -> AlertRef:
    """One alert object in Falco's JSON shape."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TriageError(f"{where} is not JSON: {exc.msg} (column {exc.colno}).") from None
    if not isinstance(data, dict):
        raise TriageError(f"{where} is not an alert: a JSON object was expected.")
    fields = data.get("output_fields")
    fields = fields if isinstance(fields, dict) else {}
    num = _int(fields.get("evt.num"), where, "output_fields.evt.num")
    time_ns = _int(fields.get("evt.time"), where, "output_fields.evt.time")
    time_text = data.get("time") if isinstance(data.get("time"), str) else None
    if num is None and time_ns is None and time_text is None:
        raise TriageError(
            f"{where} names no event: it has no output_fields.evt.num (which `analyze run "
            "--format json` always writes) and no time to find the event by."
        )
    return AlertRef(where, num, time_ns, time_text, _str(data.get("rule")),
                    _str(data.get("priority")), _str(data.get("output")))


def _int(value: Any, where: str, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TriageError(f"{where}: {name} is {value!r}, not a number.")
    try:
        return int(value)
    except ValueError:
        raise TriageError(f"{where}: {name} is {value!r}, not a number.") from None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
