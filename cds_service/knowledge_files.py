"""Reading the knowledge folder from disk, expanding ICD-10-CM value sets, and checking it all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .core.knowledge import SINGLE_FILES, KnowledgeBase, KnowledgeError, compile_knowledge

EXPANSIONS_FILE = "expansions.json"
_SCHEMAS = (*SINGLE_FILES, "valueset", "rule")


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except FileNotFoundError as exc:
        raise KnowledgeError([f"{path.name}: file missing"]) from exc
    except yaml.YAMLError as exc:
        raise KnowledgeError([f"{path.name}: not valid YAML: {exc}"]) from exc


def read_documents(directory: Path) -> dict[str, Any]:
    """Every knowledge document, parsed but not yet validated."""
    if not directory.is_dir():
        raise KnowledgeError([f"{directory}: knowledge folder not found"])
    docs: dict[str, Any] = {name: _read_yaml(directory / f"{name}.yaml") for name in SINGLE_FILES}
    docs["schemas"] = {
        name: _read_yaml(directory / "schema" / f"{name}.schema.yaml") for name in _SCHEMAS
    }
    docs["valuesets"] = {
        p.name: _read_yaml(p) for p in sorted((directory / "valuesets").glob("*.yaml"))
    }
    docs["rules"] = {p.name: _read_yaml(p) for p in sorted((directory / "rules").glob("*.yaml"))}
    expansions = directory / EXPANSIONS_FILE
    docs["expansions"] = json.loads(expansions.read_text("utf-8")) if expansions.exists() else {}
    article = docs["sources"].get("article", {}) if isinstance(docs["sources"], dict) else {}
    article_path = directory / str(article.get("text", "sources/missing"))
    if not article_path.is_file():
        raise KnowledgeError([f"sources.yaml: article text {article_path.name} not found"])
    docs["article_text"] = article_path.read_text("utf-8")
    return docs


def hook_names(directory: Path) -> tuple[str, ...]:
    """The hooks of the registry (hooks.yaml), read alone; none when it cannot be read."""
    try:
        doc = _read_yaml(directory / "hooks.yaml")
    except KnowledgeError:
        return ()
    hooks = doc.get("hooks") if isinstance(doc, dict) else None
    return tuple(hooks) if isinstance(hooks, dict) else ()


def load_knowledge(directory: Path) -> KnowledgeBase:
    """Read, validate and compile the knowledge folder."""
    return compile_knowledge(read_documents(directory))


# --- ICD-10-CM hierarchy (the CMS release shipped by simple-icd-10-cm) ---------------------


def _icd() -> Any:
    import simple_icd_10_cm  # 2 s and ~190 MB to load: only the knowledge commands use it

    return simple_icd_10_cm


def _icd_entries(docs: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs["valuesets"].values():
        if not isinstance(doc, dict):
            continue
        for entry in doc.get("include", []):
            if entry.get("system") == "icd-10-cm":
                yield doc["id"], entry


def expand_entry(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The descendants of an ICD-10-CM entry after its exclude/only lists."""
    icd = _icd()
    dropped: set[str] = set()
    for code in entry.get("exclude", []):
        dropped.add(code)
        dropped.update(icd.get_descendants(code) if icd.is_valid_item(code) else [])
    kept = [c for c in icd.get_descendants(entry["code"]) if c not in dropped]
    if entry.get("only"):
        wanted = set(entry["only"])
        kept = [c for c in kept if c in wanted or any(icd.is_ancestor(w, c) for w in wanted)]
    return [(code, icd.get_description(code)) for code in kept]


def build_expansions(directory: Path) -> dict[str, Any]:
    """The expansions document for every `descendants: true` ICD-10-CM entry."""
    docs = read_documents(directory)
    expanded: dict[str, dict[str, list[list[str]]]] = {}
    for vs_id, entry in _icd_entries(docs):
        if entry.get("descendants"):
            pairs = expand_entry(entry)
            expanded.setdefault(vs_id, {})[entry["code"]] = [list(p) for p in pairs]
    return {
        "generated_by": "cds-service knowledge expand",
        "source": _icd_release(),
        "valuesets": dict(sorted(expanded.items())),
    }


def _icd_release() -> str:
    from importlib.metadata import version

    return f"CMS ICD-10-CM FY2026 tabular via simple-icd-10-cm {version('simple-icd-10-cm')}"


def write_expansions(directory: Path) -> Path:
    path = directory / EXPANSIONS_FILE
    text = json.dumps(build_expansions(directory), indent=1, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def icd_problems(directory: Path) -> list[str]:
    """Every ICD-10-CM code in the knowledge must exist; expansions must be current."""
    icd = _icd()
    docs = read_documents(directory)
    problems = []
    for vs_id, entry in _icd_entries(docs):
        code = entry["code"]
        where = f"valuesets/{vs_id}.yaml: {code}"
        if not icd.is_valid_item(code):
            problems.append(f"{where}: not an ICD-10-CM code in the CMS release")
            continue
        official = icd.get_description(code)
        if entry.get("display") != official:
            problems.append(f"{where}: display {entry.get('display')!r} is not {official!r}")
        for other in entry.get("exclude", []) + entry.get("only", []):
            if not icd.is_valid_item(other) or not icd.is_descendant(other, code):
                problems.append(f"{where}: {other} is not a descendant of {code}")
    stored = docs["expansions"].get("valuesets", {})
    fresh = build_expansions(directory)["valuesets"]
    if stored != fresh:
        problems.append(f"{EXPANSIONS_FILE} is stale: run `cds-service knowledge expand`")
    problems += [
        f"{EXPANSIONS_FILE}: {vs_id}: {code} is not an ICD-10-CM code"
        for vs_id, entries in stored.items()
        for children in entries.values()
        for code, _ in children
        if not icd.is_valid_item(code)
    ]
    return problems


def check_knowledge(directory: Path) -> list[str]:
    """All problems in the knowledge folder; empty when it is sound."""
    try:
        load_knowledge(directory)
    except KnowledgeError as exc:
        return exc.problems
    return icd_problems(directory)
