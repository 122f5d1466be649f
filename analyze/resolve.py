"""The last loader stage: check every applicable rule's resolved condition against the catalog.

Falco rejects a rule file whose conditions use unknown fields, operators a field type does not
take, or values that do not convert (unless the rule says `skip-if-unknown-filter`, in which case
that rule is dropped with a warning). `load_rules` runs this, so a RuleSet it returns is ready for
both engines: every applicable rule with an AST has passed the checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from analyze import loader
from analyze.errors import RuleError, RuleWarning
from analyze.output_format import check_output
from analyze.ruleset import LoadedRule, RuleSet
from analyze.typecheck import check_rule_condition


def check_rules(ruleset: RuleSet) -> tuple[RuleSet, list[RuleError]]:
    """Type-check each applicable rule; return the updated set and the new errors."""
    errors: list[RuleError] = []
    warnings: list[RuleWarning] = []
    rules: list[LoadedRule] = []
    for rule in ruleset.rules:
        if not rule.applicable or rule.ast is None:
            rules.append(rule)
            continue
        verdict = check_rule_condition(
            rule.ast, rule.expanded_text,
            skip_if_unknown_filter=rule.skip_if_unknown_filter, source=rule.origin,
        )
        if verdict.warning is not None:
            warnings.append(verdict.warning)
            reason = f"skipped (skip-if-unknown-filter): {verdict.warning.message}"
            rule = dataclasses.replace(
                rule, applicable=False, ast=None, not_applicable_reason=reason
            )
        for err in verdict.errors:
            errors.append(err.with_source(rule.condition_origin))
        if verdict.errors:
            rule = dataclasses.replace(rule, ast=None)
        if rule.applicable:
            errors.extend(e.with_source(rule.origin) for e in check_output(rule.output))
        rules.append(rule)
    updated = dataclasses.replace(
        ruleset, rules=tuple(rules), warnings=(*ruleset.warnings, *warnings),
        errors=(*ruleset.errors, *errors),
    )
    return updated, errors


def load_rules(paths: Sequence[str | Path], *, collect_errors: bool = False) -> RuleSet:
    """Load, compile and check rule files: the public `analyze.load_rules`.

    Raises the first RuleError, or with `collect_errors=True` returns the set with `.errors`.
    """
    ruleset = loader.load_rules(paths, collect_errors=collect_errors)
    ruleset, errors = check_rules(ruleset)
    if errors and not collect_errors:
        raise errors[0]
    return ruleset
