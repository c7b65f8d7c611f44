"""The registry of public estimators: what :func:`carecall_eval.evaluate` loops over and the contract test checks.

Every estimator has the one signature::

    estimator(data, sample=None, /, *, level=0.95, **options) -> Result

``data`` is a Dataset, an IbisDataset or a data directory; ``sample`` is a
:class:`~carecall_eval.cohorts.MatchedSample` (or a Cohort, matched with its
design's defaults) for the cohort estimators, and None for the ones that read
the tables directly.  Entries name their function by import path, so importing
the registry imports no estimator (``carecall-eval --help`` stays fast).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

__all__ = ["EstimatorSpec", "ESTIMATORS", "get"]


@dataclass(frozen=True)
class EstimatorSpec:
    """One registered estimator.

    Attributes
    ----------
    name : str
        Key of its result in an Evaluation (``"spending"``, ``"retention"`` ...).
    target : str
        ``"module:function"`` under ``carecall_eval``.
    sample : {"observational", "randomized", None}
        What ``sample`` it needs: a matched observational sample, a randomized
        design, or nothing.
    horizon : str or None
        Name of its follow-up option (``window``, ``horizon``, ``days``), if any.
    default_horizon : int or None
        That option's default (its metric ids are the stable default ids).
    other_horizon : int or None
        A non-default horizon the contract test runs it at.
    needs : tuple of str
        Tables or config facts it needs beyond the required tables (``"arms"``:
        randomized arms present).
    in_evaluate : bool
        Whether :func:`carecall_eval.evaluate` runs it (False for the
        plasmode self-check, which refits the design many times; the report
        and ``carecall-eval selfcheck`` run it on their own).
    """

    name: str
    target: str
    sample: str | None = None
    horizon: str | None = None
    default_horizon: int | None = None
    other_horizon: int | None = None
    needs: tuple = ()
    in_evaluate: bool = True

    @property
    def func(self) -> Callable:
        """The estimator function itself (always computes)."""
        module, fn = self.target.split(":")
        return getattr(importlib.import_module(f"carecall_eval.{module}"), fn)

    def __call__(self, *args, **kwargs):
        """Run the estimator, reading its result from the on-disk memo when the same data, sample, options
        and code were run before (:mod:`carecall_eval.outcomes.memo`; off with ``CARECALL_CACHE=0``)."""
        from .memo import cached

        return cached(self.name, self.func)(*args, **kwargs)

    def applies(self, ds) -> bool:
        """Whether the data at hand carry what this estimator needs."""
        if "arms" in self.needs:
            cases = ds.table("call_cases")
            if "arm" not in cases.columns or not cases["arm"].notna().any():
                return False
        return True


ESTIMATORS: dict[str, EstimatorSpec] = {s.name: s for s in (
    EstimatorSpec("spending", "outcomes.spending:spending_effect", "observational", "window", 84, 28),
    EstimatorSpec("retention", "outcomes.retention:retention", "observational", "horizon", 365, 180),
    EstimatorSpec("reach", "outcomes.reach:sms_effect"),
    EstimatorSpec("call_length", "outcomes.calls:call_length"),
    EstimatorSpec("actions", "outcomes.actions:actions", "observational", "days", 28, 14),
    EstimatorSpec("reception", "outcomes.actions:reception"),
    EstimatorSpec("randomized", "outcomes.randomized:randomized_effects", "randomized", "window", 84, 28,
                  needs=("arms",)),
    EstimatorSpec("sensitivity", "trust.sensitivity:sensitivity_analysis", "observational", "window", 84, 28),
    EstimatorSpec("selfcheck", "trust.plasmode:selfcheck", "observational", "window", 84, 28, in_evaluate=False),
    # running the programme (issue 16): computed by the quarterly report, not by evaluate (callers never leave
    # the operator)
    EstimatorSpec("timing", "outcomes.programme.timing:answer_timing", in_evaluate=False),
    EstimatorSpec("speed", "outcomes.programme.speed:case_speed", "observational", "window", 84, 28, in_evaluate=False),
    EstimatorSpec("heterogeneity", "outcomes.programme.heterogeneity:effect_heterogeneity", "observational", "window",
                  84, 28, in_evaluate=False),
    EstimatorSpec("durability", "outcomes.programme.durability:effect_durability", "observational",
                  in_evaluate=False),
    EstimatorSpec("callers", "outcomes.programme.callers:caller_profiles", "observational", "window", 84, 28,
                  in_evaluate=False),
    EstimatorSpec("repeat", "outcomes.programme.repeat:repeat_contact", "observational", "horizon", 365, 180,
                  in_evaluate=False),
)}


def get(name: str) -> EstimatorSpec:
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise KeyError(f"no estimator {name!r}; registered: {sorted(ESTIMATORS)}") from None
