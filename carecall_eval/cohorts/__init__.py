"""Cohorts: study designs, index dates, eligibility, baseline covariates, the matched sample."""
from .build import COVARIATE_WINDOWS, Cohort, build_cohort
from .design import DEFAULT_COVARIATES, MatchingSpec, StudyDesign
from .sample import MatchedSample, as_sample
from .windows import MEASURES, product_shares, weekly_moments, window_aggregates, window_totals

__all__ = ["Cohort", "build_cohort", "StudyDesign", "MatchingSpec", "DEFAULT_COVARIATES", "COVARIATE_WINDOWS",
           "MatchedSample", "as_sample",
           "window_totals", "window_aggregates", "product_shares", "weekly_moments", "MEASURES"]
