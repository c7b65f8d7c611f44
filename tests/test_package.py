"""The top-level package: every public name reachable from ``carecall_eval``, imported lazily, so that
``import carecall_eval`` and ``carecall-eval --help`` load no pandas, numpy or statsmodels."""
from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import carecall_eval as ce

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "pandas", "scipy", "statsmodels", "duckdb", "ibis", "pandera", "lifelines", "matplotlib")
ESTIMATORS = ("spending_effect", "retention", "randomized_effects", "sms_effect", "answer_rates", "call_length",
              "actions", "reception")


def _heavy_modules_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(m for m in "
                          f"{HEAVY!r} if m in sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout.split()


def test_import_loads_no_heavy_module():
    assert _heavy_modules_after("import carecall_eval") == []


def test_cli_parser_is_built_without_heavy_modules():
    """Every subcommand is registered (report, compare and trials included) without the analysis stack."""
    code = ("import carecall_eval.cli as c\n"
            "p = c.build_parser()\n"
            "names = set(p._subparsers._group_actions[0].choices)\n"
            "assert {'simulate', 'validate', 'evaluate', 'report', 'export', 'compare'} <= names, names")
    assert _heavy_modules_after(code) == []


def test_every_public_name_resolves_and_is_listed():
    missing = [n for n in ce.__all__ if n != "__version__" and not hasattr(ce, n)]
    assert not missing
    assert set(ce.__all__) <= set(dir(ce))
    for name in ESTIMATORS:
        fn = getattr(ce, name)
        params = list(inspect.signature(fn).parameters.values())
        assert params[0].kind is inspect.Parameter.POSITIONAL_ONLY, name       # data, sample=None, /
        assert inspect.signature(fn).parameters["level"].default == 0.95, name
    assert ce.plotting.love_plot and ce.MatchedSample and ce.StudyDesign and ce.Result
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ce.nope  # noqa: B018


def test_registry_and_top_level_name_the_same_functions():
    for spec in ce.ESTIMATORS.values():
        fn = spec.func
        assert getattr(ce, fn.__name__) is fn, spec.name


def test_evaluate_stays_the_function_after_its_module_is_imported():
    code = ("import carecall_eval as ce\n"
            "import carecall_eval.compare.cli, carecall_eval.evaluate\n"
            "from carecall_eval.evaluate import Evaluation\n"
            "assert callable(ce.evaluate) and ce.evaluate.__module__ == 'carecall_eval.evaluate', ce.evaluate\n"
            "import carecall_eval.simulate as sim\n"
            "assert sim.__file__.endswith('__init__.py')\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_shadowed_names_are_exactly_the_exports_named_like_a_submodule():
    pkg = Path(ce.__file__).parent
    clashes = {n for n, target in ce._EXPORTS.items() if ":" in target
               and ((pkg / f"{n}.py").is_file() or (pkg / n / "__init__.py").is_file())}
    assert clashes == set(ce._SHADOWED)


def test_help_answers_quickly():
    """``carecall-eval --help`` in a fresh interpreter, well under a second (a few times Python's start-up)."""
    import time

    exe = Path(sys.executable).with_name("carecall-eval")
    cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "carecall_eval.cli", "--help"]
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - t)
    assert best < 1.0, f"carecall-eval --help took {best:.2f} s"
