"""Plots.  Each takes ``ax=`` (a new figure when omitted), returns the ``ax``,
imports matplotlib only when called, and draws numbers computed elsewhere:
no plot computes a statistic of its own.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["love_plot"]


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
