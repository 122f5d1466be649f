"""`analyze validate`: load rule files and collect everything a rule author needs to know.

The result is plain data (a `ValidationReport`); `analyze.validate_render` turns it into a rich
summary or Falco-style JSON. Nothing here prints.

Each rule an engine would run is also tried with both engines (`analyze.engine_support`): a rule
one engine cannot run is listed with the reason, and a rule reading fields no trace records gets
a `field-not-in-trace` warning, since every check on those fields is false.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analyze import ast
from analyze.engine_support import (
    ENGINES,
    RuleSupport,
    check_rules,
    evaluable_rules,
    missing_field_warning,
)
from analyze.errors import RuleError, RuleWarning, SourceRef
from analyze.evttypes import event_codes, evttypes, too_many_evttypes_warning
from analyze.resolve import load_rules
from analyze.ruleset import LoadedRule
from analyze.typecheck import fields_needing_unavailable_data


@dataclass(frozen=True)
class RuleSummary:
    """What validation learned about one rule."""

    name: str
    priority: str
    source: str
    enabled: bool
    applicable: bool
    reason: str  # why not applicable / not evaluable; empty when fine
    origin: SourceRef | None
    fields: tuple[str, ...]  # every field the resolved condition reads
    unavailable_fields: tuple[str, ...]  # fields a syscall trace cannot supply
    evttypes: tuple[str, ...] | None  # None: not computed (not applicable or failed)
    all_evttypes: bool  # matches every event type (Falco's performance warning)
    tags: tuple[str, ...]
    engines: RuleSupport | None = None  # None: not tried (the rule is not evaluable)

    @property
    def evaluable(self) -> bool:
        return self.applicable and not self.unavailable_fields and not self.reason

    @property
    def missing_fields(self) -> tuple[str, ...]:
        """Fields the rule reads that no trace records (checks on them are false)."""
        return self.engines.missing_fields if self.engines is not None else ()

    def runs_on(self, engine: str) -> bool | None:
        """Whether `engine` can run the rule (None: not tried)."""
        return self.engines.runs_on(engine) if self.engines is not None else None


@dataclass(frozen=True)
class ValidationReport:
    files: tuple[str, ...]
    rules: tuple[RuleSummary, ...]
    macros: int
    lists: int
    warnings: tuple[RuleWarning, ...]
    errors: tuple[RuleError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def not_evaluable(self) -> tuple[RuleSummary, ...]:
        return tuple(r for r in self.rules if r.applicable and not r.evaluable)

    def unsupported(self, engine: str) -> tuple[RuleSummary, ...]:
        """The rules `engine` cannot run."""
        return tuple(r for r in self.rules if r.runs_on(engine) is False)

    @property
    def engine_gaps(self) -> tuple[RuleSummary, ...]:
        """The rules some engine cannot run."""
        return tuple(r for r in self.rules if any(r.runs_on(e) is False for e in ENGINES))

    @property
    def reading_missing_fields(self) -> tuple[RuleSummary, ...]:
        return tuple(r for r in self.rules if r.missing_fields)


def validate(paths: Sequence[str | Path]) -> ValidationReport:
    """Load `paths` collecting every error and warning instead of stopping at the first."""
    ruleset = load_rules(paths, collect_errors=True)
    errors: list[RuleError] = list(ruleset.errors)
    warnings: list[RuleWarning] = list(ruleset.warnings)
    support = check_rules(evaluable_rules(ruleset))
    summaries = []
    for index, rule in enumerate(ruleset.rules):
        summary, rule_warnings = _summarize(rule, support.get(index))
        summaries.append(summary)
        warnings.extend(rule_warnings)
        if summary.missing_fields:
            warnings.append(missing_field_warning(rule, summary.missing_fields))
    return ValidationReport(
        files=tuple(str(f) for f in ruleset.files),
        rules=tuple(summaries),
        macros=len(ruleset.macros),
        lists=len(ruleset.lists),
        warnings=tuple(warnings),
        errors=tuple(errors),
    )


def _summarize(rule: LoadedRule,
               support: RuleSupport | None) -> tuple[RuleSummary, list[RuleWarning]]:
    """Fields, unavailable fields and event types of a rule that passed the checks, and what
    the engines make of it (`support`)."""
    warnings: list[RuleWarning] = []
    fields: tuple[str, ...] = ()
    unavailable: tuple[str, ...] = ()
    types: tuple[str, ...] | None = None
    everything = False
    reason = "" if rule.applicable else rule.not_applicable_reason
    tree = rule.ast
    if rule.applicable and tree is not None:
        fields = tuple(dict.fromkeys(f.text for f in ast.fields_of(tree)))
        unavailable = tuple(dict.fromkeys(f.name for f in fields_needing_unavailable_data(tree)))
        types = tuple(sorted(evttypes(tree)))
        warning = too_many_evttypes_warning(
            rule.name, event_codes(tree), warn_evttypes=rule.warn_evttypes, source=rule.origin
        )
        if warning is not None:
            everything = True
            warnings.append(warning)
        if unavailable:
            reason = "needs fields a syscall trace cannot supply: " + ", ".join(unavailable)
    elif rule.applicable:
        reason = "condition did not compile"
    summary = RuleSummary(
        name=rule.name, priority=rule.priority, source=rule.source, enabled=rule.enabled,
        applicable=rule.applicable, reason=reason, origin=rule.origin, fields=fields,
        unavailable_fields=unavailable, evttypes=types, all_evttypes=everything,
        tags=tuple(rule.tags), engines=support,
    )
    return summary, warnings
