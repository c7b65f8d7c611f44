"""The quarterly report as people may read it: every table and sentence with small cells withheld.

:func:`for_people` turns a :class:`~carecall_eval.report.context.QuarterlyReport` (full numbers: what
``metrics.json`` carries for the operator's own use) into the copy the notebook lays out.  Every figure
goes through :mod:`carecall_eval.compare.suppress`, the one implementation the aggregate bundle uses:

* the evaluation's metric rows: :func:`~carecall_eval.compare.suppress.suppress_metrics` (primary,
  implied counts of shares, secondary suppression in families that add up to a published total, a
  difference of withheld shares);
* the headline figures by quarter: :func:`~carecall_eval.compare.suppress.suppress_kpis` (the same rules
  quarter by quarter, outcome and reception shares as partitions, nested counts);
* the cohort flow: :func:`~carecall_eval.compare.suppress.suppress_flow` (the running "remaining" counts
  are not shown: each exclusion would be a subtraction away);
* every sentence (estimators' texts, the cohort's and the matching's, notes, reasons): a sentence that
  quotes a withheld figure is withheld (:func:`~carecall_eval.compare.suppress.redact_text`), and small
  counts quoted elsewhere become "fewer than <threshold>".
* the censoring table (:func:`censoring_table`): complete and censored counts per window, withheld in
  pairs, and only where the change from the previous window is 0 or at least the threshold;
* the Kaplan-Meier curves: the bundle's points (:func:`~carecall_eval.compare.suppress.km_points`), so no
  step of a curve shows one customer leaving.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..compare import suppress as sup

__all__ = ["for_people", "censoring_table", "flow_table"]

#: Note put on a metric row whose figure is withheld.
WITHHELD_NOTE = "withheld: it describes fewer than {t} customers"


class _Proxy:
    """An object that answers like ``inner`` except for the attributes given."""

    def __init__(self, inner, **overrides):
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_overrides", overrides)

    def __getattr__(self, name):
        ov = object.__getattribute__(self, "_overrides")
        if name in ov:
            return ov[name]
        return getattr(object.__getattribute__(self, "_inner"), name)

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"<for people: {object.__getattribute__(self, '_inner')!r}>"


def _note_withheld(rows: pd.DataFrame, threshold: int) -> pd.DataFrame:
    rows = rows.copy()
    if "note" not in rows.columns:
        rows["note"] = ""
    hit = rows["suppressed"].fillna("").ne("") & rows["estimate"].isna()
    empty = rows["note"].isna() | rows["note"].astype(str).eq("")
    rows.loc[hit & empty, "note"] = WITHHELD_NOTE.format(t=threshold)
    return rows


def _people_result(r, rows: pd.DataFrame, tokens, threshold: int):
    changes = {"summary": rows.reset_index(drop=True), "text": sup.redact_text(r.text, tokens, threshold)}
    km = _people_km(r, threshold)
    if km is not None:
        changes["plot_data"] = {**r.plot_data, "km": km}
    return dataclasses.replace(r, **changes)


def _people_km(r, threshold: int):
    """A Kaplan-Meier curve as the bundle shares it (:func:`~carecall_eval.compare.suppress.km_points`): a
    point every 14 days, only where at least ``threshold`` are at risk and 0 or at least ``threshold`` left
    since the last point, so that no step of the curve shows one customer leaving."""
    details = getattr(r, "details", None)
    table = details.get("table") if isinstance(details, Mapping) else None
    if "km" not in getattr(r, "plot_data", {}) or table is None or \
            not {"duration", "event", "contact"} <= set(getattr(table, "columns", ())):
        return None
    horizon = int(r.settings.get("horizon", 365))
    return sup.km_points(table, threshold, horizon=horizon, step=14, level=float(r.settings.get("level", 0.95)))


def _ratio_metrics(summary: pd.DataFrame) -> list[str]:
    return sorted({m for m in summary["metric"].astype(str) if "ratio" in m or "hazard" in m or "evalue" in m})


def flow_table(flow: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """The cohort flow for people: step, and the contact and comparison counts, small cells withheld.

    ``flow`` is a cohort's flow (it is suppressed here) or one already suppressed by
    :func:`~carecall_eval.compare.suppress.suppress_flow` (it is formatted as it is).  Withheld cells
    (small ones, and those withheld so that no small cell can be recovered from the others) read
    ``withheld``.
    """
    f = flow if "kind" in flow.columns else sup.suppress_flow(flow, threshold)
    shown = pd.DataFrame({"step": f["step"].astype(str).to_numpy(),
                          "": f["kind"].map({"total": "candidates", "excluded": "excluded",
                                             "remaining": "eligible"}).to_numpy()})
    for grp, label in (("contact", "contact"), ("comparison", "comparison")):
        shown[label] = ["withheld" if pd.isna(v) else f"{int(v):,}" for v in f[grp]]
    return shown


def censoring_table(cohort_table: pd.DataFrame, windows, threshold: int) -> pd.DataFrame:
    """Complete and censored follow-up per window and group, safe to show.

    For each group the two cells of a window add up to the group's size (shown in the flow), so they are
    withheld together; and because the censored count grows from one window to the next, a window is shown
    only where the censored count changed by 0 or by at least ``threshold`` since the last window shown (as
    the bundle's Kaplan-Meier points), so that no difference of two shown cells is a small count.
    """
    threshold = sup.check_threshold(threshold)
    rows = []
    for g, lab in ((1, "reached"), (0, "not reached")):
        tt = cohort_table[cohort_table["contact"] == g]
        last = 0
        for w in sorted(windows):
            col = f"followup_{w}"
            if col not in tt.columns:
                continue
            done = int(tt[col].sum())
            cens = int((~tt[col].astype(bool)).sum())
            ok = not (sup.is_small([done], threshold)[0] or sup.is_small([cens], threshold)[0]) \
                and (cens - last == 0 or cens - last >= threshold)
            if ok:
                last = cens
            rows.append({"follow-up window": f"{w} days", "group": lab,
                         "complete": f"{done:,}" if ok else "withheld",
                         "censored by the data end": f"{cens:,}" if ok else "withheld"})
    return pd.DataFrame(rows, columns=["follow-up window", "group", "complete", "censored by the data end"])


def _people_evaluation(ev, threshold: int):
    full = ev.summary
    supp, _ = sup.suppress_metrics(full, threshold)
    flow = getattr(ev.cohort, "flow", None)
    flow_p, flow_tokens = None, []
    if flow is not None and len(flow):
        flow_p = sup.suppress_flow(flow, threshold)
        flow_tokens = sup.withheld_tokens(sup.suppress_flow(flow, 1), flow_p)
    supp = _note_withheld(supp, threshold)
    results, tokens = {}, list(flow_tokens)
    for name, r in ev.results.items():
        own = (supp["estimator"] == name).to_numpy()
        # a sentence of one estimator quotes that estimator's figures (and the cohort's counts)
        mine = sup.withheld_tokens(full[own], supp[own], ratio_metrics=_ratio_metrics(full))
        tokens += mine
        results[name] = _people_result(r, supp[own].drop(columns=["estimator"]), mine + flow_tokens, threshold)
    cohort = _Proxy(ev.cohort, flow=flow_p if flow_p is not None else flow,
                    text=sup.redact_text(ev.cohort.text, flow_tokens, threshold))
    matched = ev.matched
    matched_p = None if matched is None else _Proxy(matched, text=sup.redact_text(matched.text, flow_tokens,
                                                                                  threshold))
    people = _Proxy(ev, results=results, cohort=cohort, matched=matched_p, summary=supp,
                    text="\n".join(f"- {r.text}" for r in results.values()))
    return people, tokens


def _people_other(r, threshold: int, tokens):
    """A result outside the evaluation (the year-earlier retention, the self-check): its own rows suppressed."""
    if r is None:
        return None
    full = r.summary
    supp, _ = sup.suppress_metrics(full, threshold)
    own = sup.withheld_tokens(full, supp, ratio_metrics=_ratio_metrics(full))
    return _people_result(r, _note_withheld(supp, threshold), list(tokens) + own, threshold)


def for_people(rep) -> Any:
    """The report with every table and sentence a person reads passed through the suppression rules.

    Idempotent.  ``rep.kpis`` become :func:`~carecall_eval.compare.suppress.suppress_kpis`'s rows,
    ``rep.evaluation`` answers with suppressed ``results`` (summaries and texts), a ``cohort`` whose
    ``flow`` is the suppressed flow and whose ``text`` is redacted, and a ``matched`` whose ``text`` is
    redacted; other results (retention a year earlier, the self-check, each result of a section such as
    the programme's) get their own rows suppressed; notes and reasons for missing sections are redacted.  ``metrics.json`` is written from
    the full report before this is called (the operator's own use).
    """
    if rep.params.get("for_people"):
        return rep
    t = int(rep.config.small_cell_threshold)
    ev, tokens = (None, []) if rep.evaluation is None else _people_evaluation(rep.evaluation, t)
    changes: dict[str, Any] = {"kpis": sup.suppress_kpis(rep.kpis, t), "evaluation": ev,
                               "notes": [sup.redact_text(n, tokens, t) for n in rep.notes],
                               "missing": {k: sup.redact_text(v, tokens, t) for k, v in rep.missing.items()},
                               "params": {**rep.params, "for_people": True}}
    from ..results import Result

    for f in dataclasses.fields(rep):
        v = getattr(rep, f.name)
        if f.name in changes:
            continue
        if isinstance(v, Result):
            changes[f.name] = _people_other(v, t, tokens)
        elif isinstance(v, dict) and v and all(isinstance(x, Result) for x in v.values()):
            changes[f.name] = {k: _people_other(x, t, tokens) for k, x in v.items()}   # e.g. the programme
    return dataclasses.replace(rep, **changes)
