"""Render the field catalog for `analyze list-fields` (table, JSON, markdown)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from schemas.catalog import FieldInfo


def _arg(info: FieldInfo) -> str:
    return {"none": "", "required": "arg required", "allowed": "arg optional"}.get(info.arg, "")


def fields_table(fields: list[FieldInfo]) -> Table:
    table = Table(title=f"{len(fields)} fields", expand=True)
    table.add_column("field", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("available", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1)
    for f in fields:
        avail = Text("yes", style="green") if f.available else Text("no", style="yellow")
        desc = f.description if f.available else f"{f.description} [{f.unavailable_reason}]"
        extra = ", ".join(x for x in (_arg(f), "deprecated" if f.deprecated else "") if x)
        table.add_row(Text(f.name), f.type, avail, Text(desc + (f" ({extra})" if extra else "")))
    return table


def fields_json(fields: list[FieldInfo]) -> list[dict[str, Any]]:
    return [
        {
            "name": f.name, "type": f.type, "arg": f.arg, "is_list": f.is_list,
            "available": f.available, "unavailable_reason": f.unavailable_reason,
            "deprecated": f.deprecated, "description": f.description,
        }
        for f in fields
    ]


def fields_markdown(fields: list[FieldInfo]) -> str:
    lines = ["| field | type | available | description |", "|---|---|---|---|"]
    for f in fields:
        desc = f.description.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{f.name}` | {f.type} | {'yes' if f.available else 'no'} | {desc} |")
    return "\n".join(lines)
