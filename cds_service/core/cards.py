"""Render rule matches as CDS Hooks cards: one card per theme, each with its evidence and source.

Text from the patient's record (displays) is escaped so that it can never inject Markdown links
or HTML into a card; all other text comes from the reviewed knowledge.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .codes import system_name
from .findings import Dated, Finding, Measurement
from .knowledge import Coding, KnowledgeBase, Rule, Theme
from .memo import remember
from .orders import OrderCatalog, OrderContext, Suggestion, render_suggestion, selection_behavior
from .rules import Evaluation, Evidence, Match, OlderFinding

ICON_PATH = "/about/icon.png"
ABOUT_PATH = "/about/rules/"
MAX_EVIDENCE_LINES = 12
MAX_REFERENCES = 4  # references shown on one finding's line
MAX_CONTEXT = 8  # findings shown in a card's context line
_MARKDOWN_SPECIAL = "\\`*_[]|~"
#: HTML's `&` and `<` as entities, and a backslash before each Markdown special
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", **{c: "\\" + c for c in _MARKDOWN_SPECIAL}})
_TO_ESCAPE = frozenset("&<" + _MARKDOWN_SPECIAL)


def escape_text(text: str, limit: int = 160) -> str:
    """Plain text from a record, made inert for GitHub-flavoured Markdown."""
    text = " ".join(str(text).split())[:limit]
    return text if _TO_ESCAPE.isdisjoint(text) else text.translate(_ESCAPES)


def _coding_text(coding: Coding) -> str:
    return (
        f"{escape_text(coding.display)} ({system_name(coding.system)} {escape_text(coding.code)})"
    )


def _dates_text(dates: tuple[Dated, ...]) -> str:
    if not dates:
        return "date not recorded"
    return ", ".join([f"{d.kind} {d.day.isoformat()}" for d in dates])


def references_of(item: Evidence) -> tuple[str, ...]:
    """The FHIR references a piece of evidence rests on."""
    return item.references if isinstance(item, Finding) else (item.reference,)


def evidence_text(item: Evidence) -> str:
    """One line of evidence: finding, code, system, date, qualifier and the resource."""
    if isinstance(item, Finding):
        parts = [_coding_text(item.coding), _dates_text(item.dates)]
        if item.qualifier:
            parts.append(item.qualifier)
        parts += [escape_text(note) for note in item.notes]
        references = item.references
    else:
        reading = item.reading
        value = f"{reading.value:g} {escape_text(reading.unit)}".strip()
        flag = f"{reading.flag}, {reading.basis}"
        if reading.range_text:
            flag += f"; reference {escape_text(reading.range_text)}"
        parts = [f"{_coding_text(item.coding)}: **{value}** ({flag})", _dates_text(item.dates)]
        references = (item.reference,)
    shown = ", ".join([escape_text(r, 80) for r in references[:MAX_REFERENCES]])
    if len(references) > MAX_REFERENCES:
        shown += f" and {len(references) - MAX_REFERENCES} more"
    return ", ".join(parts) + f" · {shown}"


def _summary(theme: Theme, matches: list[Match]) -> str:
    more = f" (+{len(matches) - 1} more)" if len(matches) > 1 else ""
    return theme.summary.format(top=matches[0].rule.summary, more=more)


def concept_name(kb: KnowledgeBase, rule: Rule, item: Evidence) -> str:
    """What the finding is, in the knowledge's words (the value set or measure title)."""
    if isinstance(item, Measurement):
        return kb.measures[item.measure].title
    for vs_id in rule.valuesets:
        if vs_id in item.valuesets:
            return kb.valuesets[vs_id].title
    return rule.title


def _text_of(item: Evidence, texts: dict[int, str]) -> str:
    """The item's evidence line, written once per call (`texts` by the id of a live item)."""
    text = texts.get(id(item))
    if text is None:
        text = texts[id(item)] = evidence_text(item)
    return text


def shown_references(item: Evidence) -> tuple[str, ...]:
    """The references an evidence line names (the rest it counts as "and N more")."""
    return references_of(item)[:MAX_REFERENCES]


def _evidence_section(
    kb: KnowledgeBase,
    theme: Theme,
    matches: list[Match],
    texts: dict[int, str],
    shown_refs: list[str],
) -> list[str]:
    lines = [f"**{theme.findings_heading}**", ""]
    # a record that sets off several rules of the card is one line, under the first (most serious)
    first_rule: dict[str, tuple[Rule, Evidence]] = {}
    for match in matches:
        for item in match.evidence:
            first_rule.setdefault(_text_of(item, texts), (match.rule, item))
    total = len(first_rule)
    shown = 0
    for text, (rule, item) in first_rule.items():
        if shown == MAX_EVIDENCE_LINES:
            break
        lines.append(f"- **{concept_name(kb, rule, item)}**: {text}")
        shown_refs += shown_references(item)
        shown += 1
    if total > shown:
        lines.append(f"- and {total - shown} more in the record")
    context = _unique(f for m in matches for f in m.context)
    if context:
        more = f"; and {len(context) - MAX_CONTEXT} more" if len(context) > MAX_CONTEXT else ""
        lines += [
            "",
            f"**{theme.context_heading}:** "
            + "; ".join(_text_of(f, texts) for f in context[:MAX_CONTEXT])
            + more,
        ]
        shown_refs += [r for f in context[:MAX_CONTEXT] for r in shown_references(f)]
    return lines


def _unique(items: Iterable[Finding]) -> list[Finding]:
    seen: dict[str, Finding] = {}
    for item in items:
        seen.setdefault(item.reference, item)
    return list(seen.values())


def _action_section(matches: list[Match]) -> list[str]:
    actions = list(dict.fromkeys(m.rule.action for m in matches))
    if len(actions) == 1:
        return ["", f"**Action:** {actions[0]}"]
    return ["", "**Action**", "", *[f"{i}. {a}" for i, a in enumerate(actions, 1)]]


def _questions_section(kb: KnowledgeBase, theme: Theme) -> list[str]:
    q = theme.questions
    if q is None:
        return []
    lines = ["", f"**Ask** (*{kb.article.title}*)", "", *[f"- {x}" for x in q.article]]
    if q.guideline and q.guideline_questions:
        guideline = kb.guidelines[q.guideline]
        lines += ["", f"**{q.guideline_heading}** ({guideline.short})", ""]
        lines += [f"- {x}" for x in q.guideline_questions]
    return lines


def _why_section(kb: KnowledgeBase, theme: Theme, matches: list[Match]) -> list[str]:
    quotes = list(dict.fromkeys(m.rule.source.quote for m in matches if m.rule.source.quote))
    if theme.questions:
        quotes = [q for q in quotes if q != theme.questions.source_quote]
    windows = list(dict.fromkeys(w for m in matches for w in _guideline_lines(kb, m.rule) if w))
    if not quotes and not windows:
        return []
    lines = ["", "**Why**"]
    for quote in quotes:
        lines += ["", f"> {' '.join(quote.split())}"]
    if windows:
        lines += ["", *[f"- {w}" for w in windows]]
    return lines


def _guideline_lines(kb: KnowledgeBase, rule: Rule) -> list[str | None]:
    """What the rule's guideline says for it and its evidence, then its window."""
    src = rule.source
    says = None
    if src.says and src.guideline:
        says = f"{kb.guidelines[src.guideline].short}: {src.says}"
    evidence = f"Evidence: {src.evidence}" if src.evidence else None
    return [says, evidence, src.window]


def _older_section(
    kb: KnowledgeBase, older: list[OlderFinding], texts: dict[int, str], shown_refs: list[str]
) -> list[str]:
    if not older:
        return []
    shown_refs += [r for o in older[:MAX_EVIDENCE_LINES] for r in shown_references(o.finding)]
    lines = "; ".join(_text_of(o.finding, texts) for o in older[:MAX_EVIDENCE_LINES])
    if len(older) > MAX_EVIDENCE_LINES:
        lines += f"; and {len(older) - MAX_EVIDENCE_LINES} more"
    return ["", f"**{kb.context_line}:** " + lines]


def _guidelines_of(rules: Iterable[Rule], theme: Theme) -> list[str]:
    ids = [r.source.guideline for r in rules if r.source.guideline]
    if theme.questions and theme.questions.guideline:
        ids.append(theme.questions.guideline)
    return list(dict.fromkeys(ids))


def _attribution(kb: KnowledgeBase, guideline_ids: list[str]) -> list[str]:
    art = kb.article
    parts = [
        f"*{art.title}*, {art.kind.lower()} (medical reviewer {art.medical_reviewer}; "
        f"last review {art.last_review})"
    ]
    for gid in guideline_ids:
        g = kb.guidelines[gid]
        parts.append(f"{g.title}, {g.publisher} ({g.year})")
    return ["", "---", "", "Sources: " + ". ".join(parts) + "."]


@dataclass(frozen=True)
class CardContext:
    """What a card takes from the call: whom suggested orders are for, and the service's public
    base URL for its icon and "About this recommendation" pages (None: not shown)."""

    patient_id: str
    encounter_id: str | None = None
    base_url: str | None = None


def _source_label_url(kb: KnowledgeBase, guideline_ids: list[str]) -> tuple[str, str | None]:
    """The card source's label (the article, then up to two guidelines) and its URL."""
    label = f"{kb.article.title} (reviewed {kb.article.last_review})"
    if guideline_ids:
        label += "; " + "; ".join(kb.guidelines[g].short for g in guideline_ids[:2])
    url = next((kb.guidelines[g].url for g in guideline_ids if kb.guidelines[g].url), None)
    return label, url


def about_url(base_url: str, rule_id: str) -> str:
    """The stable URL of a rule's "About this recommendation" page (HTML; `.json` for JSON)."""
    return f"{base_url}{ABOUT_PATH}{rule_id}"


def _guideline_links(kb: KnowledgeBase, guideline_ids: list[str]) -> tuple[tuple[str, str], ...]:
    """The guideline pages the card cites, as (label, url)."""
    return tuple(
        (f"Guideline: {kb.guidelines[g].short}", kb.guidelines[g].url)
        for g in guideline_ids
        if kb.guidelines[g].url
    )


def _measures_of(match: Match) -> set[str]:
    return {item.measure for item in match.evidence if isinstance(item, Measurement)}


@dataclass(frozen=True)
class Offered:
    """A suggestion on a card: the rules that offer it, and their evidence references."""

    suggestion: Suggestion
    rules: list[str]
    reasons: list[str]


def card_suggestions(kb: KnowledgeBase, matches: Sequence[Match]) -> list[Offered]:
    """The card's suggestions (one per order and action, the most serious rule's first)."""
    return _offered(matches, _candidates(kb.orders, matches))


def _candidates(
    catalog: OrderCatalog, matches: Sequence[Match]
) -> tuple[tuple[Suggestion, ...], ...]:
    """The suggestions each match's rule may offer, in the catalogue's order."""
    return tuple(catalog.for_rule(m.rule.id) for m in matches)


def _offered(
    matches: Sequence[Match], candidates: Sequence[tuple[Suggestion, ...]]
) -> list[Offered]:
    offered: dict[str, Offered] = {}
    for match, suggestions in zip(matches, candidates, strict=True):
        if not suggestions:
            continue
        measures = _measures_of(match)
        reasons = [r for item in match.evidence for r in references_of(item)]
        for suggestion in suggestions:
            if suggestion.measures and not measures.intersection(suggestion.measures):
                continue
            key = f"{suggestion.order}/{suggestion.action}"
            entry = offered.get(key)
            if entry is None:
                entry = offered[key] = Offered(suggestion, [], [])
            elif entry.suggestion.id != suggestion.id:
                continue
            entry.rules.append(match.rule.id)
            entry.reasons.extend(reasons)
    return list(offered.values())


def render_offers(
    kb: KnowledgeBase, offered: Sequence[Offered], card_uuid: str, context: CardContext
) -> list[dict[str, Any]]:
    """The offered suggestions as CDS Hooks JSON, for the card with this uuid."""
    order_context = OrderContext(context.patient_id, context.encounter_id)
    return [
        render_suggestion(kb.orders, o.suggestion, card_uuid, order_context, o.reasons)
        for o in offered
    ]


def _coding_json(coding: Coding) -> dict[str, str]:
    return {"system": coding.system, "code": coding.code, "display": coding.display}


@dataclass(frozen=True)
class Traced:
    """A FHIR reference the audit traces to a card: the rule, and its role for the rule."""

    rule: str
    role: str  # "evidence", "context" or "older"
    reference: str


@dataclass(frozen=True)
class CardSuggestion:
    """A suggestion a card carries: its uuid (as feedback quotes it), its id, its rules."""

    uuid: str
    suggestion_id: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class RenderedCard:
    """A card as answered (`json`), with what the audit records of it: its theme (on an order
    card, its order rule's id), indicator, the rules that fired for it, the references it rests
    on and the suggestions it carries; `shown` holds the references its text names, which the
    FHIR models check before it is answered (`fhir_validation`)."""

    json: dict[str, Any]
    theme: str
    indicator: str
    rules: tuple[str, ...]
    evidence: tuple[Traced, ...] = ()
    suggestions: tuple[CardSuggestion, ...] = ()
    shown: tuple[str, ...] = ()

    @property
    def uuid(self) -> str:
        return self.json["uuid"]


def answer_json(cards: Iterable[RenderedCard]) -> dict[str, Any]:
    """The CDS Hooks answer: `{"cards": [...]}`."""
    return {"cards": [card.json for card in cards]}


def traces(matches: Sequence[Match], older: Sequence[OlderFinding] = ()) -> tuple[Traced, ...]:
    """The references of matches: each rule's evidence and context, then the older findings."""
    traced: list[tuple[str, str, str]] = []
    for match in matches:
        rule = match.rule.id
        traced += [(rule, "evidence", r) for e in match.evidence for r in references_of(e)]
        traced += [(rule, "context", r) for f in match.context for r in f.references]
    traced += [(o.rule.id, "older", r) for o in older for r in o.finding.references]
    return tuple(Traced(*t) for t in dict.fromkeys(traced))


@dataclass(frozen=True)
class _Frame:
    """What the knowledge alone decides of a theme's card, for one sequence of rules: text,
    source and links as immutable parts, from which each call builds its own JSON."""

    theme: Theme  # the theme and rules are kept alive: the cache key holds their ids
    rules: tuple[Rule, ...]
    rule_ids: tuple[str, ...]
    summary: str
    middle: str  # the action, questions and why sections, one block of lines
    attribution: str
    source_label: str
    source_url: str | None
    guideline_links: tuple[tuple[str, str], ...]  # (label, url)
    about_links: tuple[tuple[str, str], ...]  # (label, rule id)
    candidates: tuple[tuple[Suggestion, ...], ...]  # per rule, the suggestions it may offer


def _frame(kb: KnowledgeBase, theme: Theme, matches: list[Match]) -> _Frame:
    guideline_ids = _guidelines_of((m.rule for m in matches), theme)
    source_label, source_url = _source_label_url(kb, guideline_ids)
    rules = list(dict.fromkeys(m.rule for m in matches))
    about = "About this recommendation"
    return _Frame(
        theme=theme,
        rules=tuple(m.rule for m in matches),
        rule_ids=tuple(m.rule.id for m in matches),
        summary=_summary(theme, matches),
        middle="\n".join(
            [
                *_action_section(matches),
                *_questions_section(kb, theme),
                *_why_section(kb, theme, matches),
            ]
        ),
        attribution="\n".join(_attribution(kb, guideline_ids)),
        source_label=source_label,
        source_url=source_url,
        guideline_links=_guideline_links(kb, guideline_ids),
        about_links=tuple(
            (f"{about}: {r.title}" if len(rules) > 1 else about, r.id) for r in rules
        ),
        candidates=_candidates(kb.orders, matches),
    )


#: id(knowledge base) -> (a weak reference to it, its frames by (id(theme), *ids of the rules))
_FRAMES: dict[int, tuple[weakref.ref[KnowledgeBase], dict[tuple[int, ...], _Frame]]] = {}
_MAX_FRAMES = 1024  # per knowledge base; past it the frames are built anew


def _frames_of(kb: KnowledgeBase) -> dict[tuple[int, ...], _Frame]:
    """The knowledge base's frames, dropped with it."""
    key = id(kb)
    entry = _FRAMES.get(key)
    if entry is not None and entry[0]() is kb:
        return entry[1]
    frames: dict[tuple[int, ...], _Frame] = {}
    _FRAMES[key] = (weakref.ref(kb, lambda _: _FRAMES.pop(key, None)), frames)
    return frames


def _cached_frame(kb: KnowledgeBase, theme: Theme, matches: list[Match]) -> _Frame:
    frames = _frames_of(kb)
    key = (id(theme), *[id(m.rule) for m in matches])
    frame = frames.get(key)
    if frame is None:
        frame = remember(frames, key, _frame(kb, theme, matches), _MAX_FRAMES)
    return frame


def _source_json(frame: _Frame, base_url: str | None) -> dict[str, Any]:
    source: dict[str, Any] = {"label": frame.source_label}
    if frame.source_url:
        source["url"] = frame.source_url
    if base_url:
        source["icon"] = base_url + ICON_PATH
    if frame.theme.topic:
        source["topic"] = _coding_json(frame.theme.topic)
    return source


def _links_json(frame: _Frame, base_url: str | None) -> list[dict[str, str]]:
    links = [
        {"label": label, "url": url, "type": "absolute"} for label, url in frame.guideline_links
    ]
    if base_url:
        links += [
            {"label": label, "url": about_url(base_url, rule_id), "type": "absolute"}
            for label, rule_id in frame.about_links
        ]
    return links


def _card(
    kb: KnowledgeBase,
    theme: Theme,
    matches: list[Match],
    older: list[OlderFinding],
    new_uuid: Callable[[], str],
    context: CardContext | None,
    texts: dict[int, str],
) -> RenderedCard:
    frame = _cached_frame(kb, theme, matches)
    shown_refs: list[str] = []
    detail = [
        *_evidence_section(kb, theme, matches, texts, shown_refs),
        frame.middle,
        *_older_section(kb, older, texts, shown_refs),
        frame.attribution,
    ]
    base_url = context.base_url if context else None
    card: dict[str, Any] = {
        "uuid": new_uuid(),
        "summary": frame.summary,
        "indicator": theme.indicator,
        "detail": "\n".join(detail).strip() + "\n",
        "source": _source_json(frame, base_url),
    }
    offered = _offered(matches, frame.candidates) if context is not None else []
    if context is not None and offered:
        card["suggestions"] = render_offers(kb, offered, card["uuid"], context)
        card["selectionBehavior"] = selection_behavior([o.suggestion for o in offered])
    if theme.override_reasons:
        card["overrideReasons"] = [_coding_json(c) for c in theme.override_reasons]
    links = _links_json(frame, base_url)
    if links:
        card["links"] = links
    return RenderedCard(
        card,
        theme.id,
        theme.indicator,
        frame.rule_ids,
        traces(matches, older),
        tuple(
            CardSuggestion(s["uuid"], o.suggestion.id, tuple(dict.fromkeys(o.rules)))
            for o, s in zip(offered, card.get("suggestions", ()), strict=True)
        ),
        tuple(dict.fromkeys(shown_refs)),
    )


def _themes_in_card_order(
    kb: KnowledgeBase, evaluation: Evaluation, max_cards: int
) -> list[tuple[Theme, list[Match]]]:
    """The themes that fired with their matches, critical first, at most `max_cards`."""
    by_theme: dict[str, list[Match]] = {}
    for match in evaluation.all_matches:
        by_theme.setdefault(match.rule.theme, []).append(match)
    themes = sorted((kb.themes[t] for t in by_theme), key=lambda t: t.order)[:max_cards]
    return [(theme, by_theme[theme.id]) for theme in themes]


def render_cards(
    kb: KnowledgeBase,
    evaluation: Evaluation,
    max_cards: int,
    new_uuid: Callable[[], str],
    context: CardContext | None = None,
) -> list[RenderedCard]:
    """Cards in theme order (critical first), at most `max_cards`; with a context, the cards
    carry suggested orders, and (with a base URL) their icon and "About" links."""
    cards = []
    older = list(evaluation.older)
    texts: dict[int, str] = {}
    for theme, matches in _themes_in_card_order(kb, evaluation, max_cards):
        cards.append(_card(kb, theme, matches, older, new_uuid, context, texts))
        older = []  # the older findings are worth one line, on the first card only
    return cards
