"""Rich tables for `capture scenario`: the scenarios (`--list`) and what a session recorded."""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from capture.scenario_runner import ScenarioResult
from capture.scenarios import Scenario


def _rules(scenario: Scenario) -> str:
    lines = [f"ours: {r}" for r in scenario.ours]
    lines += [f"upstream: {r}" for r in scenario.upstream]
    return escape("\n".join(lines) or "none (must fire none of ours)")


def scenarios_table(scenarios: Sequence[Scenario]) -> Table:
    """Each scenario's behaviour (and container image), the rules it must fire, and the
    upstream rules it targets that cannot fire from our capture (dimmed, with the reason)."""
    table = Table(title="Scenarios", title_justify="left")
    table.add_column("scenario", style="bold", no_wrap=True)
    table.add_column("behaviour")
    table.add_column("alerts expected")
    for s in scenarios:
        behaviour = escape(s.description)
        if s.container is not None:
            behaviour += f" [dim](image {escape(s.container.image)})[/dim]"
        rules = _rules(s)
        for rule, why in s.cannot_fire:
            rules += f"\n[dim]cannot fire: {escape(rule)} ({escape(why)})[/dim]"
        table.add_row(escape(s.name), behaviour, rules)
    return table


def results_table(results: Sequence[ScenarioResult]) -> Table:
    where = escape(str(results[0].trace.parent)) if results else ""
    table = Table(title=f"Recorded scenarios, in {where}", title_justify="left")
    table.add_column("scenario", style="bold", no_wrap=True)
    table.add_column("events", justify="right")
    table.add_column("alerts expected")
    table.add_column("trace")
    table.add_column("status")
    for r in results:
        status = "ok" if r.ok else f"[red]failed:[/red] {escape(r.error or '')}"
        table.add_row(escape(r.scenario.name), f"{r.events:,}", _rules(r.scenario),
                      escape(r.trace.name), status)
    return table
