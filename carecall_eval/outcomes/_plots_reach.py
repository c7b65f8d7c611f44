"""Plots for reach, answer rates, call length and actions (to be merged into :mod:`carecall_eval.plotting`).

Each function takes a :class:`~carecall_eval.results.Result` (or its plot data),
draws on ``ax`` (a new figure when omitted), imports matplotlib only when
called, returns the ``ax``, and computes no statistic of its own.
"""
from __future__ import annotations

__all__ = ["reach_its_plot", "answer_rate_plot", "call_length_plot", "actions_plot"]


def _axes(ax):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    return ax


def _data(result, key):
    return result.get_plot_data(key) if hasattr(result, "get_plot_data") else result[key]


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
    w = _data(result, "weekly")
    policy = _data(result, "policy_start")
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
    t = _data(result, "answer_by_attempt")
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
        s = _data(result, "sms_after_attempts")
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
        h = _data(result, "histogram")
        ax.bar(h["bin_left"], h["share"], width=h["bin_right"] - h["bin_left"], align="edge", color="C0",
               alpha=0.7, edgecolor="white")
        ax.set_ylabel("share of answered calls")
    else:
        d = _data(result, "distribution")
        ax.step(d["duration_s"], d["ecdf"], where="post", color="C0")
        ax.set_ylabel("share of calls at most this long")
        ax.set_ylim(0, 1)
    ax.set_xscale("log")
    ref = _data(result, "reference")
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
    t = _data(result, "shares")
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
