"""carecall_eval: evaluate proactive responsible-gambling care calls honestly.

The pipeline, one subpackage per step::

    contract  ->  cohorts  ->  matching  ->  outcomes  ->  evaluate  ->  report / compare

>>> import carecall_eval as ce                                   # doctest: +SKIP
>>> ds = ce.load("data/sample")                                 # doctest: +SKIP
>>> cohort = ce.build_cohort(ds)                                # doctest: +SKIP
>>> res = ce.spending_effect(ds, cohort, cohort.match())         # doctest: +SKIP
"""
from ._version import __version__
from .cohorts import Cohort, MatchingSpec, StudyDesign, build_cohort
from .contract import ContractError, Dataset, load, validate
from .evaluate import Evaluation, evaluate
from .matching import MatchResult, match
from .outcomes.randomized import randomized_effects
from .outcomes.retention import retention
from .outcomes.spending import spending_effect
from .results import SUMMARY_COLUMNS, Result

__all__ = [
    "__version__", "Result", "SUMMARY_COLUMNS",
    "load", "validate", "Dataset", "ContractError",
    "StudyDesign", "MatchingSpec", "Cohort", "build_cohort",
    "match", "MatchResult",
    "spending_effect", "retention", "randomized_effects",
    "evaluate", "Evaluation",
]
