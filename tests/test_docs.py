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
