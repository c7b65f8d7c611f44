"""Can these figures be trusted?  Checks of the pipeline on the operator's own data.

``plasmode``
    :func:`selfcheck`: a plasmode simulation on the operator's own customers and windows (known
    effect planted on never-reached customers, primary design unchanged); ``sms_plasmode`` does the
    same for the SMS estimator with a pseudo-policy date.
``rosenbaum``
    Rosenbaum bounds for matched sets with several controls (Huber-Maritz m-statistics, the
    separable approximation of Gastwirth, Krieger and Rosenbaum 2000), with exact enumeration for
    small matched sets.
``tipping``
    Tipping points of the primary PPML ratio (how strong a hidden trait would have to be) and the
    robustness value of the matched currency difference.
``sensitivity``
    :func:`sensitivity_analysis`: both of the above on a matched sample, as one estimator.
``cli``
    ``carecall-eval selfcheck``.

Sentences are written by :mod:`carecall_eval.narrative.trust`.
"""
from __future__ import annotations

__all__ = ["selfcheck", "sensitivity_analysis"]


def __getattr__(name):   # lazy: importing the package (e.g. for the CLI) loads no estimator
    if name == "selfcheck":
        from .plasmode import selfcheck

        return selfcheck
    if name == "sensitivity_analysis":
        from .sensitivity import sensitivity_analysis

        return sensitivity_analysis
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
