"""``MatchResult``: what :func:`~carecall_eval.matching.match` returns.

It holds the matched units, weights, subclasses and distance, computes the
balance table on demand, and follows the result protocol
(:class:`~carecall_eval.results.Reporting`); its label and text come from
:mod:`.describe`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..results import Reporting, Result, tidy
from . import _inputs as inp
from . import describe
from .balance import balance_table
from .defaults import SMD_THRESHOLD
from .propensity import PropensityFit

__all__ = ["MatchResult"]


@dataclass(frozen=True, eq=False, repr=False)
class MatchResult(Reporting):
    """Outcome of :func:`match`.

    Attributes
    ----------
    settings : dict
        How the result was made (JSON-serialisable): method, estimand
        ``"ATT"``, treatment, covariates and expanded terms, distance,
        ratio, replace, caliper (as given and in distance units), order,
        exact, mahalanobis, discard, seed, trim, tie rule, sizes and package
        version.
    counts : pandas.DataFrame
        Units by group (columns ``control``, ``treated``): ``all``,
        ``matched``, ``unmatched``, ``discarded``.
    ess : pandas.DataFrame
        Kish effective sample sizes by group, before (``all``) and after
        (``matched``) weighting.
    propensity : PropensityFit or None
        The fitted propensity model (``None`` for CEM): ``propensity.coef``,
        ``propensity.results`` (statsmodels), ``propensity.ps``.
    match_matrix : numpy.ndarray or None
        Nearest-neighbour matching only: ``(n_treated, ratio)`` row
        positions of the controls matched to each treated unit (treated in
        row order), ``-1`` for none.  :meth:`pairs` gives it with labels.
    """

    settings: dict
    counts: pd.DataFrame
    name = "matching"
    ess: pd.DataFrame
    propensity: PropensityFit | None
    match_matrix: np.ndarray | None = field(repr=False)
    _data: pd.DataFrame = field(repr=False)
    _treat: np.ndarray = field(repr=False)
    _weights: np.ndarray = field(repr=False)
    _subclass: np.ndarray | None = field(repr=False)
    _distance: np.ndarray | None = field(repr=False)
    _discarded: np.ndarray = field(repr=False)
    _X: np.ndarray = field(repr=False)
    _terms: tuple = field(repr=False)
    _sources: tuple = field(repr=False)

    # ---- simple views --------------------------------------------------------
    @property
    def method(self) -> str:
        """``"nearest"``, ``"cem"`` or ``"ipw"``."""
        return self.settings["method"]

    @property
    def estimand(self) -> str:
        """Always ``"ATT"``."""
        return self.settings["estimand"]

    @property
    def coef(self) -> pd.Series | None:
        """Propensity-model coefficients (``None`` for CEM)."""
        return None if self.propensity is None else self.propensity.coef

    @property
    def weights(self) -> pd.Series:
        """Weight of every unit of the input data (0 = not in the matched sample)."""
        return pd.Series(self._weights, index=self._data.index, name="weights")

    @property
    def distance(self) -> pd.Series | None:
        """The distance matched on (propensity score or its logit); ``None`` for CEM."""
        if self._distance is None:
            return None
        return pd.Series(self._distance, index=self._data.index, name="distance")

    @property
    def subclass(self) -> pd.Series:
        """Pair/set (nearest) or stratum (CEM) of every unit; ``<NA>`` if none or undefined."""
        if self._subclass is None:
            return pd.Series(pd.array([pd.NA] * len(self._weights), dtype="Int64"),
                             index=self._data.index, name="subclass")
        s = pd.array(self._subclass, dtype="Int64")
        s[self._subclass < 0] = pd.NA
        return pd.Series(s, index=self._data.index, name="subclass")

    def _subclass_values(self, pos: np.ndarray) -> np.ndarray:
        """``subclass.to_numpy()[pos]`` (an object array, ``<NA>`` where none) without the full-length Series."""
        if self._subclass is None:
            return pd.arrays.IntegerArray(np.zeros(len(pos), dtype=np.int64), np.ones(len(pos), dtype=bool)).to_numpy()
        sc = np.asarray(self._subclass)[pos]
        return pd.arrays.IntegerArray(sc.astype(np.int64, copy=False), sc < 0).to_numpy()

    @property
    def discarded(self) -> pd.Series:
        """Units dropped for lying outside the common support."""
        return pd.Series(self._discarded, index=self._data.index, name="discarded")

    # ---- data out --------------------------------------------------------------
    def matched_data(
        self,
        form: str = "units",
        *,
        weights: str = "weights",
        subclass: str = "subclass",
        distance: str = "distance",
        columns=None,
    ) -> pd.DataFrame:
        """The matched sample: the input rows (index kept) plus weights, subclass and distance.

        Parameters
        ----------
        form : {"units", "sets"}, default "units"
            ``"units"``: each unit with a positive weight once, in input
            order (MatchIt's ``match.data()``); with ``replace=True`` the
            subclass is ``<NA>`` because a control may belong to several
            sets.  ``"sets"`` (nearest-neighbour only): one row per unit and
            matched set (MatchIt's ``get_matches()``), so a control reused
            by several treated units appears several times; there the
            weight is 1 for treated units and ``1/k`` for each of the ``k``
            controls of a set.  With replacement, cluster standard errors by
            unit (the index), not by subclass.
        weights, subclass, distance : str
            Names of the added columns; change them if the data already
            has columns of these names.
        columns : list of str, optional
            Only these columns of the input (default: all).  A table of sets
            repeats reused controls, so at operator scale taking only the
            columns an analysis reads saves most of its cost.

        Returns
        -------
        pandas.DataFrame
            A new frame; the input data are not modified.
        """
        inp.check_option("form", form, ("units", "sets"))
        clash = [c for c in (weights, subclass, distance) if c in self._data.columns]
        if clash:
            raise ValueError(
                f"the data already have column(s) {clash}; pass other names, e.g. "
                "matched_data(weights='match_weight', subclass='match_set', distance='match_distance')."
            )
        want = None if columns is None else set(columns)
        data = self._data if want is None else self._data[[c for c in self._data.columns if c in want]]
        if form == "units":
            pos = np.flatnonzero(self._weights > 0)
            out = data.take(pos)            # a new frame (take copies; no second copy)
            out[distance] = np.nan if self._distance is None else self._distance[pos]
            out[weights] = self._weights[pos]
            out[subclass] = self._subclass_values(pos)
            return out
        if self.match_matrix is None:
            raise ValueError(f"form='sets' needs nearest-neighbour matching; method={self.method!r} "
                             "has no sets beyond its subclasses: use form='units'.")
        mm, dist = self.match_matrix, self._distance
        assert dist is not None  # nearest-neighbour matching always has a distance
        t_rows = np.flatnonzero(self._treat)
        has = mm[:, 0] >= 0
        k = (mm >= 0).sum(axis=1)
        set_id = np.cumsum(has)            # sets numbered in treated row order
        rows, sets, w = [t_rows[has]], [set_id[has]], [np.ones(int(has.sum()))]
        for s in range(mm.shape[1]):
            ok = mm[:, s] >= 0
            rows.append(mm[ok, s])
            sets.append(set_id[ok])
            w.append(1.0 / k[ok])
        rows_a, sets_a, w_a = np.concatenate(rows), np.concatenate(sets), np.concatenate(w)
        is_t = np.concatenate([np.ones(int(has.sum()), dtype=bool)] + [np.zeros(len(r), dtype=bool) for r in rows[1:]])
        o = np.lexsort((~is_t, sets_a))  # by set, treated first
        rows_a, sets_a, w_a = rows_a[o], sets_a[o], w_a[o]
        out = data.take(rows_a)
        out[distance] = dist[rows_a]
        out[weights] = w_a
        out[subclass] = pd.array(sets_a, dtype="Int64")
        return out

    def pairs(self) -> pd.DataFrame:
        """Matched pairs (nearest-neighbour only), labelled by the data's index.

        Returns
        -------
        pandas.DataFrame
            One row per (treated, control) pair: ``subclass`` (set id in
            treated row order), ``round`` (1 = first control of the treated
            unit), ``treated`` and ``control`` (index labels), and their
            distances ``distance_treated``, ``distance_control``.
        """
        if self.match_matrix is None:
            raise ValueError(f"pairs() needs nearest-neighbour matching; method={self.method!r}.")
        mm, dist = self.match_matrix, self._distance
        assert dist is not None  # nearest-neighbour matching always has a distance
        t_rows = np.flatnonzero(self._treat)
        set_id = np.cumsum(mm[:, 0] >= 0)
        parts = []
        for s in range(mm.shape[1]):
            ok = mm[:, s] >= 0
            parts.append(pd.DataFrame({"subclass": set_id[ok], "round": s + 1,
                                       "treated_pos": t_rows[ok], "control_pos": mm[ok, s]}))
        p = pd.concat(parts, ignore_index=True).sort_values(["subclass", "round"], kind="stable")
        idx = self._data.index
        return pd.DataFrame({
            "subclass": p["subclass"].to_numpy(),
            "round": p["round"].to_numpy(),
            "treated": idx[p["treated_pos"].to_numpy()],
            "control": idx[p["control_pos"].to_numpy()],
            "distance_treated": dist[p["treated_pos"].to_numpy()],
            "distance_control": dist[p["control_pos"].to_numpy()],
        })

    # ---- diagnostics -----------------------------------------------------------
    def balance(self) -> pd.DataFrame:
        """Balance table before and after matching (MatchIt's ``summary()`` for the ATT).

        Returns
        -------
        pandas.DataFrame
            One row per covariate term (every level of a categorical
            covariate), preceded by ``distance`` when there is one; columns
            ``variable``, ``binary`` and ``mean_treated``, ``mean_control``,
            ``smd``, ``var_ratio``, ``ecdf_mean``, ``ecdf_max`` each with
            suffix ``_before`` and ``_after``.  See
            :mod:`carecall_eval.matching.balance` for the definitions.
        """
        return self._balance.copy()

    @cached_property
    def _balance(self) -> pd.DataFrame:
        return balance_table(self._X, self._terms, self._treat, self._weights,
                             variables=self._sources, distance=self._distance)

    def imbalanced(self, threshold: float = SMD_THRESHOLD) -> pd.Series:
        """Covariate terms whose |SMD| after matching is at least ``threshold``.

        Returns
        -------
        pandas.Series
            SMD after matching of the imbalanced terms (the distance row
            excluded), largest |SMD| first.
        """
        return describe.imbalanced_terms(self._balance, threshold)

    @property
    def summary(self) -> pd.DataFrame:
        """Tidy summary (columns :data:`carecall_eval.SUMMARY_COLUMNS`).

        Rows: units, matched, unmatched and discarded units and effective
        sample size by group; the largest |SMD| before and after; the number
        of covariate terms with |SMD| >= 0.1 after.
        """
        label = self._label()
        rows: list[dict[str, Any]] = []
        for g in ("treated", "control"):
            for m in ("all", "matched", "unmatched", "discarded"):
                v = int(self.counts.loc[m, g])
                rows.append({"metric": f"n_{m}", "group": g, "estimate": v, "n": v, "method": label})
            rows.append({"metric": "ess_matched", "group": g, "estimate": float(self.ess.loc["matched", g]),
                         "n": int(self.counts.loc["matched", g]), "method": label})
        b = self._balance.drop(index="distance", errors="ignore")
        n_all = int(self.counts.loc["all"].sum())
        n_m = int(self.counts.loc["matched"].sum())
        rows.append({"metric": "max_abs_smd_before", "group": "all",
                     "estimate": float(b["smd_before"].abs().max()), "n": n_all, "method": label})
        rows.append({"metric": "max_abs_smd_after", "group": "all",
                     "estimate": float(b["smd_after"].abs().max()), "n": n_m, "method": label})
        rows.append({"metric": "n_imbalanced_after", "group": "all",
                     "estimate": float(len(self.imbalanced())), "n": n_m, "method": label})
        return tidy(rows)

    def _label(self) -> str:
        return describe.label(self.settings)

    @cached_property
    def text(self) -> str:
        """Plain-language account: who was matched, and which covariates remain imbalanced."""
        reused = int((self._weights[~self._treat] > 0).sum())
        return describe.text(self.settings, self.counts, self.ess, self._balance, reused)

    def _plot_data(self) -> dict:
        """``"balance"`` (term, variable, smd_before, smd_after) for :func:`~carecall_eval.plotting.love_plot`."""
        return {"balance": self._balance.reset_index()[["term", "variable", "smd_before", "smd_after"]]}

    def to_result(self) -> Result:
        """The shared :class:`carecall_eval.Result` form (for reports)."""
        return Result(
            name="matching",
            summary=self.summary,
            text=self.text,
            settings=dict(self.settings),
            plot_data=self.get_plot_data(),
            details={"balance": self.balance(), "counts": self.counts.copy(), "ess": self.ess.copy(),
                     "propensity": self.propensity},
        )

    def print_summary(self, digits: int = 3) -> None:
        """Print the text, the sample sizes and the balance table."""
        print(self.text)
        print()
        print(self.counts.to_string())
        print()
        cols = [f"{s}_{w}" for w in ("before", "after") for s in ("mean_treated", "mean_control", "smd")]
        print(self._balance[cols].round(digits).to_string())

    def __repr__(self) -> str:
        return f"<MatchResult {self._label()}: {int(self.counts.loc['matched', 'treated'])} treated matched>"
