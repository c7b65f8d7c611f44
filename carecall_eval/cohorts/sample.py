"""`MatchedSample`: what every cohort estimator takes as its ``sample`` argument.

One small object carries the cohort (design, flow, every candidate row), the
matched rows with their weights and subclasses, and the one cluster rule for
standard errors: by matched set (``subclass``), or by customer when controls
are reused (matching with replacement) or no sets exist (weighting, CEM).

>>> sample = cohort.sample()            # doctest: +SKIP
>>> ce.spending_effect(ds, sample)       # doctest: +SKIP
>>> ce.retention(ds, sample, horizon=180, level=0.9)   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..results import Reporting, tidy
from .build import Cohort

__all__ = ["MatchedSample", "as_sample"]


@dataclass(frozen=True, eq=False, repr=False)
class MatchedSample(Reporting):
    """A cohort and its matched rows.

    Parameters
    ----------
    cohort : Cohort
        From :func:`carecall_eval.build_cohort`.
    matching : MatchResult or None
        From ``cohort.match()``; None for randomized designs (analysed by arm,
        every row weight 1) .

    Attributes
    ----------
    table : pandas.DataFrame
        Matched units (the cohort's rows with ``weights`` > 0 plus ``weights``
        and ``subclass``); for randomized designs every cohort row with weight 1.
    sets : pandas.DataFrame or None
        Nearest-neighbour matching: one row per unit and matched set (a reused
        control appears once per set), else None.
    cluster : str
        ``"subclass"`` or ``"customer_id"``: the clustering of every standard error.
    """

    cohort: Cohort
    matching: Any = None
    name: str = field(default="sample", init=False)

    @property
    def design(self):
        return self.cohort.design

    @property
    def randomized(self) -> bool:
        return self.cohort.design.comparison == "arms"

    @property
    def replace(self) -> bool:
        if self.matching is None:
            return False
        return bool(self.matching.settings.get("replace", self.design.matching.replace))

    @cached_property
    def table(self) -> pd.DataFrame:
        if self.matching is None:
            t = self.cohort.table.copy()
            t["weights"] = 1.0
            if "subclass" not in t.columns:
                t["subclass"] = pd.array([pd.NA] * len(t), dtype="Int64")
            return t
        return self.matching.matched_data()

    @cached_property
    def sets(self) -> pd.DataFrame | None:
        if self.matching is None or getattr(self.matching, "match_matrix", None) is None:
            return None
        return self.matching.matched_data("sets")

    @property
    def has_sets(self) -> bool:
        """Whether :attr:`sets` exists (nearest-neighbour matching), without building it."""
        return self.matching is not None and getattr(self.matching, "match_matrix", None) is not None

    def sets_of(self, columns) -> pd.DataFrame | None:
        """:attr:`sets` with only ``columns`` of the cohort (plus ``weights``, ``subclass``, ``distance``).

        The table of sets repeats every reused control once per set; an analysis that reads a few columns
        takes only those (at a million customers the whole table is about a gigabyte).
        """
        if not self.has_sets:
            return None
        if "sets" in self.__dict__:                       # already built whole
            t = self.__dict__["sets"]
            want = {*columns, "weights", "subclass", "distance"}
            return t[[c for c in t.columns if c in want]]
        return self.matching.matched_data("sets", columns=columns)

    @property
    def cluster(self) -> str:
        t = self.table
        if self.replace or "subclass" not in t.columns or t["subclass"].isna().any():
            return "customer_id"
        return "subclass"

    def cluster_ids(self, frame: pd.DataFrame | None = None) -> np.ndarray:
        """Cluster labels of ``frame``'s rows (default: :attr:`table`) under the one cluster rule."""
        frame = self.table if frame is None else frame
        col = "customer_id" if self.cluster == "customer_id" or frame["subclass"].isna().any() else "subclass"
        return frame[col].to_numpy()

    # -- protocol --------------------------------------------------------------------------------
    @property
    def summary(self) -> pd.DataFrame:
        if self.matching is not None:
            return self.matching.summary
        c = self.cohort.table["group"].value_counts().sort_index()
        return tidy([{"metric": "n_rows", "group": g, "estimate": float(v), "n": int(v),
                      "method": "randomized arms, no matching"} for g, v in c.items()])

    @property
    def text(self) -> str:
        return self.cohort.text + " " + (self.matching.text if self.matching is not None
                                          else "Randomized arms are compared as allocated, without matching.")

    @property
    def settings(self) -> dict:
        s = {"design": self.design.to_dict(), "cluster": self.cluster}
        if self.matching is not None:
            s["matching"] = dict(self.matching.settings)
        return s

    def _plot_data(self) -> dict:
        return self.matching.get_plot_data() if self.matching is not None else {}


def as_sample(sample, who: str, *, randomized: bool | None = None) -> MatchedSample:
    """Coerce an estimator's ``sample`` argument; a Cohort is matched with its design's defaults.

    ``randomized`` (True/False) says which kind of design the estimator needs.
    Anything else than a MatchedSample or a Cohort gets a TypeError that says how to get one.
    """
    if isinstance(sample, Cohort):
        sample = MatchedSample(sample, None if sample.design.comparison == "arms" else sample.match())
    if not isinstance(sample, MatchedSample):
        got = type(sample).__name__
        hint = (" (a MatchResult has no cohort: use cohort.sample(), or MatchedSample(cohort, match_result))"
                if got == "MatchResult" else " (a table has no design: build one with carecall_eval.build_cohort(data))"
                if isinstance(sample, pd.DataFrame) else "")
        raise TypeError(f"{who}: sample must be a MatchedSample (cohort.sample()) or a Cohort "
                        f"(carecall_eval.build_cohort(data)), got {got}{hint}")
    if randomized is True and not sample.randomized:
        raise TypeError(f"{who}: needs a randomized design (StudyDesign(contact='randomized', comparison='arms')); "
                        f"got the design {sample.design.describe()!r}")
    if randomized is False and sample.randomized:
        raise TypeError(f"{who}: needs an observational design with matching; randomized arms are analysed by "
                        "carecall_eval.randomized_effects")
    return sample
