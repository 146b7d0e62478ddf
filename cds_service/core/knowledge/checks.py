"""The consistency checks of the knowledge: every problem `cds-service knowledge check` reports."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jsonschema

from ..envelope import HookDef
from .model import (
    Criterion,
    Guideline,
    KnowledgeBase,
    Measure,
    PrefetchKey,
    Rule,
    Service,
    Theme,
    ValueSet,
)


def schema_problems(name: str, document: Any, schema: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        problems.append(f"{name}: {where}: {error.message}")
    return problems


def _normalise_quote(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def quote_in_article(quote: str, article_text: str) -> bool:
    """Whether `quote` appears word for word in the article (white space folded)."""
    return _normalise_quote(quote) in _normalise_quote(article_text)


def expansion_problems(vs_doc: Mapping[str, Any], expansion: Mapping[str, Any]) -> list[str]:
    problems = []
    for entry in vs_doc["include"]:
        if entry.get("descendants") and entry["code"] not in expansion:
            problems.append(
                f"valuesets/{vs_doc['id']}.yaml: {entry['code']} has descendants: true but no "
                "expansion; run `cds-service knowledge expand`"
            )
        if (entry.get("exclude") or entry.get("only")) and not entry.get("descendants"):
            problems.append(
                f"valuesets/{vs_doc['id']}.yaml: {entry['code']}: exclude/only need descendants"
            )
    return problems


def reference_problems(
    rules: list[Rule],
    valuesets: Mapping[str, ValueSet],
    themes: Mapping[str, Theme],
    measures: Mapping[str, Measure],
    guidelines: Mapping[str, Guideline],
    article_text: str,
) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for rule in rules:
        where = f"rules/{rule.id}"
        if rule.id in seen:
            problems.append(f"{where}: duplicate rule id")
        seen.add(rule.id)
        if rule.theme not in themes:
            problems.append(f"{where}: unknown theme {rule.theme!r}")
        for theme in rule.unless_themes:
            if theme not in themes:
                problems.append(f"{where}: unless_themes names unknown theme {theme!r}")
        extra = rule.requires + rule.none_of + rule.explain
        wanted = list(rule.valuesets) + [v for r in extra for v in r.all_valuesets()]
        problems += [f"{where}: unknown value set {v!r}" for v in wanted if v not in valuesets]
        wanted_measures = list(rule.measures) + [m for r in extra for m in r.all_measures()]
        problems += [
            f"{where}: unknown measure {m!r}" for m in wanted_measures if m not in measures
        ]
        if rule.source.guideline and rule.source.guideline not in guidelines:
            problems.append(f"{where}: unknown guideline {rule.source.guideline!r}")
        if rule.source.quote is None:
            if not (rule.source.guideline and rule.source.says):
                problems.append(f"{where}: a rule without an article quote needs guideline+says")
        elif not quote_in_article(rule.source.quote, article_text):
            problems.append(f"{where}: source quote is not in the article: {rule.source.quote!r}")
    for theme in themes.values():
        if theme.questions:
            if not quote_in_article(theme.questions.source_quote, article_text):
                problems.append(f"themes/{theme.id}: questions source quote is not in the article")
            problems += [
                f"themes/{theme.id}: question not in the article: {q!r}"
                for q in theme.questions.article
                if not quote_in_article(q, article_text)
            ]
            if theme.questions.guideline and theme.questions.guideline not in guidelines:
                problems.append(f"themes/{theme.id}: unknown guideline")
    for measure in measures.values():
        if measure.range_source not in guidelines:
            problems.append(f"labs/{measure.id}: unknown range source {measure.range_source!r}")
        if measure.critical_source is not None and measure.critical_source not in guidelines:
            problems.append(
                f"labs/{measure.id}: unknown critical limit source {measure.critical_source!r}"
            )
    return problems


def criteria_problems(
    criteria: Mapping[str, Criterion],
    valuesets: Mapping[str, ValueSet],
    guidelines: Mapping[str, Guideline],
    article_text: str,
) -> list[str]:
    problems = []
    for criterion in criteria.values():
        where = f"criteria.yaml: {criterion.id}"
        problems += [
            f"{where}: unknown value set {v!r}"
            for v in criterion.requirement.all_valuesets()
            if v not in valuesets
        ]
        if criterion.guideline and criterion.guideline not in guidelines:
            problems.append(f"{where}: unknown guideline {criterion.guideline!r}")
        if not criterion.quote:
            if not criterion.guideline:
                problems.append(f"{where}: needs an article quote or a guideline")
        elif not quote_in_article(criterion.quote, article_text):
            problems.append(f"{where}: source quote is not in the article: {criterion.quote!r}")
    return problems


def _empty(valuesets: tuple[str, ...], known: Mapping[str, ValueSet]) -> bool:
    """True when none of the named value sets holds a code (unknown names are checked apart)."""
    return all(not known[v].codes for v in valuesets if v in known)


def rules_that_cannot_fire(kb: KnowledgeBase) -> list[str]:
    """Every enabled rule that can never fire, with why: all its value sets hold no code."""
    reasons = []
    for rule in kb.rules:
        where = f"rules/{rule.id}"
        if rule.valuesets and not rule.measures and _empty(rule.valuesets, kb.valuesets):
            names = ", ".join(rule.valuesets)
            reasons.append(f"{where} can never fire: its value sets ({names}) hold no code")
        for requirement in rule.requires:
            if requirement.valuesets and _empty(requirement.valuesets, kb.valuesets):
                names = ", ".join(requirement.valuesets)
                reasons.append(f"{where} can never fire: its requirement ({names}) holds no code")
    return reasons


def summary_problems(rules: list[Rule], themes: Mapping[str, Theme]) -> list[str]:
    """Every card summary a theme can produce must stay under 140 characters."""
    problems = []
    for rule in rules:
        theme = themes.get(rule.theme)
        if theme is None:
            continue
        longest = theme.summary.format(top=rule.summary, more=" and 99 more")
        if len(longest) >= 140:
            problems.append(f"rules/{rule.id}: card summary would reach {len(longest)} characters")
    return problems


def prefetch_problems(prefetch: Mapping[str, PrefetchKey]) -> list[str]:
    problems = []
    for key in prefetch.values():
        tokens = re.findall(r"\{\{\s*([^}]*?)\s*\}\}", key.template)
        problems += [
            f"services.yaml: prefetch {key.key}: token {{{{{t}}}}} is not a context field"
            for t in tokens
            if not re.fullmatch(r"context\.[A-Za-z]+", t)
        ]
        if "{since}" in key.template and key.since_days is None:
            problems.append(f"services.yaml: prefetch {key.key}: {{since}} needs since_days")
    return problems


def service_problems(
    services: Mapping[str, Service],
    hooks: Mapping[str, HookDef],
    prefetch: Mapping[str, PrefetchKey],
) -> list[str]:
    """Each service's hook is in the registry, its prefetch keys exist, and their templates name
    only the hook's prefetch tokens."""
    problems = []
    for service in services.values():
        where = f"services.yaml: {service.id}"
        hook = hooks.get(service.hook)
        if hook is None:
            problems.append(f"{where}: hook {service.hook!r} is not in hooks.yaml")
            continue
        if service.advice == "orders" and "draftOrders" not in hook.data:
            problems.append(f"{where}: order advice needs a hook with draftOrders")
        for key in service.prefetch_keys:
            if key not in prefetch:
                problems.append(f"{where}: unknown prefetch key {key!r}")
                continue
            tokens = re.findall(r"\{\{\s*context\.([A-Za-z]+)\s*\}\}", prefetch[key].template)
            problems += [
                f"{where}: prefetch {key}: {{{{context.{t}}}}} is not a token of {hook.id}"
                for t in tokens
                if t not in hook.prefetch_tokens
            ]
    return problems


def topic_problems(themes: Mapping[str, Theme], about: Mapping[str, Any]) -> list[str]:
    """Every theme's topic must be a concept of the card-topic CodeSystem in about.yaml."""
    system = about.get("topic_system")
    if not system:
        return []
    return [
        f"themes.yaml: {t.id}: topic {t.topic.code!r} is not in {system['url']}"
        for t in themes.values()
        if t.topic and (t.topic.system != system["url"] or t.topic.code not in system["concepts"])
    ]
