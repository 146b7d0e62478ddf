"""Code systems: canonical URIs, aliases seen in real records, and code normalisation."""

from __future__ import annotations

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

#: Short names used in the knowledge files.
KNOWLEDGE_SYSTEMS = {
    "icd-10-cm": ICD10CM,
    "snomed": SNOMED,
    "loinc": LOINC,
    "rxnorm": RXNORM,
}

#: Other spellings of the same systems that EHRs send (OIDs, trailing slashes, http/https).
_SYSTEM_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10-cm/": ICD10CM,
    "https://hl7.org/fhir/sid/icd-10-cm": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "http://snomed.info/sct/": SNOMED,
    "https://snomed.info/sct": SNOMED,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "http://loinc.org/": LOINC,
    "https://loinc.org": LOINC,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "http://www.nlm.nih.gov/research/umls/rxnorm/": RXNORM,
}

SYSTEM_NAMES = {ICD10CM: "ICD-10-CM", SNOMED: "SNOMED CT", LOINC: "LOINC", RXNORM: "RxNorm"}
CANONICAL_SYSTEMS = frozenset(SYSTEM_NAMES)


def normalize_system(system: object) -> str:
    """The canonical URI of a code system, or the input unchanged when it is not one of ours."""
    if not isinstance(system, str):
        return ""
    system = system.strip()
    return _SYSTEM_ALIASES.get(system, system)


def normalize_code(system: str, code: object) -> str:
    """A code in the form the knowledge uses (ICD-10-CM upper case with its dot)."""
    if not isinstance(code, str):
        return ""
    code = code.strip()
    if system == ICD10CM:
        code = code.upper().replace(" ", "")
        if "." not in code and len(code) > 3:
            code = f"{code[:3]}.{code[3:]}"
    return code


def code_key(code: str) -> str:
    """A code with case, spaces and dots erased: every spelling `normalize_code` reads alike."""
    return code.strip().upper().replace(" ", "").replace(".", "")


def system_name(system: str) -> str:
    """The name a clinician knows a code system by."""
    return SYSTEM_NAMES.get(system, system)
