"""Service settings, read from the environment (prefix ``CDS_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE_PATH = PROJECT_ROOT / "instance"


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
        description="Public URL of the service behind a proxy (used for JWT audiences).",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the instance folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.instance_path / 'cds.sqlite3').resolve()}"
