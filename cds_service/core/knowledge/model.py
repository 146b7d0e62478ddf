"""The knowledge model: the immutable lookups the engine reads, compiled from knowledge/."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..envelope import HookDef
from ..order_kinds import EMPTY_ADVICE, OrderAdvice
from ..orders import EMPTY_CATALOG, OrderCatalog


class KnowledgeError(Exception):
    """The knowledge is invalid; `problems` says where and why, one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


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
class Interpretations:
    """The Observation.interpretation codes a lab's own flag is read from (labs.yaml)."""

    critical_low: frozenset[str] = frozenset()
    low: frozenset[str] = frozenset()
    high: frozenset[str] = frozenset()
    normal: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Measure:
    id: str
    title: str
    codes: Mapping[str, str]
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
    #: the interpretation codes read as the lab's own flag
    interpretations: Interpretations = Interpretations()


@dataclass(frozen=True)
class Questions:
    source_quote: str
    article: tuple[str, ...]
    guideline: str | None
    guideline_questions: tuple[str, ...]
    #: the heading of the guideline's questions
    guideline_heading: str | None = None


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
    #: the prefetch keys this service asks for, as services.yaml `prefetch` names them
    prefetch_keys: tuple[str, ...] = ()
    #: "patient": cards about the patient; "orders": advice on the hook's draft orders
    advice: str = "patient"
    #: its prefetch keys, in the knowledge's order
    prefetch: Mapping[str, PrefetchKey] = field(default_factory=dict)
    #: each code placeholder of its templates (`measure_codes`) -> the LOINC codes it stands for:
    #: those of the measures its rules read, of the placeholder's category, in labs.yaml order
    codes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: the themes whose rules it runs, as services.yaml `themes` names them
    themes: tuple[str, ...] = ()
    #: the ids of the rules it runs: those whose theme it names (`KnowledgeBase.service_rules`
    #: gives the rules themselves, in card order)
    rules: tuple[str, ...] = ()
    #: the ids of the order-advice rules it runs (an `advice: orders` service: all of them)
    order_rules: tuple[str, ...] = ()


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
    #: clinicalStatus codes of a current condition, and of one that has come back
    active_clinical: frozenset[str] = frozenset()
    recurring_clinical: frozenset[str] = frozenset()
    #: verificationStatus codes shown without a qualifier
    unqualified_verification: frozenset[str] = frozenset()
    #: Observation.status codes shown as a qualifier
    qualified_observation_status: frozenset[str] = frozenset()
    #: medication status codes of a medicine being taken (counted as active)
    active_medication_status: frozenset[str] = frozenset()


@dataclass(frozen=True)
class KnownCodes:
    """Every code the knowledge reads (value sets and measures), as given and as `code_key`s:
    a record none of whose codes is among them can match nothing, and is passed over unread."""

    codes: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()


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
    #: every code of code_index and measure_index, for passing over records that hold none
    known_codes: KnownCodes = field(default=KnownCodes())
    version: str = field(default="")
    #: orders the cards suggest, and the suggestions (orders.yaml)
    orders: OrderCatalog = field(default=EMPTY_CATALOG)
    #: source attributes (about.yaml): developer, funding, validation, limitations, topics
    about: Mapping[str, Any] = field(default_factory=dict)
    #: the hook registry (hooks.yaml)
    hooks: Mapping[str, HookDef] = field(default_factory=dict)
    #: order kinds and the rules on draft orders (order-advice.yaml)
    order_advice: OrderAdvice = field(default=EMPTY_ADVICE)
    #: service id -> the rules it runs (those of its themes), in card order, derived once
    rules_of_service: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)

    def service_rules(self, service: Service) -> tuple[Rule, ...]:
        """The rules one service runs, in the knowledge's (card) order."""
        return self.rules_of_service[service.id]

    def measure_index_display(self, code: str) -> str:
        """The knowledge's display for a measure's LOINC code."""
        return self.measures[self.measure_index[code]].codes[code]
