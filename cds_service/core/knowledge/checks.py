"""The consistency checks of the knowledge: every problem `cds-service knowledge check` reports."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from ..codes import KNOWLEDGE_SYSTEMS
from ..envelope import HookDef
from ..fhir_validation import fhir_problem
from ..order_kinds import OrderAdvice
from ..orders import OrderCatalog, OrderContext, render_suggestion
from .model import (
    Criterion,
    Guideline,
    KnowledgeBase,
    Measure,
    PrefetchKey,
    Requirement,
    ReviewKind,
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


def policy_problems(doc: Mapping[str, Any]) -> list[str]:
    """A recurring clinical status must also be an active one."""
    active = set(doc["conditions"]["active_clinical"])
    return [
        f"policy.yaml: conditions: recurring status {s!r} is not in active_clinical"
        for s in doc["conditions"]["recurring_clinical"]
        if s not in active
    ]


@dataclass(frozen=True)
class Reads:
    """What a service's rules read, each thing with the first rule that reads it."""

    valuesets: Mapping[str, str]
    measures: Mapping[str, str]
    #: the first rule that reads the patient's age (Patient.birthDate), if any
    age: str | None = None


def _rule_requirements(rule: Rule) -> Iterable[Requirement]:
    """Every requirement of a rule, its alternatives' included."""
    todo = list(rule.requires + rule.none_of + rule.explain)
    while todo:
        requirement = todo.pop(0)
        todo += requirement.any_of
        yield requirement


def service_theme_problems(
    services: Mapping[str, Service],
    themes: Mapping[str, Theme],
    review: Mapping[str, ReviewKind],
    rules: Iterable[Rule],
    advice: OrderAdvice,
) -> list[str]:
    """Each theme a service names exists; a service running a red-flag rule names the review
    themes (its records to verify or read are shown on them); an order service names every theme
    its order-advice rules read as red flags (without them, no red flag would be seen)."""
    red_flag_rules = {r.id for r in rules if r.older == "context"}
    problems = []
    for service in services.values():
        where = f"services.yaml: {service.id}"
        problems += [f"{where}: unknown theme {t!r}" for t in service.themes if t not in themes]
        wanted = {
            t: f"order-advice/{r.id} reads the red flags of theme {t!r}"
            for r in advice.rules
            if r.id in service.order_rules
            for t in r.red_flag_themes
        }
        if red_flag_rules.intersection(service.rules):
            wanted |= {
                k.theme: "it runs red-flag rules, whose records to verify or read are shown on "
                f"theme {k.theme!r}"
                for k in review.values()
            }
        problems += [
            f"{where}: {why}, which the service does not name"
            for t, why in wanted.items()
            if t not in service.themes
        ]
    return problems


def service_reads(service: Service, rules: Iterable[Rule], advice: OrderAdvice) -> Reads:
    """What the rules a service runs read: the rules of its themes (`rules`), and for an order
    service the value sets of the order advice's rules too."""
    valuesets: dict[str, str] = {}
    measures: dict[str, str] = {}
    age: str | None = None
    for rule in rules:
        where = f"rules/{rule.id}"
        requirements = list(_rule_requirements(rule))
        for vs in rule.valuesets + tuple(v for r in requirements for v in r.valuesets):
            valuesets.setdefault(vs, where)
        for measure in rule.measures + tuple(m for r in requirements for m in r.measures):
            measures.setdefault(measure, where)
        if age is None and any(
            r.age_over is not None or r.age_under is not None for r in requirements
        ):
            age = where
    for order_rule in advice.rules:
        if order_rule.id in service.order_rules:
            for vs in order_rule.episode_valuesets:
                valuesets.setdefault(vs, f"order-advice/{order_rule.id}")
    return Reads(valuesets, measures, age)


def _template_type(key: PrefetchKey) -> str:
    """The resource type a prefetch template fetches (`Observation?...`, `Patient/...`)."""
    return re.split(r"[/?]", key.template, maxsplit=1)[0]


def reads_problems(
    service: Service,
    reads: Reads,
    valuesets: Mapping[str, ValueSet],
    measures: Mapping[str, Measure],
    services_doc: Mapping[str, Any],
) -> list[str]:
    """Every value set, measure or age the service's rules read must be fetched by one of its
    prefetch keys, and every code placeholder of its templates must stand for a measure."""
    where = f"services.yaml: {service.id}"
    fetched = {_template_type(k) for k in service.prefetch.values()}
    problems = _valueset_problems(where, reads, valuesets, fetched, services_doc["record_types"])
    problems += _measure_problems(
        where, service, reads, measures, services_doc["code_placeholders"]
    )
    if reads.age is not None and "Patient" not in fetched:
        problems.append(
            f"{where}: {reads.age} reads the patient's age, but no prefetch key fetches Patient"
        )
    return problems


def _valueset_problems(
    where: str,
    reads: Reads,
    valuesets: Mapping[str, ValueSet],
    fetched: set[str],
    record_types: Mapping[str, list[str]],
) -> list[str]:
    """A value set read must be fetched by a key of a resource type its codes are recorded in."""
    by_system = {KNOWLEDGE_SYSTEMS[s]: set(t) for s, t in record_types.items()}
    problems = []
    for vs_id, rule in reads.valuesets.items():
        if vs_id not in valuesets:
            continue  # reported as an unknown value set
        types = set().union(*(by_system.get(c.system, set()) for c in valuesets[vs_id].codes))
        if types and not types & fetched:
            problems.append(
                f"{where}: {rule} reads value set {vs_id!r} from {', '.join(sorted(types))}, "
                "which none of its prefetch keys fetches"
            )
    return problems


def _measure_problems(
    where: str,
    service: Service,
    reads: Reads,
    measures: Mapping[str, Measure],
    code_placeholders: Mapping[str, str],
) -> list[str]:
    """A measure read must be fetched by a key whose template holds its category's placeholder;
    a placeholder in a template must stand for at least one measure read."""
    by_category = {category: name for name, category in code_placeholders.items()}
    templates = [k.template for k in service.prefetch.values()]
    problems = []
    for measure_id, rule in reads.measures.items():
        if measure_id not in measures:
            continue  # reported as an unknown measure
        placeholder = "{" + by_category.get(measures[measure_id].category, "?") + "}"
        if not any(placeholder in t for t in templates):
            problems.append(
                f"{where}: {rule} reads measure {measure_id!r}, which none of its prefetch keys "
                f"fetches (no template holds {placeholder})"
            )
    problems += [
        f"{where}: prefetch {key}: {{{name}}} stands for no measure the service's rules read"
        for key, p in service.prefetch.items()
        for name, codes in service.codes.items()
        if f"{{{name}}}" in p.template and not codes
    ]
    return problems


def suggestion_problems(catalog: OrderCatalog) -> list[str]:
    """Suggestions whose ServiceRequest, filled for an example call, the FHIR models reject."""
    context = OrderContext("example", "example")
    problems = []
    for suggestion in catalog.suggestions:
        if suggestion.order not in catalog.orders:
            continue  # reported by compile_orders
        rendered = render_suggestion(catalog, suggestion, "card", context, ["Condition/example"])
        for action in rendered["actions"]:
            if problem := fhir_problem(action["resource"]):
                problems.append(
                    f"orders.yaml: suggestion {suggestion.id}: its ServiceRequest is not valid "
                    f"FHIR R4 ({problem})"
                )
    return problems
