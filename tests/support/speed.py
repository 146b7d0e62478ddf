"""Which tests start something outside their own process: found in their code, not declared.

A test is walked with its fixtures, and so is every function or class of `tests/` that they
name, down to what actually starts things: the Node FHIR server (`node`), a server on loopback,
`cds-service serve` or an HTTP server in a thread (`server`), a scratch PostgreSQL database
(`postgres`), a child process such as the command line or nginx (`slow`). Also `slow`: a
property-based test (hypothesis, schemathesis: hundreds of examples), a test that migrates a
database of its own (a session's or a cached one is shared, and does not count), and one that
reads the ICD-10-CM release (the full knowledge check, or the command that runs it). A test
that is none of these runs in process and is `fast`. A parametrized database fixture counts by
its parameter: its "sqlite" cases are in process, its "postgresql" cases are `postgres`.
"""

from __future__ import annotations

import inspect
import itertools
import re
import socketserver
import subprocess
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from cds_service import knowledge_files
from cds_service.storage import database
from support import fhir_servers, scratch_db, served

TESTS_DIR = Path(__file__).resolve().parent.parent

#: the markers a test can get, with what each means (registered in pyproject.toml too)
OUT_OF_PROCESS = ("node", "server", "postgres", "slow", "sandbox")
FAST = "fast"

#: a test or fixture that migrates a database of its own (a shared one does not count)
_MIGRATES = "migrates"
#: what starts something, or takes seconds, by the marker it gives
_STARTERS: dict[int, str] = {
    id(fhir_servers.SERVER_DIR): "node",
    id(served.serve): "server",
    id(HTTPServer): "server",
    id(scratch_db.scratch_database): "postgres",
    id(scratch_db.scratch_postgres): "postgres",
    id(scratch_db.drop_postgres): "postgres",
    id(database.upgrade): _MIGRATES,
    id(knowledge_files.check_knowledge): "slow",  # reads the ICD-10-CM release
    id(knowledge_files.icd_problems): "slow",
    **{
        id(start): "slow"
        for start in (
            subprocess.run,
            subprocess.Popen,
            subprocess.call,
            subprocess.check_call,
            subprocess.check_output,
        )
    },
}
#: modules whose import reads the ICD-10-CM release (190 MB, seconds)
_RELEASES = {"simple_icd_10_cm"}
#: command lines that read it too, when a test runs them in process (`cds-service knowledge check`)
_RELEASE_COMMANDS = ({"knowledge", "check"},)
#: the values of a database fixture's parameter, and the marker each gives (None: in process)
_DATABASE_PARAMS: dict[str, str | None] = {"sqlite": None, "postgresql": "postgres"}


def _ours(obj: Any) -> bool:
    """Whether `obj` is a function or class written in tests/ (and so worth walking)."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return False
    try:
        source = inspect.getsourcefile(obj)
    except TypeError:
        return False
    return source is not None and Path(source).resolve().is_relative_to(TESTS_DIR)


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """A code object and those nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _functions(obj: Any) -> Iterator[Callable[..., Any]]:
    """A function itself, or every method of a class."""
    if inspect.isfunction(obj):
        yield obj
        return
    for member in vars(obj).values():
        member = getattr(member, "__func__", member)
        member = getattr(member, "fget", member)
        if inspect.isfunction(member):
            yield member


def _words(code: types.CodeType) -> set[str]:
    """The string constants of a code object, those in constant tuples included."""
    words = set()
    for const in code.co_consts:
        parts = const if isinstance(const, tuple) else (const,)
        words |= {part for part in parts if isinstance(part, str)}
    return words


class _Walk:
    """The markers reachable from functions, cached per function across the whole session."""

    def __init__(self) -> None:
        self._found: dict[Callable[..., Any], frozenset[str]] = {}

    def markers(self, functions: Iterable[Callable[..., Any]]) -> set[str]:
        found: set[str] = set()
        for function in functions:
            found |= self._of(inspect.unwrap(function))
        return found

    def _of(self, function: Callable[..., Any]) -> frozenset[str]:
        if function in self._found:
            return self._found[function]
        self._found[function] = frozenset()  # a recursive helper adds nothing new
        found: set[str] = set()
        code = getattr(function, "__code__", None)
        if code is not None:
            scope = getattr(function, "__globals__", {})
            for nested in _codes(code):
                found |= self._names(nested.co_names, scope)
                if any(command <= _words(nested) for command in _RELEASE_COMMANDS):
                    found.add("slow")
        self._found[function] = frozenset(found)
        return self._found[function]

    def _names(self, names: tuple[str, ...], scope: dict[str, Any]) -> set[str]:
        found: set[str] = set()
        if "listen" in names:  # a listening socket is a server
            found.add("server")
        if _RELEASES.intersection(names):
            found.add("slow")
        for name in names:
            obj = scope.get(name)
            if obj is None:
                continue
            targets = [obj]
            if inspect.ismodule(obj):  # `subprocess.run`, `conftest.TestDatabase`
                targets = [getattr(obj, other, None) for other in names]
            for target in targets:
                found |= self._object(target)
        return found

    def _object(self, obj: Any) -> set[str]:
        found: set[str] = set()
        if hasattr(obj, "cache_info"):  # a cached helper does its work once a session
            return found
        if callable(obj):
            obj = inspect.unwrap(obj)  # a context manager or a decorated helper
        marker = _STARTERS.get(id(obj))
        if marker:
            found.add(marker)
        if inspect.isclass(obj) and issubclass(obj, socketserver.BaseServer):
            found.add("server")
        if _ours(obj):
            found |= self.markers(_functions(obj))
        return found


def _fixture_markers(item: pytest.Function, walk: _Walk) -> set[str]:
    found: set[str] = set()
    params = getattr(getattr(item, "callspec", None), "params", {})
    for name, definitions in item._fixtureinfo.name2fixturedefs.items():
        definition = definitions[-1]
        value = params.get(name)
        if definition.params is not None and value in _DATABASE_PARAMS:
            marker = _DATABASE_PARAMS[value]
            found |= {marker} if marker else set()
            continue
        reached = walk.markers([definition.func])
        if definition.scope != "function":
            reached.discard(_MIGRATES)
        found |= reached
    return found


def classify(items: list[pytest.Item]) -> None:
    """Mark every test by what it starts or costs; `fast` when none of that."""
    walk = _Walk()
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        test = getattr(item.obj, "__func__", item.obj)
        found = walk.markers([test]) | _fixture_markers(item, walk)
        if getattr(test, "is_hypothesis_test", False) or _MIGRATES in found:
            found.discard(_MIGRATES)
            found.add("slow")
        declared = {mark.name for mark in item.iter_markers()}
        for marker in sorted(found - declared):
            item.add_marker(marker)
        if not (found | declared) & set(OUT_OF_PROCESS):
            item.add_marker(FAST)


def _among(present: set[str]) -> Callable[..., bool]:
    return lambda name, /, **_: name in present


_DECLARED = re.compile(r"^pytestmark = pytest\.mark\.(\w+)$", re.MULTILINE)


def never_selected(markexpr: str, path: Path) -> bool:
    """Whether `-m markexpr` selects no test of the test module at `path`, by the marker that
    the module declares for all its tests: then it need not be imported (nor its tests built)."""
    if not markexpr or not (path.name.startswith("test_") and path.suffix == ".py"):
        return False
    declared = set(_DECLARED.findall(path.read_text(encoding="utf-8")))
    names = set(re.findall(r"\w+", markexpr)) - {"and", "or", "not"}
    if not declared & set(OUT_OF_PROCESS) or not names <= {FAST, *OUT_OF_PROCESS}:
        return False
    try:
        from _pytest.mark.expression import Expression  # pytest's own -m parser
    except ImportError:  # moved in another pytest: import the module, as without -m
        return False
    expression = Expression.compile(markexpr)
    unknown = [name for name in OUT_OF_PROCESS if name not in declared]
    for chosen in itertools.product((False, True), repeat=len(unknown)):
        present = declared | {name for name, on in zip(unknown, chosen, strict=True) if on}
        if expression.evaluate(_among(present)):
            return False
    return True
