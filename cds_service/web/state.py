"""What every request handler shares: settings, the compiled knowledge, the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Engine

from ..core.knowledge import KnowledgeBase
from ..data_access.fhir_client import FhirClient
from ..settings import Settings
from ..storage.audit_trail import AuditTrail

EXTENSION_KEY = "cds_service"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class ServiceState:
    settings: Settings
    knowledge: KnowledgeBase
    engine: Engine
    clock: Callable[[], dt.datetime] = utc_now
    #: The pooled HTTP client for fetching missing data from an EHR's FHIR server.
    fhir_client: FhirClient | None = None
    #: The audit trail of service calls (a background writer and the patient-key secret).
    audit: AuditTrail | None = None


def state() -> ServiceState:
    """The service state of the running application."""
    return current_app.extensions[EXTENSION_KEY]
