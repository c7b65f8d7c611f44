"""Compare operators from their bundles: definitions check, side-by-side KPIs, meta-analysis.

:func:`compare` reads two or more bundles (see :mod:`.bundle`), refuses (or,
with ``on_mismatch="warn"``, loudly flags) bundles whose metric definitions
differ, naming each differing field, lays the headline KPIs side by side and
pools each effect in :data:`~.meta.EFFECTS` with :func:`~.meta.meta_analysis`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataWarning
from ..results import tidy
from .bundle import Bundle, read_bundle
from .meta import EFFECTS, METHODS, meta_analysis

__all__ = ["compare", "Comparison", "DefinitionMismatch", "definition_differences", "KPIS"]

#: Fields under ``definitions`` that only note a difference (how, not what, is estimated).
_SOFT_PREFIXES = ("definitions.design.matching", "definitions.design.covariates",
                  "definitions.estimators.reach.policy_start")
#: Manifest fields outside ``definitions`` that must agree.
_HARD_TOP = ("quarter",)
#: Manifest fields outside ``definitions`` whose differences are noted.
_SOFT_TOP = ("currency", "small_cell_threshold", "carecall_eval_version", "format_version")

#: Side-by-side KPIs: (label, metric, group, uses headline window, kind)
KPIS = (
    ("Phone cases (n)", "reach.overall", "all", False, "n"),
    ("Cases reached", "reach.overall", "all", False, "share"),
    ("Reached before the SMS policy", "reach.before_sms", "before_sms", False, "share"),
    ("Reached after the SMS policy", "reach.after_sms", "after_sms", False, "share"),
    ("Change in reach from the SMS (attempt-level DiD)", "reach.sms_effect", "difference", False, "pp"),
    ("Median call length (s)", "call_length.median_s", "all", False, "seconds"),
    ("Mean call length (s)", "call_length.mean_s", "all", False, "seconds"),
    ("Positive reception", "reception.positive", "answered_calls", False, "share"),
    ("Spending change, naive before/after (reached)", "spending.naive_change", "contact", True, "change"),
    ("Spending change, matched (primary)", "spending.matched_change", "difference", True, "change"),
    ("Still a customer at 12 months (reached)", "retention.account_12m", "contact", False, "share"),
    ("Hazard ratio of leaving", "retention.hazard_ratio", "difference", False, "ratio"),
    ("Any action within 28 days (reached)", "actions.any_28d", "contact", False, "share"),
    ("Any action within 28 days, reached - comparison", "actions.any_28d", "difference", False, "pp"),
)


class DefinitionMismatch(ValueError):
    """Bundles whose metric definitions differ; ``differences`` names each field."""

    def __init__(self, differences: pd.DataFrame):
        self.differences = differences
        lines = [f"  - {r.field}: " + ", ".join(f"{op}={v}" for op, v in r.values.items())
                 for r in differences.itertuples()]
        super().__init__("the bundles use different metric definitions, so their estimates are not comparable:\n"
                         + "\n".join(lines)
                         + "\nRe-export with the same design, or pass on_mismatch='warn' (CLI: --allow-mismatch) "
                           "to compare anyway with these differences flagged.")


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def _fmt(v) -> str:
    return "absent" if v is _ABSENT else repr(v)


_ABSENT = object()


def definition_differences(bundles: list[Bundle], labels: list[str] | None = None) -> pd.DataFrame:
    """Every manifest field that differs between bundles.

    Returns
    -------
    pandas.DataFrame
        ``field``, ``severity`` (``"definition"``: the metrics mean different
        things; ``"note"``: how they were estimated or reported differs) and
        ``values`` (operator -> value), definitions first.
    """
    labels = labels or [b.operator for b in bundles]
    flat = []
    for b in bundles:
        f = {f"definitions.{k}": v for k, v in _flatten(b.manifest.get("definitions", {})).items()}
        for k in _HARD_TOP + _SOFT_TOP:
            f[k] = b.manifest.get(k)
        flat.append(f)
    keys = sorted(set().union(*flat))
    rows = []
    for k in keys:
        vals = [f.get(k, _ABSENT) for f in flat]
        if all(_same(vals[0], v) for v in vals[1:]):
            continue
        soft = k in _SOFT_TOP or k.startswith(_SOFT_PREFIXES)
        rows.append({"field": k, "severity": "note" if soft else "definition",
                     "values": {lab: _fmt(v) for lab, v in zip(labels, vals)}})
    df = pd.DataFrame(rows, columns=["field", "severity", "values"])
    return df.sort_values(["severity", "field"], ignore_index=True,
                          key=lambda s: s.map({"definition": 0, "note": 1}) if s.name == "severity" else s)


def _same(a, b) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a is None and b is None)


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare`.

    Attributes
    ----------
    labels : list of str
        Operator labels, in bundle order.
    bundles : list of Bundle
    differences : pandas.DataFrame
        Output of :func:`definition_differences`.
    kpis : pandas.DataFrame
        Long table: ``kpi, operator, metric, group, estimate, ci_low, ci_high, n, kind``.
    effects : pandas.DataFrame
        Each operator's effect estimates fed to the meta-analyses
        (``effect, operator, estimate, ci_low, ci_high, se, scale, used, note``).
    meta : dict
        ``(effect key, method) -> Result`` of :func:`~.meta.meta_analysis`.
    notes : list of str
    """

    labels: list
    bundles: list
    differences: pd.DataFrame
    kpis: pd.DataFrame
    effects: pd.DataFrame
    meta: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def definitions_differ(self) -> bool:
        return bool((self.differences["severity"] == "definition").any())

    @property
    def summary(self) -> pd.DataFrame:
        """Stacked meta-analysis rows (``effect``, ``tau_method`` first), with tau^2 and I^2 on pooled rows."""
        frames = []
        for (key, method), r in self.meta.items():
            s = r.summary.copy()
            s.insert(0, "tau_method", method)
            s.insert(0, "effect", key)
            pooled = s["group"] == "pooled"
            s.loc[pooled, "tau2"] = r.settings["tau2"]
            s.loc[pooled, "i2"] = r.settings["i2"]
            s.loc[pooled, "q_pvalue"] = r.settings["q_pvalue"]
            frames.append(s)
        if not frames:
            return tidy([])
        return pd.concat(frames, ignore_index=True)

    def kpi_table(self) -> pd.DataFrame:
        """KPIs for people: one row per KPI, one column per operator, formatted text."""
        t = self.kpis.copy()
        t["text"] = [_format_kpi(r) for r in t.itertuples()]
        wide = t.pivot_table(index="kpi", columns="operator", values="text", aggfunc="first", sort=False)
        return wide.reindex(index=[k[0] for k in KPIS], columns=self.labels)

    @property
    def text(self) -> str:
        lines = []
        if self.definitions_differ:
            d = self.differences[self.differences["severity"] == "definition"]
            lines.append("WARNING: metric definitions differ between operators (" + ", ".join(d["field"]) + ").")
        for (key, method), r in self.meta.items():
            if method == "dl":
                lines.append(f"{key}: {r.text}")
        lines += self.notes
        return "\n".join(lines)


def _format_kpi(r) -> str:
    if pd.isna(r.estimate) and r.kind != "n":
        return "withheld" if r.withheld else "-"
    if r.kind == "n":
        return f"{int(r.n):,}" if pd.notna(r.n) else ("withheld" if r.withheld else "-")
    ci = pd.notna(r.ci_low) and pd.notna(r.ci_high)
    if r.kind in ("share",):
        s = f"{r.estimate:.1%}"
        return s + (f" ({r.ci_low:.1%} to {r.ci_high:.1%})" if ci else "")
    if r.kind in ("change", "pp"):
        unit = "" if r.kind == "change" else " pts"
        s = f"{100 * r.estimate:+.1f}{'%' if r.kind == 'change' else unit}"
        return s + (f" ({100 * r.ci_low:+.1f} to {100 * r.ci_high:+.1f})" if ci else "")
    if r.kind == "seconds":
        s = f"{r.estimate:.0f}"
        return s + (f" ({r.ci_low:.0f} to {r.ci_high:.0f})" if ci else "")
    s = f"{r.estimate:.2f}"
    return s + (f" ({r.ci_low:.2f} to {r.ci_high:.2f})" if ci else "")


def _row(b: Bundle, metric: str, group: str, headline: bool):
    m = b.metrics
    sel = (m["metric"] == metric) & (m["group"].astype(str) == group)
    if headline:
        sel &= m["window"] == b.definitions.get("window")
    rows = m[sel]
    return rows.iloc[0] if len(rows) == 1 else None


def compare(*bundles, methods=METHODS, on_mismatch: str = "error") -> Comparison:
    """Compare operators from their aggregate bundles.

    Parameters
    ----------
    *bundles : path or Bundle
        Two or more bundle directories (or bundles already read).
    methods : sequence of {"dl", "iterated"}
        Between-operator variance estimators to report.
    on_mismatch : {"error", "warn"}
        What to do when metric definitions differ (windows, outcome, contact
        definition, comparison pool, quarter ...): raise
        :class:`DefinitionMismatch` naming every differing field, or warn and
        record the differences (the report shows them in a banner).

    Returns
    -------
    Comparison
    """
    if len(bundles) == 1 and isinstance(bundles[0], (list, tuple)):
        bundles = tuple(bundles[0])
    if on_mismatch not in ("error", "warn"):
        raise ValueError(f"on_mismatch must be one of {{'error', 'warn'}}, got {on_mismatch!r}")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: {m!r} is not one of {{'dl', 'iterated'}}")
    bs = [b if isinstance(b, Bundle) else read_bundle(b) for b in bundles]
    if len(bs) < 2:
        raise ValueError(f"compare needs at least two bundles, got {len(bs)}")
    labels = [b.operator for b in bs]
    if len(set(labels)) < len(labels):
        labels = [f"{b.operator} ({b.manifest.get('quarter') or 'all'})" for b in bs]
    if len(set(labels)) < len(labels):
        raise ValueError(f"compare: the same operator and period appear twice: {labels}")
    diffs = definition_differences(bs, labels)
    hard = diffs[diffs["severity"] == "definition"]
    notes = []
    if len(hard):
        if on_mismatch == "error":
            raise DefinitionMismatch(hard.reset_index(drop=True))
        msg = "metric definitions differ: " + "; ".join(
            f"{r.field} (" + ", ".join(f"{k}={v}" for k, v in r.values.items()) + ")" for r in hard.itertuples())
        warnings.warn(msg, DataWarning, stacklevel=2)
        notes.append("WARNING: " + msg)

    kpi_rows = []
    for lab, b in zip(labels, bs):
        for name, metric, group, headline, kind in KPIS:
            r = _row(b, metric, group, headline)
            kpi_rows.append({"kpi": name, "operator": lab, "metric": metric, "group": group, "kind": kind,
                             "estimate": np.nan if r is None else r["estimate"],
                             "ci_low": np.nan if r is None else r["ci_low"],
                             "ci_high": np.nan if r is None else r["ci_high"],
                             "n": np.nan if r is None else r["n"],
                             "withheld": bool(r is not None and isinstance(r.get("suppressed"), str)
                                              and r.get("suppressed") != "")})
    kpis = pd.DataFrame(kpi_rows)

    eff_rows, meta = [], {}
    for e in EFFECTS:
        ests, ses, labs = [], [], []
        for lab, b in zip(labels, bs):
            r = _row(b, e.metric, e.group, e.headline_window)
            note = ""
            if r is None:
                note = "not in bundle"
            elif pd.isna(r["estimate"]) or pd.isna(r["se"]):
                withheld = isinstance(r["suppressed"], str) and r["suppressed"]
                note = "withheld (small cells)" if withheld else "not estimated"
            elif r["se_scale"] != e.scale:
                note = f"stored on the {r['se_scale']} scale, expected {e.scale}"
            used = note == ""
            eff_rows.append({"effect": e.key, "label": e.label, "operator": lab,
                             "estimate": np.nan if r is None else r["estimate"],
                             "ci_low": np.nan if r is None else r["ci_low"],
                             "ci_high": np.nan if r is None else r["ci_high"],
                             "se": np.nan if r is None else r["se"], "scale": e.scale, "used": used, "note": note})
            if used:
                ests.append(float(r["estimate"]))
                ses.append(float(r["se"]))
                labs.append(lab)
        if len(ests) >= 2:
            for m in methods:
                meta[(e.key, m)] = meta_analysis(ests, ses, labs, scale=e.scale, method=m, metric=e.metric)
        else:
            notes.append(f"{e.label}: not pooled ({len(ests)} operator(s) with a usable estimate).")
    soft = diffs[diffs["severity"] == "note"]
    for r in soft.itertuples():
        notes.append(f"Note: {r.field} differs (" + ", ".join(f"{k}={v}" for k, v in r.values.items()) + ").")
    return Comparison(labels, bs, diffs, kpis, pd.DataFrame(eff_rows), meta, notes)
