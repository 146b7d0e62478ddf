"""The clinical knowledge, compiled once into immutable lookups the engine reads.

`model` holds the frozen dataclasses, `compiler` builds them from the parsed knowledge documents
(see `knowledge/README.md`), and `checks` finds every problem `cds-service knowledge check` reports.
"""

from .checks import quote_in_article, rules_that_cannot_fire
from .compiler import SINGLE_FILES, compile_knowledge
from .model import (
    Article,
    Coding,
    Criterion,
    Episodes,
    Guideline,
    Interpretations,
    KnowledgeBase,
    KnowledgeError,
    KnownCodes,
    Measure,
    Policy,
    PrefetchKey,
    Questions,
    Requirement,
    ReviewKind,
    Rule,
    RuleSource,
    Service,
    Theme,
    ValueSet,
)

__all__ = [
    "SINGLE_FILES",
    "Article",
    "Coding",
    "Criterion",
    "Episodes",
    "Guideline",
    "Interpretations",
    "KnowledgeBase",
    "KnowledgeError",
    "KnownCodes",
    "Measure",
    "Policy",
    "PrefetchKey",
    "Questions",
    "Requirement",
    "ReviewKind",
    "Rule",
    "RuleSource",
    "Service",
    "Theme",
    "ValueSet",
    "compile_knowledge",
    "quote_in_article",
    "rules_that_cannot_fire",
]
