"""Randomized care-call studies: plan, allocate, analyse.

* :mod:`.plan`: :func:`plan_trial`, the minimum detectable effect for a recruitment period (or the months
  needed for an effect) of 1:1, 1.5:1 and call / letter / control designs, by assignment (ITT) and for
  the effect of being reached, from the operator's own eligible flow, reach rate and spending spread.
* :mod:`.allocate`: :func:`allocate` (simple, blocked or matched-set randomization with an allocation log,
  input fingerprint and allocation hash, balance table; customers allocated before are refused) and
  :func:`verify_allocation`.
* :mod:`.estimators`: the array-level estimators behind
  :func:`carecall_eval.randomized_effects` (standardized means, ITT ratio, the effect of being reached
  with Fieller or delta intervals, share differences), clustered by block or matched set.
* :mod:`.cli`: ``carecall-eval plan-trial``, ``allocate``, ``verify-allocation``, ``simulate-trial`` and
  ``analyse-trial``.

Names are imported lazily, so importing the package costs nothing.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"plan_trial": "plan", "allocate": "allocate", "verify_allocation": "allocate",
            "Allocation": "allocate", "Verification": "allocate", "read_allocation": "allocate"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
