"""Run a study design end to end: load -> cohort -> matching -> every outcome estimator.

:func:`evaluate` returns an :class:`Evaluation` whose ``summary`` stacks every
estimator's tidy rows under stable metric ids; reports and exports read it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from ._validation import check_horizon, check_level
from ._version import __version__
from .cohorts import Cohort, MatchedSample, StudyDesign, build_cohort
from .errors import NotAvailableError
from .results import SUMMARY_COLUMNS, Reporting, Result, jsonable, tidy
from .stages import Stages


@dataclass(frozen=True, repr=False)
class Evaluation(Reporting):
    """Everything one design produced on one data set (the result protocol over every estimator).

    Attributes
    ----------
    design : StudyDesign
    cohort : Cohort
    sample : MatchedSample
        The matched sample every cohort estimator used.
    results : dict of str to Result
        One entry per registered estimator that applied to the data.
    settings : dict
        Design, level, headline window, data fingerprint and operator facts.
    timings : dict
        Seconds per step.
    """

    design: StudyDesign
    cohort: Cohort
    sample: MatchedSample
    results: dict
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    name = "evaluation"

    @property
    def matched(self):
        """The matching result (``sample.matching``)."""
        return self.sample.matching

    @cached_property
    def _summary(self) -> pd.DataFrame:
        return _stack(self.results)

    @property
    def summary(self) -> pd.DataFrame:
        """Every estimator's rows, :data:`SUMMARY_COLUMNS` first, then ``estimator``; stable order."""
        return self._summary.copy()

    @property
    def text(self) -> str:
        return "\n".join(f"- {r.text}" for r in self.results.values())

    def _plot_data(self) -> dict:
        return {f"{name}.{k}": v for name, r in self.results.items() for k, v in r.get_plot_data().items()}

    def to_records(self) -> list[dict]:
        """JSON-ready rows (NaN -> None), deterministic order."""
        return [jsonable(rec) for rec in self._summary.to_dict(orient="records")]

    def to_json(self) -> str:
        doc = {"carecall_eval_version": __version__, "settings": jsonable(self.settings), "metrics": self.to_records()}
        return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _check_not_empty(ds) -> None:
    """Tables without a row: one named refusal (NotAvailableError) instead of a failure deep in a model."""
    empty = [t for t in ("activity", "call_cases", "customers") if ds.has(t) and ds.n_rows(t) == 0]
    if empty:
        raise NotAvailableError(
            f"evaluate: {', '.join(empty)} of {ds.path} {'has' if len(empty) == 1 else 'have'} no rows, so there is "
            "nothing to evaluate (no care-call cases or no play to compare); check that the export selected the "
            "period and the customers it should")


def _check_both_groups(cohort, who: str = "evaluate") -> None:
    """Every effect compares two groups: none of either is one named refusal saying how many of each."""
    if cohort.design.comparison == "arms":
        return
    counts = cohort.table["group"].value_counts() if len(cohort.table) else pd.Series(dtype=int)
    n_contact, n_comparison = int(counts.get("contact", 0)), int(counts.get("comparison", 0))
    if n_contact and n_comparison:
        return
    d = cohort.design
    if d.contact == "reached":
        what = ("no phone case in the cohort was reached" if not n_contact else
                "every phone case in the cohort was reached (none is left to compare with)")
        groups = f"{n_contact:,} reached and {n_comparison:,} never reached"
    else:
        what = "one of the two groups of the design is empty"
        groups = f"{n_contact:,} {d.contact} and {n_comparison:,} {d.comparison}"
    raise NotAvailableError(
        f"{who}: {what}: {groups} eligible cases ({d.describe()}); the effect estimates compare the two groups, "
        "so none can be computed on these data. Check call_attempts.answered, or widen the design's period "
        "(study_start, study_end) or triggers")


def _stack(results: dict) -> pd.DataFrame:
    """Every result's rows stacked, :data:`SUMMARY_COLUMNS` first, then ``estimator``."""
    frames = []
    for name, r in results.items():
        s = r.summary.copy()
        s["estimator"] = name
        frames.append(s)
    out = pd.concat(frames, ignore_index=True, sort=False) if frames else tidy([])
    if "estimator" not in out.columns:
        out["estimator"] = pd.Series(dtype=object)
    first = SUMMARY_COLUMNS + ["estimator"]
    return out[first + [c for c in out.columns if c not in first]]


def evaluate(data, design: StudyDesign | None = None, *, level: float = 0.95, quiet: bool = True,
             window: int = 84, placebo: bool = True, subgroups: bool = True, stages: Stages | None = None,
             options: dict | None = None) -> Evaluation:
    """Run the design over the whole data period and every registered estimator.

    Parameters
    ----------
    data : path, Dataset or IbisDataset
        A data directory (loaded and validated) or an opened dataset.
    design : StudyDesign, optional
        Default: reached vs unreached phone cases, both indexed at opening.
    level : float
        Confidence level of every interval (strictly between 0 and 1).
    quiet : bool
        Print no progress lines.
    window : int
        Headline post window for spending and randomized arms (days).
    placebo : bool
        Run the placebo analysis.
    subgroups : bool
        Estimate spending effects by subgroup (the slowest part).
    stages : Stages, optional
        Records each step's time and peak memory (and prints progress);
        a new one (printing unless `quiet`) when None.  ``Evaluation.timings``
        has the seconds either way.
    options : dict, optional
        Further keyword options per estimator name, e.g. ``{"retention": {"horizon": 180}}``.

    Returns
    -------
    Evaluation
    """
    level = check_level(level)
    window = check_horizon("window", window)
    # one BLAS thread: multithreaded reductions could change the last digits of a fit between runs
    with threadpool_limits(limits=1, user_api="blas"):
        return _evaluate(data, design, level=level, window=window, placebo=placebo, subgroups=subgroups,
                         stages=stages if stages is not None else Stages(quiet=quiet), options=options or {})


def _evaluate(data, design, *, level, window, placebo, subgroups, stages, options) -> Evaluation:
    from .contract.base import open_data

    st = stages
    first = len(st.records)
    with st("load + validate"):
        ds = open_data(data, "evaluate")
    design = design or StudyDesign()
    _check_not_empty(ds)
    with one_pass(ds, design, window=window, placebo=placebo):
        return _estimate(ds, design, level=level, window=window, placebo=placebo, subgroups=subgroups, stages=st,
                         options=options, first=first)


def _estimate(ds, design, *, level, window, placebo, subgroups, stages, options, first) -> Evaluation:
    from .outcomes.memo import memoised
    from .outcomes.registry import ESTIMATORS

    st = stages
    with st("cohort"):
        cohort = memoised("cohort", build_cohort, ds, design, key=design.to_dict())
    st.say(f"cohort: {cohort.text}")
    _check_both_groups(cohort)
    with st("matching"):
        sample = cohort.sample()
    defaults = {"spending": {"window": window, "placebo": placebo, "subgroups": subgroups},
                "randomized": {"window": window}}
    unknown = sorted(set(options) - set(ESTIMATORS))
    if unknown:
        raise ValueError(f"evaluate: options for unknown estimator(s) {unknown}; registered: {sorted(ESTIMATORS)}")
    results: dict[str, Result] = {}
    rsample = None
    for name, spec in ESTIMATORS.items():
        if not spec.in_evaluate or not spec.applies(ds):
            continue
        opts = {**defaults.get(name, {}), **options.get(name, {})}
        with st(name):
            if spec.sample == "observational":
                arg = sample
            elif spec.sample == "randomized":
                if rsample is None:
                    rdesign = StudyDesign(contact="randomized", comparison="arms", pre_window=design.pre_window)
                    rsample = memoised("cohort", build_cohort, ds, rdesign, key=rdesign.to_dict()).sample()
                arg = rsample
            else:
                arg = None
            try:
                results[name] = spec(ds, arg, level=level, **opts)
            except NotAvailableError as exc:
                st.say(f"{name} not available: {exc}")
    timings = {r["stage"]: r["seconds"] for r in st.records[first:]}
    cfg = ds.config
    settings = {"design": design.to_dict(), "index_rule": design.index_rule, "level": level, "window": window,
                "placebo": placebo, "subgroups": subgroups, "options": jsonable(options),
                "data_fingerprint": ds.fingerprint(), "operator": cfg.operator,
                "currency": cfg.currency, "small_cell_threshold": cfg.small_cell_threshold,
                "sms_policy_start": str(cfg.sms_policy_start) if cfg.sms_policy_start else None,
                "data_start": str(pd.Timestamp(ds.data_start).date()), "data_end": str(pd.Timestamp(ds.data_end).date())}
    return Evaluation(design, cohort, sample, results, settings, timings)


def one_pass(ds, design: StudyDesign, *, window: int = 84, placebo: bool = True):
    """One pass over activity for the estimators of an evaluation or a report (a context manager).

    Every case of the data at its opening day, with every window a cohort of `design` sums, the windows
    of the placebo (the same, ``pre_window`` days earlier) and of the answer model's case covariates:
    the cohorts of the design at any study period (effect, year-earlier, every earlier case), the
    placebo's pseudo-index and the case covariates of reach, timing and the self-check are then answered
    from it instead of each running its own pass (:func:`carecall_eval.cohorts.windows.shared_pass`;
    the same figures exactly).  Cohorts indexed on another day run their own pass as before.
    """
    import contextlib

    from .cohorts.build import SHARE_WINDOW, cohort_windows, shifted
    from .cohorts.windows import shared_pass
    from .outcomes.reach.answer_model import PRE_WINDOWS

    if not ds.has("call_cases"):
        return contextlib.nullcontext()
    cases = ds.table("call_cases")[["customer_id", "opened_on"]].dropna()
    keys = pd.DataFrame({"customer_id": cases["customer_id"].to_numpy(), "index_date": cases["opened_on"].to_numpy()})
    wins = [*cohort_windows(design).values(), *PRE_WINDOWS.values()]
    shares = [SHARE_WINDOW, PRE_WINDOWS["pre84"]]
    if placebo:
        w = min(window, design.pre_window)
        wins += list(shifted(cohort_windows(design, post=(w,)), -design.pre_window).values())
        shares.append(shifted({"s": SHARE_WINDOW}, -design.pre_window)["s"])
    return shared_pass(ds, keys, wins, shares)


def evaluate_to_file(data, out, *, design_path=None, quiet=False) -> int:
    """CLI body of ``carecall-eval evaluate``: run, print the headline, write JSON or CSV.

    The output path is checked before anything is computed (a folder, a path through a file, a
    read-only place, or a name not ending in ``.json`` or ``.csv`` are refused), and the file is written
    atomically by :mod:`carecall_eval.writer`.
    """
    from .errors import InputError
    from .writer import check_output_path, write_text

    suffix = Path(out).suffix.lower()
    if Path(out).is_dir():
        raise InputError(f"evaluate --out {out}: it is an existing folder; give a file name ending in .json or "
                         f".csv, for example --out {Path(out) / 'metrics.json'}")
    if suffix not in (".json", ".csv"):
        raise InputError(f"evaluate --out {out}: the output file must end in .json or .csv (got "
                         f"{suffix or 'no extension'}); for example --out metrics.json")
    out = check_output_path(out, directory=False, what="metrics file")
    design = StudyDesign.read(design_path) if design_path else None
    ev = evaluate(data, design, quiet=quiet)
    if suffix == ".csv":
        write_text(out, ev.summary.to_csv(index=False), what="metrics file")
    else:
        write_text(out, ev.to_json(), what="metrics file")
    print(headline(ev))
    print(f"Wrote {len(ev.summary)} metric rows to {out}")
    return 0


def headline(ev: Evaluation) -> str:
    """The few numbers a manager asks for first, as text."""
    lines = [f"carecall_eval {__version__} - {ev.settings.get('operator')} - {ev.design.describe()}"]
    for name in ("spending", "retention", "reach", "call_length"):
        if name in ev.results:
            lines.append(f"* {ev.results[name].text}")
    return "\n".join(lines)
