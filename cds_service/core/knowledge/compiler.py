"""Compiling the parsed knowledge documents (knowledge/*.yaml) into a `KnowledgeBase`.

`compile_knowledge` takes the parsed documents (see `knowledge/README.md`) and returns a
`KnowledgeBase`, or raises `KnowledgeError` listing every problem found.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..codes import KNOWLEDGE_SYSTEMS, code_key, normalize_code
from ..envelope import ContextField, HookDef
from ..order_kinds import EMPTY_ADVICE, OrderAdvice, compile_order_advice
from ..orders import EMPTY_CATALOG, compile_orders
from .checks import (
    Reads,
    criteria_problems,
    expansion_problems,
    policy_problems,
    prefetch_problems,
    reads_problems,
    reference_problems,
    schema_problems,
    service_problems,
    service_reads,
    service_theme_problems,
    suggestion_problems,
    summary_problems,
    topic_problems,
)
from .model import (
    Article,
    Coding,
    Criterion,
    Episodes,
    Guideline,
    Interpretations,
    KnowledgeBase,
    KnowledgeError,
    KnownCodes,
    Measure,
    Policy,
    PrefetchKey,
    Questions,
    Requirement,
    ReviewKind,
    Rule,
    RuleSource,
    Service,
    Theme,
    ValueSet,
)

#: The knowledge's one-document files (`NAME.yaml`), each checked against `schema/NAME.schema.yaml`.
SINGLE_FILES = (
    "sources",
    "policy",
    "labs",
    "themes",
    "services",
    "criteria",
    "orders",
    "about",
    "hooks",
    "order-advice",
)


def _compile_valueset(doc: Mapping[str, Any], expansion: Mapping[str, Any]) -> ValueSet:
    codes: list[Coding] = []
    for entry in doc["include"]:
        system = KNOWLEDGE_SYSTEMS[entry["system"]]
        code = normalize_code(system, entry["code"])
        codes.append(Coding(system, code, entry["display"]))
        if entry.get("descendants"):
            for child_code, child_display in expansion.get(entry["code"], []):
                codes.append(Coding(system, normalize_code(system, child_code), child_display))
    return ValueSet(
        id=doc["id"],
        title=doc["title"],
        group=doc["group"],
        codes=tuple(dict.fromkeys(codes)),
        excluded_routes=frozenset(
            (KNOWLEDGE_SYSTEMS[r["system"]], r["code"]) for r in doc.get("excluded_routes", ())
        ),
    )


_CRITERION_KEYS = ("title", "left_out", "source")


def _compile_criterion(
    criterion_id: str,
    doc: Mapping[str, Any],
    criteria: Mapping[str, Criterion],
    problems: list[str],
) -> Criterion:
    body = {k: v for k, v in doc.items() if k not in _CRITERION_KEYS}
    where = f"criteria.yaml: {criterion_id}"
    requirement = _compile_requirement(body, criteria, problems, where) or Requirement()
    return Criterion(
        id=criterion_id,
        title=doc["title"],
        requirement=dataclasses.replace(requirement, criterion=criterion_id),
        quote=doc["source"].get("quote", ""),
        guideline=doc["source"].get("guideline"),
    )


def _compile_requirement(
    doc: Mapping[str, Any], criteria: Mapping[str, Criterion], problems: list[str], where: str
) -> Requirement | None:
    if "criterion" in doc:
        criterion = criteria.get(doc["criterion"])
        if criterion is None:
            problems.append(f"{where}: unknown criterion {doc['criterion']!r}")
            return None
        return criterion.requirement
    if "any_of" in doc:
        parts = [_compile_requirement(d, criteria, problems, where) for d in doc["any_of"]]
        return Requirement(any_of=tuple(p for p in parts if p is not None))
    if "age" in doc:
        return Requirement(age_over=doc["age"].get("over"), age_under=doc["age"].get("under"))
    if "measure" in doc:
        return Requirement(
            measures=tuple(doc["measure"]),
            direction=doc["direction"],
            within_days=doc["within_days"],
        )
    return Requirement(
        valuesets=tuple(doc["valuesets"]),
        within_days=doc["within_days"],
        or_active=doc.get("or_active", False),
        new=doc.get("new", False),
        min_age_days=doc.get("min_age_days"),
        include_past=doc.get("include_past", False),
    )


def _compile_requirements(
    docs: Any, criteria: Mapping[str, Criterion], problems: list[str], where: str
) -> tuple[Requirement, ...]:
    compiled = [_compile_requirement(d, criteria, problems, where) for d in docs or ()]
    return tuple(r for r in compiled if r is not None)


def _compile_rule(
    doc: Mapping[str, Any], criteria: Mapping[str, Criterion], problems: list[str]
) -> Rule:
    finding = doc["finding"]
    where = f"rules/{doc['id']}"
    source = doc["source"]
    return Rule(
        id=doc["id"],
        title=doc["title"],
        theme=doc["theme"],
        rank=doc["rank"],
        summary=doc["summary"],
        valuesets=tuple(finding.get("valuesets", ())),
        measures=tuple(finding.get("measure", ())),
        direction=finding.get("direction"),
        new_within_days=finding.get("new_within_days"),
        min_age_days=finding.get("min_age_days"),
        older=finding.get("older", "ignore"),
        active_for_days=finding.get("active_for_days"),
        or_recurring=finding.get("or_recurring", False),
        new_by_recording=finding.get("new_by_recording", False),
        episodes=Episodes(**finding["or_episodes"]) if "or_episodes" in finding else None,
        requires=_compile_requirements(doc["requires"], criteria, problems, where),
        unless_themes=tuple(doc.get("unless_themes", ())),
        action=" ".join(doc["action"].split()),
        source=RuleSource(
            quote=source.get("quote"),
            guideline=source.get("guideline"),
            window=source.get("window"),
            says=" ".join(source["says"].split()) if "says" in source else None,
            evidence=" ".join(source["evidence"].split()) if "evidence" in source else None,
        ),
        include_past=finding.get("include_past", False),
        none_of=_compile_requirements(doc.get("none_of"), criteria, problems, where),
        explain=_compile_requirements(doc.get("explain"), criteria, problems, where),
    )


def _compile_interpretations(doc: Mapping[str, Any]) -> Interpretations:
    return Interpretations(**{flag: frozenset(codes) for flag, codes in doc.items()})


def _compile_measure(
    measure_id: str, doc: Mapping[str, Any], interpretations: Interpretations
) -> Measure:
    return Measure(
        id=measure_id,
        title=doc["title"],
        codes=MappingProxyType({c["code"]: c["display"] for c in doc["codes"]}),
        units=MappingProxyType({u.lower(): _factor(f) for u, f in doc["units"].items()}),
        unit_offsets=MappingProxyType(
            {u.lower(): float(f["offset"]) for u, f in doc["units"].items() if type(f) is dict}
        ),
        category=doc.get("category", "laboratory"),
        unitless=doc.get("unitless", False),
        default_low=float(doc["default_range"]["low"]),
        default_high=float(doc["default_range"]["high"]),
        range_source=doc["default_range"]["source"],
        code_properties=MappingProxyType(
            {c["code"]: c["property"] for c in doc["codes"] if "property" in c}
        ),
        unit_properties=MappingProxyType(
            {u.lower(): kind for u, kind in doc.get("unit_properties", {}).items()}
        ),
        critical_below=_critical(doc, "below"),
        critical_source=_critical(doc, "source"),
        interpretations=interpretations,
    )


def _factor(unit: Any) -> float:
    """A unit's factor to the canonical unit: a number, or {factor, offset} for an affine one."""
    return float(unit["factor"] if type(unit) is dict else unit)


def _critical(doc: Mapping[str, Any], key: str) -> Any:
    critical = doc.get("critical_low")
    return None if critical is None else critical[key]


def _compile_theme(
    theme_id: str, doc: Mapping[str, Any], order: int, reasons: Mapping[str, Coding]
) -> Theme:
    q = doc.get("questions")
    topic = doc.get("topic")
    return Theme(
        id=theme_id,
        indicator=doc["indicator"],
        title=doc["title"],
        summary=doc["summary"],
        findings_heading=doc["findings_heading"],
        context_heading=doc["context_heading"],
        override_reasons=tuple(reasons[r] for r in doc["override_reasons"] if r in reasons),
        topic=Coding(topic["system"], topic["code"], topic["display"]) if topic else None,
        questions=Questions(
            source_quote=q["source_quote"],
            article=tuple(q["article"]),
            guideline=q.get("guideline"),
            guideline_questions=tuple(q.get("guideline_questions", ())),
            guideline_heading=q.get("guideline_heading"),
        )
        if q
        else None,
        order=order,
    )


def _compile_policy(doc: Mapping[str, Any]) -> Policy:
    return Policy(
        excluded_verification=frozenset(doc["conditions"]["excluded_verification"]),
        excluded_clinical=frozenset(doc["conditions"]["excluded_clinical"]),
        abatement_ends_condition=doc["conditions"]["abatement_ends_condition"],
        excluded_observation_status=frozenset(doc["observations"]["excluded_status"]),
        absent_values=frozenset((v["system"], v["code"]) for v in doc["absent_values"]),
        unknown_values=frozenset((v["system"], v["code"]) for v in doc["unknown_values"]),
        negative_interpretations=frozenset(doc["negative_interpretations"]),
        future_tolerance_hours=doc["future_tolerance_hours"],
        earliest_clinical_year=doc["earliest_clinical_year"],
        excluded_medication_status=frozenset(doc["medications"]["excluded_status"]),
        ended_medication_status=frozenset(doc["medications"]["ended_status"]),
        medication_recent_days=doc["medications"]["recent_days"],
        active_clinical=frozenset(doc["conditions"]["active_clinical"]),
        recurring_clinical=frozenset(doc["conditions"]["recurring_clinical"]),
        unqualified_verification=frozenset(doc["conditions"]["unqualified_verification"]),
        qualified_observation_status=frozenset(doc["observations"]["qualified_status"]),
        active_medication_status=frozenset(doc["medications"]["active_status"]),
    )


def compile_knowledge(docs: Mapping[str, Any]) -> KnowledgeBase:
    """Validate and compile parsed knowledge documents into a `KnowledgeBase`."""
    schemas = docs["schemas"]
    problems: list[str] = []
    for name in SINGLE_FILES:
        if name in docs:
            problems += schema_problems(f"{name}.yaml", docs[name], schemas[name])
    for name, doc in docs["valuesets"].items():
        problems += schema_problems(f"valuesets/{name}", doc, schemas["valueset"])
    for name, doc in docs["rules"].items():
        problems += schema_problems(f"rules/{name}", doc, schemas["rule"])
    if problems:
        raise KnowledgeError(problems)

    expansions = docs["expansions"].get("valuesets", {})
    for name, doc in docs["valuesets"].items():
        if f"{doc['id']}.yaml" != name:
            problems.append(f"valuesets/{name}: id {doc['id']!r} does not match the file name")
        problems += expansion_problems(doc, expansions.get(doc["id"], {}))
    valuesets = {
        doc["id"]: _compile_valueset(doc, expansions.get(doc["id"], {}))
        for doc in docs["valuesets"].values()
    }

    policy_doc = docs["policy"]
    problems += policy_problems(policy_doc)
    reasons = {
        code: Coding(policy_doc["override_reason_system"], code, display)
        for code, display in policy_doc["override_reasons"].items()
    }
    theme_docs = docs["themes"]["themes"]
    themes = {
        tid: _compile_theme(tid, tdoc, order, reasons)
        for order, (tid, tdoc) in enumerate(theme_docs.items())
    }
    for tid, tdoc in theme_docs.items():
        problems += [
            f"themes.yaml: {tid}: unknown override reason {r!r}"
            for r in tdoc["override_reasons"]
            if r not in reasons
        ]

    flags = _compile_interpretations(docs["labs"]["interpretations"])
    measures = {mid: _compile_measure(mid, m, flags) for mid, m in docs["labs"]["measures"].items()}
    src = docs["sources"]
    guidelines = {
        gid: Guideline(
            gid,
            g["short"],
            g["title"],
            g["publisher"],
            g["year"],
            " ".join(g["says"].split()),
            g.get("url"),
        )
        for gid, g in src["guidelines"].items()
    }
    article_text = docs["article_text"]
    art = src["article"]
    article = Article(
        art["id"],
        art["title"],
        art["kind"],
        art["medical_reviewer"],
        art["last_review"],
        article_text,
    )
    if hashlib.sha256(article_text.encode()).hexdigest() != art["text_sha256"]:
        problems.append("sources.yaml: the article text does not match text_sha256")

    criteria: dict[str, Criterion] = {}
    for cid, cdoc in docs["criteria"]["criteria"].items():
        criteria[cid] = _compile_criterion(cid, cdoc, criteria, problems)
    problems += criteria_problems(criteria, valuesets, guidelines, article_text)
    rules = [
        _compile_rule(doc, criteria, problems)
        for doc in docs["rules"].values()
        if doc.get("enabled", True)
    ]
    problems += reference_problems(rules, valuesets, themes, measures, guidelines, article_text)
    review = {
        kind: ReviewKind(
            kind,
            r["theme"],
            r["summary"],
            " ".join(r["action"].split()),
            " ".join(r["why"].split()),
        )
        for kind, r in docs["themes"]["review"].items()
    }
    problems += [
        f"themes.yaml: review {r.kind}: unknown theme {r.theme!r}"
        for r in review.values()
        if r.theme not in themes
    ]
    problems += summary_problems(rules, themes)

    prefetch = {
        key: PrefetchKey(key, p["template"], p.get("since_days"), p["required"])
        for key, p in docs["services"]["prefetch"].items()
    }
    problems += prefetch_problems(prefetch)
    hooks = _compile_hooks(docs["hooks"]) if "hooks" in docs else {}
    advice = EMPTY_ADVICE
    if "order-advice" in docs:
        advice, found = compile_order_advice(docs["order-advice"], set(themes), guidelines)
        problems += found
    services = _compile_services(
        docs["services"], prefetch, rules, advice, valuesets, measures, problems
    )
    problems += service_problems(services, hooks, prefetch)
    problems += service_theme_problems(services, themes, review, rules, advice)
    orders = EMPTY_CATALOG
    if "orders" in docs:
        orders, found = compile_orders(docs["orders"], (r.id for r in rules), measures, guidelines)
        problems += found + suggestion_problems(orders)
    about = docs.get("about", {})
    problems += topic_problems(themes, about)
    if problems:
        raise KnowledgeError(problems)

    code_index: dict[tuple[str, str], set[str]] = {}
    for vs in valuesets.values():
        for coding in vs.codes:
            code_index.setdefault((coding.system, coding.code), set()).add(vs.id)
    measure_index = {code: m.id for m in measures.values() for code in m.codes}
    codes = frozenset({code for _, code in code_index} | set(measure_index))
    rules.sort(key=lambda r: (themes[r.theme].order, r.rank, r.id))
    service_rules = {sid: _rules_named(rules, s.rules) for sid, s in services.items()}

    return KnowledgeBase(
        valuesets=MappingProxyType(valuesets),
        rules=tuple(rules),
        themes=MappingProxyType(themes),
        measures=MappingProxyType(measures),
        services=MappingProxyType(services),
        rules_of_service=MappingProxyType(service_rules),
        prefetch=MappingProxyType(prefetch),
        policy=_compile_policy(policy_doc),
        article=article,
        guidelines=MappingProxyType(guidelines),
        context_line=docs["themes"]["context_line"],
        criteria=MappingProxyType(criteria),
        review=MappingProxyType(review),
        code_index=MappingProxyType({k: frozenset(v) for k, v in code_index.items()}),
        measure_index=MappingProxyType(measure_index),
        known_codes=KnownCodes(codes, frozenset(code_key(code) for code in codes)),
        version=_content_version(docs),
        orders=orders,
        about=MappingProxyType(dict(about)),
        hooks=MappingProxyType(hooks),
        order_advice=advice,
    )


def _compile_services(
    doc: Mapping[str, Any],
    prefetch: Mapping[str, PrefetchKey],
    rules: list[Rule],
    advice: OrderAdvice,
    valuesets: Mapping[str, ValueSet],
    measures: Mapping[str, Measure],
    problems: list[str],
) -> dict[str, Service]:
    """The services of services.yaml, each with the rules of its themes and the codes its
    placeholders stand for; a service whose prefetch keys do not fetch what its rules read is a
    problem."""
    services = {}
    for service_doc in doc["services"]:
        service = _compile_service(service_doc, prefetch, rules, advice)
        reads = service_reads(service, _rules_named(rules, service.rules), advice)
        codes = _codes(reads, measures, doc["code_placeholders"])
        service = dataclasses.replace(service, codes=codes)
        problems += reads_problems(service, reads, valuesets, measures, doc)
        services[service.id] = service
    if len(services) != len(doc["services"]):
        problems.append("services.yaml: duplicate service id")
    return services


def _compile_service(
    doc: Mapping[str, Any],
    prefetch: Mapping[str, PrefetchKey],
    rules: list[Rule],
    advice: OrderAdvice,
) -> Service:
    """A service of services.yaml, its code placeholders not yet derived (see `_codes`)."""
    usage = doc.get("usage_requirements")
    themes = tuple(doc["themes"])
    orders = doc.get("advice", "patient") == "orders"
    return Service(
        doc["id"],
        doc["hook"],
        doc["title"],
        " ".join(doc["description"].split()),
        " ".join(usage.split()) if usage else None,
        tuple(doc["prefetch"]),
        doc.get("advice", "patient"),
        prefetch=MappingProxyType({k: p for k, p in prefetch.items() if k in doc["prefetch"]}),
        themes=themes,
        rules=tuple(r.id for r in rules if r.theme in themes),
        order_rules=tuple(r.id for r in advice.rules) if orders else (),
    )


def _rules_named(rules: list[Rule], ids: tuple[str, ...]) -> tuple[Rule, ...]:
    """The rules of `ids`, in the order of `rules`."""
    wanted = frozenset(ids)
    return tuple(r for r in rules if r.id in wanted)


def _codes(
    reads: Reads, measures: Mapping[str, Measure], placeholders: Mapping[str, str]
) -> Mapping[str, tuple[str, ...]]:
    """Each code placeholder -> the LOINC codes of the measures of its category the service's
    rules read, in labs.yaml order."""
    return MappingProxyType(
        {
            name: tuple(
                code
                for m in measures.values()
                if m.category == category and m.id in reads.measures
                for code in m.codes
            )
            for name, category in placeholders.items()
        }
    )


def _compile_hooks(doc: Mapping[str, Any]) -> dict[str, HookDef]:
    """The hook registry: each hook's context fields, prefetch tokens and data fields."""
    return {
        hid: HookDef(
            hid,
            MappingProxyType(
                {n: ContextField(f["required"], f["kind"]) for n, f in h["context"].items()}
            ),
            tuple(h["prefetch_tokens"]),
            MappingProxyType(dict(h.get("data", {}))),
        )
        for hid, h in doc["hooks"].items()
    }


def _content_version(docs: Mapping[str, Any]) -> str:
    """A short hash of the knowledge content, recorded with every answer."""
    material = {k: v for k, v in docs.items() if k != "schemas"}
    digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]
