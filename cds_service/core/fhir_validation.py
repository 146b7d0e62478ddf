"""The FHIR R4 models (`fhir.resources.R4B`) check what a card rests on and what it offers.

Findings are read from the raw JSON by lean readers (findings, lean_measure). Before a card is
answered, the records it cites as evidence and the resources its suggestions carry are validated
with the models themselves:
- a cited record that does not validate is still shown (a red flag is never hidden); the card
  says which record and which elements did not validate, to be checked in the chart;
- a suggestion whose resource does not validate is withheld: an EHR would refuse it.

Validation depends on the resource's content alone, so its outcome is remembered by a digest of
the resource's canonical JSON (BLAKE2b, 128 bits; a bounded table): a chart seen again costs a
serialisation and a lookup per record, whatever the record's size. A suggestion is remembered by
its shape (`reference_shape`): what differs from patient to patient in a suggestion is mostly
the references it carries, which the models read as plain strings, so the knowledge's suggestions
are validated once per shape, not once per patient.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from .memo import remember
from .references import resource_reference

if TYPE_CHECKING:
    from .cards import RenderedCard

#: How many outcomes are remembered (a few per card; about 150 bytes each); past it, all are
#: forgotten and learnt again.
CACHE_SIZE = 8192
_OUTCOMES: dict[bytes, str | None] = {}
_UNSEEN = object()
#: Elements named in a problem, at most.
MAX_ELEMENTS = 3
_RECORD_CHECK = "**Record check:**"
#: The models of what cards cite and offer, loaded at start-up so the first call is not slower.
PRELOADED = {
    rtype: get_fhir_model_class(rtype)
    for rtype in (
        "Condition",
        "Observation",
        "MedicationRequest",
        "MedicationStatement",
        "ServiceRequest",
    )
}


#: A plain reference ("Type/id", with a FHIR id) in canonical JSON.
_PLAIN_REFERENCE = re.compile(rb'"reference":"([A-Za-z]{1,64})/[A-Za-z0-9\-.]{1,64}"')


def reference_shape(canonical: bytes) -> bytes:
    """Canonical JSON with each plain reference ("Type/id") written "Type/x".

    The models take Reference.reference as a string (any non-empty one passes) and no check of
    theirs reads what it names, so a resource and its shape validate alike
    (tests/core/test_fhir_validation.py checks this on the sample charts' suggestions and a fuzz
    corpus). Anything else, an odd reference included, is kept as it is.
    """
    return _PLAIN_REFERENCE.sub(rb'"reference":"\1/x"', canonical)


def _element_path(location: Sequence[int | str]) -> str:
    """("code", "coding", 0, "code") -> "code.coding[0].code"."""
    path = ""
    for part in location:
        if part == "root":  # pydantic's name for a value checked as a whole
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _problem_of(error: ValidationError) -> str:
    paths = list(dict.fromkeys(_element_path(e["loc"]) or "the resource" for e in error.errors()))
    shown = ", ".join(paths[:MAX_ELEMENTS])
    return shown + (f" and {len(paths) - MAX_ELEMENTS} more" if len(paths) > MAX_ELEMENTS else "")


def _validate(resource: Mapping[str, Any]) -> str | None:
    rtype = resource.get("resourceType")
    try:
        model = PRELOADED.get(rtype) or get_fhir_model_class(rtype)
    except (KeyError, TypeError, ValueError):
        model = None
    if model is None:
        return "resourceType"
    try:
        model.model_validate(resource)
    except ValidationError as error:
        return _problem_of(error)
    except (TypeError, ValueError, RecursionError):  # what the models raise outside pydantic
        return "the resource"
    return None


def forget_outcomes() -> None:
    """Forget every remembered outcome (as a new worker starts)."""
    _OUTCOMES.clear()


def fhir_problem(resource: Mapping[str, Any], *, by_shape: bool = False) -> str | None:
    """None when the resource is valid FHIR R4; else the elements that are not. `by_shape`: a
    resource not seen before is also looked up by its `reference_shape` (the same for every
    patient), and validated only when that shape is new too."""
    try:
        canonical = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # not plain JSON: validate it as it is
        return _validate(resource)
    key = _digest(canonical)
    outcome = _OUTCOMES.get(key, _UNSEEN)
    if outcome is not _UNSEEN:
        return outcome
    if by_shape:
        shape_key = _digest(reference_shape(canonical))
        outcome = _OUTCOMES.get(shape_key, _UNSEEN)
        if outcome is _UNSEEN:
            outcome = remember(_OUTCOMES, shape_key, _validate(resource), CACHE_SIZE)
        return remember(_OUTCOMES, key, outcome, CACHE_SIZE)
    return remember(_OUTCOMES, key, _validate(resource), CACHE_SIZE)


def _digest(canonical: bytes) -> bytes:
    return blake2b(canonical, digest_size=16).digest()


def _index(resources: Iterable[Mapping[str, Any]], cited: set[str]) -> dict[str, list[Mapping]]:
    """The resources behind the cited references ("Type/id"), found by their id."""
    ids = {ref.partition("/")[2] for ref in cited}
    found: dict[str, list[Mapping[str, Any]]] = {}
    for resource in resources:
        rid = resource.get("id")
        if type(rid) is str and rid in ids and (ref := resource_reference(resource)) in cited:
            found.setdefault(ref, []).append(resource)
    return found


def _record_lines(card: RenderedCard, index: Mapping[str, list[Mapping[str, Any]]]) -> list[str]:
    lines = []
    for ref in card.shown:
        problems = [p for r in index.get(ref, ()) if (p := fhir_problem(r))]
        if problems:
            elements = "; ".join(dict.fromkeys(problems))
            lines.append(
                f"- {ref} does not pass FHIR R4 validation ({elements}): check it in the chart."
            )
    return lines


def _with_record_check(detail: str, lines: list[str]) -> str:
    """The detail with a record-check paragraph after the evidence (before the action)."""
    paragraph = "\n".join([_RECORD_CHECK, "", *lines])
    head, sep, tail = detail.partition("\n\n**Action")
    if not sep:
        return detail.rstrip("\n") + "\n\n" + paragraph + "\n"
    return f"{head}\n\n{paragraph}{sep}{tail}"


def _valid_suggestions(card: RenderedCard) -> tuple[list[dict[str, Any]], set[str]]:
    """The card's suggestions whose resources all validate, and the uuids of those withheld."""
    kept, withheld = [], set()
    for suggestion in card.json.get("suggestions", ()):
        resources = [a["resource"] for a in suggestion.get("actions", ()) if "resource" in a]
        if any(fhir_problem(r, by_shape=True) for r in resources):
            withheld.add(suggestion["uuid"])
        else:
            kept.append(suggestion)
    return kept, withheld


def _checked(card: RenderedCard, index: Mapping[str, list[Mapping[str, Any]]]) -> RenderedCard:
    lines = _record_lines(card, index)
    kept, withheld = _valid_suggestions(card)
    if not lines and not withheld:
        return card
    answer = dict(card.json)
    if lines:
        answer["detail"] = _with_record_check(answer["detail"], lines)
    if withheld:
        if kept:
            answer["suggestions"] = kept
        else:
            answer.pop("suggestions", None)
            answer.pop("selectionBehavior", None)
    suggestions = tuple(s for s in card.suggestions if s.uuid not in withheld)
    return dataclasses.replace(card, json=answer, suggestions=suggestions)


def check_cards(
    cards: Sequence[RenderedCard], resources: Iterable[Mapping[str, Any]]
) -> tuple[RenderedCard, ...]:
    """The cards, each with its cited records and its suggestions validated (see the module)."""
    cited = {ref for card in cards for ref in card.shown}
    index = _index(resources, cited) if cited else {}
    return tuple(_checked(card, index) for card in cards)
