"""CDS Hooks "Feedback": validate a feedback document and give each item its idempotency key.

`{"feedback": [...]}`, each item: `card` (the card's uuid), `outcome` (`accepted` or
`overridden`), `acceptedSuggestions` (required for `accepted`), `overrideReason` (a `reason`
Coding and/or a `userComment`; the CDS Hooks Sandbox sends the Coding without `display`) and
`outcomeTimestamp` (RFC 3339). Unknown members and `extension` objects are ignored. Every
problem is reported with the item index and the member at fault.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .caller import Caller
from .text import is_blank, is_uri

OUTCOMES = ("accepted", "overridden")
MAX_ITEMS = 1000
MAX_ID = 256
MAX_COMMENT = 4000
MAX_PROBLEMS = 20
#: The members of a feedback item this service reads (others are ignored).
ITEM_MEMBERS = (
    "card",
    "outcome",
    "acceptedSuggestions",
    "overrideReason",
    "outcomeTimestamp",
    "extension",
)
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True)
class FeedbackItem:
    card: str
    outcome: str
    outcome_timestamp: dt.datetime  # UTC
    accepted_suggestions: tuple[str, ...] = ()
    reason_system: str | None = None
    reason_code: str | None = None
    reason_display: str | None = None
    user_comment: str | None = None
    #: the accepted suggestion ids in the order sent (for problems that name their position)
    accepted_as_sent: tuple[str, ...] = ()


class FeedbackError(ValueError):
    """The document is not valid feedback; `problems` are (where, what is wrong) pairs."""

    def __init__(self, problems: list[tuple[str, str]], status: int = 400):
        super().__init__("; ".join(f"{where}: {reason}" for where, reason in problems))
        self.problems = problems[:MAX_PROBLEMS]
        self.status = status


def parse_timestamp(value: str) -> dt.datetime | None:
    """An RFC 3339 date-time with an offset, as a UTC datetime; None if it is not one."""
    match = _RFC3339.fullmatch(value)
    if not match:
        return None
    day, time, fraction, offset = match.groups()
    text = f"{day}T{time}.{(fraction or '0')[:6]:0<6}{'+00:00' if offset in 'Zz' else offset}"
    try:
        return dt.datetime.fromisoformat(text).astimezone(dt.UTC)
    except (ValueError, OverflowError):  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        return None


class _Checker:
    """Collects the problems of one item, each under the item's path."""

    def __init__(self, where: str):
        self.where = where
        self.problems: list[tuple[str, str]] = []

    def fail(self, member: str, reason: str) -> None:
        self.problems.append((f"{self.where}.{member}", reason))

    def text(self, value: object, member: str, limit: int = MAX_ID) -> str | None:
        if not isinstance(value, str) or is_blank(value):
            self.fail(member, "must be a non-empty string")
            return None
        if len(value) > limit:
            self.fail(member, f"longer than {limit} characters")
            return None
        return value


def _suggestions(check: _Checker, item: Mapping[str, Any], outcome: str | None) -> tuple[str, ...]:
    value = item.get("acceptedSuggestions")
    if value is None:
        if outcome == "accepted":
            check.fail("acceptedSuggestions", "is required when outcome is 'accepted'")
        return ()
    if not isinstance(value, list) or not value:
        check.fail("acceptedSuggestions", "must be a non-empty array")
        return ()
    ids = []
    for i, suggestion in enumerate(value):
        member = f"acceptedSuggestions[{i}].id"
        if not isinstance(suggestion, Mapping):
            check.fail(f"acceptedSuggestions[{i}]", "must be an object with an 'id'")
            continue
        text = check.text(suggestion.get("id"), member)
        if text is not None:
            ids.append(text)
    return tuple(sorted(set(ids)))


def _no_nulls(check: _Checker, value: object, prefix: str, members: tuple[str, ...]) -> None:
    """CDS Hooks "Use of JSON": elements SHALL NOT be null (an optional one is omitted)."""
    if isinstance(value, Mapping):
        for member in members:
            if member in value and value[member] is None:
                check.fail(prefix + member, "must not be null (omit it instead)")


def _override(check: _Checker, value: object) -> dict[str, str | None]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        check.fail("overrideReason", "must be an object")
        return {}
    _no_nulls(check, value, "overrideReason.", ("reason", "userComment"))
    _no_nulls(check, value.get("reason"), "overrideReason.reason.", ("system", "code", "display"))
    reason, comment = value.get("reason"), value.get("userComment")
    if reason is None and comment is None:
        check.fail("overrideReason", "must have a 'reason', a 'userComment' or both")
        return {}
    out: dict[str, str | None] = {}
    if reason is not None:
        if not isinstance(reason, Mapping):
            check.fail("overrideReason.reason", "must be a Coding object")
        else:
            out["reason_system"] = check.text(reason.get("system"), "overrideReason.reason.system")
            if out["reason_system"] is not None and not is_uri(out["reason_system"]):
                check.fail("overrideReason.reason.system", "must be an absolute URI")
            out["reason_code"] = check.text(reason.get("code"), "overrideReason.reason.code")
            if reason.get("display") is not None:  # optional: the Sandbox omits it
                out["reason_display"] = check.text(
                    reason["display"], "overrideReason.reason.display", 512
                )
    if comment is not None:
        out["user_comment"] = check.text(comment, "overrideReason.userComment", MAX_COMMENT)
    return out


def parse_item(item: object, index: int) -> tuple[FeedbackItem | None, list[tuple[str, str]]]:
    """One feedback item, or the problems found in it."""
    check = _Checker(f"feedback[{index}]")
    if not isinstance(item, Mapping):
        return None, [(check.where, "must be an object")]
    _no_nulls(check, item, "", ITEM_MEMBERS)
    card = check.text(item.get("card"), "card")
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        check.fail("outcome", "must be 'accepted' or 'overridden'")
        outcome = None
    suggestions = _suggestions(check, item, outcome)
    override = _override(check, item.get("overrideReason"))
    if "extension" in item and not isinstance(item["extension"], Mapping):
        check.fail("extension", "must be an object")
    stamp = item.get("outcomeTimestamp")
    when = parse_timestamp(stamp) if isinstance(stamp, str) else None
    if when is None:
        check.fail("outcomeTimestamp", "must be an RFC 3339 date-time, e.g. 2026-11-24T19:34:51Z")
    if check.problems or card is None or outcome is None or when is None:
        return None, check.problems
    sent = item.get("acceptedSuggestions") or []
    as_sent = tuple(s["id"] for s in sent if isinstance(s, Mapping))
    return FeedbackItem(card, outcome, when, suggestions, **override, accepted_as_sent=as_sent), []


def parse_feedback(body: object) -> list[FeedbackItem]:
    """The items of a feedback document, or `FeedbackError` naming every problem."""
    if not isinstance(body, Mapping):
        raise FeedbackError([("body", "must be a JSON object")])
    if "extension" in body and not isinstance(body["extension"], Mapping):
        raise FeedbackError([("extension", "must be an object")])
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise FeedbackError([("feedback", "must be a non-empty array")])
    if len(items) > MAX_ITEMS:
        raise FeedbackError([("feedback", f"more than {MAX_ITEMS} items in one call")], 413)
    parsed, problems = [], []
    for index, item in enumerate(items):
        feedback, found = parse_item(item, index)
        problems.extend(found)
        if feedback is not None:
            parsed.append(feedback)
    if problems:
        raise FeedbackError(problems)
    return parsed


def fingerprint(item: FeedbackItem, service_id: str, issuer: str | None) -> str:
    """The idempotency key: equal for the same feedback sent twice by the same client.

    The reason's `display` is left out (one client sends it, another not, for the same
    choice), and the timestamp is compared as an instant, whatever its offset or precision.
    """
    canonical = {
        "service": service_id,
        "issuer": issuer or "",
        "card": item.card,
        "outcome": item.outcome,
        "suggestions": list(item.accepted_suggestions),
        "reason": [item.reason_system, item.reason_code],
        "comment": item.user_comment,
        "at": item.outcome_timestamp.astimezone(dt.UTC).isoformat(timespec="microseconds"),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def feedback_rows(
    items: list[FeedbackItem],
    service_id: str,
    received_at: dt.datetime,
    client: Caller | None = None,
) -> list[dict[str, Any]]:
    """Rows for the feedback table, one per distinct item, in fingerprint order.

    The order is the same in every transaction, so that concurrent batches take their locks in
    one order (no deadlock between two clients sending overlapping batches).
    """
    issuer = client.issuer if client else None
    rows: dict[str, dict[str, Any]] = {}
    for item in items:
        key = fingerprint(item, service_id, issuer)
        rows[key] = {
            "fingerprint": key,
            "received_at": received_at.astimezone(dt.UTC),
            "service_id": service_id[:128],
            "card_uuid": item.card,
            "outcome": item.outcome,
            "accepted_suggestions": list(item.accepted_suggestions) or None,
            "override_system": item.reason_system,
            "override_code": item.reason_code,
            "override_display": item.reason_display,
            "user_comment": item.user_comment,
            "outcome_timestamp": item.outcome_timestamp,
            "client_issuer": issuer[:512] if issuer else None,
            "client_tenant": client.tenant[:256] if client and client.tenant else None,
            "client_jti": client.jti[:256] if client and client.jti else None,
        }
    return [rows[key] for key in sorted(rows)]


def unknown_suggestions(
    items: list[FeedbackItem],
    issued: Mapping[str, frozenset[str]],
    derivable: Callable[[str, str], bool],
) -> list[tuple[str, str]]:
    """Problems for accepted suggestions that are not a suggestion of their card.

    `issued` maps each card we know we issued to the uuids of its suggestions; a card not (yet)
    recorded, because the audit trail writes behind the answer, is checked by `derivable(card,
    id)`: whether the id is a suggestion uuid this service derives for that card.
    """
    problems = []
    for index, item in enumerate(items):
        if item.outcome != "accepted":
            continue
        known = issued.get(item.card)
        for position, sid in enumerate(item.accepted_as_sent or item.accepted_suggestions):
            ok = sid in known if known is not None else derivable(item.card, sid)
            if not ok:
                problems.append(
                    (
                        f"feedback[{index}].acceptedSuggestions[{position}].id",
                        f"{sid!r} is not a suggestion of card {item.card!r}",
                    )
                )
    return problems
