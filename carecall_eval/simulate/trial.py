"""A randomized study of the top spenders, drawn on one day (``SimulationParams.trial``; off by default).

On ``trial_day`` the chunk's eligible list is drawn as an operator would draw it:
open accounts at least ``pre_window`` (84) days old, not paused or self-excluded
(no self-exclusion in the last 180 days), no care-call case in the past year,
and among them the top ``trial_share`` by net loss over the last
``trial_lookback`` days.  The list (customer id, gender, age, net loss,
theoretical loss) is allocated by :func:`carecall_eval.trials.allocate` with the
study's design (``"matched-sets"``: statistical sets matched on gender, age and
net loss, as in the Norsk Tipping trial), ratio and seed, so the files the
simulator writes into ``<out>/trial/`` can be allocated again from the command
line, byte for byte.  Every member gets a case opened that day with its arm and
``block``: the call arm's attempts start over the next ``trial_call_spread``
days (so reach is imperfect, as in the field), letters go out, control members
get nothing.  Being reached acts on play exactly as a programme call does, so
``truth.json`` (``realised.trial``) knows the ITT effect of each arm and the
effect of being reached among the call arm's compliers from the potential
outcomes.

A chunk is its own allocation (an extra stratum): with more customers than
``chunk_size``, chunk ``k`` writes ``eligible-k.parquet`` and
``allocation-k.parquet`` (the first chunk's files have no suffix) and its sets
are numbered ``<k>S00001``, ...
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .params import SimulationParams
from .play import Play, day_sum, days_sum
from .population import Population

#: Strata and matching variables of the matched-set design.
STRATA = ("gender",)
MATCH_ON = ("age", "net_loss")
#: Tenure the eligible need (the analysis design's pre window).
MIN_TENURE = 84


def allocation_settings(p: SimulationParams, chunk: int) -> dict:
    """Keyword arguments of :func:`carecall_eval.trials.allocate` for chunk ``chunk`` (0-based)."""
    seed = (p.seed if p.trial_seed is None else p.trial_seed) + chunk
    return {"design": p.trial, "ratio": p.trial_ratio, "strata": list(STRATA),
            "match_on": list(MATCH_ON) if p.trial == "matched-sets" else [], "seed": int(seed),
            "block_prefix": f"{chunk + 1}" if chunk else "",
            "block_size": p.trial_block_size if p.trial == "blocked" else None}


def file_suffix(chunk: int) -> str:
    return "" if chunk == 0 else f"-{chunk + 1}"


def eligible_list(p: SimulationParams, pop: Population, play: Play, last_case_day: np.ndarray, t: int,
                  net: np.ndarray, cid: np.ndarray) -> pd.DataFrame:
    """The eligible list on day ``t`` (rows in customer order); ``net`` is each customer's net loss over
    the look-back (days ``t - trial_lookback`` to ``t - 1``)."""
    ok = (play.open_ & (play.closed_day < 0) & (pop.registered_day <= t - MIN_TENURE)
          & (play.excluded_until < t) & (play.call_excluded_until < t) & (last_case_day < t - 365 - 3))
    cand = np.flatnonzero(ok & (net > 0))
    k = int(round(p.trial_share * ok.sum()))
    top = cand[np.argsort(-net[cand], kind="stable")[:k]]
    top = np.sort(top)
    tl = days_sum(play.tl_actual, top, max(0, t - p.trial_lookback), t)
    return pd.DataFrame({"customer_id": cid[top], "gender": pop.gender[top],
                         "age": np.floor(pop.age0[top] + t / 365.25).astype(int),
                         "net_loss": np.round(net[top], 2), "theoretical_loss": np.round(tl.astype(float), 2),
                         "_i": top})


def run_trial_day(p: SimulationParams, rng: np.random.Generator, desk, play: Play, t: int, eligible: pd.DataFrame,
                  chunk: int):
    """Allocate the eligible list and open every member's case on day ``t``; return the Allocation."""
    from ..trials.allocate import allocate
    from .calls import open_case

    alloc = allocate(eligible.drop(columns="_i"), **allocation_settings(p, chunk))
    arms = dict(zip(alloc.table["customer_id"], alloc.table["arm"]))
    blocks = dict(zip(alloc.table["customer_id"], alloc.table["block"]))
    pop = desk.pop
    for cust, i in zip(eligible["customer_id"], eligible["_i"]):
        i = int(i)
        a0 = max(0, t - 365)
        span = max(1, (t - 85) - a0)
        log_spend = float(np.log1p(day_sum(play.tl_actual, i, a0, t - 85) * 84.0 / span))
        first = t + int(rng.integers(0, max(p.trial_call_spread, 1)))
        block = blocks[cust]
        c = open_case(p, rng, i, t, "high_loss", pop.age0[i], log_spend, pop.pref[i], trial_arm=arms[cust],
                      block=block, first_attempt=first)
        desk.case_rows.append(c)
        desk.last_case_day[i] = t
        if c["_answer_day"] is not None:
            play.after_call(i, c["_answer_day"], c["_rg_via_call"])
        elif c["_letter_day"] is not None:
            play.after_letter(i, c["_letter_day"])
    return alloc


#: Post windows (days from the index) of the realised trial effects.
WINDOWS = (28, 84, 365)


def trial_truth(p: SimulationParams, case_rows: list[dict], tl_actual: np.ndarray, tl_base: np.ndarray) -> dict:
    """Per arm: members, reached, and theoretical loss as played and without any contact over each window
    (members whose window ends by the data end), also for the call arm's reached members (the compliers)."""
    T = p.days
    out: dict = {}
    for c in case_rows:
        if "block" not in c:
            continue
        i, o, arm = c["_i"], c["opened_day"], c["arm"]
        reached = c["_answer_day"] is not None and c["_answer_day"] < T
        d = out.setdefault(arm, {"n": 0, "reached": 0, "windows": {}})
        d["n"] += 1
        d["reached"] += int(reached)
        for w in WINDOWS:
            if o + w > T:
                continue
            a, b = float(day_sum(tl_actual, i, o, o + w)), float(day_sum(tl_base, i, o, o + w))
            s = d["windows"].setdefault(str(w), {"n": 0, "actual": 0.0, "base": 0.0, "n_reached": 0,
                                                 "actual_reached": 0.0, "base_reached": 0.0})
            s["n"] += 1
            s["actual"] += a
            s["base"] += b
            if reached:
                s["n_reached"] += 1
                s["actual_reached"] += a
                s["base_reached"] += b
    return out


def add_truth(acc: dict, t: dict) -> None:
    """Add one chunk's trial sums to the accumulated ones."""
    for arm, d in t.items():
        a = acc.setdefault(arm, {"n": 0, "reached": 0, "windows": {}})
        a["n"] += d["n"]
        a["reached"] += d["reached"]
        for w, s in d["windows"].items():
            aw = a["windows"].setdefault(w, dict.fromkeys(s, 0))
            for k, v in s.items():
                aw[k] += v


def finish(p: SimulationParams, acc: dict) -> dict:
    """``realised.trial`` of truth.json: realised ITT per arm and effect of being reached, per window."""
    def ratio(a, b):
        return float(a / b) - 1 if b else None

    arms = {arm: {"n": d["n"], "reached": d["reached"]} for arm, d in sorted(acc.items())}
    def by_window(d):
        return sorted(d["windows"].items(), key=lambda x: int(x[0]))

    itt = {arm: {f"{w}d": ratio(s["actual"], s["base"]) for w, s in by_window(d)}
           for arm, d in sorted(acc.items()) if arm != "control"}
    call = acc.get("call", {"windows": {}, "n": 0, "reached": 0})
    cace = {f"{w}d": ratio(s["actual_reached"], s["base_reached"]) for w, s in by_window(call)}
    return {
        "design": p.trial, "ratio": p.trial_ratio, "day": p.trial_day, "arms": arms,
        "reach_call_arm": call["reached"] / call["n"] if call["n"] else None,
        "itt": itt, "effect_of_being_reached": cace,
        "note": ("Realised effects from the potential outcomes (theoretical loss as played / without any contact, "
                 "minus one) over windows counted from the index (the allocation day), for members whose window "
                 "ends by the data end: 'itt' over every member of an arm (the effect of being assigned), "
                 "'effect_of_being_reached' over the call arm's reached members (the compliers; nobody in "
                 "control can be reached). Attempts start up to trial_call_spread days after the index, so "
                 "short windows are diluted by days before the answer; pauses and self-exclusions agreed on a "
                 "call add to the effect."),
    }


def write_trial_files(p: SimulationParams, out, study: dict) -> None:
    """``<out>/trial/eligible[-k].parquet``, ``allocation[-k].parquet`` and its log, for one chunk's study.

    The allocation is drawn again from the written eligible file (so the log records the file's hash, as
    ``carecall-eval allocate`` run on it would) and must equal the one fielded.
    """
    import io
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..trials.allocate import allocate

    d = Path(out) / "trial"
    d.mkdir(exist_ok=True)
    k = study["chunk"]
    el = study["eligible"]
    schema = pa.schema([("customer_id", pa.string()), ("gender", pa.string()), ("age", pa.int64()),
                        ("net_loss", pa.float64()), ("theoretical_loss", pa.float64())])
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(el, schema=schema, preserve_index=False), buf, compression="zstd")
    path = d / f"eligible{file_suffix(k)}.parquet"
    path.write_bytes(buf.getvalue())
    again = allocate(path, **allocation_settings(p, k))
    if again.log["allocation_sha256"] != study["allocation"].log["allocation_sha256"]:    # pragma: no cover
        raise RuntimeError("the trial's allocation could not be reproduced from its eligible file")
    again.write(d / f"allocation{file_suffix(k)}.parquet")
