"""The README's promises: every setting documented, the two set-up commands present and wired."""

from __future__ import annotations

import re

from cds_service.settings import PROJECT_ROOT, Settings

README = (PROJECT_ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    for name in Settings.model_fields:
        assert f"`CDS_{name.upper()}`" in README, name


def test_the_readme_has_the_two_set_up_commands_and_ci_runs_the_test_one():
    blocks = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    assert "scripts/serve\n" in blocks
    assert "scripts/test\n" in blocks
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert "exec scripts/test" in ci


def test_scripts_serve_host_and_port_are_documented():
    script = (PROJECT_ROOT / "scripts" / "serve").read_text()
    assert '"${HOST:-127.0.0.1}"' in script and '"${PORT:-8080}"' in script
    assert "HOST and PORT" in script
    assert "HOST=0.0.0.0 PORT=9000 scripts/serve" in README
    assert "`HOST`" in README and "`PORT`" in README


def test_the_readme_names_every_metric():
    from prometheus_client import REGISTRY

    import cds_service.metrics  # noqa: F401  (registers the metrics)

    ours = {m.name for m in REGISTRY.collect() if m.name.startswith("cds_")}
    assert ours
    for name in ours:
        shown = name if name.endswith("_seconds") or "waiting" in name else f"{name}_total"
        assert f"`{shown}`" in README, shown


def test_the_readme_has_a_deploying_section_with_its_files():
    assert "\n## Deploying\n" in README
    for path in (
        "deploy/nginx/cds-service.conf",
        "deploy/systemd/cds-service.service",
        "deploy/cds-service.env.example",
    ):
        assert (PROJECT_ROOT / path).is_file(), path
        assert f"`{path}`" in README, path
    for topic in ("CDS_PUBLIC_BASE_URL", "X-Forwarded-Proto", "CDS_AUDIT_KEY", "journal"):
        assert topic in README.split("\n## Deploying\n", 1)[1], topic
