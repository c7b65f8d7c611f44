"""carecall_eval: evaluate proactive responsible-gambling care calls honestly.

The pipeline, one subpackage per step::

    contract  ->  cohorts  ->  matching  ->  outcomes  ->  evaluate  ->  report / compare

Every public estimator has one signature, ``estimator(data, sample=None, /, *, level=0.95, **options)``,
and returns a :class:`Result`:

>>> import carecall_eval as ce                                   # doctest: +SKIP
>>> ds = ce.load("data/sample")                                 # doctest: +SKIP
>>> sample = ce.build_cohort(ds).sample()                       # doctest: +SKIP
>>> res = ce.spending_effect(ds, sample, level=0.9)             # doctest: +SKIP
>>> ce.plotting.love_plot(sample.matching)                      # doctest: +SKIP

Names are imported on first use (PEP 562), so ``import carecall_eval`` loads
neither pandas nor statsmodels and ``carecall-eval --help`` answers at once.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from ._version import __version__

#: public name -> "module" (a submodule) or "module:attribute"
_EXPORTS: dict[str, str] = {
    # results
    "Result": "carecall_eval.results:Result",
    "SUMMARY_COLUMNS": "carecall_eval.results:SUMMARY_COLUMNS",
    # data
    "load": "carecall_eval.contract:load",
    "validate": "carecall_eval.contract:validate",
    "connect": "carecall_eval.contract:connect",
    "Dataset": "carecall_eval.contract:Dataset",
    "IbisDataset": "carecall_eval.contract:IbisDataset",
    "ValidationReport": "carecall_eval.contract:ValidationReport",
    "ContractError": "carecall_eval.contract:ContractError",
    # cohorts and matching
    "StudyDesign": "carecall_eval.cohorts:StudyDesign",
    "MatchingSpec": "carecall_eval.cohorts:MatchingSpec",
    "Cohort": "carecall_eval.cohorts:Cohort",
    "build_cohort": "carecall_eval.cohorts:build_cohort",
    "MatchedSample": "carecall_eval.cohorts.sample:MatchedSample",
    "match": "carecall_eval.matching:match",
    "MatchResult": "carecall_eval.matching:MatchResult",
    # estimators (the registry names the same functions: carecall_eval.outcomes.registry)
    "spending_effect": "carecall_eval.outcomes.spending:spending_effect",
    "retention": "carecall_eval.outcomes.retention:retention",
    "randomized_effects": "carecall_eval.outcomes.randomized:randomized_effects",
    "sms_effect": "carecall_eval.outcomes.reach:sms_effect",
    "answer_rates": "carecall_eval.outcomes.reach:answer_rates",
    "case_reach": "carecall_eval.outcomes.reach:case_reach",
    "call_length": "carecall_eval.outcomes.calls:call_length",
    "actions": "carecall_eval.outcomes.actions:actions",
    "reception": "carecall_eval.outcomes.actions:reception",
    "sensitivity_analysis": "carecall_eval.trust.sensitivity:sensitivity_analysis",
    "selfcheck": "carecall_eval.trust.plasmode:selfcheck",
    "answer_timing": "carecall_eval.outcomes.programme:answer_timing",
    "case_speed": "carecall_eval.outcomes.programme:case_speed",
    "effect_heterogeneity": "carecall_eval.outcomes.programme:effect_heterogeneity",
    "effect_durability": "carecall_eval.outcomes.programme:effect_durability",
    "caller_profiles": "carecall_eval.outcomes.programme:caller_profiles",
    "repeat_contact": "carecall_eval.outcomes.programme:repeat_contact",
    "ESTIMATORS": "carecall_eval.outcomes.registry:ESTIMATORS",
    # everything, reports, comparison, trials
    "evaluate": "carecall_eval.evaluate:evaluate",
    "Evaluation": "carecall_eval.evaluate:Evaluation",
    "build_quarterly": "carecall_eval.report:build_quarterly",
    "render_report": "carecall_eval.report:render_report",
    "export_bundle": "carecall_eval.compare:export_bundle",
    "read_bundle": "carecall_eval.compare:read_bundle",
    "plan_trial": "carecall_eval.trials:plan_trial",
    "allocate": "carecall_eval.trials:allocate",
    # errors and warnings
    "CarecallError": "carecall_eval.errors:CarecallError",
    "InputError": "carecall_eval.errors:InputError",
    "NotAvailableError": "carecall_eval.errors:NotAvailableError",
    "CarecallWarning": "carecall_eval.errors:CarecallWarning",
    "DataWarning": "carecall_eval.errors:DataWarning",
    "FollowupWarning": "carecall_eval.errors:FollowupWarning",
    "ConvergenceWarning": "carecall_eval.errors:ConvergenceWarning",
    "SmallSampleWarning": "carecall_eval.errors:SmallSampleWarning",
    # modules
    "plotting": "carecall_eval.plotting",
    "datasets": "carecall_eval.datasets",
    "compare": "carecall_eval.compare",
    "narrative": "carecall_eval.narrative",
    "errors": "carecall_eval.errors",
}

__all__ = ["__version__", *_EXPORTS]

def __getattr__(name: str) -> Any:
    try:
        target = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'carecall_eval' has no attribute {name!r}") from None
    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value          # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


#: Exported functions named like a submodule of this package (``evaluate`` in ``evaluate.py``).
_SHADOWED = frozenset({"evaluate"})


class _Package(types.ModuleType):
    """This package's module type: importing the submodule ``carecall_eval.evaluate`` does not rebind
    ``carecall_eval.evaluate`` from the function to the module (as the eager imports never did)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return           # the module stays in sys.modules; the attribute is the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
