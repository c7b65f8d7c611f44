"""Answer rates by attempt number (attempt 1, 2, ... of a case), before and after the SMS policy."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..._validation import check_level, check_no_sample
from ...contract.base import open_data
from ...narrative import reach as narrative
from ...results import Result, tidy
from ..intervals import wilson_interval
from .cases import PHONE_ARMS, reach_tables, resolve_policy

__all__ = ["answer_rates", "answer_table", "answer_rows"]

_METHOD = "share answered, Wilson interval"


def answer_table(att: pd.DataFrame, post: pd.Series | None, level: float) -> pd.DataFrame:
    """Attempts made and answered by period (``all``, and ``before_sms``/``after_sms`` given ``post``) and number."""
    number = att["attempt_no"].to_numpy()
    answered = att["answered"].to_numpy().astype(int)
    periods = [("all", np.ones(len(att), bool))]
    if post is not None:
        p = att["case_id"].map(post).astype(bool).to_numpy()
        periods += [("before_sms", ~p), ("after_sms", p)]
    parts = []
    for name, mask in periods:              # counts by attempt number, without copying the attempts
        k, inv = np.unique(number[mask], return_inverse=True)
        parts.append(pd.DataFrame({"period": name, "attempt_no": k,
                                   "n": np.bincount(inv.reshape(-1), minlength=len(k)).astype(np.int64),
                                   "answered": np.bincount(inv.reshape(-1), weights=answered[mask],
                                                           minlength=len(k)).astype(int)}))
    t = pd.concat(parts, ignore_index=True)
    t["rate"] = t["answered"] / t["n"]
    t["ci_low"], t["ci_high"] = wilson_interval(t["answered"].to_numpy(), t["n"].to_numpy(), level)
    return t.rename(columns={"attempt_no": "attempt"})


def answer_rows(tab: pd.DataFrame) -> list[dict]:
    """Summary rows ``attempt.answer_rate`` of an :func:`answer_table`."""
    rows = []
    for r in tab.itertuples(index=False):
        group = f"attempt_{r.attempt}" + ("" if r.period == "all" else f".{r.period}")
        rows.append({"metric": "attempt.answer_rate", "group": group, "estimate": r.rate, "ci_low": r.ci_low,
                     "ci_high": r.ci_high, "n": r.n, "method": _METHOD, "attempt": int(r.attempt),
                     "period": r.period})
    return rows


def answer_rates(data, sample=None, /, *, level: float = 0.95, arms: Sequence = PHONE_ARMS,
                 policy_start=None) -> Result:
    """Answer rate by attempt number (attempt 1, 2, ... of a case), before and after the SMS policy.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
    sample : None
        Answer rates read the call tables directly and take no sample.
    level : float
        Confidence level of the Wilson intervals.
    arms : sequence
        As in :func:`~carecall_eval.outcomes.reach.case_reach`.
    policy_start : date, optional
        Default ``config.sms_policy_start``; without one, only overall rates.

    Returns
    -------
    Result
        Rows ``attempt.answer_rate`` with ``group`` ``"attempt_k"`` (all cases)
        and ``"attempt_k.before_sms"`` / ``"attempt_k.after_sms"`` (by the
        case's opening date), extra columns ``attempt`` and ``period``; plot
        data ``"answer_by_attempt"``.

    Notes
    -----
    The denominator of attempt ``k`` is the attempts made, i.e. the cases still
    unanswered after ``k - 1`` attempts; these are increasingly the customers
    who answer least, so the rates fall with ``k`` even without any fatigue.
    """
    ds = open_data(data, "answer_rates")
    check_no_sample(sample, "answer_rates")
    level = check_level(level)
    policy = resolve_policy(ds, policy_start)
    cr, att = reach_tables(ds, arms=arms, policy_start=policy)
    post = cr.set_index("case_id")["post_policy"] if policy is not None else None
    if post is not None and (post.all() or not post.any()):
        post = None
    tab = answer_table(att, post, level)
    summary = tidy(answer_rows(tab))
    settings = {"level": level, "arms": list(arms), "policy_start": None if policy is None else str(policy.date())}
    return Result(name="answer_rates", summary=summary, text=narrative.answer_rates_text(summary, settings),
                  settings=settings, plot_data={"answer_by_attempt": tab})
