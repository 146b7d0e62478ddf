"""Render rule matches as CDS Hooks cards: one card per theme, each with its evidence and source.

Text from the patient's record (displays) is escaped so that it can never inject Markdown links
or HTML into a card; all other text comes from the reviewed knowledge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .codes import system_name
from .findings import Dated, Finding, Measurement
from .knowledge import Coding, KnowledgeBase, Rule, Theme
from .rules import Evaluation, Evidence, Match, OlderFinding

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
        lines += ["", f"**And for cauda equina syndrome** ({guideline.short})", ""]
        lines += [f"- {x}" for x in q.guideline_questions]
    return lines


def _why_section(kb: KnowledgeBase, theme: Theme, matches: list[Match]) -> list[str]:
    quotes = list(dict.fromkeys(m.rule.source.quote for m in matches if m.rule.source.quote))
    if theme.questions:
        quotes = [q for q in quotes if q != theme.questions.source_quote]
    windows = list(
        dict.fromkeys(w for m in matches for w in _guideline_lines(kb, m.rule) if w)
    )
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


def _source(kb: KnowledgeBase, theme: Theme, guideline_ids: list[str]) -> dict[str, Any]:
    label = f"{kb.article.title} (reviewed {kb.article.last_review})"
    if guideline_ids:
        label += "; " + "; ".join(kb.guidelines[g].short for g in guideline_ids[:2])
    source: dict[str, Any] = {"label": label}
    if theme.topic:
        source["topic"] = _coding_json(theme.topic)
    return source


def _coding_json(coding: Coding) -> dict[str, str]:
    return {"system": coding.system, "code": coding.code, "display": coding.display}


def _card(
    kb: KnowledgeBase,
    theme: Theme,
    matches: list[Match],
    older: list[OlderFinding],
    new_uuid: Callable[[], str],
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
    card: dict[str, Any] = {
        "uuid": new_uuid(),
        "summary": _summary(theme, matches),
        "indicator": theme.indicator,
        "detail": "\n".join(detail).strip() + "\n",
        "source": _source(kb, theme, guideline_ids),
    }
    if theme.override_reasons:
        card["overrideReasons"] = [_coding_json(c) for c in theme.override_reasons]
    return card


def card_themes(kb: KnowledgeBase, evaluation: Evaluation, max_cards: int) -> list[str]:
    """The theme of each card, in card order (critical first): the cards `render_cards` makes."""
    fired = dict.fromkeys(m.rule.theme for m in evaluation.all_matches)  # in match order
    return [t.id for t in sorted((kb.themes[t] for t in fired), key=lambda t: t.order)][:max_cards]


def render_cards(
    kb: KnowledgeBase, evaluation: Evaluation, max_cards: int, new_uuid: Callable[[], str]
) -> list[dict[str, Any]]:
    """Cards in theme order (critical first), at most `max_cards`."""
    by_theme: dict[str, list[Match]] = {}
    for match in evaluation.all_matches:
        by_theme.setdefault(match.rule.theme, []).append(match)
    cards = []
    older = list(evaluation.older)
    for theme_id in card_themes(kb, evaluation, max_cards):
        cards.append(_card(kb, kb.themes[theme_id], by_theme[theme_id], older, new_uuid))
        older = []  # the older findings are worth one line, on the first card only
    return cards
