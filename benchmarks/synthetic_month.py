"""A realistic month of synthetic traffic in a scratch database, to look at `cds-service report`.

    .venv/bin/python -m benchmarks.synthetic_month --database-url sqlite:////tmp/month.sqlite3
    CDS_DATABASE_URL=sqlite:////tmp/month.sqlite3 .venv/bin/cds-service report --format html

The service itself answers every call (in process, its clock set to each simulated moment), with
the sample charts of `examples/charts/` rolled to that day: mostly patients the service has
nothing to say about, some red flags, some prompt-care and follow-up findings, a few calls without
the data it needs (412). Clinicians then send feedback on about two cards in three, accepting or
overriding each with a likelihood that depends on the card (follow-up cards are overridden
most); one follow-up rule is overridden less from the third week, as after a change to it.
The run is seeded, so it is the same month every time. It refuses a database that already holds
calls: it is for scratch databases only, never the service's own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from cds_service import Settings, create_app
from cds_service.knowledge_files import load_knowledge
from cds_service.storage.database import make_engine, upgrade
from cds_service.storage.models import ServiceCall
from cds_service.tester_tools.samples import load_index, sample_request
from cds_service.web.state import EXTENSION_KEY

#: Relative weights of the charts: most charts opened have nothing for this service to say,
#: and a few findings are rare (their rules end up with too few cards to judge).
QUIET_WEIGHT = 60
CARD_WEIGHT = 3
RARE_WEIGHT = 0.25
RARE = frozenset({"low-gcs-with-back-spasm", "low-calcium-in-mg-dl", "sciatica-with-back-pain"})
#: How often a card of each indicator is overridden, and accepted, when feedback comes.
OVERRIDE_LIKELIHOOD = {"critical": 0.12, "warning": 0.35, "info": 0.55}
FEEDBACK_LIKELIHOOD = 0.65
IMPROVED_RULE_FROM_WEEK = 2  # weeks 0, 1 noisy; from week 2 the "changed" rule is quieter
COMMENTS = [
    "already under physio",
    "seen by spinal team last week",
    "chronic, known to GP",
    "patient declined",
    "not relevant to today's visit",
    "lab already repeated",
]


def _weights(charts: list[Any]) -> list[int]:
    return [
        QUIET_WEIGHT if not c.indicators else RARE_WEIGHT if c.name in RARE else CARD_WEIGHT
        for c in charts
    ]


def _feedback_for(
    rng: random.Random, card: dict[str, Any], at: dt.datetime, noisy_rule_quiet: bool
) -> dict[str, Any] | None:
    if rng.random() > FEEDBACK_LIKELIHOOD:
        return None
    indicator = card.get("indicator", "info")
    override_p = OVERRIDE_LIKELIHOOD.get(indicator, 0.4)
    if noisy_rule_quiet:
        override_p *= 0.4
    when = (at + dt.timedelta(minutes=rng.randint(1, 30))).isoformat().replace("+00:00", "Z")
    if rng.random() < override_p:
        reasons = card.get("overrideReasons") or []
        override: dict[str, Any] = {}
        if reasons and rng.random() < 0.85:
            override["reason"] = rng.choice(reasons)
        if rng.random() < 0.4:
            override["userComment"] = rng.choice(COMMENTS)
        item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": when}
        return {**item, "overrideReason": override} if override else item
    suggestions = [s["uuid"] for s in card.get("suggestions") or [] if "uuid" in s]
    if not suggestions:  # acceptance names a suggestion of the card; without one, no feedback
        return None
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": rng.choice(suggestions)}],
        "outcomeTimestamp": when,
    }


def generate(database_url: str, days: int, calls_per_day: int, end: dt.date, seed: int) -> int:
    """Fill the database with `days` days of traffic ending on `end`; the number of calls."""
    rng = random.Random(seed)
    upgrade(database_url)
    engine = make_engine(database_url)
    with engine.connect() as connection:
        if connection.execute(select(func.count()).select_from(ServiceCall)).scalar_one():
            sys.exit("synthetic_month: the database already holds calls; use a scratch database")
    engine.dispose()
    now = [dt.datetime.combine(end, dt.time(8), dt.UTC)]
    with tempfile.TemporaryDirectory() as instance:
        settings = Settings(
            instance_path=Path(instance),
            database_url=database_url,
            allow_unauthenticated=True,
            audit_key="synthetic-month-audit-key-0123456789abcdef",
            log_level="WARNING",
        )
        app = create_app(settings, clock=lambda: now[0])
        client = app.test_client()
        kb = load_knowledge(settings.knowledge_dir)
        _, charts = load_index()
        weights = _weights(charts)
        noisy = "low-potassium"  # a follow-up rule the committee "changed" in week 2
        total = 0
        for offset in range(days):
            day = end - dt.timedelta(days=days - 1 - offset)
            weekend = day.weekday() >= 5
            count = int(calls_per_day * (0.35 if weekend else 1.0) * rng.uniform(0.8, 1.2))
            requests = {}
            for _ in range(count):
                now[0] = dt.datetime.combine(day, dt.time(7), dt.UTC) + dt.timedelta(
                    seconds=rng.randint(0, 11 * 3600)
                )
                chart = rng.choices(charts, weights)[0]
                hook = "encounter-start" if rng.random() < 0.3 else "patient-view"
                key = (chart.name, hook)
                if key not in requests:
                    requests[key] = sample_request(kb, chart, day, hook=hook)
                body = dict(requests[key])
                if rng.random() < 0.02:  # an EHR that sends neither prefetch nor a FHIR server
                    body["prefetch"] = {}
                service = next(s for s in kb.services.values() if s.hook == hook)
                answer = client.post(f"/cds-services/{service.id}", json=body)
                total += 1
                cards = (answer.get_json() or {}).get("cards") or []
                quiet = offset // 7 >= IMPROVED_RULE_FROM_WEEK and any(
                    noisy in rule for rule in chart.rules
                )
                feedback = [
                    item
                    for card in cards
                    if (item := _feedback_for(rng, card, now[0], quiet)) is not None
                ]
                if feedback:
                    url = f"/cds-services/{service.id}/feedback"
                    assert client.post(url, json={"feedback": feedback}).status_code == 200
        state = app.extensions[EXTENSION_KEY]
        state.audit.writer.flush(60)
        state.audit.writer.close()
        state.engine.dispose()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a scratch database")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--calls-per-day", type=int, default=120)
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.datetime.now(dt.UTC).date())
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    total = generate(args.database_url, args.days, args.calls_per_day, args.end, args.seed)
    print(f"{total} calls over {args.days} days ending {args.end} in {args.database_url}")


if __name__ == "__main__":
    main()
