"""Reach: who is reached, answer rates by attempt, and what the missed-call SMS changed.

One module per concern:

``cases``
    the case table (:func:`case_reach`: one row per phone case) and the phone attempts;
``answer_rates``
    answer rate by attempt number, before and after the policy (:func:`answer_rates`);
``answer_model``
    the attempt-level answer model (design, logit, prediction of case reach, bootstrap, delta-method SE);
``its``
    the interrupted time series of weekly reach;
``sms``
    the SMS estimator (:func:`sms_effect`), which puts them together.

Sentences are written by :mod:`carecall_eval.narrative.reach`; Wilson intervals come from
:mod:`carecall_eval.outcomes.intervals`.
"""
from .answer_rates import answer_rates
from .cases import PHONE_ARMS, case_reach
from .sms import sms_effect

__all__ = ["case_reach", "answer_rates", "sms_effect", "PHONE_ARMS"]
