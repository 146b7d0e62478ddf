"""The orders the knowledge recognises in a hook's draft orders, and the rules about them,
compiled from knowledge/order-advice.yaml (data: every code names its source)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .codes import normalize_code

SYSTEMS = {
    "snomed": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
    "cpt": "http://www.ama-assn.org/go/cpt",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
}


@dataclass(frozen=True)
class OrderKind:
    id: str
    title: str
    resource_types: tuple[str, ...]
    imaging: bool
    #: (system URI, code) -> display
    codes: Mapping[tuple[str, str], str]


@dataclass(frozen=True)
class OrderRule:
    id: str
    title: str
    indicator: str
    kinds: tuple[str, ...]
    #: themes whose matches are the red flags the rule reads (rule 1) or that silence it (rule 2)
    red_flag_themes: tuple[str, ...]
    summary: str
    action: str
    says: str
    guidelines: tuple[str, ...]
    #: imaging: only drafts of these priorities count (a missing priority is routine)
    imaging_priorities: tuple[str, ...] = ()
    #: rule 2: the episode's value sets and its age limit
    episode_valuesets: tuple[str, ...] = ()
    episode_within_days: int | None = None
    override_reasons: tuple[tuple[str, str], ...] = ()
    override_system: str = ""
    suggestion_label: str = ""


@dataclass(frozen=True)
class OrderAdvice:
    kinds: Mapping[str, OrderKind] = field(default_factory=dict)
    rules: tuple[OrderRule, ...] = ()
    sources: Mapping[str, Any] = field(default_factory=dict)
    #: (system URI, normalised code) -> kind id
    index: Mapping[tuple[str, str], str] = field(default_factory=dict)


EMPTY_ADVICE = OrderAdvice()


def _kind(
    kid: str, doc: Mapping[str, Any], sources: Mapping[str, Any], problems: list[str]
) -> OrderKind:
    codes: dict[tuple[str, str], str] = {}
    for entry in doc["codes"]:
        if entry["source"] not in sources:
            problems.append(f"order-advice.yaml: {kid}: unknown source {entry['source']!r}")
        codes[(SYSTEMS[entry["system"]], str(entry["code"]))] = entry["display"]
    return OrderKind(
        kid, doc["title"], tuple(doc["resource_types"]), doc.get("imaging", False), codes
    )


def compile_order_advice(
    doc: Mapping[str, Any], theme_ids: Iterable[str], guidelines: Iterable[str]
) -> tuple[OrderAdvice, list[str]]:
    """The order kinds and rules, and every reference problem found."""
    problems: list[str] = []
    sources = doc["code_sources"]
    kinds = {kid: _kind(kid, k, sources, problems) for kid, k in doc["kinds"].items()}
    themes, known = set(theme_ids), set(guidelines)
    rules = []
    for rid, r in doc["rules"].items():
        where = f"order-advice.yaml: rule {rid}"
        problems += [f"{where}: unknown kind {k!r}" for k in r["kinds"] if k not in kinds]
        problems += [
            f"{where}: unknown theme {t!r}" for t in r["red_flag_themes"] if t not in themes
        ]
        problems += [f"{where}: unknown guideline {g!r}" for g in r["guidelines"] if g not in known]
        episode = r.get("episode", {})
        rules.append(
            OrderRule(
                id=rid,
                title=r["title"],
                indicator=r["indicator"],
                kinds=tuple(r["kinds"]),
                red_flag_themes=tuple(r["red_flag_themes"]),
                summary=r["summary"],
                action=" ".join(r["action"].split()),
                says=" ".join(r["says"].split()),
                guidelines=tuple(r["guidelines"]),
                imaging_priorities=tuple(r.get("imaging_priorities", ())),
                episode_valuesets=tuple(episode.get("valuesets", ())),
                episode_within_days=episode.get("within_days"),
                override_reasons=tuple((c, d) for c, d in r.get("override_reasons", {}).items()),
                override_system=r.get("override_system", ""),
                suggestion_label=r.get("suggestion_label", ""),
            )
        )
    index = {
        (system, normalize_code(system, code)): kind.id
        for kind in kinds.values()
        for system, code in kind.codes
    }
    return OrderAdvice(kinds, tuple(rules), sources, index), problems
