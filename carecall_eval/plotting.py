"""Plots.  Each takes ``ax=`` (a new figure when omitted), returns the ``ax``,
imports matplotlib only when called, and draws numbers computed elsewhere:
no plot computes a statistic of its own.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["love_plot", "event_study_plot", "waterfall_plot", "estimates_plot", "forest_plot", "km_plot",
           "reach_its_plot", "answer_rate_plot", "call_length_plot", "actions_plot"]


def love_plot(balance: Any, ax=None, *, threshold: float = 0.1, absolute: bool = True,
              show_distance: bool = False):
    """Love plot: standardised mean differences before and after matching.

    Parameters
    ----------
    balance : MatchResult, Result or pandas.DataFrame
        A matching result (its ``get_plot_data("balance")`` is used) or a
        table with columns ``smd_before`` and ``smd_after`` indexed by term
        (or with a ``term`` column), such as ``MatchResult.balance()``.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.
    threshold : float, default 0.1
        Where to draw the dashed balance threshold line(s).
    absolute : bool, default True
        Plot |SMD| (one threshold line) instead of signed SMD (lines at
        ``-threshold`` and ``+threshold``).
    show_distance : bool, default False
        Include the ``distance`` row (the propensity score itself).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> tab = pd.DataFrame({"smd_before": [0.5, -0.3], "smd_after": [0.05, -0.02]},
    ...                    index=pd.Index(["age", "loss"], name="term"))
    >>> ax = love_plot(tab)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['age', 'loss']
    """
    import matplotlib.pyplot as plt

    if hasattr(balance, "get_plot_data"):
        table = balance.get_plot_data("balance")
    else:
        table = balance
    if not isinstance(table, pd.DataFrame) or not {"smd_before", "smd_after"} <= set(table.columns):
        raise ValueError("love_plot needs a matching result or a table with columns smd_before and smd_after.")
    if "term" in table.columns:
        table = table.set_index("term")
    if not show_distance:
        table = table.drop(index="distance", errors="ignore")
    before, after = table["smd_before"], table["smd_after"]
    if absolute:
        before, after = before.abs(), after.abs()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(table) + 1.5))
    y = list(range(len(table)))[::-1]
    ax.scatter(before.to_numpy(), y, marker="o", facecolors="none", edgecolors="tab:grey", label="before")
    ax.scatter(after.to_numpy(), y, marker="o", color="tab:blue", label="after")
    for line in ([threshold] if absolute else [-threshold, threshold]):
        ax.axvline(line, linestyle="--", color="tab:red", linewidth=1)
    ax.axvline(0, color="black", linewidth=0.5)
    ax.set_yticks(y)
    ax.set_yticklabels([str(t) for t in table.index])
    ax.set_xlabel("|standardised mean difference|" if absolute else "standardised mean difference")
    ax.set_title("Covariate balance")
    ax.legend(loc="lower right", frameon=False)
    return ax


def _result_data(obj, key):
    """A result's plot data ``key``; a dict of plot data gives its entry; a frame is used as it is."""
    if hasattr(obj, "get_plot_data"):
        return obj.get_plot_data(key)
    if isinstance(obj, dict):
        return obj[key]
    return obj


def event_study_plot(result, ax=None, *, currency: str = ""):
    """Weekly mean theoretical loss around the index, contact vs matched comparison, with bands.

    Parameters
    ----------
    result : Result or pandas.DataFrame
        A spending result (its ``event_study`` plot data) or that frame
        (``group``, ``week``, ``mean``, ``ci_low``, ``ci_high``).
    ax : matplotlib.axes.Axes, optional
    currency : str
        Unit for the y label.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    df = _result_data(result, "event_study")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    colours = {"contact": "tab:blue", "comparison": "tab:orange"}
    labels = {"contact": "reached (contact)", "comparison": "matched comparison"}
    for grp, g in df.groupby("group"):
        g = g.sort_values("week")
        ax.plot(g["week"], g["mean"], color=colours.get(grp), label=labels.get(grp, grp), linewidth=1.5)
        ax.fill_between(g["week"], g["ci_low"], g["ci_high"], color=colours.get(grp), alpha=0.2, linewidth=0)
    ax.axvline(0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("weeks from index (0 = the case was opened)")
    ax.set_ylabel(f"mean theoretical loss per week {currency}".strip())
    ax.set_title("Spending around the index: both groups fall; the gap after week 0 is the call")
    ax.legend(frameon=False)
    return ax


def waterfall_plot(result, ax=None):
    """Naive drop split into 'would have happened anyway' and 'added by the call' (pre level = 100).

    Parameters
    ----------
    result : Result or pandas.DataFrame
        A spending result (its ``decomposition`` plot data) or that frame.
    """
    import matplotlib.pyplot as plt

    d = _result_data(result, "decomposition").reset_index(drop=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    level = 0.0
    for i, r in d.iterrows():
        if r["kind"] == "level":
            ax.bar(i, r["value"], color="tab:grey")
            level = r["value"]
            ax.text(i, r["value"] + 1, f"{r['value']:.0f}", ha="center", va="bottom")
        else:
            bottom = level + min(r["value"], 0)
            colour = "tab:orange" if i == 1 else "tab:blue"
            ax.bar(i, abs(r["value"]), bottom=bottom, color=colour)
            ax.text(i, level + max(r["value"], 0) + 1, f"{r['value']:+.0f}", ha="center", va="bottom")
            level += r["value"]
    ax.set_xticks(range(len(d)))
    ax.set_xticklabels([s.replace(" (", "\n(").replace("would have happened anyway", "would have\nhappened anyway")
                        .replace("added by the call", "added by\nthe call") for s in d["step"]])
    ax.set_ylabel("spending, pre-window level = 100")
    ax.set_title("Where the naive drop comes from")
    ax.set_ylim(0, max(110, d["value"].max() * 1.15))
    return ax


def estimates_plot(result, ax=None, *, window: int | None = None):
    """Naive, matched (primary), post-only, difference-in-differences and placebo side by side."""
    import matplotlib.pyplot as plt

    df = _result_data(result, "estimates")
    if window is not None and "window" in df.columns:
        df = df[df["window"] == window]
    elif "window" in df.columns and hasattr(result, "settings"):
        df = df[df["window"] == result.settings.get("window", df["window"].iloc[0])]
    names = {"spending.naive_change": "naive before/after", "spending.matched_change": "matched (primary)",
             "spending.post_only_change": "matched post-only ratio", "spending.did_change": "difference in differences",
             "spending.placebo_change": "placebo (should be 0)"}
    df = df[df["metric"].isin(names)].reset_index(drop=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    y = list(range(len(df)))[::-1]
    for yy, (_, r) in zip(y, df.iterrows()):
        colour = "tab:blue" if r["metric"] == "spending.matched_change" else "tab:grey"
        ax.errorbar(100 * r["estimate"], yy,
                    xerr=[[100 * (r["estimate"] - r["ci_low"])], [100 * (r["ci_high"] - r["estimate"])]],
                    fmt="o", color=colour, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([names[m] for m in df["metric"]])
    ax.set_xlabel("change in theoretical loss, % (95% CI)")
    return ax


def forest_plot(table, ax=None, *, label: str = "group", xlabel: str = "change, %", scale: float = 100.0,
                reference: float = 0.0):
    """Horizontal point-and-interval plot of a table with ``estimate``, ``ci_low``, ``ci_high``.

    Used for subgroups and for cross-operator comparisons.
    """
    import matplotlib.pyplot as plt

    df = _result_data(table, "subgroups") if hasattr(table, "get_plot_data") else table
    df = df.reset_index(drop=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * len(df) + 1.2))
    y = list(range(len(df)))[::-1]
    lab = df[label] if label in df.columns else df.apply(lambda r: f"{r['by']}={r['level']}", axis=1)
    ax.errorbar(scale * df["estimate"], y, xerr=[scale * (df["estimate"] - df["ci_low"]),
                                                  scale * (df["ci_high"] - df["estimate"])],
                fmt="s", color="tab:blue", capsize=3)
    ax.axvline(scale * reference, color="black", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([str(v) for v in lab])
    ax.set_xlabel(xlabel)
    return ax


def km_plot(result, ax=None):
    """Kaplan-Meier curves (still a customer) by group with confidence bands."""
    import matplotlib.pyplot as plt

    df = _result_data(result, "km")
    horizon = result.get_plot_data("horizon") if hasattr(result, "get_plot_data") else None
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    colours = {"contact": "tab:blue", "comparison": "tab:orange"}
    for grp, g in df.groupby("group"):
        ax.step(g["day"], 100 * g["survival"], where="post", color=colours.get(grp), label=grp)
        ax.fill_between(g["day"], 100 * g["ci_low"], 100 * g["ci_high"], step="post", alpha=0.2,
                        color=colours.get(grp), linewidth=0)
    if horizon:
        ax.axvline(horizon, color="black", linestyle=":", linewidth=1)
        ax.set_xlim(0, horizon * 1.5)
    ax.set_xlabel("days after index")
    ax.set_ylabel("% still customers")
    ax.legend(frameon=False)
    return ax



# ---- reach, answer rates, call length, actions ----------------------------------------------------

def _axes(ax):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    return ax


def reach_its_plot(result, ax=None, *, show_fit: bool = True):
    """Weekly case-level reach with the interrupted-time-series fit and the policy date.

    Parameters
    ----------
    result : Result
        From :func:`carecall_eval.outcomes.reach.sms_effect` (plot data
        ``"weekly"`` and ``"policy_start"``).
    ax : matplotlib.axes.Axes, optional
    show_fit : bool
        Draw the segmented-regression fit and its no-policy counterfactual
        (when the result has them).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> weekly = pd.DataFrame({"week": pd.date_range("2025-01-06", periods=4, freq="7D"), "n": [10, 12, 9, 11],
    ...                        "reach": [0.5, 0.6, 0.7, 0.65], "post_policy": [False, False, True, True],
    ...                        "fitted": [0.55, 0.56, 0.68, 0.69], "counterfactual": [0.55, 0.56, 0.57, 0.58]})
    >>> ax = reach_its_plot({"weekly": weekly, "policy_start": pd.Timestamp("2025-01-20")})
    >>> len(ax.lines)
    4
    """
    ax = _axes(ax)
    w = _result_data(result, "weekly")
    policy = _result_data(result, "policy_start")
    sizes = 8 + 40 * w["n"] / max(float(w["n"].max()), 1.0)
    ax.scatter(w["week"], w["reach"], s=sizes, color="0.45", alpha=0.6, label="weekly reach (size: cases)")
    if show_fit and "fitted" in w and w["fitted"].notna().any():
        for post, style in ((False, "-"), (True, "-")):
            seg = w[w["post_policy"] == post]
            ax.plot(seg["week"], seg["fitted"], style, color="C0", lw=2,
                    label="segmented fit" if not post else None)
        seg = w[w["post_policy"]]
        ax.plot(seg["week"], seg["counterfactual"], "--", color="C0", lw=1.5, label="pre-policy trend extended")
    if policy is not None:
        ax.axvline(policy, color="C3", lw=1.5, label="SMS policy starts")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of phone cases reached")
    ax.set_xlabel("week the case was opened")
    ax.yaxis.set_major_formatter(_pct_formatter())
    ax.legend(loc="lower right", fontsize="small")
    return ax


def answer_rate_plot(result, ax=None):
    """Answer rate by attempt number, before and after the SMS policy, with Wilson intervals.

    Parameters
    ----------
    result : Result
        From :func:`~carecall_eval.outcomes.reach.sms_effect` or
        :func:`~carecall_eval.outcomes.reach.answer_rates` (plot data
        ``"answer_by_attempt"``; ``"sms_after_attempts"`` marks where the SMS
        is sent, when present).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    t = _result_data(result, "answer_by_attempt")
    periods = [p for p in ("before_sms", "after_sms") if p in set(t["period"])] or ["all"]
    labels = {"all": "all cases", "before_sms": "before the SMS policy", "after_sms": "after the SMS policy"}
    width = 0.8 / len(periods)
    for i, p in enumerate(periods):
        d = t[t["period"] == p]
        x = d["attempt"].to_numpy() + (i - (len(periods) - 1) / 2) * width
        ax.bar(x, d["rate"], width=width * 0.95, color=f"C{i}", alpha=0.8, label=labels[p])
        ax.errorbar(x, d["rate"], yerr=[d["rate"] - d["ci_low"], d["ci_high"] - d["rate"]], fmt="none",
                    ecolor="0.2", capsize=3, lw=1)
    try:
        s = _result_data(result, "sms_after_attempts")
    except (KeyError, TypeError):
        s = None
    if s is not None and len(periods) > 1:
        ax.axvline(s + 0.5, color="C3", ls=":", lw=1.5, label=f"SMS sent after attempt {s}")
    ax.set_xticks(sorted(t["attempt"].unique()))
    ax.set_xlabel("attempt number")
    ax.set_ylabel("share of attempts answered")
    ax.yaxis.set_major_formatter(_pct_formatter())
    ax.legend(fontsize="small")
    return ax


def call_length_plot(result, ax=None, *, kind: str = "histogram"):
    """Distribution of call length on a log axis, with the mean, median and 90th percentile marked.

    Parameters
    ----------
    result : Result
        From :func:`carecall_eval.outcomes.calls.call_length` (plot data
        ``"histogram"``, ``"distribution"``, ``"reference"``).
    ax : matplotlib.axes.Axes, optional
    kind : {"histogram", "ecdf"}

    Returns
    -------
    matplotlib.axes.Axes
    """
    if kind not in ("histogram", "ecdf"):
        raise ValueError(f"kind must be one of {{'histogram', 'ecdf'}}, got {kind!r}")
    ax = _axes(ax)
    if kind == "histogram":
        h = _result_data(result, "histogram")
        ax.bar(h["bin_left"], h["share"], width=h["bin_right"] - h["bin_left"], align="edge", color="C0",
               alpha=0.7, edgecolor="white")
        ax.set_ylabel("share of answered calls")
    else:
        d = _result_data(result, "distribution")
        ax.step(d["duration_s"], d["ecdf"], where="post", color="C0")
        ax.set_ylabel("share of calls at most this long")
        ax.set_ylim(0, 1)
    ax.set_xscale("log")
    ref = _result_data(result, "reference")
    names = {"call_length.mean_s": ("mean", "C3", "-"), "call_length.median_s": ("median", "C2", "--"),
             "call_length.p90_s": ("90th percentile", "0.3", ":")}
    for metric, value in ref.items():
        label, color, ls = names.get(metric, (metric, "0.5", "-"))
        ax.axvline(value, color=color, ls=ls, lw=1.5, label=f"{label}: {value / 60:.1f} min")
    ax.set_xlabel("call length (seconds, log scale)")
    ax.legend(fontsize="small")
    return ax


def actions_plot(result, ax=None):
    """Share of customers with each action within the window, contact vs comparison, with intervals.

    Parameters
    ----------
    result : Result
        From :func:`carecall_eval.outcomes.actions.actions` (plot data ``"shares"``).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    t = _result_data(result, "shares")
    acts = list(dict.fromkeys(t["action"]))
    labels = {"limit_set": "limit set or lowered", "pause": "pause", "self_exclusion": "self-exclusion",
              "any": "any of these"}
    for i, (group, color) in enumerate((("contact", "C0"), ("comparison", "0.6"))):
        d = t[t["group"] == group].set_index("action").reindex(acts)
        x = [k + (i - 0.5) * 0.38 for k in range(len(acts))]
        ax.bar(x, d["share"], width=0.36, color=color, label=group)
        ax.errorbar(x, d["share"], yerr=[d["share"] - d["ci_low"], d["ci_high"] - d["share"]], fmt="none",
                    ecolor="0.2", capsize=3, lw=1)
    ax.set_xticks(range(len(acts)))
    ax.set_xticklabels([labels.get(a, a) for a in acts])
    ax.set_ylabel("share of customers")
    ax.yaxis.set_major_formatter(_pct_formatter())
    ax.legend(fontsize="small")
    return ax


def _pct_formatter():
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)


def selfcheck_plot(result, ax=None, *, estimators=("spending.matched_change", "spending.naive_change",
                                                   "spending.did_change")):
    """Self-check: each figure's mean estimate against the planted truth, with the replicates' 5-95% range.

    Parameters
    ----------
    result : Result or pandas.DataFrame
        From :func:`carecall_eval.selfcheck` (plot data ``"truth_plot"``: ``estimator``, ``injected``,
        ``truth``, ``mean``, ``low``, ``high``), or that table.
    ax : matplotlib.axes.Axes, optional
    estimators : sequence of str
        Figures drawn (metric ids); a figure that recovers the truth lies on the diagonal.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> t = pd.DataFrame({"estimator": ["spending.matched_change"] * 2, "injected": [-0.15, 0.0],
    ...                   "truth": [-0.15, 0.0], "mean": [-0.14, 0.01], "low": [-0.2, -0.05], "high": [-0.08, 0.07]})
    >>> len(selfcheck_plot(t).lines) > 0
    True
    """
    ax = _axes(ax)
    t = _result_data(result, "truth_plot")
    labels = {"spending.matched_change": ("matched estimate (primary)", "C0", "o"),
              "spending.naive_change": ("naive before/after", "C3", "s"),
              "spending.did_change": ("difference in differences", "0.45", "^")}
    t = t[t["estimator"].isin(list(estimators))]
    if len(t):
        lo = float(min(t["truth"].min(), t["low"].min()))
        hi = float(max(t["truth"].max(), t["high"].max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1, ls="--", label="estimate = truth")
    for k, est in enumerate(estimators):
        d = t[t["estimator"] == est].sort_values("truth")
        if d.empty:
            continue
        name, color, marker = labels.get(est, (est, f"C{k + 4}", "o"))
        x = d["truth"].to_numpy(float) + (k - 1) * 0.006          # side by side at each planted value
        ax.errorbar(x, d["mean"], yerr=[d["mean"] - d["low"], d["high"] - d["mean"]], fmt=marker + "-",
                    color=color, capsize=3, lw=1.2, label=name)
    ax.set_xlabel("planted change in spending")
    ax.set_ylabel("estimated change")
    ax.xaxis.set_major_formatter(_pct_formatter())
    ax.yaxis.set_major_formatter(_pct_formatter())
    ax.legend(fontsize="small", loc="upper left")
    return ax


def consort_plot(result, ax=None):
    """CONSORT flow of a randomized study: allocated, received the allocated contact, excluded, analysed.

    Parameters
    ----------
    result : Result or pandas.DataFrame
        From :func:`carecall_eval.randomized_effects` (plot data ``"consort"``: ``arm``, ``stage``,
        ``window``, ``n``, ``detail``), or that table; a count given as text (a withheld small
        count such as ``"<10"``) is shown as it is.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> t = pd.DataFrame({"arm": ["call"] * 4 + ["control"] * 3,
    ...                   "stage": ["allocated", "reached", "not reached", "analysed", "allocated", "no contact",
    ...                             "analysed"],
    ...                   "window": [None, None, None, 84, None, None, 84], "n": [100, 45, 55, 98, 100, 100, 99],
    ...                   "detail": None})
    >>> ax = consort_plot(t)
    >>> "Randomized: 200" in [x.get_text() for x in ax.texts]
    True
    """
    import matplotlib.pyplot as plt

    from ._validation import horizon_phrase

    t = _result_data(result, "consort")
    arms = list(dict.fromkeys(t["arm"]))
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2 * len(arms) + 1, 5.5))
    ax.set_xlim(0, len(arms))
    ax.set_ylim(0, 4.2)
    ax.axis("off")
    box = {"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "0.3"}

    def fmt(n) -> str:            # a count, or text standing for one (a withheld small count: "<10")
        return n if isinstance(n, str) else f"{int(n):,}"

    alloc = t.loc[t["stage"] == "allocated", "n"]
    numeric = all(not isinstance(v, str) for v in alloc)
    total = f"{int(sum(alloc)):,}" if numeric else "see the arms"
    top = (len(arms) / 2, 3.85)
    ax.text(*top, f"Randomized: {total}", ha="center", va="center", bbox=box, fontsize=10, fontweight="bold")

    def arrow(x0, y0, x1, y1):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "color": "0.3", "lw": 1})

    for k, arm in enumerate(arms):
        d = t[t["arm"] == arm]
        x = k + 0.5

        def n_of(stage, d=d):
            s = d.loc[d["stage"] == stage, "n"]
            return s.iloc[0] if len(s) else None

        arrow(top[0], top[1] - 0.15, x, 3.35)
        ax.text(x, 3.15, f"Allocated to {arm}: {fmt(n_of('allocated') or 0)}", ha="center", va="center", bbox=box,
                fontsize=9)
        received = [f"{s}: {fmt(n)}" for s in ("reached", "not reached", "letter sent", "no contact")
                    if (n := n_of(s)) is not None]
        arrow(x, 2.95, x, 2.55)
        ax.text(x, 2.3, "\n".join(received), ha="center", va="center", bbox=box, fontsize=9)
        exc = n_of("excluded")
        arrow(x, 2.0, x, 1.6)
        ax.text(x, 1.4, f"Excluded by cohort rules: {fmt(exc or 0)}", ha="center", va="center", bbox=box,
                fontsize=8, color="0.35")
        an = d[d["stage"] == "analysed"].sort_values("window")
        lines = [f"{horizon_phrase(int(w))}: {fmt(n)}" for w, n in zip(an["window"], an["n"])]
        arrow(x, 1.2, x, 0.85)
        ax.text(x, 0.45, "Analysed (as randomized)\n" + "\n".join(lines), ha="center", va="center", bbox=box,
                fontsize=9)
    ax.set_title("Flow of the randomized study (CONSORT)")
    return ax


# ---- running the programme: when to call, how fast, who benefits, how long, callers ----------------

def answer_heatmap(result, ax=None, *, show_values: bool = True):
    """Answer rate by weekday and hour of day (standardised for the same attempts), as a heatmap.

    Parameters
    ----------
    result : Result or pandas.DataFrame
        From :func:`carecall_eval.answer_timing` (plot data ``"heatmap"``: ``weekday``, ``hour``,
        ``rate``, ``attempts``), or that table.
    ax : matplotlib.axes.Axes, optional
    show_values : bool
        Write each cell's rate in it.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> t = pd.DataFrame({"weekday": ["Mon", "Mon", "Tue", "Tue"], "hour": [9, 10, 9, 10],
    ...                   "rate": [0.2, 0.3, 0.25, 0.35], "attempts": [10, 12, 9, 11]})
    >>> ax = answer_heatmap(t)
    >>> [x.get_text() for x in ax.get_yticklabels()]
    ['Mon', 'Tue']
    """
    import matplotlib.pyplot as plt
    import numpy as np

    t = _result_data(result, "heatmap")
    days = [d for d in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun") if d in set(t["weekday"])]
    hours = sorted(t["hour"].unique())
    grid = t.pivot(index="weekday", columns="hour", values="rate").reindex(index=days, columns=hours)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * len(hours) + 2, 0.45 * len(days) + 1.5))
    im = ax.imshow(grid.to_numpy(float), cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(hours)))
    ax.set_xticklabels([f"{int(h):02d}h" for h in hours])
    ax.set_yticks(range(len(days)))
    ax.set_yticklabels(days)
    if show_values:
        vals = grid.to_numpy(float)
        for i in range(len(days)):
            for j in range(len(hours)):
                if np.isfinite(vals[i, j]):
                    ax.text(j, i, f"{100 * vals[i, j]:.0f}", ha="center", va="center", fontsize=8)
    ax.figure.colorbar(im, ax=ax, format=_pct_formatter(), fraction=0.04, pad=0.02, label="answered")
    ax.set_xlabel("hour of the attempt")
    ax.set_title("Share of attempts answered, for the same attempts in every slot")
    return ax


def sms_timing_plot(result, ax=None, *, which: str = "sms_to_answer", window_hours: float | None = None):
    """Distribution of the SMS's timing: hours from the SMS to the answered call, or minutes from the missed attempt.

    Parameters
    ----------
    result : Result or pandas.DataFrame
        From :func:`carecall_eval.answer_timing` (plot data ``"sms_to_answer"`` or ``"sms_delay"``:
        ``bin``, ``count``, ``share``), or that table.
    which : {"sms_to_answer", "sms_delay"}
    window_hours : float, optional
        Marks the operator's SMS window (default: the result's ``sms_window_hours``).
    """
    import numpy as np

    t = _result_data(result, which)
    ax = _axes(ax)
    ax.bar(range(len(t)), t["share"], color="tab:blue", alpha=0.85)
    ax.set_xticks(range(len(t)))
    ax.set_xticklabels(t["bin"], rotation=0)
    ax.yaxis.set_major_formatter(_pct_formatter())
    ax.set_ylabel("share of cases")
    if which == "sms_to_answer":
        if window_hours is None and hasattr(result, "settings"):
            window_hours = result.settings.get("sms_window_hours")
        col = "hours_from"
        if window_hours is not None and col in t.columns:
            pos = float(np.interp(window_hours, t[col].to_numpy(float), range(len(t)))) - 0.5 \
                if window_hours <= t[col].max() else len(t) - 0.5
            ax.axvline(pos, color="C3", ls=":", lw=1.5, label=f"{window_hours:g}-hour SMS window")
            ax.legend(fontsize="small", frameon=False)
        ax.set_xlabel("hours from the SMS to the answered call")
    else:
        ax.set_xlabel("minutes from the missed attempt to the SMS")
    return ax


def speed_plot(result, ax=None, *, step: str = "trigger_to_reach"):
    """How fast cases are worked: share of cases by days for one step, one bar per quarter of opening.

    Parameters
    ----------
    result : Result or pandas.DataFrame
        From :func:`carecall_eval.case_speed` (plot data ``"distribution"``: ``step``, ``quarter``,
        ``days``, ``share``), or that table.
    step : {"trigger_to_opening", "opening_to_first_attempt", "first_attempt_to_reach", "trigger_to_reach"}
    """
    import matplotlib.pyplot as plt
    import numpy as np

    t = _result_data(result, "distribution")
    t = t[t["step"] == step]
    wide = t.pivot(index="quarter", columns="days", values="share").fillna(0.0)
    wide = wide[[c for c in t["days"].drop_duplicates()]]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.35 * len(wide) + 1.8))
    left = np.zeros(len(wide))
    cmap = plt.get_cmap("viridis_r")
    for k, col in enumerate(wide.columns):
        ax.barh(range(len(wide)), wide[col], left=left, color=cmap(k / max(1, len(wide.columns) - 1)),
                label=f"{col} days")
        left += wide[col].to_numpy()
    ax.set_yticks(range(len(wide)))
    ax.set_yticklabels(wide.index)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(_pct_formatter())
    ax.set_xlim(0, 1)
    words = t["step_label"].iloc[0] if len(t) else step.replace("_", " ")
    ax.set_xlabel(f"share of cases, by days from {words}")
    ax.legend(ncol=min(7, len(wide.columns)), fontsize="small", frameon=False, loc="upper center",
              bbox_to_anchor=(0.5, -0.18))
    return ax


def heterogeneity_plot(result, ax=None, *, xlabel: str = "change in theoretical loss, %"):
    """Forest plot of the matched effect by subgroup, grouped by dimension, with the overall effect marked.

    Parameters
    ----------
    result : Result
        From :func:`carecall_eval.effect_heterogeneity` (plot data ``"forest"``: ``by``, ``level``,
        ``estimate``, ``ci_low``, ``ci_high``, and ``"overall"``).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    t = _result_data(result, "forest").reset_index(drop=True)
    overall = _result_data(result, "overall") if hasattr(result, "get_plot_data") or isinstance(result, dict) \
        else None
    labels, rows, y = [], [], 0
    for by, g in t.groupby("by", sort=False):
        labels.append((y, by.replace("_", " "), True))
        y += 1
        for _, r in g.iterrows():
            labels.append((y, f"  {r['level']}", False))
            rows.append((y, r))
            y += 1
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.3 * y + 1.2))
    for yy, r in rows:
        if np.isfinite(r["estimate"]):
            ax.errorbar(100 * r["estimate"], yy, xerr=[[100 * (r["estimate"] - r["ci_low"])],
                                                        [100 * (r["ci_high"] - r["estimate"])]],
                        fmt="s", color="tab:blue", capsize=3, ms=4)
        else:
            ax.text(0, yy, " too few customers to estimate", va="center", fontsize=8, color="0.4")
    if overall is not None and len(overall) and np.isfinite(overall["estimate"].iloc[0]):
        o = overall.iloc[0]
        ax.axvline(100 * o["estimate"], color="tab:blue", ls="--", lw=1, label="all reached customers")
        ax.axvspan(100 * o["ci_low"], 100 * o["ci_high"], color="tab:blue", alpha=0.08)
        ax.legend(fontsize="small", frameon=False, loc="lower right")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks([p for p, _, _ in labels])
    ax.set_yticklabels([lab for _, lab, _ in labels])
    for tick, (_, _, head) in zip(ax.get_yticklabels(), labels):
        if head:
            tick.set_fontweight("bold")
    ax.set_ylim(y - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    return ax


def durability_plot(result, ax=None):
    """The matched effect at each window (own complete-follow-up comparison, and the same customers throughout).

    Parameters
    ----------
    result : Result or pandas.DataFrame
        From :func:`carecall_eval.effect_durability` (plot data ``"durability"``: ``metric``,
        ``window``, ``estimate``, ``ci_low``, ``ci_high``).
    """
    import numpy as np

    from ._validation import horizon_phrase

    t = _result_data(result, "durability")
    ax = _axes(ax)
    windows = sorted(t["window"].unique())
    kinds = (("durability.matched_change", "each window's own customers", "tab:blue", -0.08),
             ("durability.matched_change_common", "customers followed for the longest window", "tab:orange", 0.08))
    for metric, label, colour, dx in kinds:
        d = t[t["metric"] == metric].set_index("window").reindex(windows)
        ok = d["estimate"].notna().to_numpy()
        x = np.arange(len(windows))[ok] + dx
        d = d[ok]
        ax.errorbar(x, 100 * d["estimate"], yerr=[100 * (d["estimate"] - d["ci_low"]),
                                                  100 * (d["ci_high"] - d["estimate"])],
                    fmt="o-", color=colour, capsize=3, label=label)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(windows)))
    ax.set_xticklabels([horizon_phrase(int(w)) for w in windows])
    ax.set_xlabel("after the case was opened")
    ax.set_ylabel("change in theoretical loss, %")
    ax.legend(fontsize="small", frameon=False)
    return ax


def caterpillar_plot(result, ax=None, *, measure: str = "answer", show_raw: bool = True, labels: bool = False):
    """Callers sorted by their partially pooled figure, with intervals (and the raw figure as open circles).

    Parameters
    ----------
    result : Result or pandas.DataFrame
        From :func:`carecall_eval.caller_profiles` (plot data ``"caterpillar"``: ``measure``,
        ``caller``, ``estimate``, ``ci_low``, ``ci_high``, ``raw``), or that table.
    measure : {"answer", "action", "reception", "call_length", "spending"}
    show_raw : bool
        Also mark each caller's unadjusted, unpooled figure.
    labels : bool
        Name the callers by pseudonym (off: ranks only, as in the report).
    """
    import numpy as np

    t = _result_data(result, "caterpillar")
    t = t[(t["measure"] == measure) & t["estimate"].notna()].sort_values("estimate").reset_index(drop=True)
    ax = _axes(ax)
    pct = measure in ("answer", "action", "reception", "spending")
    k = 100.0 if pct else 1.0
    x = np.arange(len(t))
    ax.errorbar(x, k * t["estimate"], yerr=[k * (t["estimate"] - t["ci_low"]), k * (t["ci_high"] - t["estimate"])],
                fmt="o", color="tab:blue", capsize=2, label="partially pooled")
    if show_raw and "raw" in t.columns:
        ax.scatter(x, k * t["raw"], facecolors="none", edgecolors="0.4", label="raw, unadjusted", zorder=3)
    if measure in ("call_length", "spending"):      # the average caller, and no effect
        ax.axhline(1.0 if measure == "call_length" else 0.0, color="black", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(t["caller"] if labels else [str(i + 1) for i in x], rotation=90 if labels else 0)
    ax.set_xlabel("callers, ordered" + ("" if labels else " (rank)"))
    ylabels = {"answer": "attempts answered, %", "action": "calls ending in an action, %",
               "reception": "calls received positively, %", "call_length": "call length vs the average caller",
               "spending": "change in theoretical loss, %"}
    ax.set_ylabel(ylabels.get(measure, measure))
    ax.legend(fontsize="small", frameon=False)
    return ax


__all__ += ["answer_heatmap", "sms_timing_plot", "speed_plot", "heterogeneity_plot", "durability_plot",
            "caterpillar_plot"]
