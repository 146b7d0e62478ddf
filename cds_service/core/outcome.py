"""FHIR OperationOutcome bodies for every error the service returns."""

from __future__ import annotations

from typing import Any


def operation_outcome(
    code: str, diagnostics: str, *, expression: str | None = None, severity: str = "error"
) -> dict[str, Any]:
    """An OperationOutcome with one issue; `code` is a FHIR issue-type code."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def missing_data_outcome(missing: dict[str, str]) -> dict[str, Any]:
    """The 412 body: one issue per prefetch key that could not be had, and why."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "not-found",
                "diagnostics": f"Required data for prefetch key '{key}' is missing: {reason}.",
                "expression": [f"prefetch.{key}"],
            }
            for key, reason in sorted(missing.items())
        ],
    }


def invalid_outcome(problems: list[tuple[str, str]], code: str = "invalid") -> dict[str, Any]:
    """A 4xx body with one issue per problem: `expression` names the member, `diagnostics` why."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": code,
                "diagnostics": f"{where}: {reason}",
                "expression": [where],
            }
            for where, reason in problems
        ],
    }
