"""Sentences of randomized studies: the analysis (ITT, effect of being reached, per protocol), retention and
actions by arm, the plan, the allocation and its verification; from summary rows and settings only.

The per-protocol figure is always called "not randomized" here, wherever it is mentioned.
"""
from __future__ import annotations

import pandas as pd

from . import ci, horizon_phrase, is_missing, level_label, num, pct, pts, spct

__all__ = ["text", "outcomes_text", "plan_text", "allocation_text", "verification_text", "PER_PROTOCOL_LABEL"]

#: How the per-protocol comparison is named wherever it appears.
PER_PROTOCOL_LABEL = "per protocol (not randomized)"

_ARM_LABEL = {"call": "call arm", "letter": "letter arm", "control": "control arm"}


def _row(summary: pd.DataFrame, metric: str, group: str, **where):
    s = summary[(summary["metric"] == metric) & (summary["group"] == group)]
    for k, v in where.items():
        if k in s.columns:
            s = s[s[k] == v]
    return s.iloc[0] if len(s) else None


def _reason(row) -> str:
    sup = row.get("suppressed") if row is not None else None
    if isinstance(sup, str) and sup:
        return "withheld: small numbers"
    note = row.get("note") if row is not None else None
    if isinstance(note, str) and note.startswith("not available: "):
        return note.removeprefix("not available: ")
    return "no estimate"


def _effect(row, level: float) -> str:
    if row is None:
        return "not estimated"
    if is_missing(row["estimate"]):
        return f"not available ({_reason(row)})"
    return f"{spct(row['estimate'])} ({ci(row['ci_low'], row['ci_high'], level)})"


def text(summary: pd.DataFrame, settings: dict) -> str:
    """Plain-language findings of :func:`carecall_eval.randomized_effects` at its headline window.

    >>> from carecall_eval.results import tidy
    >>> s = tidy([{"metric": "spending.rct_itt_change", "group": "call", "window": 84, "estimate": -0.1,
    ...            "ci_low": -0.2, "ci_high": 0.01},
    ...           {"metric": "spending.rct_cace_change", "group": "call", "window": 84, "estimate": -0.25,
    ...            "ci_low": -0.45, "ci_high": 0.02},
    ...           {"metric": "spending.rct_pp_change", "group": "call", "window": 84, "estimate": -0.3,
    ...            "ci_low": -0.4, "ci_high": -0.2},
    ...           {"metric": "trial.reach", "group": "call", "estimate": 0.4}])
    >>> print(text(s, {"level": 0.9, "window": 84, "blocks": "cluster", "arms": ["call", "control"]}))
    In the randomized study (call vs control, clustered by matched set), by assigned arm against control over
    the 12 weeks after the index: call arm -10% (90% CI -20% to +1%). 40% of the call arm were reached; the
    effect of being reached (complier average causal effect, with assignment as the instrument) is -25% (90%
    CI -45% to +2%), which cannot be told apart from no effect. Per protocol (not randomized: reached members
    of the call arm against all of control; who answers differs from who does not): -30% (90% CI -40% to
    -20%).
    """
    level, w = settings["level"], settings["window"]
    arms = [a for a in settings.get("arms", ["call", "letter", "control"]) if a != "control"]
    how = {"none": "", "cluster": ", clustered by matched set", "fixed": ", with block fixed effects"}.get(
        settings.get("blocks", "none"), "")
    parts = []
    for arm in arms:
        r = _row(summary, "spending.rct_itt_change", arm, window=w)
        parts.append(f"{_ARM_LABEL[arm]} {_effect(r, level)}")
    out = (f"In the randomized study ({' vs '.join(arms + ['control'])}{how}), by assigned arm against control "
           f"over the {horizon_phrase(w)} after the index: " + "; ".join(parts) + ".")
    reach = _row(summary, "trial.reach", "call")
    cace = _row(summary, "spending.rct_cace_change", "call", window=w)
    if reach is not None and cace is not None:
        share = (f"{pct(reach['estimate'])} of the call arm were reached" if not is_missing(reach["estimate"])
                 else f"The share of the call arm reached is not shown ({_reason(reach)})")
        out += (f" {share}; the effect of being reached (complier average causal effect, with assignment as the "
                f"instrument) is {_effect(cace, level)}")
        if not is_missing(cace["estimate"]) and not is_missing(cace["ci_low"]) \
                and cace["ci_low"] <= 0 <= cace["ci_high"]:
            out += ", which cannot be told apart from no effect"
        out += "."
    pp = _row(summary, "spending.rct_pp_change", "call", window=w)
    if pp is not None:
        out += (" Per protocol (not randomized: reached members of the call arm against all of control; who "
                f"answers differs from who does not): {_effect(pp, level)}.")
    return out


def outcomes_text(summary: pd.DataFrame, settings: dict) -> str:
    """Retention and responsible-gambling actions by arm (the report's trial section).

    >>> from carecall_eval.results import tidy
    >>> s = tidy([{"metric": "retention.rct_account_12m", "group": "call", "estimate": 0.97, "horizon": 365},
    ...           {"metric": "retention.rct_account_12m", "group": "control", "estimate": 0.95, "horizon": 365},
    ...           {"metric": "actions.rct_any_28d", "group": "call", "estimate": 0.12, "days": 28},
    ...           {"metric": "actions.rct_any_28d", "group": "control", "estimate": 0.07, "days": 28},
    ...           {"metric": "actions.rct_any_28d", "group": "call-control", "estimate": 0.05, "ci_low": 0.01,
    ...            "ci_high": 0.09, "days": 28}])
    >>> print(outcomes_text(s, {"level": 0.95, "retention_horizon": 365, "action_days": 28,
    ...                         "arms": ["call", "control"]}))
    Still customers after 12 months: call arm 97%, control arm 95%. Set a limit, paused or self-excluded
    within 28 days: call arm 12%, control arm 7%; call arm - control +5.0 points (95% CI +1.0 points to +9.0
    points).
    """
    from .._validation import horizon_id

    level = settings["level"]
    h, d = settings["retention_horizon"], settings["action_days"]
    arms = settings.get("arms", ["call", "letter", "control"])
    out = []
    ret = f"retention.rct_account_{horizon_id(h, 365, '12m')}"
    vals = []
    for arm in arms:
        r = _row(summary, ret, arm)
        if r is not None:
            vals.append(f"{_ARM_LABEL[arm]} " + (pct(r["estimate"]) if not is_missing(r["estimate"])
                                                 else f"not available ({_reason(r)})"))
    if vals:
        out.append(f"Still customers after {horizon_phrase(h)}: " + ", ".join(vals) + ".")
    act = f"actions.rct_any_{d}d"
    vals = []
    for arm in arms:
        r = _row(summary, act, arm)
        if r is not None:
            vals.append(f"{_ARM_LABEL[arm]} " + (pct(r["estimate"]) if not is_missing(r["estimate"])
                                                 else f"not available ({_reason(r)})"))
    diffs = []
    for arm in arms:
        r = _row(summary, act, f"{arm}-control")
        if r is not None and not is_missing(r["estimate"]):
            diffs.append(f"{_ARM_LABEL[arm]} - control {pts(r['estimate'])} "
                         f"({ci(r['ci_low'], r['ci_high'], level, fmt=pts)})")
    if vals:
        out.append(f"Set a limit, paused or self-excluded within {horizon_phrase(d)}: " + ", ".join(vals)
                   + ("; " + "; ".join(diffs) if diffs else "") + ".")
    return " ".join(out)


def plan_text(summary: pd.DataFrame, settings: dict) -> str:
    """The plan of a trial in words: inputs, then the detectable effect (or months needed) per design.

    >>> from carecall_eval.results import tidy
    >>> s = tidy([{"metric": "trial.eligible_per_month", "group": "all", "estimate": 250.0},
    ...           {"metric": "trial.reach_rate", "group": "all", "estimate": 0.5},
    ...           {"metric": "trial.mde_itt", "group": "1:1", "estimate": -0.08, "months": 12},
    ...           {"metric": "trial.mde_reached", "group": "1:1", "estimate": -0.16, "months": 12}])
    >>> print(plan_text(s, {"level": 0.95, "power": 0.8, "window": 84, "months": 12, "effect": None}))
    From about 250 eligible customers a month, of whom 50% are reached, over the 12 weeks after the index
    (two-sided test at 5%, 80% power): recruiting for 12 months, a 1:1 design detects a change of -8% by
    assignment (ITT) or -16% from being reached.
    """
    level, power, w = settings["level"], settings["power"], settings["window"]
    flow = _row(summary, "trial.eligible_per_month", "all")
    reach = _row(summary, "trial.reach_rate", "all")
    head = (f"From about {num(flow['estimate'])} eligible customers a month" if flow is not None else "From the flow")
    if reach is not None:
        head += f", of whom {pct(reach['estimate'])} are reached"
    head += (f", over the {horizon_phrase(w)} after the index (two-sided test at {level_label(1 - level)}, "
             f"{level_label(power)} power): ")
    designs = list(dict.fromkeys(summary.loc[summary["metric"].astype(str).str.startswith("trial.mde_")
                                             | summary["metric"].astype(str).str.startswith("trial.months_"),
                                             "group"]))
    parts = []
    if settings.get("effect") is None:
        months = float(settings.get("months") or 12)
        mtxt = num(months) if months.is_integer() else num(months, 1)
        for d in designs:
            itt, rch = _row(summary, "trial.mde_itt", d), _row(summary, "trial.mde_reached", d)
            change = spct(itt["estimate"]) if itt is not None else "n/a"
            p = f"a {d} design detects a change of {change} by assignment (ITT)"
            if rch is not None and not is_missing(rch["estimate"]):
                p += f" or {spct(rch['estimate'])} from being reached"
            parts.append(p)
        return head + f"recruiting for {mtxt} months, " + "; ".join(parts) + "."
    eff = settings["effect"]
    for d in designs:
        itt, rch = _row(summary, "trial.months_itt", d), _row(summary, "trial.months_reached", d)
        p = f"a {d} design needs {num(itt['estimate'], 1)} months of recruitment for an ITT change of {spct(eff)}"
        if rch is not None and not is_missing(rch["estimate"]):
            p += f", or {num(rch['estimate'], 1)} months for an effect of being reached of {spct(eff)}"
        parts.append(p)
    return head + "; ".join(parts) + "."


def allocation_text(log: dict, balance: pd.DataFrame) -> str:
    """One paragraph describing an allocation (design, ratio, seed, counts, worst balance)."""
    design = {"simple": "simple randomization", "blocked": f"permuted blocks of {log.get('block_size')}",
              "matched-sets": f"matched sets of {log.get('block_size')}"}[log["design"]]
    within = f" within {', '.join(log['strata'])}" if log.get("strata") else ""
    matched = f", matched on {', '.join(log['match_on'])}" if log.get("match_on") else ""
    counts = ", ".join(f"{a} {num(n)}" for a, n in log["n_by_arm"].items())
    out = (f"Allocated {num(log['n_allocated'])} customers by {design}{within}{matched}, ratio {log['ratio']} "
           f"({' : '.join(log['arms'])}), seed {log['seed']}: {counts}.")
    if log["refused"]["n"]:
        out += f" {num(log['refused']['n'])} customers allocated before were left out (listed in the log)."
    smd = [c for c in balance.columns if c.startswith("smd_")]
    if smd and len(balance):
        vals = balance[smd].abs()
        j = vals.stack().idxmax() if vals.notna().any().any() else None
        if j is not None:
            out += (f" Largest standardized difference against {log['reference_arm']}: "
                    f"{vals.stack().max():.2f} ({balance.loc[j[0], 'variable']}, {j[1][4:]}).")
    return out + f" Allocation hash {log['allocation_sha256'][:12]}."


def verification_text(checks: pd.DataFrame, settings: dict) -> str:
    """Whether an allocation is unchanged, naming each failed check."""
    bad = checks[~checks["passed"]]
    if bad.empty:
        return (f"Allocation {settings['allocation']} verified: "
                + "; ".join(checks["detail"]) + ".")
    return (f"Allocation {settings['allocation']} FAILED verification: " + "; ".join(bad["detail"]) + ".")
