"""Run a study design end to end: load -> cohort -> matching -> every outcome estimator.

:func:`evaluate` returns an :class:`Evaluation` whose ``summary`` stacks every
estimator's tidy rows under stable metric ids; reports and exports read it.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ._version import __version__
from .cohorts import Cohort, StudyDesign, build_cohort
from .results import SUMMARY_COLUMNS, Result
from .stages import Stages


@dataclass(frozen=True)
class Evaluation:
    """Everything one design produced on one data set."""

    design: StudyDesign
    cohort: Cohort
    matched: object
    results: dict
    params: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    @property
    def summary(self) -> pd.DataFrame:
        """Every estimator's rows, with an ``estimator`` column; stable order."""
        frames = []
        for name, r in self.results.items():
            s = r.summary.copy()
            s.insert(0, "estimator", name)
            frames.append(s)
        out = pd.concat(frames, ignore_index=True, sort=False)
        first = ["estimator"] + SUMMARY_COLUMNS
        return out[first + [c for c in out.columns if c not in first]]

    @property
    def text(self) -> str:
        return "\n".join(f"- {r.text}" for r in self.results.values())

    def metric(self, metric: str, group: str | None = None, **where) -> pd.Series:
        s = self.summary
        s = s[s["metric"] == metric]
        if group is not None:
            s = s[s["group"] == group]
        for k, v in where.items():
            s = s[s[k] == v]
        if len(s) != 1:
            raise KeyError(f"{len(s)} rows for metric={metric!r} group={group!r} {where}")
        return s.iloc[0]

    def to_records(self) -> list[dict]:
        """JSON-ready rows (NaN -> None), deterministic order."""
        s = self.summary
        recs = []
        for rec in s.to_dict(orient="records"):
            recs.append({k: _jsonable(v) for k, v in rec.items()})
        return recs

    def to_json(self) -> str:
        doc = {"carecall_eval_version": __version__, "params": self.params, "metrics": self.to_records()}
        return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _jsonable(v):
    if v is None or v is pd.NA:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else round(float(v), 10)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def evaluate(data, design: StudyDesign | None = None, *, level: float = 0.95, quiet: bool = True,
             window: int = 84, placebo: bool = True, subgroups: bool = True, stages: Stages | None = None
             ) -> Evaluation:
    """Run the design over the whole data period and every estimator.

    Parameters
    ----------
    data : path or Dataset
        A data directory (loaded and validated) or a loaded dataset.
    design : StudyDesign, optional
        Default: reached vs unreached phone cases, both indexed at opening.
    level : float
        Confidence level of every interval.
    quiet : bool
        Print no progress lines.
    window : int
        Headline post window for spending (days).
    placebo : bool
        Run the placebo analysis.
    subgroups : bool
        Estimate spending effects by subgroup (the slowest part).
    stages : Stages, optional
        Records each step's time and peak memory (and prints progress);
        a new one (printing unless `quiet`) when None.  ``Evaluation.timings``
        has the seconds either way.
    """
    # one BLAS thread: multithreaded reductions could change the last digits of a fit between runs
    with threadpool_limits(limits=1, user_api="blas"):
        return _evaluate(data, design, level=level, window=window, placebo=placebo, subgroups=subgroups,
                         stages=stages if stages is not None else Stages(quiet=quiet))


def _evaluate(data, design, *, level, window, placebo, subgroups, stages) -> Evaluation:
    from .contract import load
    from .outcomes.randomized import randomized_effects
    from .outcomes.retention import retention
    from .outcomes.spending import spending_effect

    st = stages
    first = len(st.records)
    if isinstance(data, (str, os.PathLike)):
        with st("load + validate"):
            ds = load(data)
    else:
        ds = data
    design = design or StudyDesign()
    with st("cohort"):
        cohort = build_cohort(ds, design)
    st.say(f"cohort: {cohort.text}")
    with st("matching"):
        matched = cohort.match()
    results: dict[str, Result] = {}
    with st("spending"):
        results["spending"] = spending_effect(ds, cohort, matched, window=window, level=level, placebo=placebo,
                                              subgroups=subgroups)
    with st("retention"):
        results["retention"] = retention(ds, matched.matched_data(), level=level)
    with st("reach, calls, actions"):
        _other_estimators(ds, cohort, matched, results, level)
    if ds.table("call_cases")["arm"].notna().any():
        with st("randomized arms"):
            rc = build_cohort(ds, StudyDesign(contact="randomized", comparison="arms", pre_window=design.pre_window))
            try:
                results["randomized"] = randomized_effects(ds, rc, window=window, level=level)
            except ValueError as exc:
                st.say(f"randomized arms skipped: {exc}")
    timings = {r["stage"]: r["seconds"] for r in st.records[first:]}
    params = {"design": design.to_dict(), "index_rule": design.index_rule, "level": level, "window": window,
              "placebo": placebo, "subgroups": subgroups,
              "data_fingerprint": ds.fingerprint(), "operator": ds.config.operator,
              "currency": ds.config.currency, "small_cell_threshold": ds.config.small_cell_threshold,
              "sms_policy_start": str(ds.config.sms_policy_start) if ds.config.sms_policy_start else None,
              "data_start": str(pd.Timestamp(ds.data_start).date()), "data_end": str(pd.Timestamp(ds.data_end).date())}
    return Evaluation(design, cohort, matched, results, params, timings)


def _other_estimators(ds, cohort, matched, results, level) -> None:
    """Reach, call length, actions and reception (each optional on the data at hand)."""
    from .outcomes import actions as act
    from .outcomes import calls, reach

    results["reach"] = reach.sms_effect(ds, level=level)
    results["call_length"] = calls.call_length(ds, level=level)
    results["actions"] = act.actions(ds, cohort.table, matched.matched_data(), level=level)
    results["reception"] = act.reception(ds, level=level)


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def evaluate_to_file(data, out, *, design_path=None, quiet=False) -> int:
    """CLI body of ``carecall-eval evaluate``: run, print the headline, write JSON or CSV."""
    design = StudyDesign.read(design_path) if design_path else None
    ev = evaluate(data, design, quiet=quiet)
    out = Path(out)
    if out.suffix.lower() == ".csv":
        write_atomic(out, ev.summary.to_csv(index=False))
    else:
        write_atomic(out, ev.to_json())
    print(headline(ev))
    print(f"Wrote {len(ev.summary)} metric rows to {out}")
    return 0


def headline(ev: Evaluation) -> str:
    """The few numbers a manager asks for first, as text."""
    lines = [f"carecall_eval {__version__} - {ev.params.get('operator')} - {ev.design.describe()}"]
    for name in ("spending", "retention", "reach", "call_length"):
        if name in ev.results:
            lines.append(f"* {ev.results[name].text}")
    return "\n".join(lines)
