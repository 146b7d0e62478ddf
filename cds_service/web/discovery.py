"""GET /cds-services: the discovery document, built from the knowledge's services."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from ..core.knowledge import KnowledgeBase
from ..data_access.prefetch import discovery_prefetch
from .responses import json_response
from .state import state

bp = Blueprint("discovery", __name__)


def discovery_document(kb: KnowledgeBase, prefetch: dict[str, str]) -> dict[str, Any]:
    services = []
    for service in kb.services.values():
        entry: dict[str, Any] = {
            "hook": service.hook,
            "title": service.title,
            "description": service.description,
            "id": service.id,
            "prefetch": {k: v for k, v in prefetch.items() if k in service.prefetch_keys},
        }
        if service.usage_requirements:
            entry["usageRequirements"] = service.usage_requirements
        services.append(entry)
    return {"services": services}


@bp.get("/cds-services")
def discovery() -> Response:
    s = state()
    prefetch = discovery_prefetch(s.knowledge, s.clock().date())
    return json_response(discovery_document(s.knowledge, prefetch))
