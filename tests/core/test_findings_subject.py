"""Whose record it is reads as `patient_id_of` reads it, for any patient id and reference."""

from __future__ import annotations

import datetime as dt
import itertools

from cds_service.core.findings import _call_context, _subject_problem
from cds_service.core.references import patient_id_of

IDS = ["1", "mix-1", "a/b", " x", "x ", "", "a?b", "Patient", "Patient/1", "é"]


def _expected(subject: object, patient_id: str) -> str | None:
    named = patient_id_of(subject)
    if named == patient_id:
        return None
    return "other" if named is not None else "subject unreadable or missing"


def test_subject_reads_as_patient_id_of(kb) -> None:
    for patient_id, other in itertools.product(IDS, IDS):
        ctx = _call_context(kb, [], patient_id, dt.date(2026, 12, 1))
        for reference in (
            f"Patient/{other}",
            f" Patient/{other}",
            f"Patient/{other} ",
            f"https://x/fhir/Patient/{other}/_history/2",
            f"Patient/{other}?x=1",
            other,
        ):
            for key in ("subject", "patient"):
                res = {key: {"reference": reference}}
                assert _subject_problem(ctx, res) == _expected(res[key], patient_id), res
    ctx = _call_context(kb, [], "1", dt.date(2026, 12, 1))
    for subject in (None, "Patient/1", {"reference": 1}, {}, ["Patient/1"]):
        assert _subject_problem(ctx, {"subject": subject}) == _expected(subject, "1")
