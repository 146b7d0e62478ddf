"""The audit trail's patient-key secret: required in production, kept locally in development."""

from __future__ import annotations

import logging
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import ValidationError

from cds_service.server import ServeError, _check_audit_key
from cds_service.settings import Settings
from cds_service.storage.audit_trail import DEVELOPMENT_KEY_FILE, audit_secret, development_key

KEY = "a-production-secret-of-at-least-32-characters"


def test_serve_refuses_to_start_without_a_key_outside_development(tmp_path):
    with pytest.raises(ServeError, match="CDS_AUDIT_KEY is not set"):
        _check_audit_key(Settings(instance_path=tmp_path))
    _check_audit_key(Settings(instance_path=tmp_path, audit_key=KEY))
    _check_audit_key(Settings(instance_path=tmp_path, allow_unauthenticated=True))


def test_the_key_is_at_least_32_characters_and_never_shown(tmp_path):
    with pytest.raises(ValidationError):
        Settings(audit_key="too-short")
    settings = Settings(instance_path=tmp_path, audit_key=KEY)
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    assert audit_secret(settings) == KEY.encode()


def test_development_makes_one_key_in_the_instance_folder(tmp_path):
    settings = Settings(instance_path=tmp_path / "instance", allow_unauthenticated=True)
    first = audit_secret(settings)
    assert first and len(first) == 64
    path = tmp_path / "instance" / DEVELOPMENT_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert audit_secret(settings) == first  # kept across restarts
    assert [p.name for p in path.parent.iterdir()] == [DEVELOPMENT_KEY_FILE]


def test_workers_starting_together_share_one_development_key(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: development_key(tmp_path), range(16)))
    assert len(keys) == 1


def test_no_silent_default_outside_development(tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="cds_service.audit"):
        assert audit_secret(Settings(instance_path=tmp_path)) is None
    assert "CDS_AUDIT_KEY is not set" in caplog.text
    assert not (tmp_path / DEVELOPMENT_KEY_FILE).exists()
