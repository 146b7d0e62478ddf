"""Public pages: each rule's "About this recommendation" (HTML and JSON), the card icon and the
card-topic CodeSystem. They hold no patient data and need no JWT: they are outside /cds-services,
so that a clinician's browser can open them from a card.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, render_template

from ..core.about import rule_about, topic_codesystem
from ..core.cards import about_url
from ..core.knowledge import Rule
from .responses import json_response
from .services import public_base_url
from .state import state

bp = Blueprint("about", __name__, template_folder="templates")
ICON = (Path(__file__).parent / "static" / "icon.png").read_bytes()


def _rule(rule_id: str) -> Rule:
    for rule in state().knowledge.rules:
        if rule.id == rule_id:
            return rule
    abort(404)


@bp.get("/about/rules/<rule_id>.json")
def rule_json(rule_id: str) -> Response:
    s = state()
    rule = _rule(rule_id)
    return json_response(rule_about(s.knowledge, rule, about_url(public_base_url(s), rule.id)))


@bp.get("/about/rules/<rule_id>")
def rule_html(rule_id: str) -> str:
    s = state()
    rule = _rule(rule_id)
    page = rule_about(s.knowledge, rule, about_url(public_base_url(s), rule.id))
    return render_template("about_rule.html", page=page, json_url=page["url"] + ".json")


@bp.get("/about/rules")
def rules_index() -> Response:
    s = state()
    base = public_base_url(s)
    return json_response(
        {
            "rules": [
                {"id": r.id, "title": r.title, "url": about_url(base, r.id)}
                for r in s.knowledge.rules
            ]
        }
    )


@bp.get("/about/icon.png")
def icon() -> Response:
    headers = {"Cache-Control": "public, max-age=86400", "Access-Control-Allow-Origin": "*"}
    return Response(ICON, mimetype="image/png", headers=headers)


@bp.get("/about/CodeSystem/card-topic")
def card_topic() -> Response:
    return json_response(topic_codesystem(state().knowledge))
