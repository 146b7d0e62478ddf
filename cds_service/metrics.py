"""Prometheus metrics (`/metrics`), made with `prometheus_client`, across pre-forked workers.

Each worker process counts in its own files under `PROMETHEUS_MULTIPROC_DIR` (the client's
multiprocess mode); a scrape, answered by whichever worker gets it, adds up every worker's files.
`cds-service serve` prepares that folder before any worker starts (`metrics_dir.py`),
and the server tells the client library when a worker has exited (`worker_exited`), so that the
live gauges forget it. Without the folder (tests, `cds-service try`) the metrics count in process.

Label values come from a fixed set (the knowledge's service and rule ids, indicators, classes
of reasons), never from what a caller sends: no patient data, no token, no unbounded label.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .metrics_dir import MULTIPROC_ENV

UNKNOWN_SERVICE = "unknown"
#: Latency buckets (seconds) around the specification's "about 500 ms" for a call.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CALLS = Counter(
    "cds_service_calls",
    "Service calls answered, by service and HTTP status.",
    ["service", "status"],
)
CALL_DURATION = Histogram(
    "cds_service_call_duration_seconds",
    "Time from a service call's arrival to its answer, by service.",
    ["service"],
    buckets=LATENCY_BUCKETS,
)
CARDS = Counter("cds_cards", "Cards issued, by indicator and card theme.", ["indicator", "theme"])
CARD_RULES = Counter(
    "cds_card_rules",
    "Rules behind the cards issued (a card with two rules counts under each), by indicator.",
    ["indicator", "rule"],
)
PRECONDITION_FAILED = Counter(
    "cds_precondition_failed",
    "Prefetch keys missing in a 412 answer, by service, key and reason class.",
    ["service", "key", "reason"],
)
FHIR_FETCHES = Counter(
    "cds_fhir_fallback_fetches",
    "Prefetch keys the service asked of the EHR's FHIR server, by key.",
    ["key"],
)
FHIR_FAILURES = Counter(
    "cds_fhir_fallback_failures",
    "Prefetch keys the FHIR server could not provide (failed) or was not asked for (refused).",
    ["key", "kind"],
)
JWT_REJECTIONS = Counter(
    "cds_jwt_rejections", "Calls refused with 401, by reason class.", ["reason"]
)
AUDIT_WAITING = Gauge(
    "cds_audit_queue_waiting",
    "Audit records waiting for the database, all live workers together.",
    multiprocess_mode="livesum",
)
AUDIT_RECORDS = Counter(
    "cds_audit_records",
    "Audit records settled: written, or dropped (queue full or given up at shutdown).",
    ["outcome"],
)
AUDIT_FAILED_WRITES = Counter(
    "cds_audit_failed_writes", "Failed attempts to write a batch of audit records."
)
FEEDBACK = Counter(
    "cds_feedback_items",
    "Feedback items stored (or already known), by service and outcome.",
    ["service", "outcome"],
)


# ------------------------------------------------------------------------- observations


@functools.cache
def _child(metric: Any, *values: str) -> Any:
    """The metric's child for these label values, looked up once (the values come from a fixed
    set, and a child lives as long as its metric)."""
    return metric.labels(*values)


def observe_call(
    service: str, status: int, seconds: float, cards: Any = (), rules: Any = ()
) -> None:
    """One answered service call: its status and latency, its cards and their rules."""
    _child(CALLS, service, str(status)).inc()
    _child(CALL_DURATION, service).observe(seconds)
    indicators: dict[str, str] = {}
    for card in cards:
        indicators[card["uuid"]] = card["indicator"]
        _child(CARDS, card["indicator"], card["theme"]).inc()
    for rule in rules:
        indicator = indicators.get(rule.get("card_uuid") or "")
        if indicator is not None:
            _child(CARD_RULES, indicator, rule["rule_id"]).inc()


def missing_reason_class(reason: str) -> str:
    """The class of a 412 key's reason (see `gather.py`): what was tried and failed."""
    if "was not contacted" in reason:
        return "fhir_server_not_contacted"
    if "could not provide it" in reason:
        return "fhir_server_failed"
    return "not_prefetched"


def observe_missing(service: str, missing: Mapping[str, str]) -> None:
    for key, reason in missing.items():
        PRECONDITION_FAILED.labels(service, key, missing_reason_class(reason)).inc()


def observe_fallback(fetched: Mapping[str, bool | None]) -> None:
    """Per key: True fetched, False the server failed, None the server was not asked."""
    for key, outcome in fetched.items():
        if outcome is None:
            FHIR_FAILURES.labels(key, "refused").inc()
            continue
        FHIR_FETCHES.labels(key).inc()
        if not outcome:
            FHIR_FAILURES.labels(key, "failed").inc()


#: (start of the reason logged by the token checks, class); first match wins.
_JWT_REASONS = (
    ("no Authorization header", "missing"),
    ("jti already used", "replay"),
    ("issuer not trusted", "untrusted_issuer"),
    ("ExpiredSignatureError", "expired"),
    ("ImmatureSignatureError", "not_yet_valid"),
    ("InvalidAudienceError", "audience"),
    ("InvalidSignatureError", "signature"),
    ("algorithm ", "algorithm"),
    ("Authorization ", "malformed"),
    ("token longer", "malformed"),
    ("not a JWT", "malformed"),
    ("kid missing", "malformed"),
    ("typ ", "malformed"),
    ("jku is not", "malformed"),
    ("lifetime ", "claims"),
    ("jti is not", "claims"),
    ("tenant not allowed", "claims"),
)


def jwt_reason_class(reason: str) -> str:
    """The class of a JWT rejection's logged reason; `key` for a key that could not be had."""
    for start, kind in _JWT_REASONS:
        if reason.startswith(start):
            return kind
    if reason.split(":", 1)[0].endswith("Error"):  # PyJWT's other claim checks
        return "claims"
    return "key"


def observe_jwt_rejection(reason: str) -> None:
    JWT_REJECTIONS.labels(jwt_reason_class(reason)).inc()


def observe_feedback(service: str, outcomes: list[str]) -> None:
    for outcome in outcomes:
        FEEDBACK.labels(service, outcome).inc()


# ----------------------------------------------------------------- exposition and processes


def exposition() -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, every worker's together; and its media type."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """A worker process is gone: its live gauges no longer count."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)
