"""Everything a quarterly report shows, computed once: :func:`build_quarterly`.

The notebook ``notebooks/quarterly_report.py`` calls :func:`build_quarterly`
and only lays the result out, so the numbers can be tested without a kernel.

Which customers each section describes
--------------------------------------
* Headline KPIs: the report quarter and the four before it, from the small
  tables (:func:`~carecall_eval.report.quarters.quarter_kpis`).
* Effect estimates (spending, actions, balance, cohort flow): one run of
  :func:`carecall_eval.evaluate` whose design keeps the cases opened in the
  ``pool_quarters`` quarters (12 months by default) ending on the last index
  date whose ``window``-day follow-up is complete by the end of the report
  quarter.  One quarter of a small operator is too few customers for a
  useful interval (see ``spending.mde``), so the cohort is pooled.
* 12-month retention: the cases opened in the same quarter a year earlier,
  matched with the same design, so that their year of follow-up is complete.
* Reach, answer rates, call length, reception: the whole data period, because
  the before/after comparison of the SMS policy needs both periods.
* Running the programme (``programme``): when to call and callers over every call
  in the data; how fast and who benefits on the effect cohort; whether it lasts and
  repeat contact on every case opened up to the effect cohort's end (12 months of
  follow-up need cases opened a year before).  Not in ``metrics.json``.
* "Can these figures be trusted?": the plasmode self-check
  (:func:`carecall_eval.selfcheck`) on the effect cohort's never-reached
  customers, at ``selfcheck_replicates`` replicates (small, so the report stays
  quick), and the sensitivity analysis of the evaluation (Rosenbaum's Γ,
  tipping points).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import os
import subprocess
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .._version import __version__
from ..calendar import Quarter, parse_quarter, quarter_of
from ..cohorts import StudyDesign
from ..errors import CarecallWarning, NotAvailableError
from ..outcomes.memo import memoised
from ..results import Result
from .quarters import quarter_kpis

__all__ = ["QuarterlyReport", "DatasetInfo", "build_quarterly", "load_report", "effect_cohort_period", "check_quarter", "provenance"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a finished report needs of its dataset: period, settings, fingerprint (picklable, no connection)."""

    path: str
    config: object
    data_start: pd.Timestamp
    data_end: pd.Timestamp
    tables: tuple
    data_fingerprint: str

    @classmethod
    def of(cls, ds) -> "DatasetInfo":
        return cls(str(ds.path), ds.config, pd.Timestamp(ds.data_start), pd.Timestamp(ds.data_end),
                   tuple(ds.tables), ds.fingerprint())

    def fingerprint(self) -> str:
        return self.data_fingerprint

    def has(self, name: str) -> bool:
        return name in self.tables


@dataclass
class QuarterlyReport:
    """The numbers behind one quarterly report (see :func:`build_quarterly`)."""

    quarter: Quarter
    dataset: object
    design: StudyDesign
    evaluation: object | None
    kpis: pd.DataFrame
    validation: object
    retention: Result | None = None
    retention_cohort: object | None = None
    retention_quarter: Quarter | None = None
    selfcheck: Result | None = None
    programme: dict = field(default_factory=dict)      # running the programme: name -> Result (not in metrics)
    cohort_period: tuple[_dt.date, _dt.date] | None = None
    missing: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def config(self):
        return self.dataset.config

    def detached(self) -> "QuarterlyReport":
        """A copy whose dataset is a :class:`DatasetInfo` (no open connection), for pickling."""
        return dataclasses.replace(self, dataset=DatasetInfo.of(self.dataset))

    #: Details the report's pages read (the retention curve's risk table); every other detail is a fitted
    #: model or a row-level table.
    SHOWN_DETAILS = ("table",)
    #: The columns of that table the risk table reads (``compare.suppress.km_points``): a cohort's other
    #: hundred columns were most of the notebook's context at a million customers.
    SHOWN_COLUMNS = ("duration", "event", "contact", "weights")

    def lean(self) -> "QuarterlyReport":
        """A copy whose results keep only the details the report shows (what the renderer hands the notebook:
        at a million customers the full details are gigabytes to pickle and read back)."""
        ev = self.evaluation
        if ev is not None:
            ev = dataclasses.replace(ev, results={k: _shown_details(r) for k, r in ev.results.items()})
            # a new sample of the same cohort without the matched rows (a copy of the cohort's columns, a third
            # of the context at a million customers; read again from the cohort and the matching if asked for)
            # and without the propensity model's statsmodels fit (it holds the design matrix again; the page
            # shows the scores and the balance)
            mt = ev.sample.matching
            if mt is not None and getattr(mt.propensity, "results", None) is not None:
                mt = dataclasses.replace(mt, propensity=dataclasses.replace(mt.propensity, results=None))
            ev = dataclasses.replace(ev, sample=dataclasses.replace(ev.sample, matching=mt))
        return dataclasses.replace(self, evaluation=ev, retention=_shown_details(self.retention),
                                   selfcheck=_shown_details(self.selfcheck),
                                   programme={k: _shown_details(r) for k, r in self.programme.items()})

    def save(self, path: str | os.PathLike) -> Path:
        """Pickle the detached report to `path` (read back with :func:`load_report`)."""
        import pickle

        path = Path(path)
        with open(path, "wb") as fh:
            pickle.dump(self.detached(), fh, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    @property
    def complete_quarter(self) -> bool:
        return pd.Timestamp(self.dataset.data_end).date() >= self.quarter.end

    def metrics(self):
        """An :class:`~carecall_eval.evaluate.Evaluation` holding every exported row.

        The evaluation's own rows, then ``retention_year_earlier`` and ``kpis``;
        ``settings["report"]`` records the report's parameters.  None when the
        evaluation could not run.
        """
        ev = self.evaluation
        if ev is None:
            return None
        results = dict(ev.results)
        if self.retention is not None:
            results["retention_year_earlier"] = self.retention
        if self.selfcheck is not None:
            results["selfcheck"] = self.selfcheck
        kpi_rows = self.kpis.drop(columns=["quarter", "count"], errors="ignore")
        results["kpis"] = Result("kpis", kpi_rows, "Headline figures by quarter.",
                                 settings={"quarters": sorted(self.kpis["quarter"].unique().tolist())})
        return dataclasses.replace(ev, results=results, settings={**ev.settings, "report": self.params})

    def _unavailable_metrics(self) -> tuple[pd.DataFrame, dict]:
        """When the evaluation could not run: one not-available row per estimator (with the reason), then
        the rows the report could compute (the year-earlier retention, the headline figures)."""
        from ..evaluate import _stack
        from ..outcomes.registry import ESTIMATORS
        from ..results import not_available, tidy

        reason = self.missing.get("evaluation", "the evaluation could not run")
        reason = reason.removeprefix("not available: ")
        rows = [not_available({"metric": name, "group": "all", "method": "not computed"}, reason)
                for name, spec in ESTIMATORS.items() if getattr(spec, "in_evaluate", True)]
        results = {"evaluation": Result("evaluation", tidy(rows), f"Not available: {reason}.")}
        if self.retention is not None:
            results["retention_year_earlier"] = self.retention
        if getattr(self, "selfcheck", None) is not None:
            results["selfcheck"] = self.selfcheck
        kpi_rows = self.kpis.drop(columns=["quarter", "count"], errors="ignore")
        results["kpis"] = Result("kpis", kpi_rows, "Headline figures by quarter.")
        ds, cfg = self.dataset, self.config
        settings = {"design": self.design.to_dict(), "data_fingerprint": ds.fingerprint(), "operator": cfg.operator,
                    "currency": cfg.currency, "small_cell_threshold": cfg.small_cell_threshold,
                    "sms_policy_start": str(cfg.sms_policy_start) if cfg.sms_policy_start else None,
                    "data_start": str(pd.Timestamp(ds.data_start).date()),
                    "data_end": str(pd.Timestamp(ds.data_end).date()),
                    "not_available": {"evaluation": reason}, "report": self.params}
        return _stack(results), settings

    def metrics_json(self) -> str:
        """Every exported row as JSON: the evaluation's (or, when it could not run, one not-available row
        per estimator with the reason), the year-earlier retention and the headline figures."""
        import json

        from .._version import __version__
        from ..results import jsonable

        m = self.metrics()
        if m is not None:
            return m.to_json()
        rows, settings = self._unavailable_metrics()
        doc = {"carecall_eval_version": __version__, "settings": jsonable(settings),
               "metrics": [jsonable(r) for r in rows.to_dict(orient="records")]}
        return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"

    def metrics_csv(self) -> str:
        """The rows of :meth:`metrics_json` as CSV."""
        m = self.metrics()
        if m is not None:
            # the JSON's rows (rounded to 10 decimals, as evaluate does), so both files carry the same numbers
            # and the last bits of floating-point sums cannot make two renders differ
            columns = list(m.summary.columns)
            records = m.to_records()
        else:
            from ..results import jsonable

            rows, _ = self._unavailable_metrics()
            columns = list(rows.columns)
            records = [jsonable(r) for r in rows.to_dict(orient="records")]
        return pd.DataFrame.from_records(records, columns=columns).to_csv(index=False, lineterminator="\n")

    def write_metrics(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write ``metrics.json`` and ``metrics.csv`` into ``out_dir`` (atomically each, with the one writer).

        Both are always written: when the evaluation could not run they say so, figure by figure."""
        from ..writer import write_text

        out = Path(out_dir)
        paths = [out / "metrics.json", out / "metrics.csv"]
        write_text(paths[0], self.metrics_json(), what="metrics file")
        write_text(paths[1], self.metrics_csv(), what="metrics file")
        return paths

    def for_people(self) -> "QuarterlyReport":
        """This report with every table and sentence a person reads passed through the small-cell rules
        (:func:`carecall_eval.report.people.for_people`; the bundle's rules, one implementation)."""
        from .people import for_people

        return for_people(self)


def load_report(path: str | os.PathLike) -> QuarterlyReport:
    """A report saved by :meth:`QuarterlyReport.save` (only open files you wrote yourself: it is a pickle)."""
    import pickle

    with open(path, "rb") as fh:
        rep = pickle.load(fh)
    if not isinstance(rep, QuarterlyReport):
        raise TypeError(f"{path} does not hold a QuarterlyReport")
    return rep


def effect_cohort_period(quarter: Quarter, data_end, *, window: int = 84,
                         pool_quarters: int | None = 4) -> tuple[_dt.date, _dt.date | None]:
    """Index-date period of the effect cohort: complete ``window``-day follow-up by the quarter's end.

    Returns ``(study_start, study_end)``; ``study_start`` is None when
    ``pool_quarters`` is None or 0 (every earlier case).

    Examples
    --------
    >>> effect_cohort_period(Quarter(2025, 4), pd.Timestamp("2025-12-31"))
    (datetime.date(2024, 10, 10), datetime.date(2025, 10, 9))
    """
    follow_end = min(quarter.end, pd.Timestamp(data_end).date())
    end = follow_end - _dt.timedelta(days=window - 1)
    if not pool_quarters:
        return None, end
    start = (pd.Timestamp(end) - pd.DateOffset(months=3 * int(pool_quarters)) + pd.Timedelta(days=1)).date()
    return start, end


def check_quarter(ds, quarter: Quarter) -> list[str]:
    """Problems that make a quarterly report of ``quarter`` on ``ds`` impossible (empty list: none).

    The quarter must overlap the data period and have at least one care-call
    case opened in it.
    """
    start, end = pd.Timestamp(ds.data_start), pd.Timestamp(ds.data_end)
    if pd.isna(start) or pd.isna(end):
        return [f"{ds.path} has no activity rows, so it covers no period at all"]
    first, last = quarter_of([start]).iloc[0], quarter_of([end]).iloc[0]
    if pd.Timestamp(quarter.end) < start or pd.Timestamp(quarter.start) > end:
        return [f"{quarter} is outside the data, which cover {start.date()} to {end.date()} "
                f"(quarters {first} to {last}); choose one of those quarters"]
    opened = quarter_of(ds.table("call_cases")["opened_on"])
    if not (opened == quarter.label).any():
        have = sorted(opened.dropna().unique())
        span = f"{have[0]} to {have[-1]}" if have else "none"
        return [f"no care-call cases were opened in {quarter} (quarters with cases: {span}); "
                "there is nothing to report for it"]
    return []


def provenance(repo: str | os.PathLike | None = None) -> dict:
    """Package version, library versions and the git commit of the code (when available)."""
    import importlib.metadata as md
    import platform

    versions = {"python": platform.python_version()}
    for pkg in ("numpy", "pandas", "scipy", "statsmodels", "lifelines", "matplotlib", "duckdb", "papermill",
                "nbconvert"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip() or None
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "carecall_eval",
                                 "notebooks", "pyproject.toml"], capture_output=True, text=True, timeout=10,
                                check=True).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"carecall_eval": __version__, "git_commit": commit, "git_uncommitted_changes": dirty,
            "versions": versions}


@contextlib.contextmanager
def _collect(notes: list, step: str):
    """Record the project's own warnings (:class:`~carecall_eval.errors.CarecallWarning`: the caveats a
    reader needs) raised during ``step`` as report notes; any other warning is passed on as it came."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CarecallWarning)
        yield
    for w in caught:
        if issubclass(w.category, CarecallWarning):
            msg = f"{step}: {str(w.message).strip()}"
            if msg not in notes:
                notes.append(msg)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _shown_details(r):
    """``r`` keeping only the details the report shows (:attr:`QuarterlyReport.SHOWN_DETAILS`, with the
    :attr:`~QuarterlyReport.SHOWN_COLUMNS` of a survival table); ``r`` itself when it has no details."""
    if r is None or not isinstance(getattr(r, "details", None), Mapping):
        return r
    # by name: a memoised result's details are read only for the names kept (outcomes/memo.py)
    kept = {k: r.details[k] for k in QuarterlyReport.SHOWN_DETAILS if k in r.details}
    for k, v in kept.items():
        if isinstance(v, pd.DataFrame) and {"duration", "event", "contact"} <= set(v.columns):
            kept[k] = v[[c for c in QuarterlyReport.SHOWN_COLUMNS if c in v.columns]]
    return dataclasses.replace(r, details=kept)


def build_quarterly(data, quarter: str | Quarter, design: StudyDesign | str | os.PathLike | None = None, *,
                    pool_quarters: int | None = 4, window: int = 84, level: float = 0.95,
                    placebo: bool = True, kpi_quarters: int = 4, validation=None,
                    selfcheck_replicates: int = 20, programme: bool = True, stages=None,
                    details: bool = True) -> QuarterlyReport:
    """Compute everything a quarterly report shows.

    Parameters
    ----------
    data : path or Dataset
        Operator data directory (opened and validated once) or a loaded
        dataset (used as it is).  Aggregates are exact (fixed-point sums), so
        the figures do not depend on DuckDB's thread count.
    quarter : str or Quarter
        Report quarter, e.g. ``"2025Q3"``.
    design : StudyDesign, path or None
        Study design (or a TOML/JSON file with one); default design if None.
        When it sets ``study_start`` or ``study_end`` these are used for the
        effect cohort as given; otherwise see :func:`effect_cohort_period`.
    pool_quarters : int or None
        Quarters of cases pooled in the effect cohort (a whole number >= 1;
        None: every earlier case).
    window : int
        Headline spending window in days (follow-up that must be complete).
    level : float
        Confidence level.
    placebo : bool
        Run the placebo analysis (slow; off in the CI setting).
    kpi_quarters : int
        Earlier quarters shown beside the report quarter.
    validation : ValidationReport or path, optional
        The data's validation report when it was already computed (the
        renderer validates before it starts the notebook; a path is a JSON
        file from :meth:`ValidationReport.to_json`).  Validated here when None.
    selfcheck_replicates : int
        Replicates of the plasmode self-check on the effect cohort (0: skip it).
        Each one re-matches and re-estimates the cohort, so the report keeps
        this small; ``carecall-eval selfcheck`` runs the full check.
    programme : bool
        Compute the sections for the care-call team (``QuarterlyReport.programme``: when to call, how fast
        cases are worked, who benefits, whether it lasts, repeat contact, callers).
    stages : carecall_eval.stages.Stages, optional
        Records each step's time and peak memory and prints progress.
    details : bool
        Keep every result's ``details`` (fitted models, row-level tables).  False keeps only what the
        report's pages read (:meth:`QuarterlyReport.lean`), dropping the rest as soon as each section is
        computed: the renderer's setting, so that the later sections run in less memory.  No figure changes.

    Returns
    -------
    QuarterlyReport
        Sections that cannot be computed are None, with the reason in
        ``missing[section]``; warnings raised on the way are in ``notes``.

    Raises
    ------
    carecall_eval.errors.InputError
        If the quarter is malformed, outside the data or has no cases, or
        ``pool_quarters`` is not a whole number >= 1 (or None).
    """
    from .._validation import check_int
    from ..contract import Dataset, ValidationReport, load, validate
    from ..errors import InputError
    from ..evaluate import evaluate, one_pass
    from ..stages import Stages

    st = stages if stages is not None else Stages(quiet=True)

    q = parse_quarter(quarter)
    if pool_quarters is not None:
        try:
            pool_quarters = check_int("pool_quarters", pool_quarters, 1)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{exc}: the number of quarters of cases pooled for the effect estimates (None: "
                             "every earlier case)") from None
    if isinstance(validation, (str, os.PathLike)):
        validation = ValidationReport.from_json(Path(validation).read_text(encoding="utf-8"))
    notes: list[str] = []
    if isinstance(data, (str, os.PathLike)):
        ds = load(data, validate=False)
        if validation is None:
            with _collect(notes, "validation"), st("validate"):
                validation = validate(ds)
        validation.raise_if_failed()
    else:
        ds = data
    problems = check_quarter(ds, q)
    if problems:
        raise InputError("; ".join(problems))
    if design is None:
        design = StudyDesign()
    elif not isinstance(design, StudyDesign):
        design = StudyDesign.read(design)
    if design.study_start is None and design.study_end is None:
        start, end = effect_cohort_period(q, ds.data_end, window=window, pool_quarters=pool_quarters)
        eff_design = design.replace(study_start=start, study_end=end)
    else:
        eff_design = design
    missing: dict[str, str] = {}
    if ds.config.sms_policy_start is None:
        missing["sms_policy"] = ("operator.toml has no sms_policy_start, so answer rates cannot be compared before "
                                 "and after the missed-call SMS; add a line sms_policy_start = YYYY-MM-DD "
                                 "(the date the SMS began) to compare them")
    if validation is None and not isinstance(ds, Dataset):
        # data on Spark or a warehouse: connect() checked the schemas; the full contract runs on files
        notes.append(f"data read from {ds.path}: table schemas were checked when connecting; the full data "
                     "contract is checked on a Parquet export (docs/backends.md)")
        validation = ValidationReport.from_problems(ds.path, [], {t: ds.n_rows(t) for t in ds.tables},
                                                    {t: "schema" for t in ds.tables})
    if validation is None:
        with _collect(notes, "validation"), st("validate"):
            validation = validate(ds)
    # one pass over activity answers every cohort, placebo and case-covariate query below
    with one_pass(ds, eff_design, window=window, placebo=placebo):
        with _collect(notes, "headline figures"), st("quarterly key figures"):
            kq = q.previous(kpi_quarters)
            kpis = memoised("quarter_kpis", quarter_kpis, ds, kq, level=level, key=[x.label for x in kq])
        ev = None
        with _collect(notes, "effect cohort"):
            try:
                ev = evaluate(ds, eff_design, level=level, window=window, placebo=placebo, stages=st)
            except NotAvailableError as exc:   # a named refusal (no reached customer ...): its own words
                missing["evaluation"] = str(exc)
            except Exception as exc:  # the report says what is missing instead of failing
                missing["evaluation"] = f"the effect estimates could not be computed ({type(exc).__name__}: {exc})"
        if ev is not None and not details:    # what the pages do not read is dropped before the sections below
            ev = dataclasses.replace(ev, results={k: _shown_details(r) for k, r in ev.results.items()})
        sc = None
        if ev is not None and selfcheck_replicates:
            with _collect(notes, "self-check"), st("self-check"):
                try:
                    from ..outcomes.registry import ESTIMATORS
                    from ..trust.plasmode import PLOT_GRID

                    sc = ESTIMATORS["selfcheck"](ds, ev.sample, level=level, window=window, replicates=int(selfcheck_replicates),
                                   sms_replicates=min(int(selfcheck_replicates), 5), grid=PLOT_GRID, seed=0,
                                   n_jobs=os.cpu_count() or 1)   # the figures do not depend on it
                except Exception as exc:  # the report says what is missing instead of failing
                    missing["selfcheck"] = f"the self-check could not be run ({type(exc).__name__}: {exc})"
            if not details:
                sc = _shown_details(sc)
        elif ev is not None:
            missing["selfcheck"] = "the self-check was not run (selfcheck_replicates = 0)"
        rq = q.shift(-4)
        ret = ret_cohort = None
        if pd.Timestamp(rq.end) + pd.Timedelta(days=364) > pd.Timestamp(ds.data_end):
            missing["retention"] = (f"cases opened in {rq} do not yet have a full year of follow-up "
                                    f"(data end {pd.Timestamp(ds.data_end).date()})")
        elif pd.Timestamp(rq.start) - pd.Timedelta(days=design.pre_window) < pd.Timestamp(ds.data_start):
            missing["retention"] = (f"the data start on {pd.Timestamp(ds.data_start).date()}, too late for the "
                                    f"{design.pre_window}-day history of cases opened in {rq}")
        else:
            with _collect(notes, f"retention cohort ({rq})"), st("retention cohort (year earlier)"):
                try:
                    from ..cohorts import build_cohort
                    from ..outcomes.registry import ESTIMATORS

                    rdesign = design.replace(study_start=rq.start, study_end=rq.end)
                    ret_cohort = memoised("cohort", build_cohort, ds, rdesign, key=rdesign.to_dict())
                    from ..evaluate import _check_both_groups

                    _check_both_groups(ret_cohort, f"retention cohort {rq}")
                    ret = ESTIMATORS["retention"](ds, ret_cohort.sample(), level=level, label=f"reached in {rq}")
                except NotAvailableError as exc:
                    missing["retention"] = str(exc)
                    ret = ret_cohort = None
                except Exception as exc:
                    missing["retention"] = (f"12-month retention for cases opened in {rq} could not be computed "
                                            f"({type(exc).__name__}: {exc})")
                    ret = ret_cohort = None
        params = {
            "quarter": q.label,
            "kpi_quarters": [x.label for x in q.previous(kpi_quarters)],
            "effect_cohort": {"study_start": str(eff_design.study_start) if eff_design.study_start else None,
                              "study_end": str(eff_design.study_end) if eff_design.study_end else None,
                              "pool_quarters": pool_quarters, "window": window},
            "retention_cohort": rq.label,
            "placebo": bool(placebo),
            "level": level,
            "selfcheck_replicates": int(selfcheck_replicates),
        }
        prog = _programme(ds, ev, eff_design, level, window, notes, missing, st) if programme and ev is not None else {}
        return QuarterlyReport(quarter=q, dataset=ds, design=eff_design, evaluation=ev, kpis=kpis,
                               validation=validation, retention=ret, retention_cohort=ret_cohort,
                               retention_quarter=rq, selfcheck=sc, programme=prog,
                               cohort_period=(eff_design.study_start, eff_design.study_end),
                               missing=missing, notes=notes, params=params)


def _programme(ds, ev, design: StudyDesign, level: float, window: int, notes: list, missing: dict, st) -> dict:
    """For the care-call team (issue 16): when to call, how fast, who benefits, whether it lasts, repeat
    contact and callers.  Timing and callers read every call in the data; speed and who benefits use the
    effect cohort's matched sample; durability and repeat contact every earlier case (12 months of follow-up
    need cases opened a year before the report).  Missing pieces are said in ``missing["programme.<name>"]``."""
    from ..cohorts import build_cohort
    from ..outcomes.registry import ESTIMATORS as est  # through the registry: results memoised on disk

    out: dict = {}

    def run(name: str, job) -> None:
        with _collect(notes, name.replace("_", " ")), st(f"programme: {name}"):
            try:
                # details (fitted models, row-level tables, the callers' pseudonym key) stay out of the report
                out[name] = dataclasses.replace(job(), details={})
            except Exception as exc:  # the report says what is missing instead of failing
                missing[f"programme.{name}"] = f"could not be computed ({type(exc).__name__}: {exc})"

    run("timing", lambda: est["timing"](ds, level=level))
    run("speed", lambda: est["speed"](ds, ev.sample, level=level, window=window))
    run("heterogeneity", lambda: est["heterogeneity"](ds, ev.sample, level=level, window=window))
    run("callers", lambda: est["callers"](ds, ev.sample, level=level, window=window))
    try:
        with _collect(notes, "every earlier case"), st("programme: every earlier case"):
            edesign = design.replace(study_start=None)
            every = memoised("cohort", build_cohort, ds, edesign, key=edesign.to_dict()).sample()
    except Exception as exc:
        for name in ("durability", "repeat"):
            missing[f"programme.{name}"] = f"could not be computed ({type(exc).__name__}: {exc})"
        return out
    run("durability", lambda: est["durability"](ds, every, level=level))
    run("repeat", lambda: est["repeat"](ds, every, level=level, window=window))
    return out
