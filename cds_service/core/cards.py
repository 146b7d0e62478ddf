"""Render rule matches as CDS Hooks cards: one card per theme, each with its evidence and source.

Text from the patient's record (displays) is escaped so that it can never inject Markdown links
or HTML into a card; all other text comes from the reviewed knowledge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .codes import system_name
from .findings import Dated, Finding, Measurement
from .knowledge import Coding, KnowledgeBase, Rule, Theme
from .orders import OrderContext, Suggestion, render_suggestion, selection_behavior
from .rules import Evaluation, Evidence, Match, OlderFinding

ICON_PATH = "/about/icon.png"
ABOUT_PATH = "/about/rules/"
MAX_EVIDENCE_LINES = 12
MAX_REFERENCES = 4  # references shown on one finding's line
MAX_CONTEXT = 8  # findings shown in a card's context line
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def escape_text(text: str, limit: int = 160) -> str:
    """Plain text from a record, made inert for GitHub-flavoured Markdown."""
    text = " ".join(str(text).split())[:limit]
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _coding_text(coding: Coding) -> str:
    return (
        f"{escape_text(coding.display)} ({system_name(coding.system)} {escape_text(coding.code)})"
    )


def _dates_text(dates: tuple[Dated, ...]) -> str:
    if not dates:
        return "date not recorded"
    return ", ".join(f"{d.kind} {d.day.isoformat()}" for d in dates)


def evidence_text(item: Evidence) -> str:
    """One line of evidence: finding, code, system, date, qualifier and the resource."""
    parts = [_coding_text(item.coding)]
    if isinstance(item, Measurement):
        reading = item.reading
        value = f"{reading.value:g} {escape_text(reading.unit)}".strip()
        flag = f"{reading.flag}, {reading.basis}"
        if reading.range_text:
            flag += f"; reference {escape_text(reading.range_text)}"
        parts = [f"{_coding_text(item.coding)}: **{value}** ({flag})"]
    parts.append(_dates_text(item.dates))
    if isinstance(item, Finding):
        if item.qualifier:
            parts.append(item.qualifier)
        parts.extend(escape_text(note) for note in item.notes)
        references = item.references
    else:
        references = (item.reference,)
    shown = ", ".join(escape_text(r, 80) for r in references[:MAX_REFERENCES])
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


def _evidence_section(kb: KnowledgeBase, theme: Theme, matches: list[Match]) -> list[str]:
    lines = [f"**{theme.findings_heading}**", ""]
    # a record that sets off several rules of the card is one line, under the first (most serious)
    first_rule: dict[str, tuple[Rule, Evidence]] = {}
    for match in matches:
        for item in match.evidence:
            first_rule.setdefault(evidence_text(item), (match.rule, item))
    total = len(first_rule)
    shown = 0
    for text, (rule, item) in first_rule.items():
        if shown == MAX_EVIDENCE_LINES:
            break
        lines.append(f"- **{concept_name(kb, rule, item)}**: {text}")
        shown += 1
    if total > shown:
        lines.append(f"- and {total - shown} more in the record")
    context = _unique(f for m in matches for f in m.context)
    if context:
        more = f"; and {len(context) - MAX_CONTEXT} more" if len(context) > MAX_CONTEXT else ""
        lines += [
            "",
            f"**{theme.context_heading}:** "
            + "; ".join(evidence_text(f) for f in context[:MAX_CONTEXT])
            + more,
        ]
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


def _older_section(kb: KnowledgeBase, older: list[OlderFinding]) -> list[str]:
    if not older:
        return []
    lines = "; ".join(evidence_text(o.finding) for o in older[:MAX_EVIDENCE_LINES])
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


def _source(
    kb: KnowledgeBase, theme: Theme, guideline_ids: list[str], base_url: str | None
) -> dict[str, Any]:
    label = f"{kb.article.title} (reviewed {kb.article.last_review})"
    if guideline_ids:
        label += "; " + "; ".join(kb.guidelines[g].short for g in guideline_ids[:2])
    source: dict[str, Any] = {"label": label}
    url = next((kb.guidelines[g].url for g in guideline_ids if kb.guidelines[g].url), None)
    if url:
        source["url"] = url
    if base_url:
        source["icon"] = base_url + ICON_PATH
    if theme.topic:
        source["topic"] = _coding_json(theme.topic)
    return source


def about_url(base_url: str, rule_id: str) -> str:
    """The stable URL of a rule's "About this recommendation" page (HTML; `.json` for JSON)."""
    return f"{base_url}{ABOUT_PATH}{rule_id}"


def _links(
    kb: KnowledgeBase, matches: list[Match], guideline_ids: list[str], base_url: str | None
) -> list[dict[str, str]]:
    """The guideline pages the card cites, then each rule's "About this recommendation" page."""
    links = [
        {
            "label": f"Guideline: {kb.guidelines[g].short}",
            "url": kb.guidelines[g].url,
            "type": "absolute",
        }
        for g in guideline_ids
        if kb.guidelines[g].url
    ]
    if base_url:
        rules = list(dict.fromkeys(m.rule for m in matches))
        for rule in rules:
            label = "About this recommendation"
            if len(rules) > 1:
                label += f": {rule.title}"
            links.append({"label": label, "url": about_url(base_url, rule.id), "type": "absolute"})
    return links


def _measures_of(match: Match) -> set[str]:
    return {item.measure for item in match.evidence if isinstance(item, Measurement)}


@dataclass(frozen=True)
class Offered:
    """A suggestion on a card: the rules that offer it, and their evidence references."""

    suggestion: Suggestion
    rules: list[str]
    reasons: list[str]


def card_suggestions(kb: KnowledgeBase, matches: list[Match]) -> list[Offered]:
    """The card's suggestions (one per order and action, the most serious rule's first)."""
    offered: dict[str, Offered] = {}
    for match in matches:
        measures = _measures_of(match)
        for suggestion in kb.orders.for_rule(match.rule.id):
            if suggestion.measures and not measures.intersection(suggestion.measures):
                continue
            key = f"{suggestion.order}/{suggestion.action}"
            entry = offered.setdefault(key, Offered(suggestion, [], []))
            if entry.suggestion.id != suggestion.id:
                continue
            entry.rules.append(match.rule.id)
            for item in match.evidence:
                refs = item.references if isinstance(item, Finding) else (item.reference,)
                entry.reasons.extend(refs)
    return list(offered.values())


def _suggestions(
    kb: KnowledgeBase, matches: list[Match], card_uuid: str, context: CardContext
) -> tuple[list[dict[str, Any]], str | None]:
    offered = card_suggestions(kb, matches)
    if not offered:
        return [], None
    order_context = OrderContext(context.patient_id, context.encounter_id)
    rendered = [
        render_suggestion(kb.orders, o.suggestion, card_uuid, order_context, o.reasons)
        for o in offered
    ]
    return rendered, selection_behavior([o.suggestion for o in offered])


def _coding_json(coding: Coding) -> dict[str, str]:
    return {"system": coding.system, "code": coding.code, "display": coding.display}


def _card(
    kb: KnowledgeBase,
    theme: Theme,
    matches: list[Match],
    older: list[OlderFinding],
    new_uuid: Callable[[], str],
    context: CardContext | None = None,
) -> dict[str, Any]:
    guideline_ids = _guidelines_of((m.rule for m in matches), theme)
    detail = [
        *_evidence_section(kb, theme, matches),
        *_action_section(matches),
        *_questions_section(kb, theme),
        *_why_section(kb, theme, matches),
        *_older_section(kb, older),
        *_attribution(kb, guideline_ids),
    ]
    base_url = context.base_url if context else None
    card: dict[str, Any] = {
        "uuid": new_uuid(),
        "summary": _summary(theme, matches),
        "indicator": theme.indicator,
        "detail": "\n".join(detail).strip() + "\n",
        "source": _source(kb, theme, guideline_ids, base_url),
    }
    if context is not None:
        suggestions, behavior = _suggestions(kb, matches, card["uuid"], context)
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = behavior
    if theme.override_reasons:
        card["overrideReasons"] = [_coding_json(c) for c in theme.override_reasons]
    links = _links(kb, matches, guideline_ids, base_url)
    if links:
        card["links"] = links
    return card


def card_themes(kb: KnowledgeBase, evaluation: Evaluation, max_cards: int) -> list[str]:
    """The theme of each card, in card order (critical first): the cards `render_cards` makes."""
    fired = dict.fromkeys(m.rule.theme for m in evaluation.all_matches)  # in match order
    return [t.id for t in sorted((kb.themes[t] for t in fired), key=lambda t: t.order)][:max_cards]


def card_matches(kb: KnowledgeBase, evaluation: Evaluation, max_cards: int) -> list[list[Match]]:
    """The matches of each card, in card order (what `render_cards` renders)."""
    by_theme: dict[str, list[Match]] = {}
    for match in evaluation.all_matches:
        by_theme.setdefault(match.rule.theme, []).append(match)
    return [by_theme[t] for t in card_themes(kb, evaluation, max_cards)]


def render_cards(
    kb: KnowledgeBase,
    evaluation: Evaluation,
    max_cards: int,
    new_uuid: Callable[[], str],
    context: CardContext | None = None,
) -> list[dict[str, Any]]:
    """Cards in theme order (critical first), at most `max_cards`; with a context, the cards
    carry suggested orders, and (with a base URL) their icon and "About" links."""
    by_theme: dict[str, list[Match]] = {}
    for match in evaluation.all_matches:
        by_theme.setdefault(match.rule.theme, []).append(match)
    cards = []
    older = list(evaluation.older)
    for theme_id in card_themes(kb, evaluation, max_cards):
        cards.append(_card(kb, kb.themes[theme_id], by_theme[theme_id], older, new_uuid, context))
        older = []  # the older findings are worth one line, on the first card only
    return cards
