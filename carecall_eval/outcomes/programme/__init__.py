"""For the responsible-gambling team: running the programme better (issue 16), one module per analysis.

``timing``
    when to call: answer rates by hour x weekday for the same attempts, best and worst slots, the SMS's
    timing (:func:`answer_timing`);
``speed``
    how fast cases are worked, and the effect by time to contact (:func:`case_speed`);
``heterogeneity``
    who benefits most: the matched effect by subgroup, Cochran's Q, a many-comparisons warning
    (:func:`effect_heterogeneity`);
``durability``
    whether it lasts: 28 days, 12 weeks and 12 months side by side (:func:`effect_durability`);
``callers``
    how callers differ, with partial pooling (:func:`caller_profiles`; the operator's own report only,
    never a bundle);
``repeat``
    repeat contact and what a second call adds (:func:`repeat_contact`);
``pooling``
    Cochran's Q, random effects, empirical Bayes and random-intercept models shared by them.

Sentences are written by :mod:`carecall_eval.narrative.programme`.  None of them runs in
:func:`carecall_eval.evaluate` (registry ``in_evaluate=False``): the quarterly report computes them.
"""
from .callers import caller_profiles
from .durability import effect_durability
from .heterogeneity import effect_heterogeneity
from .repeat import repeat_contact
from .speed import case_speed
from .timing import answer_timing

__all__ = ["answer_timing", "case_speed", "effect_heterogeneity", "effect_durability", "caller_profiles",
           "repeat_contact"]
