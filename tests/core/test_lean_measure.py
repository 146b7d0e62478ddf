"""The lean result reader against the FHIR R4 models (`fhir.resources`): a differential test.

Whatever the lean reader accepts, the models accept too, every read element intact, and every
measure reads it the same way. Checked on every Observation of the sample charts and on a
generated corpus of plain and hostile results.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.core.findings import MEASURE_ELEMENTS, _interpretation_codes, _validate_measure
from cds_service.core.labs import read_measure
from cds_service.core.lean_measure import lean_observation
from cds_service.knowledge_files import load_knowledge
from cds_service.settings import Settings
from cds_service.tester_tools.samples import CHARTS_DIR

KB = load_knowledge(Settings().knowledge_dir)
MEASURES = list(KB.measures.values())
LOINC_CODES = sorted({code for m in MEASURES for code in m.codes})
UNITS = [*sorted({unit for m in MEASURES for unit in m.units}), "mg/dL", "", " ", "kg"]


def _readings(obs: Any, res: dict[str, Any]) -> list[Any]:
    interpretations = _interpretation_codes(res)
    return [read_measure(measure, obs, interpretations) for measure in MEASURES]


def assert_agrees(res: dict[str, Any]) -> bool:
    """The lean reader accepts only what the models accept, with the same readings."""
    lean = lean_observation(res, MEASURE_ELEMENTS)
    if lean is None:
        return False
    model, dropped = _validate_measure(res)  # raises if the models reject code or resourceType
    assert dropped == [], f"the models drop {dropped} that the lean reader accepted: {res}"
    assert _readings(lean, res) == _readings(model, res), res
    return True


def _chart_observations() -> list[dict[str, Any]]:
    found = []
    for path in sorted(CHARTS_DIR.glob("*.json")):
        bundle = json.loads(path.read_text())
        for entry in bundle.get("entry", []):
            resource = entry.get("resource", {})
            if resource.get("resourceType") == "Observation":
                found.append(resource)
    return found


def test_sample_chart_results_read_the_same() -> None:
    observations = _chart_observations()
    accepted = sum(assert_agrees(res) for res in observations)
    assert observations and accepted > 0  # the lean path is exercised, not always deferred


def test_an_extension_or_unknown_element_defers_to_the_models() -> None:
    plain = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": LOINC_CODES[0]}]},
        "valueQuantity": {"value": 3.1, "unit": "mmol/L"},
    }
    assert lean_observation(plain, MEASURE_ELEMENTS) is not None
    for changed in (
        {"valueQuantity": {"value": 3.1, "unit": "mmol/L", "extension": []}},
        {"valueQuantity": {"value": True}},
        {"valueQuantity": {"value": 1e400}},
        {"valueQuantity": {"value": 10**40}},
        {"status": "weird"},
        {"code": {"coding": [{"code": " padded"}]}},
        {"code": {"coding": []}},
        {"code": {"coding": [{"code": "2823\u00a03"}]}},
    ):
        assert lean_observation({**plain, **changed}, MEASURE_ELEMENTS) is None, changed


# --- the generated corpus ---------------------------------------------------------------------

_texts = st.one_of(
    st.sampled_from(["", " ", "mmol/L", "mg/dL", "a b", " a", "a  b", "x\t", "http://loinc.org"]),
    st.text(max_size=6),
    st.text(alphabet=st.characters(codec="ascii"), max_size=6),
)
_anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), _texts, st.just([]), st.just({})
)
_numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 0.1, 3.1, 2.9, 1e-7, 1e22, 2**53, 2**53 + 1, "1.5", True]),
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value that is usually well formed and sometimes anything at all."""
    return st.one_of(strategy, strategy, strategy, _anything)


def _object(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A JSON object with some of `fields`, now and then with a stray member."""
    extra = st.dictionaries(st.sampled_from(["extension", "id", "_value", "comparator"]), _anything)
    return st.builds(
        lambda present, stray: {**present, **stray},
        st.fixed_dictionaries({}, optional=fields),
        st.one_of(st.just({}), st.just({}), extra),
    )


_coding = _object(
    {
        "system": _maybe(st.sampled_from(["http://loinc.org", "http://x y", ""])),
        "code": _maybe(st.one_of(st.sampled_from(LOINC_CODES), _texts)),
        "display": _maybe(_texts),
    }
)
_concept = _object(
    {"coding": _maybe(st.lists(_maybe(_coding), max_size=3)), "text": _maybe(_texts)}
)
_quantity = _object(
    {
        "value": _maybe(_numbers),
        "unit": _maybe(st.one_of(st.sampled_from(UNITS), _texts)),
        "code": _maybe(st.one_of(st.sampled_from(UNITS), _texts)),
        "system": _maybe(st.sampled_from(["http://unitsofmeasure.org", "x y"])),
    }
)
_range = _object({"low": _maybe(_quantity), "high": _maybe(_quantity), "text": _maybe(_texts)})
_observation = st.builds(
    lambda body, stray: {"resourceType": "Observation", **body, **stray},
    st.fixed_dictionaries(
        {"code": _maybe(_concept)},
        optional={
            "id": _maybe(st.sampled_from(["o1", "a" * 64, "a" * 65, "x_y", "1.2-3"])),
            "status": _maybe(st.sampled_from(["final", "amended", "weird", "", "fi nal"])),
            "valueQuantity": _maybe(_quantity),
            "interpretation": _maybe(st.lists(_maybe(_concept), max_size=2)),
            "referenceRange": _maybe(st.lists(_maybe(_range), max_size=2)),
        },
    ),
    st.one_of(st.just({}), st.dictionaries(st.sampled_from(["meta", "note"]), _anything)),
)


_plain_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1)
_plain_coding = st.fixed_dictionaries(
    {},
    optional={
        "system": st.sampled_from(["http://loinc.org", "urn:oid:2.16.840.1.113883.6.1"]),
        "code": st.one_of(st.sampled_from(LOINC_CODES), st.sampled_from(["L", "H", "N", "LL"])),
        "display": _plain_text,
    },
)
_plain_concept = st.fixed_dictionaries(
    {"coding": st.lists(_plain_coding, min_size=1, max_size=2)}, optional={"text": _plain_text}
)
_plain_quantity = st.fixed_dictionaries(
    {"value": _numbers},
    optional={
        "unit": st.one_of(st.sampled_from([u for u in UNITS if u.strip()]), _plain_text),
        "code": st.sampled_from([u for u in UNITS if u.strip() and " " not in u]),
        "system": st.just("http://unitsofmeasure.org"),
    },
)
_plain_range = st.fixed_dictionaries(
    {}, optional={"low": _plain_quantity, "high": _plain_quantity, "text": _plain_text}
)
_plain_observation = st.fixed_dictionaries(
    {
        "resourceType": st.just("Observation"),
        "status": st.sampled_from(["final", "amended", "preliminary", "entered-in-error"]),
        "code": _plain_concept,
    },
    optional={
        "id": st.sampled_from(["o1", "a" * 64, "1.2-3"]),
        "valueQuantity": _plain_quantity,
        "interpretation": st.lists(_plain_concept, min_size=1, max_size=2),
        "referenceRange": st.lists(_plain_range, min_size=1, max_size=2),
    },
)
CORPUS = settings(
    max_examples=1000,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


@CORPUS
@given(_plain_observation)
def test_generated_plain_results_read_the_same(res: dict[str, Any]) -> None:
    assert_agrees(res)


@CORPUS
@given(_observation)
def test_generated_hostile_results_never_accepted_beyond_the_models(res: dict[str, Any]) -> None:
    assert_agrees(res)
