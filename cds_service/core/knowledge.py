"""The clinical knowledge, compiled once into immutable lookups the engine reads.

`compile_knowledge` takes the parsed knowledge documents (see `knowledge/README.md`) and
returns a `KnowledgeBase`, or raises `KnowledgeError` listing every problem found.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jsonschema

from .codes import KNOWLEDGE_SYSTEMS, normalize_code
from .envelope import ContextField, HookDef
from .order_kinds import EMPTY_ADVICE, OrderAdvice, compile_order_advice
from .orders import EMPTY_CATALOG, OrderCatalog, compile_orders

INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}


class KnowledgeError(Exception):
    """The knowledge is invalid; `problems` says where and why, one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


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

@dataclass(frozen=True)
class Coding:
    system: str
    code: str
    display: str


@dataclass(frozen=True)
class ValueSet:
    id: str
    title: str
    group: str
    article_wording: str
    codes: tuple[Coding, ...]
    #: (system, code) of routes that take a medicine out of this value set (inhaled, topical)
    excluded_routes: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Requirement:
    """Something else a rule needs, met by findings, results or the patient's age.

    One of: any of `valuesets` (recent enough, or if allowed active; `new` reads the onset, not
    any date; `min_age_days` asks that it be known that long; `include_past` counts records that
    are over, for "a history of"); the latest result of a measure reading `direction`; an age
    (`age_over` / `age_under`, in whole years); or `any_of` several requirements.
    """

    valuesets: tuple[str, ...] = ()
    within_days: int | None = None
    or_active: bool = False
    criterion: str | None = None  # the shared criterion it comes from, if any
    new: bool = False
    min_age_days: int | None = None
    include_past: bool = False
    measures: tuple[str, ...] = ()
    direction: str | None = None
    age_over: int | None = None
    age_under: int | None = None
    any_of: tuple[Requirement, ...] = ()

    def all_valuesets(self) -> tuple[str, ...]:
        """The value sets this requirement names, its alternatives' included."""
        return self.valuesets + tuple(v for r in self.any_of for v in r.all_valuesets())

    def all_measures(self) -> tuple[str, ...]:
        return self.measures + tuple(m for r in self.any_of for m in r.all_measures())


@dataclass(frozen=True)
class Criterion:
    """A named requirement of criteria.yaml, shared by the rules that reference it."""

    id: str
    title: str
    requirement: Requirement
    quote: str
    guideline: str | None


@dataclass(frozen=True)
class ReviewKind:
    """How records to verify or read (not counted as present) are shown: theme, words, why."""

    kind: str
    theme: str
    summary: str  # with {concept}
    action: str
    why: str


@dataclass(frozen=True)
class Episodes:
    """Several separate episodes: `count` within `within_days`, each `apart_days` after the last."""

    count: int
    within_days: int
    apart_days: int


@dataclass(frozen=True)
class RuleSource:
    quote: str | None  # the article's sentence; None for a rule the article does not name
    guideline: str | None = None
    window: str | None = None
    #: what the guideline says for this rule, and the strength of its evidence (where known)
    says: str | None = None
    evidence: str | None = None


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    theme: str
    rank: int
    summary: str
    valuesets: tuple[str, ...]
    measures: tuple[str, ...]
    direction: str | None
    new_within_days: int | None
    min_age_days: int | None
    older: str
    active_for_days: int | None
    or_recurring: bool
    new_by_recording: bool
    episodes: Episodes | None
    requires: tuple[Requirement, ...]
    unless_themes: tuple[str, ...]
    action: str
    source: RuleSource
    include_past: bool = False  # a record that is over (remission, resolved) triggers too
    none_of: tuple[Requirement, ...] = ()  # the rule is quiet when any of these is met
    explain: tuple[Requirement, ...] = ()  # shown with the rule when met; never required


@dataclass(frozen=True)
class Measure:
    id: str
    title: str
    codes: Mapping[str, str]
    canonical_unit: str
    units: Mapping[str, float]
    unitless: bool
    default_low: float
    default_high: float
    range_source: str
    #: LOINC code -> its property ("molar", "mass", "score"); a unit of another property is
    #: never converted.
    code_properties: Mapping[str, str] = field(default_factory=dict)
    #: unit (lower case) -> the property it measures.
    unit_properties: Mapping[str, str] = field(default_factory=dict)
    #: a canonical value below this is critically low (None: no critical limit).
    critical_below: float | None = None
    critical_source: str | None = None
    #: unit (lower case) -> offset added before the factor (degrees Fahrenheit to Celsius)
    unit_offsets: Mapping[str, float] = field(default_factory=dict)
    #: "laboratory" or "vital-signs": which prefetch query asks for it
    category: str = "laboratory"


@dataclass(frozen=True)
class Questions:
    source_quote: str
    article: tuple[str, ...]
    guideline: str | None
    guideline_questions: tuple[str, ...]


@dataclass(frozen=True)
class Theme:
    id: str
    indicator: str
    title: str
    summary: str
    findings_heading: str
    context_heading: str
    override_reasons: tuple[Coding, ...]
    topic: Coding | None
    questions: Questions | None
    order: int


@dataclass(frozen=True)
class PrefetchKey:
    key: str
    template: str
    since_days: int | None
    required: bool


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    usage_requirements: str | None
    #: the prefetch keys this service asks for (services.yaml `prefetch`; default all)
    prefetch_keys: tuple[str, ...] = ()
    #: "patient": cards about the patient; "orders": advice on the hook's draft orders
    advice: str = "patient"


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    kind: str
    medical_reviewer: str
    last_review: str
    text: str


@dataclass(frozen=True)
class Guideline:
    id: str
    short: str
    title: str
    publisher: str
    year: int
    says: str
    url: str | None = None


@dataclass(frozen=True)
class Policy:
    excluded_verification: frozenset[str]
    excluded_clinical: frozenset[str]
    abatement_ends_condition: bool
    excluded_observation_status: frozenset[str]
    absent_values: frozenset[tuple[str, str]]
    unknown_values: frozenset[tuple[str, str]]
    negative_interpretations: frozenset[str]
    future_tolerance_hours: int
    earliest_clinical_year: int
    excluded_medication_status: frozenset[str] = frozenset()
    ended_medication_status: frozenset[str] = frozenset()
    medication_recent_days: int = 90


@dataclass(frozen=True)
class KnowledgeBase:
    valuesets: Mapping[str, ValueSet]
    rules: tuple[Rule, ...]
    themes: Mapping[str, Theme]
    measures: Mapping[str, Measure]
    services: Mapping[str, Service]
    prefetch: Mapping[str, PrefetchKey]
    policy: Policy
    article: Article
    guidelines: Mapping[str, Guideline]
    context_line: str
    criteria: Mapping[str, Criterion]
    review: Mapping[str, ReviewKind]
    #: (system URI, normalised code) -> ids of the value sets holding it
    code_index: Mapping[tuple[str, str], frozenset[str]]
    #: LOINC code -> measure id
    measure_index: Mapping[str, str]
    version: str = field(default="")
    #: orders the cards suggest, and the suggestions (orders.yaml)
    orders: OrderCatalog = field(default=EMPTY_CATALOG)
    #: source attributes (about.yaml): developer, funding, validation, limitations, topics
    about: Mapping[str, Any] = field(default_factory=dict)
    #: the hook registry (hooks.yaml)
    hooks: Mapping[str, HookDef] = field(default_factory=dict)
    #: order kinds and the rules on draft orders (order-advice.yaml)
    order_advice: OrderAdvice = field(default=EMPTY_ADVICE)

    def service_prefetch(self, service: Service) -> dict[str, PrefetchKey]:
        """The prefetch keys one service asks for, in the knowledge's order."""
        return {k: p for k, p in self.prefetch.items() if k in service.prefetch_keys}

    def measure_index_display(self, code: str) -> str:
        """The knowledge's display for a measure's LOINC code."""
        return self.measures[self.measure_index[code]].codes[code]


def _schema_problems(name: str, document: Any, schema: Mapping[str, Any]) -> list[str]:
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
        article_wording=doc["article_wording"],
        codes=tuple(dict.fromkeys(codes)),
        excluded_routes=frozenset(
            (KNOWLEDGE_SYSTEMS[r["system"]], r["code"]) for r in doc.get("excluded_routes", ())
        ),
    )


def _expansion_problems(vs_doc: Mapping[str, Any], expansion: Mapping[str, Any]) -> list[str]:
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


def _compile_measure(measure_id: str, doc: Mapping[str, Any]) -> Measure:
    return Measure(
        id=measure_id,
        title=doc["title"],
        codes=MappingProxyType({c["code"]: c["display"] for c in doc["codes"]}),
        canonical_unit=doc["canonical_unit"],
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
    )


def _reference_problems(
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


def _criteria_problems(
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


def _summary_problems(rules: list[Rule], themes: Mapping[str, Theme]) -> list[str]:
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


def _prefetch_problems(prefetch: Mapping[str, PrefetchKey]) -> list[str]:
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


def compile_knowledge(docs: Mapping[str, Any]) -> KnowledgeBase:
    """Validate and compile parsed knowledge documents into a `KnowledgeBase`."""
    schemas = docs["schemas"]
    problems: list[str] = []
    for name in SINGLE_FILES:
        if name in docs:
            problems += _schema_problems(f"{name}.yaml", docs[name], schemas[name])
    for name, doc in docs["valuesets"].items():
        problems += _schema_problems(f"valuesets/{name}", doc, schemas["valueset"])
    for name, doc in docs["rules"].items():
        problems += _schema_problems(f"rules/{name}", doc, schemas["rule"])
    if problems:
        raise KnowledgeError(problems)

    expansions = docs["expansions"].get("valuesets", {})
    for name, doc in docs["valuesets"].items():
        if f"{doc['id']}.yaml" != name:
            problems.append(f"valuesets/{name}: id {doc['id']!r} does not match the file name")
        problems += _expansion_problems(doc, expansions.get(doc["id"], {}))
    valuesets = {
        doc["id"]: _compile_valueset(doc, expansions.get(doc["id"], {}))
        for doc in docs["valuesets"].values()
    }

    policy_doc = docs["policy"]
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

    measures = {mid: _compile_measure(mid, m) for mid, m in docs["labs"]["measures"].items()}
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
    problems += _criteria_problems(criteria, valuesets, guidelines, article_text)
    rules = [
        _compile_rule(doc, criteria, problems)
        for doc in docs["rules"].values()
        if doc.get("enabled", True)
    ]
    problems += _reference_problems(rules, valuesets, themes, measures, guidelines, article_text)
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
    problems += _summary_problems(rules, themes)

    prefetch = {
        key: PrefetchKey(key, p["template"], p.get("since_days"), p["required"])
        for key, p in docs["services"]["prefetch"].items()
    }
    problems += _prefetch_problems(prefetch)
    hooks = compile_hooks(docs["hooks"]) if "hooks" in docs else {}
    services = {
        s["id"]: Service(
            s["id"],
            s["hook"],
            s["title"],
            " ".join(s["description"].split()),
            " ".join(s["usage_requirements"].split()) if s.get("usage_requirements") else None,
            tuple(s.get("prefetch", prefetch)),
            s.get("advice", "patient"),
        )
        for s in docs["services"]["services"]
    }
    if len(services) != len(docs["services"]["services"]):
        problems.append("services.yaml: duplicate service id")
    problems += _service_problems(services, hooks, prefetch)
    orders = EMPTY_CATALOG
    if "orders" in docs:
        orders, found = compile_orders(docs["orders"], (r.id for r in rules), measures, guidelines)
        problems += found
    about = docs.get("about", {})
    problems += _topic_problems(themes, about)
    advice = EMPTY_ADVICE
    if "order-advice" in docs:
        advice, found = compile_order_advice(docs["order-advice"], set(themes), guidelines)
        problems += found
    if problems:
        raise KnowledgeError(problems)

    code_index: dict[tuple[str, str], set[str]] = {}
    for vs in valuesets.values():
        for coding in vs.codes:
            code_index.setdefault((coding.system, coding.code), set()).add(vs.id)
    measure_index = {code: m.id for m in measures.values() for code in m.codes}
    rules.sort(key=lambda r: (themes[r.theme].order, r.rank, r.id))

    return KnowledgeBase(
        valuesets=MappingProxyType(valuesets),
        rules=tuple(rules),
        themes=MappingProxyType(themes),
        measures=MappingProxyType(measures),
        services=MappingProxyType(services),
        prefetch=MappingProxyType(prefetch),
        policy=_compile_policy(policy_doc),
        article=article,
        guidelines=MappingProxyType(guidelines),
        context_line=docs["themes"]["context_line"],
        criteria=MappingProxyType(criteria),
        review=MappingProxyType(review),
        code_index=MappingProxyType({k: frozenset(v) for k, v in code_index.items()}),
        measure_index=MappingProxyType(measure_index),
        version=_content_version(docs),
        orders=orders,
        about=MappingProxyType(dict(about)),
        hooks=MappingProxyType(hooks),
        order_advice=advice,
    )


def compile_hooks(doc: Mapping[str, Any]) -> dict[str, HookDef]:
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


def _service_problems(
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


def _topic_problems(themes: Mapping[str, Theme], about: Mapping[str, Any]) -> list[str]:
    """Every theme's topic must be a concept of the card-topic CodeSystem in about.yaml."""
    system = about.get("topic_system")
    if not system:
        return []
    return [
        f"themes.yaml: {t.id}: topic {t.topic.code!r} is not in {system['url']}"
        for t in themes.values()
        if t.topic and (t.topic.system != system["url"] or t.topic.code not in system["concepts"])
    ]


def _content_version(docs: Mapping[str, Any]) -> str:
    """A short hash of the knowledge content, recorded with every answer."""
    material = {k: v for k, v in docs.items() if k != "schemas"}
    digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]
