"""Cohorts: study designs, index dates, eligibility, baseline covariates."""
from .build import COVARIATE_WINDOWS, Cohort, build_cohort
from .design import DEFAULT_COVARIATES, MatchingSpec, StudyDesign
from .windows import MEASURES, product_shares, weekly_moments, window_aggregates, window_totals

__all__ = ["Cohort", "build_cohort", "StudyDesign", "MatchingSpec", "DEFAULT_COVARIATES", "COVARIATE_WINDOWS",
           "window_totals", "window_aggregates", "product_shares", "weekly_moments", "MEASURES"]
