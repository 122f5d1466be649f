"""The `analyze run` report, rendered at a fixed width without colour.

Results are built by hand so the text is deterministic; the summary panel is checked line by
line, the other sections by what they must (and must not) contain.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console, RenderableType

from analyze.alerts import Alert
from analyze.engine_api import RunOptions, Skipped
from analyze.run import RunResult
from analyze.run_render import (
    SKIPPED_NAMES,
    alert_stats,
    format_duration,
    render_report,
    trace_info_table,
)
from analyze.trace_reader import TraceInfo

START = 1704078720_000000000  # 2024-01-01T03:12:00Z
SECOND = 10**9


def render(renderable: RenderableType, width: int = 100) -> str:
    console = Console(file=StringIO(), width=width, color_system=None)
    console.print(renderable)
    out = console.file
    assert isinstance(out, StringIO)
    return out.getvalue()


def info(dropped: int | None = None, drops: dict[str, int] | None = None) -> TraceInfo:
    return TraceInfo(
        paths=(Path("/traces/web-1.parquet"),), events=120_000, dropped=dropped,
        drops=drops or {}, capture_start_ns=START, capture_end_ns=START + 60 * SECOND,
        hostnames=("web-1",), kernels=("6.1.0-18-amd64",), sources=("live",),
        source_files=(), schema_versions=("1.0",), options={}, row_groups=3,
        size_bytes=4_567_890,
    )


def alert(n: int, at_s: float, rule: str = "Write below etc", priority: str = "Error",
          proc: str = "vi", container: tuple[str, str, str] = ("host", "host", "")) -> Alert:
    return Alert(
        evt_num=n, time_ns=START + int(at_s * SECOND), rule=rule, priority=priority,
        source="syscall", tags=("filesystem",), hostname="web-1",
        output=f"{proc} wrote /etc/hosts", output_fields={"evt.num": n},
        proc_name=proc, container_id=container[0], container_name=container[1],
        container_image=container[2] or None,
    )


def result(alerts: list[Alert], skipped: tuple[Skipped, ...] = (), **kwargs: object) -> RunResult:
    fields: dict[str, object] = {
        "info": info(), "rule_files": ("rules/a.yaml", "rules/b.yaml"), "engine": "sql",
        "options": RunOptions(), "window_start_ns": START, "window_end_ns": START + 60 * SECOND,
        "events": 120_000, "engine_seconds": 0.5, "total_seconds": 0.75,
        "rules_run": ("Write below etc", "Shell in container", "Netcat"),
        "skipped": skipped, "loader_warnings": 0, "alerts": tuple(alerts),
    }
    fields.update(kwargs)
    return RunResult(**fields)  # type: ignore[arg-type]


ALERTS = [
    alert(10, 1.0),
    alert(11, 2.5, rule="Shell in container", priority="Warning", proc="bash",
          container=("abc123", "web", "nginx:1.25")),
    alert(12, 2.6, rule="Shell in container", priority="Warning", proc="bash",
          container=("abc123", "web", "nginx:1.25")),
    alert(13, 59.0, rule="Netcat", priority="Critical", proc="nc"),
]
SKIPPED = (Skipped("Old rule", "priority Debug is below Warning"),
           Skipped("K8s audit", "not applicable to syscall traces"))


def test_summary_panel() -> None:
    text = render(render_report(result(ALERTS, SKIPPED)))
    panel = text[: text.index("Alerts by rule")]
    lines = [line.removeprefix("│ ").rstrip("│ ") for line in panel.splitlines()[1:-1]]
    assert panel.splitlines()[0].startswith("╭─ analyze run ─")
    assert lines == [
        "Trace:    /traces/web-1.parquet  (host web-1)",
        "Time:     2024-01-01T03:12:00.000000000Z to 03:13:00.000000000 (1m00s)",
        "Events:   120,000 analysed in 0.500 s (240,000 events/s); wall time 0.750 s",
        "Drops:    unknown (the capture does not record its drops)",
        "Engine:   sql, rule matching: first",
        "Rules:    3 run, 2 skipped; from 2 file(s)",
        "Alerts:   4  (Critical 1, Error 1, Warning 2)",
    ]
    assert all(len(line) == 100 for line in panel.splitlines())


def test_sections_in_order() -> None:
    text = render(render_report(result(ALERTS, SKIPPED)))
    heads = ["analyze run", "Alerts by rule", "Top processes", "Top containers", "Timeline from",
             "Alerts (", "Skipped rules (2)"]
    positions = [text.index(h) for h in heads]
    assert positions == sorted(positions)


def test_rules_by_severity_then_count() -> None:
    text = render(render_report(result(ALERTS)))
    section = text[text.index("Alerts by rule"): text.index("Top processes")]
    rows = [line for line in section.splitlines() if "│" in line and "rule" not in line]
    assert [r.split("│")[1].strip() for r in rows] == [
        "Netcat", "Write below etc", "Shell in container",
    ]
    assert "03:12:02.500000000" in rows[2] and "03:12:02.600000000" in rows[2]


def test_top_processes_and_containers() -> None:
    text = render(render_report(result(ALERTS)))
    procs = text[text.index("Top processes"): text.index("Top containers")]
    assert [line.split("│")[1].strip() for line in procs.splitlines()
            if line.startswith("│")] == ["bash", "vi", "nc"]
    containers = text[text.index("Top containers"): text.index("Timeline")]
    assert "│ abc123       │ web            │ nginx:1.25      │      2 │" in containers
    assert "│ host         │ host           │ <NA>            │      2 │" in containers


def test_timeline() -> None:
    stats = alert_stats(ALERTS, START, START + 60 * SECOND, slices=6)
    assert stats.slice_ns == 10 * SECOND + 1  # ceil((60 s + 1 ns) / 6)
    assert [s.count for s in stats.timeline] == [3, 0, 0, 0, 0, 1]
    text = render(render_report(result(ALERTS)))
    timeline = text[text.index("Timeline from"): text.index("Alerts (")]
    assert "Timeline from 2024-01-01T03:12:00.000000000Z, 5.00s per row" in timeline
    lines = timeline.splitlines()[1:]
    assert len(lines) == 12
    assert lines[0].split() == ["+0ns", "█" * 40, "3"]
    assert lines[1].split() == ["+5.00s", "0"]
    assert lines[-1].split() == ["+55.00s", "█" * 13, "1"]


def test_alerts_are_truncated_with_a_note() -> None:
    many = [alert(n, n / 10) for n in range(30)]
    text = render(render_report(result(many), max_alerts=5))
    section = text[text.index("Alerts ("):]
    assert section.startswith("Alerts (first 5 of 30)")
    assert section.count("vi wrote /etc/hosts") == 5
    assert "… 25 more alerts; use --format json (or --max-alerts) to see them all" in section
    full = render(render_report(result(many), max_alerts=30))
    assert "more alert" not in full


def test_traced_strings_are_not_markup() -> None:
    odd = alert(1, 1.0, rule="[bold]Rule[/bold]", proc="[red]x", container=("[i]", "[b]n", "im"))
    text = render(render_report(result([odd], (Skipped("[s]", "reason [x]"),))))
    for literal in ("[bold]Rule[/bold]", "[red]x", "[i]", "[b]n", "[s]", "reason [x]",
                    "[red]x wrote /etc/hosts"):
        assert literal in text


def test_no_alerts() -> None:
    text = render(render_report(result([], SKIPPED)))
    assert "No alerts." in text
    assert "Alerts by rule" not in text
    assert "Timeline" not in text
    assert "Skipped rules (2)" in text


def test_skipped_rules_grouped_by_reason() -> None:
    skipped = tuple(Skipped(f"rule {i}", "tagged noisy") for i in range(SKIPPED_NAMES + 2))
    skipped += (Skipped("lonely", "disabled by --min-priority"),)
    text = render(render_report(result([], skipped)), width=140)
    section = text[text.index("Skipped rules (8)"):]
    lines = [line for line in section.splitlines() if line.startswith("│")]
    assert "tagged noisy" in lines[0]
    assert "│     7 │" in lines[0]
    assert "rule 0, rule 1, rule 2, rule 3, rule 4, … 2 more" in lines[0]
    assert "lonely" in lines[1]


def test_known_drops_and_filters() -> None:
    res = result(
        ALERTS, info=info(5, {"n_drops_buffer": 5, "n_drops_pf": 0}), loader_warnings=2,
        options=RunOptions(min_priority="Warning", tags=("container",), skip_tags=("noisy",)),
    )
    text = render(render_report(res), width=160)
    assert "Drops:    5 (n_drops_buffer 5)" in text
    assert ("Rules:    3 run, 0 skipped; from 2 file(s); priority >= Warning; tags container; "
            "not tags noisy; 2 loader warning(s), see `analyze validate`") in text


def test_window_note() -> None:
    res = result(ALERTS, options=RunOptions(since_ns=START), window_end_ns=START + SECOND)
    text = render(render_report(res), width=140)
    assert "(1.00s, clipped by --since/--until)" in text


def test_time_range_over_days() -> None:
    res = result(ALERTS, window_end_ns=START + 86400 * SECOND)
    text = render(render_report(res), width=140)
    assert "2024-01-01T03:12:00.000000000Z to 2024-01-02T03:12:00.000000000Z (24h00m)" in text


def test_many_rules_are_cut() -> None:
    many = [alert(n, 1.0, rule=f"rule {n:02d}") for n in range(25)]
    text = render(render_report(result(many)))
    assert "… 5 more rules" in text


@pytest.mark.parametrize(
    ("ns", "text"),
    [(850, "850ns"), (12_500, "12.5us"), (3_200_000, "3.2ms"), (1_250_000_000, "1.25s"),
     (125 * SECOND, "2m05s"), (3720 * SECOND, "1h02m")],
)
def test_format_duration(ns: int, text: str) -> None:
    assert format_duration(ns) == text


def test_trace_info_table() -> None:
    text = render(trace_info_table(info(0)))
    for expected in ("/traces/web-1.parquet", "web-1", "120,000", "│ dropped  │ 0",
                     "2024-01-01T03:13:00.000000000Z", "1m00s", "4,567,890 bytes in 3 row"):
        assert expected in text
    assert "│ dropped  │ unknown" in render(trace_info_table(info()))
