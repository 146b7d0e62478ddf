"""GET /cds-services: the discovery document, built from the knowledge's services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response

from ..core.knowledge import KnowledgeBase
from ..data_access.prefetch import discovery_prefetch
from .responses import json_response
from .state import state

bp = Blueprint("discovery", __name__)


def discovery_document(kb: KnowledgeBase, today: dt.date) -> dict[str, Any]:
    services = []
    for service in kb.services.values():
        entry: dict[str, Any] = {
            "hook": service.hook,
            "title": service.title,
            "description": service.description,
            "id": service.id,
            "prefetch": discovery_prefetch(service, today),
        }
        if service.usage_requirements:
            entry["usageRequirements"] = service.usage_requirements
        services.append(entry)
    return {"services": services}


@bp.get("/cds-services")
def discovery() -> Response:
    s = state()
    return json_response(discovery_document(s.knowledge, s.clock().date()))
