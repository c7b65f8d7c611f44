"""The SMS part of the self-check: a pseudo-policy date on the operator's own call attempts.

Only phone cases whose whole attempt sequence lies before the real SMS policy
(or all cases, for an operator without one) are used, so no real SMS can have
acted.  Each replicate draws a pseudo-policy date in the middle of that period
and plants a known effect: among cases opened on or after it, each unanswered
attempt after the SMS rule's attempt (``sms_after_attempts``) is turned into
an answered one with probability ``q`` (the attempts after a new answer are
dropped, as a case is reached once).  The same draw is also analysed with
``q = 0``: any effect found then is a false positive.

The truth of a replicate is the expected change in the reach of its
pseudo-policy cases: ``mean(unreached_i * (1 - (1 - q) ** m_i))`` with ``m_i``
the case's unanswered late attempts.  The estimator is the one
:func:`~carecall_eval.outcomes.reach.sms_effect` uses (the attempt-level
difference in differences, :func:`~carecall_eval.outcomes.reach.answer_model.fit_sms_model`),
with the case covariates computed once.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import NotAvailableError

__all__ = ["sms_replicate_rows", "sms_context", "plant_answers"]

_MIN_CASES = 60


def plant_answers(cases: pd.DataFrame, attempts: pd.DataFrame, post: np.ndarray, flip: np.ndarray):
    """Cases and attempts after turning the attempts marked ``flip`` into answered ones.

    ``cases`` is a :func:`~carecall_eval.outcomes.reach.case_reach` table, ``attempts`` its attempts
    (numbered ``attempt_no``, cut at the first answered one), ``post`` the pseudo-policy flag of each case
    (row order of ``cases``) and ``flip`` a boolean per attempt.  Attempts after a case's (new) first
    answered one are dropped; ``reached``, ``n_attempts``, ``reached_at`` and ``attempts_to_reach`` follow.
    """
    ans = attempts["answered"].to_numpy(bool) | flip
    a = attempts.assign(answered=ans)
    first = a.loc[ans].groupby("case_id")["attempt_no"].min()
    stop = a["case_id"].map(first)
    a = a[stop.isna().to_numpy() | (a["attempt_no"] <= stop).to_numpy()].reset_index(drop=True)
    c = cases.copy()
    c["post_policy"] = pd.array(np.asarray(post, bool), dtype="boolean")
    hit = a[a["answered"]].set_index("case_id")
    c["reached_at"] = c["case_id"].map(hit["attempted_at"])
    c["attempts_to_reach"] = c["case_id"].map(hit["attempt_no"]).astype("Int64")
    c["reached"] = c["reached_at"].notna()
    c["n_attempts"] = c["case_id"].map(a.groupby("case_id").size()).astype(int)
    return c, a


def _plant_answers_by_position(cases: pd.DataFrame, attempts: pd.DataFrame, att_case: np.ndarray,
                               post: np.ndarray, flip: np.ndarray):
    """:func:`plant_answers` with each attempt's case given by its row in ``cases`` (``att_case``).

    The same two tables, from integer positions instead of lookups by case id (an attempts table of a
    million rows is copied once, not three times).  Falls back to :func:`plant_answers` for column types it
    does not cover (attempt times that are not plain datetimes, attempt numbers that are not integers).
    """
    at, ano = attempts["attempted_at"], attempts["attempt_no"]
    if (not isinstance(at.dtype, np.dtype) or at.dtype.kind != "M" or not isinstance(ano.dtype, np.dtype)
            or ano.dtype.kind not in "iu" or len(att_case) != len(attempts)):
        return plant_answers(cases, attempts, post, flip)
    n = len(cases)
    ans = attempts["answered"].to_numpy(bool) | flip
    no = ano.to_numpy()
    stop = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(stop, att_case[ans], no[ans].astype(np.int64))
    keep = np.flatnonzero(no <= stop[att_case])            # up to each case's first answered attempt
    a = attempts.take(keep)
    a["answered"] = ans[keep]
    a = a.reset_index(drop=True)
    c = cases.copy()
    c["post_policy"] = pd.array(np.asarray(post, bool), dtype="boolean")
    hit = ans[keep]
    rows = att_case[keep][hit]
    if len(np.unique(rows)) != len(rows):                   # two answered attempts with one number
        return plant_answers(cases, attempts, post, flip)
    t = np.full(n, np.datetime64("NaT"), dtype=at.dtype)
    t[rows] = at.to_numpy()[keep][hit]
    k = np.zeros(n, dtype=np.int64)
    k[rows] = no[keep][hit]
    missing = np.ones(n, dtype=bool)
    missing[rows] = False
    c["reached_at"] = t
    c["attempts_to_reach"] = pd.arrays.IntegerArray(k, missing)
    c["reached"] = ~missing
    counts = np.bincount(att_case[keep], minlength=n)
    if (counts == 0).any():
        return plant_answers(cases, attempts, post, flip)
    c["n_attempts"] = counts.astype(int)
    return c, a


def _sms_one(r: int, child, ctx: dict, shares: tuple[int, ...] | None = None) -> tuple[list[dict], list[str]]:
    """One pseudo-policy date: plant answers at each share, refit the answer model; rows and messages.

    ``shares`` (positions in ``ctx["shares"]``, default all) lets the shares of one date run as separate
    tasks: the date and the uniform draws come from the replicate's own seed, so each task draws them again
    and the rows (and messages, in share order) are those of the whole replicate.
    """
    from ..outcomes.reach.answer_model import fit_sms_model, protocol

    cr0, att0, att_case, late_unans = ctx["cases"], ctx["attempts"], ctx["att_case"], ctx["late_unans"]
    rng = np.random.default_rng(child)
    date = ctx["lo"] + pd.Timedelta(days=int(rng.integers(0, ctx["n_days"])))
    u = rng.random(len(att0))
    post = (cr0["opened_on"] >= date).to_numpy()
    rows: list[dict] = []
    msgs: list[str] = []
    todo = range(len(ctx["shares"])) if shares is None else shares
    if post.sum() < 10 or (~post).sum() < 10:
        return rows, ([f"SMS replicate {r}: fewer than 10 cases on one side of {date.date()}"]
                      if shares is None or 0 in shares else [])
    for k in todo:
        qq = ctx["shares"][k]
        flip = late_unans & post[att_case] & (u < qq)
        truth = float(np.mean((~ctx["reached0"][post]) * (1.0 - (1.0 - qq) ** ctx["m_late"][post])))
        c_r, a_r = _plant_answers_by_position(cr0, att0, att_case, post, flip)
        K = int(a_r["attempt_no"].max())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                offset, cont = protocol(a_r, c_r, ctx["data_end"], K)
                m = fit_sms_model(ctx["ds"], c_r, a_r, c_r[post], s=ctx["s"], period=ctx["period"], policy=date,
                                  offset=offset, cont=cont, data_end=ctx["data_end"], level=ctx["level"],
                                  interval="delta", n_boot=0, seed=0, cov=ctx["cov"])
            except (ValueError, NotAvailableError, np.linalg.LinAlgError) as exc:
                msgs.append(f"SMS replicate {r}: {type(exc).__name__}: {exc}")
                continue
        msgs.extend(str(w.message) for w in caught)
        retvals = getattr(m.fit, "mle_retvals", None) or {}
        ok = bool(retvals.get("converged", True)) and np.isfinite(m.effect) and np.isfinite(m.se)
        rows.append({"replicate": r, "estimator": "reach.sms_effect", "injected": qq, "truth": truth,
                     "estimate": m.effect, "se": m.se, "ci_low": m.ci[0], "ci_high": m.ci[1], "converged": ok,
                     "n_contacts": int(post.sum()), "n_comparisons": int((~post).sum()), "scale": "difference"})
    return rows, msgs


def sms_replicate_rows(ds, *, level: float, q: float, replicates: int, seed, messages: list,
                       say: Callable[[str], None], period: str = "quarter", n_jobs: int = 1) -> list[dict]:
    """One row per (replicate, planted share) of the SMS estimator on pseudo-policy dates.

    ``seed`` is a :class:`numpy.random.SeedSequence` (one child per replicate).  Raises NotAvailableError
    when the data have too few phone cases before the policy, or no attempt after the SMS rule's attempt.
    """
    from .plasmode import run_replicates

    ctx = sms_context(ds, level=level, q=q, replicates=replicates, say=say, period=period)
    rows, msgs = run_replicates(_sms_one, ctx, seed.spawn(replicates), n_jobs, say, "SMS replicate")
    messages.extend(msgs)
    return rows


def sms_context(ds, *, level: float, q: float, replicates: int, say: Callable[[str], None],
                period: str = "quarter") -> dict:
    """What every SMS replicate reads (the cases, their attempts and covariates, computed once), for
    :func:`_sms_one`.  Raises NotAvailableError as :func:`sms_replicate_rows` does."""
    from ..outcomes.reach.answer_model import case_covariates
    from ..outcomes.reach.cases import PHONE_ARMS, case_reach, phone_tables, resolve_policy, sms_rule

    policy = resolve_policy(ds, None)
    s, _ = sms_rule(ds, None, None)
    data_end = pd.Timestamp(ds.data_end)
    cr = case_reach(ds, policy_start=None)
    if cr.empty:
        raise NotAvailableError("no phone cases with attempts: the SMS estimator cannot be checked")
    _, att = phone_tables(ds, PHONE_ARMS)
    opened = cr.set_index("case_id")["opened_on"]
    span = int((att["attempted_at"].dt.normalize() - att["case_id"].map(opened)).dt.days.max()) + 1
    cutoff = (policy if policy is not None else data_end + pd.Timedelta(days=1)) - pd.Timedelta(days=span)
    keep = (cr["opened_on"] < cutoff) & ~cr["sms_sent"].astype(bool)
    cr0 = cr[keep].reset_index(drop=True)
    if len(cr0) < _MIN_CASES:
        raise NotAvailableError(f"only {len(cr0)} phone cases have their whole attempt sequence before "
                                f"{cutoff.date()} (need {_MIN_CASES}): the SMS estimator cannot be checked on "
                                "a pseudo-policy date")
    att0 = att[att["case_id"].isin(cr0["case_id"])].reset_index(drop=True)
    if not (att0["attempt_no"] > s).any():
        raise NotAvailableError(f"no case before {cutoff.date()} has more than {s} attempts: nothing the SMS "
                                "could change")
    cov = case_covariates(ds, cr0)                 # once: the only query of the SMS check
    pos = pd.Series(np.arange(len(cr0)), index=cr0["case_id"])
    att_case = att0["case_id"].map(pos).to_numpy()
    late_unans = (att0["attempt_no"].to_numpy() > s) & ~att0["answered"].to_numpy(bool)
    day = cr0["opened_on"].dt.normalize()
    lo, hi = day.quantile(0.3), day.quantile(0.7)
    ctx = {"ds": ds, "cases": cr0, "attempts": att0, "att_case": att_case, "late_unans": late_unans,
           "m_late": np.bincount(att_case, weights=late_unans.astype(float), minlength=len(cr0)),
           "reached0": cr0["reached"].to_numpy(bool), "lo": lo, "n_days": max(1, int((hi - lo).days) + 1),
           "shares": tuple(dict.fromkeys([float(q), 0.0])), "s": s, "period": period, "data_end": data_end,
           "level": level, "cov": cov}
    say(f"SMS: {replicates} pseudo-policy dates between {lo.date()} and {hi.date()} on {len(cr0):,} phone cases "
        f"opened before {cutoff.date()}; planted share {q:.2f}")
    return ctx
