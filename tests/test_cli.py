"""The command line: help everywhere, whatever the environment; each command's small promises."""

from __future__ import annotations

import json
import os
import subprocess

import click
import pytest
from click.testing import CliRunner
from support.served import CDS

from cds_service.cli import main
from cds_service.tester_tools.commands import service_base

#: An environment a new operator might have: nothing set, or settings that are wrong.
ENVIRONMENTS = {
    "empty": {},
    "broken": {
        "CDS_AUDIT_KEY": "short",
        "CDS_TRUSTED_CLIENTS": "/nonexistent/trusted-clients.yaml",
        "CDS_MAX_CARDS": "many",
        "CDS_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
    },
}
FLASK_OPTIONS = ("-e, --env-file", "-A, --app", "--debug", "--version")


def every_command(group: click.Group = main, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += every_command(command, (*path, name))
        else:
            paths.append((*path, name))
    return paths


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    return {**env, **extra}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("command", every_command(), ids=lambda p: " ".join(p) or "main")
def test_every_help_prints_cleanly(command, environment):
    env = {key: None for key in os.environ if key.startswith("CDS_")}
    result = CliRunner().invoke(
        main, [*command, "--help"], env={**env, **ENVIRONMENTS[environment]}
    )
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert result.output.startswith("Usage: ")
    assert "Traceback" not in result.output and "ERROR" not in result.output
    for option in FLASK_OPTIONS:
        assert option not in result.output, option


def test_the_help_of_the_installed_command_is_clean_in_a_real_process():
    """In a real process, where logging would reach stderr: nothing but the help."""
    result = subprocess.run(
        [*CDS, "--help"], capture_output=True, text=True, timeout=60, env=clean_env({})
    )
    assert result.returncode == 0
    assert result.stderr == ""
    assert "Commands:" in result.stdout and "serve" in result.stdout
    served = subprocess.run(
        [*CDS, "serve", "--help"], capture_output=True, text=True, timeout=60, env=clean_env({})
    )
    assert (served.returncode, served.stderr) == (0, "")


def test_samples_list_has_headers():
    result = CliRunner().invoke(main, ["samples", "list"])
    assert result.exit_code == 0
    header = result.output.splitlines()[0].split()
    assert header[:2] == ["chart", "patient"] and "expected" in header
    assert "ces-new-urinary-retention" in result.output


def test_samples_request_gives_a_fresh_hook_instance_each_time():
    args = ["samples", "request", "ces-new-urinary-retention", "--today", "2026-11-25"]
    first, second = (json.loads(CliRunner().invoke(main, args).output) for _ in range(2))
    assert first["hookInstance"] != second["hookInstance"]
    assert first["prefetch"] == second["prefetch"]  # the same chart, the same day


@pytest.mark.parametrize(
    "given",
    [
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080/",
        "http://127.0.0.1:8080/cds-services",
        "http://127.0.0.1:8080/cds-services/",
    ],
)
def test_try_service_takes_the_base_or_the_discovery_url(given):
    assert service_base(given) == "http://127.0.0.1:8080"


def test_a_service_behind_a_path_keeps_its_path():
    assert service_base("https://h.example/cds/cds-services") == "https://h.example/cds"


@pytest.mark.parametrize("option", ["--fhir-server", "--service"])
@pytest.mark.parametrize("bad", ["not-a-url", "ftp://h.example/fhir", "http://"])
def test_try_says_in_words_when_a_url_is_not_one(option, bad):
    args = ["try", "--fhir-server", "http://127.0.0.1:9/fhir", "--patient", "p"]
    args = [*args, option, bad] if option == "--service" else [*args[:1], option, bad, *args[3:]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "is not an http(s) URL" in result.output
    assert "Traceback" not in result.output


def test_purge_without_a_retention_says_how_to_give_one(tmp_path):
    env = {"CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'none.sqlite3'}", "CDS_RETENTION_DAYS": None}
    result = CliRunner().invoke(main, ["db", "purge"], env=env)
    assert result.exit_code == 2
    assert "--older-than DAYS" in result.output and "CDS_RETENTION_DAYS" in result.output
