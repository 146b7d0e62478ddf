"""POST /cds-services/{id}/feedback: store what the clinician did with our cards.

200 only once the items are committed; 400 (an OperationOutcome naming each item and member at
fault) for malformed feedback; 503 (within CDS_DATABASE_TIMEOUT_SECONDS) when the database did not
confirm the write. A 503 cannot promise that nothing was stored (a commit can succeed while its
answer is lost), so it says that a resend is safe: repeats are stored once (by fingerprint).
Feedback on a card we never issued is kept, marked unmatched.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response

from .. import metrics
from ..core.feedback import (
    FeedbackError,
    FeedbackItem,
    feedback_rows,
    parse_feedback,
    unknown_suggestions,
)
from ..core.orders import suggestion_uuid
from ..core.outcome import invalid_outcome
from ..storage.database import DatabaseUnavailable
from ..storage.feedback_store import issued_suggestions, store_feedback
from .body import BodyError, read_json_body
from .caller import current_caller
from .responses import error_response, json_response, unknown_service
from .state import ServiceState, state

log = logging.getLogger(__name__)
bp = Blueprint("feedback", __name__)
RETRY_AFTER_SECONDS = "5"
#: A commit whose answer was lost may have stored the items: the client is told what is true.
FEEDBACK_UNCONFIRMED = (
    "the feedback store did not confirm the write, so the feedback may or may not be stored; "
    "send the feedback again: resending is safe, a repeat is stored once"
)


def _suggestion_problems(s: ServiceState, items: list[FeedbackItem]) -> list[tuple[str, str]]:
    """Accepted suggestions that are not suggestions of their card (one problem per item)."""
    accepted = [i.card for i in items if i.outcome == "accepted"]
    if not accepted:
        return []
    issued = issued_suggestions(s.engine, list(dict.fromkeys(accepted)))
    ids = [x.id for x in s.knowledge.orders.suggestions]

    def derivable(card: str, sid: str) -> bool:
        return any(suggestion_uuid(card, x) == sid for x in ids)

    return unknown_suggestions(items, issued, derivable)


@bp.post("/cds-services/<service_id>/feedback")
def send_feedback(service_id: str) -> Response:
    s = state()
    if service_id not in s.knowledge.services:
        return unknown_service(service_id)
    try:
        body = read_json_body(s.settings.max_body_bytes, s.settings.max_json_depth)
        items = parse_feedback(body)
    except BodyError as exc:
        return error_response(exc.status, exc.code, exc.reason)
    except FeedbackError as exc:
        code = "too-costly" if exc.status == 413 else "invalid"
        return json_response(invalid_outcome(exc.problems, code), exc.status)
    try:
        problems = _suggestion_problems(s, items)
        if problems:
            return json_response(invalid_outcome(problems, "invalid"), 400)
        rows = feedback_rows(items, service_id, s.clock(), current_caller())
        store_feedback(s.engine, rows)
    except DatabaseUnavailable as exc:
        log.warning("feedback for %s not stored, answered 503: %s", service_id, exc)
        return error_response(
            503,
            "transient",
            FEEDBACK_UNCONFIRMED,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    log.info("feedback for %s: %d item(s) stored or already known", service_id, len(rows))
    metrics.observe_feedback(service_id, [row["outcome"] for row in rows])
    return json_response({})
