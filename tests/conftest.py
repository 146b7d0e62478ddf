"""Shared fixtures: the app on a fixed clock, its test client, the knowledge, request builders.

Every test is marked by what it starts (see `support/speed.py`): `-m fast` runs those that start
nothing outside the test process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.builders import FIXED_NOW, PATIENT_VIEW

from cds_service import Settings, create_app
from cds_service.core.knowledge import KnowledgeBase
from cds_service.knowledge_files import load_knowledge
from cds_service.settings import PROJECT_ROOT
from cds_service.storage.database import upgrade

#: Real FHIR servers on loopback: the Node FHIR server, a scripted stub, a silent port;
#: CDS clients with real keys and signed JWTs, and JWKS servers on loopback.
pytest_plugins = ["support.fhir_servers", "support.jwt_clients"]


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load_knowledge(PROJECT_ROOT / "knowledge")


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    """Development mode, with its own SQLite database at the current schema."""
    config = Settings(instance_path=tmp_path_factory.mktemp("instance"), allow_unauthenticated=True)
    upgrade(config.resolved_database_url())
    return config


@pytest.fixture(scope="session")
def app(settings):
    """The application on a fixed clock; shared, since a service call changes nothing in it."""
    return create_app(settings, clock=lambda: FIXED_NOW)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def call(client) -> Callable[..., Any]:
    """POST a body to a service and return the response."""

    def _call(body: Any, service: str = PATIENT_VIEW, **kwargs: Any) -> Any:
        return client.post(f"/cds-services/{service}", json=body, **kwargs)

    return _call


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # imported here, once the plugins it reads (support.fhir_servers) are registered
    from support.speed import classify

    classify(items)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under `-m`, a module whose declared marker rules out all its tests is not even imported."""
    from support.speed import never_selected

    return True if never_selected(config.option.markexpr, collection_path) else None
