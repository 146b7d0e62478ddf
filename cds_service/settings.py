"""Service settings, read from the environment (prefix ``CDS_``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .data_access.fhir_policy import normalise_base

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE_PATH = PROJECT_ROOT / "instance"
#: A CORS origin as browsers send it (no path, no trailing slash), or `*`.
_ORIGIN = re.compile(r"\*|https?://[^/\s?#@]+")


class Settings(BaseSettings):
    """Every setting of the service; each one is an environment variable ``CDS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CDS_", frozen=True, extra="ignore")

    instance_path: Path = Field(
        default=DEFAULT_INSTANCE_PATH,
        description="Folder for local state (the default SQLite database lives here).",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy database URL; empty means a SQLite file in the instance folder.",
    )
    database_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        le=30,
        description=(
            "Bound on one database wait: connecting, a lock, a statement (SQLite busy timeout; "
            "PostgreSQL connect, lock and statement timeouts)."
        ),
    )
    audit_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description=(
            "Secret (32+ characters) for the pseudonymous patient key of the audit trail "
            "(HMAC-SHA256); required by `serve` outside development mode."
        ),
    )
    audit_queue_size: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Most audit records waiting for the database in one worker (then dropped).",
    )
    knowledge_dir: Path = Field(
        default=PROJECT_ROOT / "knowledge",
        description="Folder holding the clinical knowledge (value sets, rules, card themes).",
    )
    allow_unauthenticated: bool = Field(
        default=False,
        description="Development mode: accept calls without a JWT (never in production).",
    )
    max_cards: int = Field(default=4, ge=1, le=20, description="Most cards in one answer.")
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Largest accepted request body, in bytes."
    )
    max_json_depth: int = Field(default=64, ge=8, le=1000, description="Deepest JSON nesting.")
    max_resources: int = Field(
        default=20_000, ge=1, description="Most FHIR resources accepted in one call."
    )
    public_base_url: str = Field(
        default="",
        description=(
            "Public URL of the service, the audience its JWTs must name; required by `serve` "
            "outside development mode (no proxy header is trusted)."
        ),
    )
    trusted_clients: Path | None = Field(
        default=None,
        description="Trusted-clients file (YAML or JSON): the EHRs whose JWTs the service accepts.",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Browser origins (comma-separated) allowed to call the service; none if empty.",
    )
    jwt_leeway_seconds: int = Field(
        default=30, ge=0, le=300, description="Clock-skew leeway for a JWT's exp, nbf and iat."
    )
    jwt_max_lifetime_seconds: int = Field(
        default=3600, ge=60, le=86_400, description="Longest accepted JWT lifetime (exp - iat)."
    )
    jwks_cache_seconds: int = Field(
        default=300, ge=1, le=86_400, description="How long a fetched JWK Set is kept."
    )
    jwks_refresh_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Least time between two JWK Set fetches caused by an unknown kid.",
    )
    jwks_timeout_seconds: float = Field(
        default=2.0, gt=0, le=10, description="Timeout of one JWK Set fetch."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        min_length=16,
        description=(
            "Bearer token a scraper must send to read /metrics; when unset, /metrics is open "
            "(protect it at the proxy or the network instead)."
        ),
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description=(
            "Days audit records and feedback are kept: the default of `cds-service db purge`."
        ),
    )
    call_timeout_seconds: float = Field(
        default=30.0,
        ge=1,
        le=600,
        description=(
            "A call still running after this long is stopped and answered 503 (`serve` only)."
        ),
    )
    max_header_bytes: int = Field(
        default=16_384, ge=1024, le=65_536, description="Most bytes of request headers."
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_cors_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list | tuple):
            bad = [item for item in value if not _ORIGIN.fullmatch(str(item))]
            if bad:
                raise ValueError(f"not a browser origin (scheme://host[:port]): {bad[0]}")
        return value

    log_level: str = Field(default="INFO", description="Python logging level.")
    allowed_fhir_servers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "FHIR base URLs (comma-separated) any client may send as fhirServer; the service "
            "calls no other (https, or http where the entry itself names http)."
        ),
    )
    fhir_budget_seconds: float = Field(
        default=2.0,
        gt=0,
        le=10,
        description="Overall time for fetching missing data from a FHIR server in one call.",
    )
    fhir_connect_timeout_seconds: float = Field(
        default=0.5, gt=0, le=10, description="Connect timeout of one FHIR request."
    )
    fhir_read_timeout_seconds: float = Field(
        default=1.5, gt=0, le=10, description="Read timeout of one FHIR request."
    )
    fhir_max_pages: int = Field(
        default=10, ge=1, le=100, description="Most search pages read for one prefetch key."
    )

    @field_validator("allowed_fhir_servers", mode="before")
    @classmethod
    def _split_fhir_servers(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list | tuple):
            bad = [item for item in value if normalise_base(str(item)) is None]
            if bad:
                raise ValueError(f"not an http(s) FHIR base URL: {', '.join(map(str, bad))}")
        return value

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the instance folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.instance_path / 'cds.sqlite3').resolve()}"
