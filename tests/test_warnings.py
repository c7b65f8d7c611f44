"""Typed warnings: every warning the library issues is one of the project's classes, no library code
silences all warnings, and the report's caveats collect only the project's own warnings."""
from __future__ import annotations

import ast
import inspect
import warnings
from pathlib import Path

import pytest

import carecall_eval.errors as errors
from carecall_eval.errors import CarecallWarning, DataWarning

PKG = Path(errors.__file__).parent
PROJECT_WARNINGS = {name for name, obj in vars(errors).items()
                    if inspect.isclass(obj) and issubclass(obj, CarecallWarning)}


def _calls(name: str):
    for f in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call):
                fn = node.func
                called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
                if called == name:
                    yield f"{f.relative_to(PKG.parent)}:{node.lineno}", node


def _arg(node: ast.Call, pos: int, kw: str):
    if len(node.args) > pos:
        return node.args[pos]
    return next((k.value for k in node.keywords if k.arg == kw), None)


def test_every_library_warning_is_a_project_warning_class():
    bad = []
    for where, node in _calls("warn"):
        cat = _arg(node, 1, "category")
        name = getattr(cat, "id", None) or getattr(cat, "attr", None)
        if name not in PROJECT_WARNINGS:
            bad.append(f"{where}: category {name}")
    assert not bad, "warnings.warn without a carecall_eval.errors class:\n" + "\n".join(bad)


def test_no_library_code_silences_every_warning():
    bad = []
    for func in ("simplefilter", "filterwarnings"):
        for where, node in _calls(func):
            action = _arg(node, 0, "action")
            # simplefilter(action, category=...); filterwarnings(action, message=..., category=...)
            targeted = (_arg(node, 1, "message") is not None or _arg(node, 2, "category") is not None
                        if func == "filterwarnings" else _arg(node, 1, "category") is not None)
            if not isinstance(action, ast.Constant):
                bad.append(f"{where}: {func} with a computed action")
            elif action.value == "ignore" and not targeted:
                bad.append(f"{where}: blanket {func}('ignore')")
    assert not bad, "\n".join(bad)


def test_report_caveats_collect_only_the_projects_warnings():
    from carecall_eval.report.context import _collect

    notes: list[str] = []
    with warnings.catch_warnings(record=True) as outer:
        warnings.simplefilter("always")
        with _collect(notes, "spending"):
            warnings.warn("3 rows have no follow-up", DataWarning, stacklevel=1)
            warnings.warn("a third-party deprecation", DeprecationWarning, stacklevel=1)
            warnings.warn("a third-party note", UserWarning, stacklevel=1)
            warnings.warn("3 rows have no follow-up", DataWarning, stacklevel=1)   # said once
    assert notes == ["spending: 3 rows have no follow-up"]
    # the others are not swallowed: they reach the caller's filters as they came
    assert [(w.category, str(w.message)) for w in outer] == [
        (DeprecationWarning, "a third-party deprecation"), (UserWarning, "a third-party note")]


@pytest.mark.parametrize("name", sorted(PROJECT_WARNINGS))
def test_project_warnings_are_user_warnings(name):
    """Each class is a UserWarning (shown by default) under CarecallWarning (one filter silences them all)."""
    cls = getattr(errors, name)
    assert issubclass(cls, UserWarning) and issubclass(cls, CarecallWarning)
