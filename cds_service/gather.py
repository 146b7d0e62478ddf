"""Gather the patient's data for a service call: from prefetch, and where it is missing, report it.

This is the one place that decides where data comes from; the FHIR-server fallback plugs in here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .core.envelope import HookRequest
from .core.knowledge import KnowledgeBase
from .core.prefetch import KeyData, read_prefetch


class DataMissing(Exception):
    """Required data could not be had; `missing` maps each prefetch key to the reason."""

    def __init__(self, missing: dict[str, str]):
        super().__init__(", ".join(f"{k}: {v}" for k, v in sorted(missing.items())))
        self.missing = missing


class TooManyResources(Exception):
    """The request carries more FHIR resources than the service accepts."""

    def __init__(self, count: int, limit: int):
        super().__init__(f"{count} FHIR resources, more than the limit of {limit}")
        self.count = count
        self.limit = limit


@dataclass(frozen=True)
class PatientData:
    resources: list[Mapping[str, Any]]
    #: prefetch key -> where its data came from: "prefetch", "no data", or "missing"
    origin: dict[str, str]


def _origin(data: KeyData) -> str:
    return {"data": "prefetch", "empty": "no data"}.get(data.status, "missing")


def gather_patient_data(
    kb: KnowledgeBase, request: HookRequest, *, max_resources: int
) -> PatientData:
    """The patient's resources, or `DataMissing` when a required key cannot be satisfied."""
    keys = read_prefetch(kb, request.prefetch)
    missing = {
        key: data.reason or "missing"
        for key, data in keys.items()
        if data.status == "missing" and kb.prefetch[key].required
    }
    if missing:
        raise DataMissing(missing)
    resources = [r for data in keys.values() for r in data.resources]
    if len(resources) > max_resources:
        raise TooManyResources(len(resources), max_resources)
    return PatientData(resources, {key: _origin(data) for key, data in keys.items()})
