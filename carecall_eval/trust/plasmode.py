"""Plasmode self-check: does the pipeline recover a known effect on the operator's own customers?

The check keeps everything that makes an operator's data hard (real customers,
real pre- and post-window spending, and therefore their real regression to the
mean) and plants an effect whose size is known:

1. **Pseudo-contacts.**  Only customers who were never reached are used, so no
   real call can have acted on anyone.  Each replicate draws a pseudo-contact
   group from them with the probabilities of the propensity model fitted to
   the real reached-vs-unreached comparison (its slopes kept, its intercept
   shifted so that the share of pseudo-contacts is the real share of reached
   customers): selection on what the data record looks like the real one.
2. **A known effect.**  The pseudo-contacts' post-index spending windows are
   multiplied by ``1 + effect`` (the aggregated windows on the cohort table;
   activity is never rewritten), so the true effect on the ratio of means is
   exactly ``effect``.  The same draw is also analysed with no effect (the
   false-positive rate) and, for the plot, at a few other sizes.
3. **The primary design, unchanged.**  Each replicate is matched with the
   design's matching settings and estimated by the same functions as
   :func:`~carecall_eval.outcomes.spending.spending_effect`: the naive
   before/after change, the matched PPML (primary) and the difference in
   differences.  Matching reads pre-index covariates only, so one matching per
   replicate serves every effect size.

The SMS estimator is checked the same way on the operator's own call attempts
(:mod:`carecall_eval.trust.sms_plasmode`): a pseudo-policy date inside the
period before the real policy, and a known share of the unanswered late
attempts of cases opened after it turned into answers.

The work is "aggregate once, resample many": the cohort (one pass over
activity) and the case covariates are computed once; replicates only draw,
match and fit on in-memory tables.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import expit

from .._validation import check_choice, check_horizon, check_int, check_level, z_quantile
from ..cohorts.build import Cohort, build_cohort
from ..cohorts.sample import MatchedSample, as_sample
from ..contract.base import open_data
from ..errors import DataWarning, InputError, NotAvailableError
from ..results import Result, not_available, tidy

__all__ = ["selfcheck", "pseudo_contact_probabilities", "summarise_replicates", "scale_ratio", "SPENDING_ESTIMATORS",
           "PLOT_GRID"]

#: The spending figures checked: metric id -> plain label.
SPENDING_ESTIMATORS = {"spending.matched_change": "matched estimate (primary)",
                       "spending.naive_change": "naive before/after",
                       "spending.did_change": "difference in differences"}
#: The SMS figure checked.
SMS_ESTIMATOR = {"reach.sms_effect": "SMS effect on reach (primary)"}
#: Further effect sizes for the plot of estimates against the truth (the report's choice; each costs one more
#: matched PPML fit per replicate, so the library's default is none).
PLOT_GRID = (-0.30, 0.15)
#: Spending measures whose post windows carry the injected effect.
SPEND_MEASURES = ("tl", "net_loss", "wagered", "deposits")

_MIN_POOL = 40          # never-reached customers needed for a replicate worth reporting
#: Intervals are "too narrow" when even the upper end of their coverage's Wilson interval is more than this
#: below the nominal level (a 95% interval covering 94% is fine; one covering 85% is not).
COVERAGE_TOLERANCE = 0.025


# ----------------------------------------------------------------------------- pseudo-contacts

def pseudo_contact_probabilities(linear_predictor: np.ndarray, share: float) -> tuple[np.ndarray, float]:
    """Probabilities of being drawn as a pseudo-contact: the real propensity model, intercept shifted.

    Parameters
    ----------
    linear_predictor : array
        The fitted real propensity model's linear predictor of each never-reached customer.
    share : float
        Mean probability wanted (the real share of reached customers), strictly between 0 and 1.

    Returns
    -------
    (probabilities, shift)
        ``expit(linear_predictor + shift)`` with ``shift`` solving mean = ``share``.

    >>> p, d = pseudo_contact_probabilities(np.array([-1.0, 0.0, 1.0]), 0.5)
    >>> round(float(p.mean()), 12), round(d, 12)
    (0.5, 0.0)
    """
    lin = np.asarray(linear_predictor, dtype=float)
    if not 0 < share < 1:
        raise InputError(f"selfcheck: share must be strictly between 0 and 1, got {share!r}")

    def gap(d):
        return float(expit(lin + d).mean()) - share

    lo, hi = -50.0, 50.0
    shift = float(optimize.brentq(gap, lo, hi, xtol=1e-12))
    return expit(lin + shift), shift


def _real_linear_predictor(sample: MatchedSample) -> np.ndarray:
    """Linear predictor of the real reached-vs-unreached propensity model for every cohort row."""
    cohort = sample.cohort
    fit = getattr(sample.matching, "propensity", None) if sample.matching is not None else None
    if fit is not None and len(fit.linear_predictor) == len(cohort.table):
        return np.asarray(fit.linear_predictor, dtype=float)
    # the sample was matched without a propensity model (CEM): fit the design's model once
    from ..matching import _inputs as inp
    from ..matching.propensity import fit_propensity

    cov = inp.build_covariates(cohort.table, "contact", cohort.covariates)
    treat = cohort.table["contact"].to_numpy() == 1
    return fit_propensity(cov.model, treat, cov.model_names).linear_predictor


# ----------------------------------------------------------------------------- one replicate (spending)

def scale_ratio(r, effect: float):
    """A ratio estimate of a saturated PPML after every contact-post outcome is multiplied by ``1 + effect``.

    For the naive change (post vs pre, contacts only) and the difference in differences (contact x period)
    the PPML fit is saturated: the ratio is a ratio of (weighted) cell means, so multiplying one cell by
    ``c`` multiplies the ratio by ``c`` exactly, and the cluster-robust standard error of its log (built from
    relative residuals) does not change.  ``tests/test_trust.py`` checks this against refits.
    """
    from ..outcomes.spending import RatioEstimate

    c = 1.0 + effect
    return RatioEstimate(c * (1 + r.estimate) - 1, c * (1 + r.ci_low) - 1, c * (1 + r.ci_high) - 1,
                         r.coef + np.log(c), r.se, r.n, r.params, r.converged)


def _spending_rows(pool: pd.DataFrame, treat: np.ndarray, sample: MatchedSample, outcome: str, window: int,
                   effects: Sequence[float], level: float, prep: dict | None = None) -> list[dict]:
    """Match one pseudo-contact draw with the design's settings and estimate at every effect size.

    The same functions as :func:`~carecall_eval.outcomes.spending.spending_effect`: the naive change on
    every pseudo-contact with follow-up, the matched PPML (primary, refitted at every effect size) and the
    difference in differences on the matched rows, clustered by the sample's one rule.  The naive and
    difference-in-differences fits are saturated, so their estimates at other effect sizes follow exactly
    from the fit with no effect (:func:`scale_ratio`).

    ``prep`` (:func:`_prepare_pool`) holds what does not depend on the draw: the pool's covariate matrices
    and exact strata for the matching, and the pool's columns the fits read.  With it the draw is matched
    by :func:`~carecall_eval.matching.api.match_prepared` and only the matched rows' analysis columns are
    copied; without it (a design it does not cover) the pseudo-cohort is matched by ``Cohort.match()``.
    The tables the fits receive are the same either way.
    """
    from ..outcomes.spending import analysis_columns, matched_did, matched_ppml, naive_change

    design = sample.design
    if prep is not None:
        m0, full, groups = _matched_draw(prep, treat, design)
    else:
        table = pool.copy()
        table["contact"] = treat.astype(int)
        table["group"] = np.where(treat, "contact", "comparison")
        pseudo = Cohort(table=table, flow=sample.cohort.flow, design=design, data_end=sample.cohort.data_end)
        ps = MatchedSample(pseudo, pseudo.match())
        full = table[table[f"followup_{window}"].astype(bool)]
        m0 = analysis_columns(ps.table, (window,), sample.cohort.covariates)    # the columns the fits read
        m0 = m0[m0[f"followup_{window}"].astype(bool)]
        groups = None
    n_c, n_k = int((m0["contact"] == 1).sum()), int((m0["contact"] == 0).sum())
    if n_c == 0 or n_k == 0:
        return []
    if groups is None:
        groups = ps.cluster_ids(m0)
    nv0 = naive_change(full, outcome, window, design.pre_window, level)
    did0 = matched_did(m0, outcome, window, groups=groups, pre_window=design.pre_window, level=level)
    col = f"{outcome}_post{window}"
    c1 = m0["contact"].to_numpy() == 1
    y0 = m0[col].to_numpy(dtype=float)
    rows = []
    prev = None
    for e in effects:
        m = m0.copy(deep=False)            # the outcome column is replaced, not written into: m0 stays as it is
        m[col] = np.where(c1, y0 * (1.0 + e), y0)
        # the previous effect size's fit, its contact coefficient moved by the change in log(1 + effect), is
        # close to this maximum: Newton starts there (the same maximum, fewer steps)
        start = None
        if prev is not None and prev[1].converged:
            start = prev[1].params.copy()
            start["contact"] += np.log1p(e) - np.log1p(prev[0])
        mt = matched_ppml(m, outcome, window, sample.cohort.covariates, groups=groups, level=level, start=start)
        prev = (e, mt)
        for metric, r in (("spending.matched_change", mt), ("spending.naive_change", scale_ratio(nv0, e)),
                          ("spending.did_change", scale_ratio(did0, e))):
            rows.append({"estimator": metric, "injected": float(e), "truth": float(e), "estimate": r.estimate,
                         "se": r.se, "ci_low": r.ci_low, "ci_high": r.ci_high, "converged": bool(r.converged),
                         "n_contacts": n_c, "n_comparisons": n_k, "scale": "log ratio"})
    return rows


def _prepare_pool(pool: pd.DataFrame, sample: MatchedSample, window: int, outcome: str) -> dict | None:
    """What every replicate's matching and fits share: computed once, before the replicates (and the fork).

    Mirrors ``Cohort.match()`` on the pseudo-cohort (the pool with a drawn ``contact``): the design's matching
    settings, exact strata on the columns with more than one value.  None when the design is not matched
    by nearest neighbours on a propensity model, or the pool's covariates are refused (each replicate then
    matches as ``Cohort.match()`` does, and reports the same error).
    """
    from ..matching.api import prepare_match
    from ..outcomes.spending import analysis_columns

    design = sample.design
    spec = design.matching
    if design.comparison == "arms" or spec.method != "nearest":
        return None
    covariates = sample.cohort.covariates
    exact = [e for e in spec.exact if pool[e].nunique() > 1] if spec.exact else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")       # anything unusual: leave it to the replicates' own matching
            prepared = prepare_match(pool, "contact", covariates, method=spec.method, distance=spec.distance,
                                     ratio=spec.ratio, replace=spec.replace, caliper=spec.caliper,
                                     std_caliper=spec.std_caliper, order=spec.order, exact=exact or None,
                                     discard=spec.discard, seed=spec.seed)
    except (ValueError, Warning):
        return None
    # the matched table's columns (the pool's, then distance, weights, subclass) the fits read, in its order
    clash = {"distance", "weights", "subclass"} & set(pool.columns)
    if clash:
        return None
    names = list(analysis_columns(pd.DataFrame(columns=[*pool.columns, "distance", "weights", "subclass"]),
                                  (window,), covariates).columns)
    tail = [c for c in names if c not in pool.columns]
    if tail != [c for c in ("weights", "subclass") if c in names] or names[len(names) - len(tail):] != tail:
        return None
    base = pool[names[:len(names) - len(tail)]]
    fu = pool[f"followup_{window}"].astype(bool).to_numpy()
    naive_cols = list(dict.fromkeys([c for c in pool.columns if c in ("customer_id", "contact", f"{outcome}_pre",
                                                                      f"{outcome}_post{window}")]))
    return {"prepared": prepared, "base": base, "tail": tail, "followup": fu,
            "naive": pool.loc[fu, naive_cols], "followup_rows": np.flatnonzero(fu)}


def _matched_draw(prep: dict, treat: np.ndarray, design) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The matched rows with follow-up (the fits' columns), the rows with follow-up for the naive change,
    and the cluster ids of the matched rows: what ``Cohort.match()``, ``MatchedSample.table``,
    :func:`~carecall_eval.outcomes.spending.analysis_columns` and ``cluster_ids`` give, from the draw alone."""
    from ..matching.api import match_prepared

    res = match_prepared(prep["prepared"], treat)
    w = res._weights
    pos = np.flatnonzero((w > 0) & prep["followup"])
    m0 = prep["base"].take(pos)
    tr = treat[pos]
    if "contact" in m0.columns:
        m0["contact"] = tr.astype(int)
    if "group" in m0.columns:
        m0["group"] = np.where(tr, "contact", "comparison")
    if "weights" in prep["tail"]:
        m0["weights"] = w[pos]
    if "subclass" in prep["tail"]:
        m0["subclass"] = res._subclass_values(pos)
    full = prep["naive"].copy()
    full["contact"] = treat[prep["followup_rows"]].astype(int)
    # the sample's one cluster rule (MatchedSample.cluster, cluster_ids)
    replace = bool(res.settings.get("replace", design.matching.replace))
    sub = res._subclass
    by_customer = (replace or sub is None or bool((sub[w > 0] < 0).any()) or "subclass" not in m0.columns
                   or bool(m0["subclass"].isna().any()))
    groups = m0["customer_id" if by_customer else "subclass"].to_numpy()
    return m0, full, groups


def _one_replicate(r: int, child, ctx: dict) -> tuple[list[dict], list[str]]:
    """Draw, match and estimate replicate ``r`` (its own seed ``child``); returns rows and messages."""
    rng = np.random.default_rng(child)
    treat = rng.random(len(ctx["p"])) < ctx["p"]
    if treat.sum() < 2 or (~treat).sum() < 2:
        return [], [f"replicate {r}: fewer than 2 pseudo-contacts or comparisons drawn"]
    msgs: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            new = _spending_rows(ctx["pool"], treat, ctx["sample"], ctx["outcome"], ctx["window"], ctx["effects"],
                                 ctx["level"], ctx.get("prep"))
        except (ValueError, NotAvailableError, np.linalg.LinAlgError) as exc:
            new = []
            msgs.append(f"replicate {r}: {type(exc).__name__}: {exc}")
    msgs += [str(w.message) for w in caught]
    for x in new:
        x["replicate"] = r
    return new, msgs


_CTX: dict = {}


def _worker(args):
    lo, hi, seeds = args
    out, msgs = [], []
    fn = _CTX["fn"]
    for r, child in zip(range(lo, hi), seeds):
        a, b = fn(r, child, _CTX)
        out += a
        msgs += b
    return out, msgs


def run_replicates(fn, ctx: dict, seeds: list, n_jobs: int, say, what: str = "replicate"):
    """``fn(r, seed, ctx) -> (rows, messages)`` for every replicate, in replicate order whatever ``n_jobs``.

    Each replicate has its own seed, so the rows do not depend on ``n_jobs``.  With ``n_jobs > 1`` the
    replicates run in forked worker processes that inherit ``ctx`` (nothing is pickled but the seeds and
    the rows coming back).
    """
    rows: list[dict] = []
    msgs: list[str] = []
    R = len(seeds)
    step = max(1, R // 10)
    if n_jobs <= 1 or R < 2:
        for r, child in enumerate(seeds):
            a, b = fn(r, child, ctx)
            rows += a
            msgs += b
            if (r + 1) % step == 0 or r + 1 == R:
                say(f"{what} {r + 1}/{R}")
        return rows, msgs
    from .._pool import worker_pool
    from ..writer import check_terminated

    _CTX.clear()
    _CTX.update(ctx, fn=fn)
    chunks = [(lo, min(lo + step, R), seeds[lo:min(lo + step, R)]) for lo in range(0, R, step)]
    try:
        with worker_pool(min(n_jobs, len(chunks))) as workers:
            for i, (a, b) in enumerate(workers.imap(_worker, chunks)):
                check_terminated()       # a SIGTERM swallowed while the workers were forked stops here
                rows += a
                msgs += b
                say(f"{what} {chunks[i][1]}/{R}")
    finally:
        _CTX.clear()
    return rows, msgs


def _group_worker(task):
    g, r, child, shares = task
    fn, ctx = _CTX["groups"][g]
    return fn(r, child, ctx) if shares is None else fn(r, child, ctx, shares)


def _collect(tasks: list, results, out: dict, groups: list, say) -> None:
    """Store each task's ``(rows, messages)`` under (group, replicate, share); report whole replicates."""
    from ..writer import check_terminated

    for (g, r, _, shares), res in zip(tasks, results):
        check_terminated()       # a SIGTERM swallowed while the workers were forked stops here
        out[(g, r, -1 if shares is None else shares[0])] = res
        fn, ctx, seeds, what, n_shares = groups[g]
        if shares is None or all((g, r, k) in out for k in range(n_shares)):
            n_done = len({k[1] for k in out if k[0] == g})
            if n_done % max(1, len(seeds) // 10) == 0 or n_done == len(seeds):
                say(f"{what} {n_done}/{len(seeds)}")


def _tasks(g: int, group) -> list:
    fn, ctx, seeds, what, n_shares = group
    if n_shares is None:
        return [(g, r, child, None) for r, child in enumerate(seeds)]
    return [(g, r, child, (k,)) for r, child in enumerate(seeds) for k in range(n_shares)]


def run_selfcheck_replicates(spending, make_sms, n_jobs: int, say) -> list:
    """The spending replicates, then the SMS ones; ``[(rows, messages)]`` per check run, in replicate order.

    ``spending`` is ``(fn, ctx, seeds, what, None)`` (:func:`run_replicates`'s arguments) or None;
    ``make_sms()`` builds the SMS check's ``(fn, ctx, seeds, what, n_shares)`` (or None), ``fn(r, seed, ctx,
    shares)`` running only the planted shares at positions ``shares``.  Serially this is
    :func:`run_replicates` of each.  With ``n_jobs > 1`` the spending replicates start in forked workers
    first and the parent builds the SMS check's tables meanwhile (one pass over the calls, otherwise a
    serial step); its dates then run, one task per date and planted share, in a second pool forked once
    those tables exist.  Every task has its replicate's own seed, so the rows and messages do not depend
    on ``n_jobs``.
    """
    if n_jobs <= 1:
        out = []
        if spending is not None:
            out.append(run_replicates(spending[0], spending[1], spending[2], n_jobs, say, spending[3]))
        sms = make_sms()
        if sms is not None:
            out.append(run_replicates(sms[0], sms[1], sms[2], n_jobs, say, sms[3]))
        return out
    from .._pool import worker_pool

    groups: list = [spending, None]
    done: dict = {}
    _CTX.clear()
    _CTX.update(groups=[None if spending is None else spending[:2], None])
    try:
        with contextlib.ExitStack() as stack:
            pending = None
            tasks_a = _tasks(0, spending) if spending is not None else []
            if len(tasks_a) >= 2:
                workers = stack.enter_context(worker_pool(min(n_jobs, len(tasks_a))))
                pending = workers.imap(_group_worker, tasks_a)
            elif tasks_a:
                _collect(tasks_a, map(_group_worker, tasks_a), done, groups, say)
            sms = make_sms()           # in the parent, while the spending replicates run
            if sms is not None:
                groups[1] = sms
                _CTX["groups"][1] = sms[:2]
                tasks_b = _tasks(1, sms)
                with worker_pool(min(n_jobs, len(tasks_b))) as workers_b:
                    _collect(tasks_b, workers_b.imap(_group_worker, tasks_b), done, groups, say)
            if pending is not None:
                _collect(tasks_a, pending, done, groups, say)
    finally:
        _CTX.clear()
    out = []
    for g in (0, 1):
        if groups[g] is None:
            continue
        rows: list[dict] = []
        msgs: list[str] = []
        for key in sorted(k for k in done if k[0] == g):
            rows += done[key][0]
            msgs += done[key][1]
        out.append((rows, msgs))
    return out


# ----------------------------------------------------------------------------- summary of replicates

def summarise_replicates(reps: pd.DataFrame, level: float, tolerance: float,
                         shared: Sequence[str] = tuple(SMS_ESTIMATOR)) -> pd.DataFrame:
    """Operating characteristics per (estimator, injected effect) from one row per replicate.

    Columns of ``reps``: ``estimator, injected, truth, estimate, se, ci_low, ci_high, converged`` and
    ``scale`` (``"log ratio"``: ``se`` is on the log scale of ``1 + estimate``; otherwise the estimate's own).
    Returns one row per (estimator, injected) with ``replicates``, ``mean_estimate``, ``bias``,
    ``bias_se`` (Monte Carlo), ``rmse``, ``coverage``, ``rejects`` (share of intervals excluding 0),
    ``width`` (mean interval width), ``se_ratio`` (mean reported se over the replicates' spread on the
    same scale), ``mean_truth``, and the flags ``biased`` (the bias exceeds ``tolerance`` and its interval
    at ``level`` excludes 0) and ``undercovers`` (the coverage's Wilson interval at ``level`` lies wholly
    more than :data:`COVERAGE_TOLERANCE` below ``level``).

    Estimators in ``shared`` (the SMS check) re-analyse the same cases at different pseudo-policy dates, so
    their replicates are not independent samples: their bias is judged against the estimator's own mean
    standard error when that is larger than the Monte Carlo one, and their coverage is descriptive (never
    flagged).
    """
    out = []
    for (est, inj), g in reps.groupby(["estimator", "injected"], sort=False):
        g = g[g["converged"].astype(bool) & np.isfinite(g["estimate"].astype(float))]
        r = len(g)
        if r == 0:
            out.append({"estimator": est, "injected": inj, "replicates": 0})
            continue
        err = g["estimate"].to_numpy(float) - g["truth"].to_numpy(float)
        lo, hi = g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float)
        tr = g["truth"].to_numpy(float)
        on_log = (g["scale"] == "log ratio").all()
        spread = np.log1p(g["estimate"].to_numpy(float)) if on_log else g["estimate"].to_numpy(float)
        sd = float(np.std(spread, ddof=1)) if r > 1 else np.nan
        out.append({
            "estimator": est, "injected": inj, "replicates": r,
            "mean_truth": float(tr.mean()),
            "mean_estimate": float(g["estimate"].mean()),
            "bias": float(err.mean()),
            "bias_se": float(np.std(err, ddof=1) / np.sqrt(r)) if r > 1 else np.nan,
            "rmse": float(np.sqrt(np.mean(err ** 2))),
            "coverage": float(np.mean((lo <= tr) & (tr <= hi))),
            "rejects": float(np.mean((hi < 0) | (lo > 0))),
            "width": float(np.mean(hi - lo)),
            "se_ratio": float(g["se"].mean() / sd) if r > 1 and sd > 0 else np.nan,
        })
    s = pd.DataFrame(out)
    if s.empty:
        return s
    z = z_quantile(level)
    mean_se = reps.groupby(["estimator", "injected"], sort=False)["se"].mean()
    dep = s["estimator"].isin(list(shared)).to_numpy()
    own = mean_se.reindex(pd.MultiIndex.from_frame(s[["estimator", "injected"]])).to_numpy()
    s["bias_se"] = np.where(dep, np.fmax(s["bias_se"].to_numpy(float), own), s["bias_se"].to_numpy(float))
    s["biased"] = (s["bias"].abs() > tolerance) & (s["bias"].abs() > z * s["bias_se"])
    # intervals too narrow: even the upper end of the coverage's Wilson interval misses the nominal level
    n = s["replicates"].astype(float).clip(lower=1)
    p = s["coverage"]
    centre = (p + z ** 2 / (2 * n)) / (1 + z ** 2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2)) / (1 + z ** 2 / n)
    s["coverage_high"] = centre + half
    s["undercovers"] = (s["coverage_high"] < level - COVERAGE_TOLERANCE) & ~dep
    return s


def _verdicts(stats: pd.DataFrame, min_replicates: int) -> dict[str, str]:
    """One word per estimator: 'passes', 'biased', 'intervals too narrow' or 'too few replicates'."""
    out = {}
    for est, g in stats.groupby("estimator", sort=False):
        if (g["replicates"] < min_replicates).any():
            out[est] = "too few replicates"
        elif g["biased"].any():
            out[est] = "biased"
        elif g["undercovers"].any():
            out[est] = "intervals too narrow"
        else:
            out[est] = "passes"
    return out


#: Per-scenario metrics: stem -> method words; ids are ``selfcheck.<stem>`` at the planted effect and
#: ``selfcheck.null_<stem>`` with nothing planted.
_STEMS = ("mean_estimate", "bias", "rmse", "coverage", "width", "se_ratio")


def metric_id(stem: str, scenario: str) -> str:
    """``selfcheck.bias`` (planted effect) or ``selfcheck.null_bias`` (nothing planted)."""
    return f"selfcheck.{stem}" if scenario == "effect" else f"selfcheck.null_{stem}"


def _rows(stats: pd.DataFrame, verdicts: dict, labels: dict, effect: float, sms_effect: float, level: float,
          window: int, outcome: str, notes: dict, units: dict) -> list[dict]:
    """Tidy summary rows of the two headline scenarios (the planted effect, and none) per estimator.

    ``n`` is the number of customers (never-reached customers for spending, phone cases for the SMS) the
    replicates are drawn from, so the small-cell rules read it like every other count; ``replicates`` is
    the number of replicates behind each figure.
    """
    z = z_quantile(level)
    rows: list[dict] = []
    for est in labels:
        is_sms = est in SMS_ESTIMATOR
        target = sms_effect if is_sms else effect
        base = {"group": est, "window": np.nan if is_sms else window, "outcome": None if is_sms else outcome,
                "verdict": verdicts.get(est, "not available"), "n": int(units.get(est, 0))}
        for scenario, inj in (("effect", target), ("no effect", 0.0)):
            g = stats[(stats["estimator"] == est) & np.isclose(stats["injected"].astype(float), inj)] \
                if not stats.empty else stats
            b = {**base, "scenario": scenario, "injected": inj}
            keys = [metric_id(k, scenario) for k in _STEMS]
            if scenario == "no effect":
                keys.append("selfcheck.false_positive_rate")
            if g.empty or int(g.iloc[0]["replicates"]) == 0:
                reason = notes.get(est, "no replicate produced an estimate")
                rows += [not_available({**b, "metric": k, "replicates": 0, "method": "plasmode self-check"}, reason)
                         for k in keys]
                continue
            r = g.iloc[0]
            n = int(r["replicates"])
            b["truth"] = float(r["mean_truth"])
            b["replicates"] = n
            mc = f"over {n} plasmode replicates"
            vals = {
                "mean_estimate": {"estimate": r["mean_estimate"], "se": r["bias_se"],
                                  "ci_low": r["mean_estimate"] - z * r["bias_se"],
                                  "ci_high": r["mean_estimate"] + z * r["bias_se"],
                                  "method": f"mean estimate {mc} (Monte Carlo interval)"},
                "bias": {"estimate": r["bias"], "se": r["bias_se"], "ci_low": r["bias"] - z * r["bias_se"],
                         "ci_high": r["bias"] + z * r["bias_se"],
                         "method": f"mean estimate minus the planted truth {mc} (Monte Carlo interval)"},
                "rmse": {"estimate": r["rmse"], "method": f"root mean squared error {mc}"},
                "coverage": {"estimate": r["coverage"],
                             "method": f"share of intervals containing the planted truth {mc}"},
                "width": {"estimate": r["width"], "method": f"mean interval width {mc}"},
                "se_ratio": {"estimate": r["se_ratio"],
                             "method": f"mean reported standard error over the replicates' standard deviation {mc}"},
            }
            rows += [{**b, "metric": metric_id(k, scenario), **vals[k]} for k in _STEMS]
            if scenario == "no effect":
                rows.append({**b, "metric": "selfcheck.false_positive_rate", "estimate": r["rejects"],
                             "method": f"share of intervals excluding 0 with nothing planted {mc}"})
    return rows


# ----------------------------------------------------------------------------- the estimator

def selfcheck(data, sample=None, /, *, level: float = 0.95, effect: float = -0.15, replicates: int = 100,
              seed: int = 0, window: int = 84, outcome: str = "tl", grid: Sequence[float] | None = None,
              share: float | None = None, sms: bool = True, sms_effect: float = 0.10,
              sms_replicates: int | None = None, tolerance: float = 0.02, n_jobs: int = 1,
              progress: bool = False) -> Result:
    """Plasmode self-check: bias, RMSE, coverage, interval width and false positives on the operator's data.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
        The operator data.
    sample : MatchedSample or Cohort, optional
        The real matched sample (``cohort.sample()``); its cohort gives the
        never-reached customers and its propensity model the selection.  None
        builds the default cohort of ``data``.
    level : float
        Confidence level of the intervals checked (and of the Monte Carlo intervals).
    effect : float
        Injected effect on spending, a fraction (``-0.15``: post-index spending
        of pseudo-contacts falls by 15%); strictly greater than -1.
    replicates : int
        Pseudo-contact draws (each matched once and estimated at every effect size).
    seed : int
        Seed of the draws; the same seed gives the same figures.
    window : int
        Post window in days (the headline window of the spending estimate).
    outcome : {"tl", "wagered", "deposits", "active_days"}
        Measure checked (theoretical loss by default).
    grid : sequence of float, optional
        Further effect sizes every replicate is analysed at, for the plot of
        estimates against the truth (0 and ``effect`` always are; the
        report uses :data:`PLOT_GRID`).
    share : float, optional
        Mean share of pseudo-contacts among the never-reached customers;
        default the real share of reached customers in the cohort.
    sms : bool
        Also check the SMS estimator with a pseudo-policy date.
    sms_effect : float
        Share of unanswered late attempts (after the SMS rule's attempt) of
        pseudo-policy cases turned into answers, between 0 and 1.
    sms_replicates : int, optional
        Pseudo-policy dates of the SMS check (default ``min(replicates, 10)``: the dates re-analyse the
        same cases, so more of them add little but time).
    tolerance : float
        A bias is material when its size exceeds this (on the estimate's scale:
        percent change as a fraction, or reach in points) and its Monte Carlo
        interval excludes 0.  Intervals are too narrow when their coverage's
        Wilson interval lies wholly more than :data:`COVERAGE_TOLERANCE` below
        ``level``.
    n_jobs : int
        Worker processes for the replicates (each replicate has its own seed, so the figures do not
        depend on ``n_jobs``).
    progress : bool
        Print a progress line every few replicates (stderr).

    Returns
    -------
    Result
        Rows ``selfcheck.mean_estimate``, ``selfcheck.bias`` (Monte Carlo
        interval and ``se``), ``selfcheck.rmse``, ``selfcheck.coverage``,
        ``selfcheck.width``, ``selfcheck.se_ratio`` at the planted effect, the
        same with ``selfcheck.null_`` ids with nothing planted, and
        ``selfcheck.false_positive_rate`` (nothing planted); ``scenario``
        says which;
        ``group`` is the estimator checked (``spending.matched_change``,
        ``spending.naive_change``, ``spending.did_change``,
        ``reach.sms_effect``), ``injected`` the planted value, ``truth`` the
        mean true effect, ``verdict`` one of "passes", "biased", "intervals
        too narrow", "too few replicates"; ``n`` is the number of customers
        the replicates draw from (never-reached customers, or phone cases for
        the SMS) and ``replicates`` the replicates behind the figure.  Plot data ``"replicates"`` (one
        row per replicate, estimator and effect size) and ``"truth_plot"``
        (mean and spread of the estimates at each injected effect).

    Notes
    -----
    With no effect injected, the pseudo-contacts and their comparisons are
    both never-reached customers, so any difference the design reports is
    an error of the design: the false-positive rate should be near
    ``1 - level``.  The naive before/after figure is expected to fail: the
    regression to the mean in the operator's own data is in it.
    """
    ds = open_data(data, "selfcheck")
    level = check_level(level)
    window = check_horizon("window", window)
    check_choice("outcome", outcome, ("tl", "wagered", "deposits", "active_days"))
    replicates = check_int("replicates", replicates, 1)
    sms_replicates = min(replicates, 10) if sms_replicates is None else check_int("sms_replicates", sms_replicates, 1)
    n_jobs = check_int("n_jobs", n_jobs, 1)
    seed = check_int("seed", seed, 0)
    def _number(v) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, float, np.number)) and bool(np.isfinite(v))

    if not _number(effect) or effect <= -1:
        raise InputError(f"selfcheck: effect must be a fraction greater than -1 (-0.15 for a 15% fall), got {effect!r}")
    if not _number(sms_effect) or not 0 <= sms_effect < 1:
        raise InputError(f"selfcheck: sms_effect is a share of unanswered late attempts turned into answers, "
                         f"0 <= sms_effect < 1; got {sms_effect!r}")
    if tolerance < 0:
        raise InputError(f"selfcheck: tolerance must be >= 0, got {tolerance!r}")
    sample = as_sample(sample if sample is not None else build_cohort(ds), "selfcheck", randomized=False)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):   # reproducible to the last digit
        return _selfcheck(ds, sample, level=level, effect=float(effect), replicates=replicates, seed=seed,
                          window=window, outcome=outcome, grid=tuple(grid or ()), share=share, sms=sms,
                          sms_effect=float(sms_effect), sms_replicates=sms_replicates, tolerance=float(tolerance),
                          n_jobs=n_jobs, progress=progress)


def _say(progress: bool, t0: float, msg: str) -> None:
    if progress:
        import sys

        print(f"[{time.perf_counter() - t0:7.1f} s] selfcheck: {msg}", file=sys.stderr, flush=True)


def _selfcheck(ds, sample: MatchedSample, *, level, effect, replicates, seed, window, outcome, grid, share, sms,
               sms_effect, sms_replicates, tolerance, n_jobs, progress) -> Result:
    from ..narrative.trust import selfcheck_text
    from ..outcomes.spending import add_outcomes
    from .sms_plasmode import _sms_one, sms_context

    t0 = time.perf_counter()
    cohort, design = sample.cohort, sample.design
    if window not in design.post_windows and f"followup_{window}" not in cohort.table.columns:
        raise InputError(f"selfcheck: window={window} is not among the design's post windows {design.post_windows}")
    table = add_outcomes(ds, cohort.table, (window,), design.pre_window)
    if f"followup_{window}" not in table.columns:
        table[f"followup_{window}"] = (table["index_date"] + pd.Timedelta(days=window - 1)) <= pd.Timestamp(ds.data_end)
    lin = _real_linear_predictor(sample)
    real_share = float((table["contact"] == 1).mean())
    share = real_share if share is None else float(share)
    pool_mask = (table["contact"] == 0).to_numpy()
    n_pool = int(pool_mask.sum())
    exact = list(design.matching.exact or ())
    keep = list(dict.fromkeys(["customer_id", "case_id", "index_date", "trigger", "reached", "group", "contact",
                               *cohort.covariates, *exact, f"followup_{window}",
                               *(f"{m}_{w}" for m in (*SPEND_MEASURES, "active_days")
                                 for w in ("pre", f"post{window}"))]))
    pool = table.loc[pool_mask, [c for c in keep if c in table.columns]]
    effects = tuple(dict.fromkeys([effect, 0.0, *(float(g) for g in grid)]))
    notes: dict[str, str] = {}
    caught_all: list[str] = []
    rows: list[dict] = []
    ss = np.random.SeedSequence(seed)
    spend_seeds, sms_seeds = ss.spawn(2)
    say = lambda m: _say(progress, t0, m)  # noqa: E731
    spend_ctx = None
    if n_pool < _MIN_POOL:
        for k in SPENDING_ESTIMATORS:
            notes[k] = f"only {n_pool} never-reached customers in the cohort (need {_MIN_POOL})"
    else:
        p, shift = pseudo_contact_probabilities(lin[pool_mask], share)
        _say(progress, t0, f"{replicates} replicates of {n_pool:,} never-reached customers, "
                           f"pseudo-contact share {share:.2f}, effects {', '.join(f'{e:+.2f}' for e in effects)}")
        spend_ctx = {"p": p, "pool": pool, "sample": sample, "outcome": outcome, "window": window,
                     "effects": effects, "level": level, "prep": _prepare_pool(pool, sample, window, outcome)}
    spending = None if spend_ctx is None else (_one_replicate, spend_ctx, spend_seeds.spawn(replicates),
                                                 "spending replicate", None)

    def make_sms():
        if not sms:
            return None
        try:
            ctx = sms_context(ds, level=level, q=sms_effect, replicates=sms_replicates, say=say)
        except NotAvailableError as exc:
            notes["reach.sms_effect"] = str(exc)
            return None
        return (_sms_one, ctx, sms_seeds.spawn(sms_replicates), "SMS replicate", len(ctx["shares"]))

    for new, msgs in run_selfcheck_replicates(spending, make_sms, n_jobs, say):
        rows += new
        caught_all += msgs
    reps = pd.DataFrame(rows, columns=["replicate", "estimator", "injected", "truth", "estimate", "se", "ci_low",
                                       "ci_high", "converged", "n_contacts", "n_comparisons", "scale"])
    stats = summarise_replicates(reps, level, tolerance) if len(reps) else pd.DataFrame()
    min_reps = max(2, min(replicates, sms_replicates) // 2)
    verdicts = _verdicts(stats, min_reps) if not stats.empty else {}
    labels = {**SPENDING_ESTIMATORS, **(SMS_ESTIMATOR if sms else {})}
    units = {k: n_pool for k in SPENDING_ESTIMATORS}
    sms_reps = reps[reps["estimator"] == "reach.sms_effect"]
    if len(sms_reps):
        units["reach.sms_effect"] = int((sms_reps["n_contacts"] + sms_reps["n_comparisons"]).max())
    summary = tidy(_rows(stats, verdicts, labels, effect, sms_effect, level, window, outcome, notes, units))
    if caught_all:
        uniq = sorted(set(caught_all))
        warnings.warn(f"selfcheck: {len(caught_all)} warning(s) in the replicates, e.g. {uniq[0][:200]}",
                      DataWarning, stacklevel=3)
    settings = {"level": level, "effect": effect, "replicates": replicates, "seed": seed,
                "window": window, "outcome": outcome, "effects": list(effects), "share": share,
                "real_share": real_share, "n_pool": n_pool, "sms": bool(sms), "sms_effect": sms_effect,
                "sms_replicates": sms_replicates if sms else None, "tolerance": tolerance,
                "design": design.to_dict(), "replace": sample.replace,
                "estimators": labels, "verdicts": verdicts, "notes": notes, "warnings": len(caught_all)}
    truth_plot = _truth_plot(reps)
    text = selfcheck_text(summary, settings)
    _say(progress, t0, "done")
    return Result("selfcheck", summary, text, settings,
                  plot_data={"replicates": reps, "truth_plot": truth_plot, "operating": stats},
                  details={"messages": caught_all, "seconds": time.perf_counter() - t0, "n_jobs": n_jobs})


def _truth_plot(reps: pd.DataFrame) -> pd.DataFrame:
    """Mean estimate and the 5th-95th percentile band of the replicates at each injected effect."""
    if reps.empty:
        return pd.DataFrame(columns=["estimator", "injected", "truth", "mean", "low", "high", "replicates"])
    ok = reps[reps["converged"].astype(bool) & np.isfinite(reps["estimate"].astype(float))]
    g = ok.groupby(["estimator", "injected"], sort=False)
    return pd.DataFrame({
        "truth": g["truth"].mean(), "mean": g["estimate"].mean(),
        "low": g["estimate"].quantile(0.05), "high": g["estimate"].quantile(0.95),
        "replicates": g.size()}).reset_index()
