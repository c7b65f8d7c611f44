# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
bundles = []            # bundle directories written by `carecall-eval export`
out_dir = "reports/compare"
allow_mismatch = False  # True: compare despite differing metric definitions (flagged in a banner)

# %%
import warnings

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import HTML, Markdown, display

import carecall_eval
from carecall_eval.compare import compare
from carecall_eval.narrative import level_label
from carecall_eval.plotting import forest_plot

plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "svg.hashsalt": "carecall"})
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    cmp = compare(*bundles, on_mismatch="warn" if allow_mismatch else "error")

# %%
periods = sorted({b.manifest.get("quarter") or "all data" for b in cmp.bundles})
display(Markdown(f"# Care calls across operators\n\n"
                 f"Operators: **{', '.join(cmp.labels)}**; period: **{', '.join(periods)}**. "
                 "Each operator shared only aggregates and effect estimates with standard errors "
                 "(small cells withheld); no customer-level data left any operator."))
hard = cmp.differences[cmp.differences["severity"] == "definition"]
if len(hard):
    items = "".join(f"<li><b>{r.field}</b>: " + ", ".join(f"{k} = {v}" for k, v in r.values.items()) + "</li>"
                    for r in hard.itertuples())
    display(HTML('<div style="border:3px solid #b00;background:#fee;padding:8px;font-size:110%">'
                 "<b>WARNING: the operators' metric definitions differ.</b> Estimates below are not like for "
                 f"like and the pooled figures mix different quantities:<ul>{items}</ul></div>"))

# %% [markdown]
# ## Key figures side by side

# %%
levels = {b.manifest.get("definitions", {}).get("level") for b in cmp.bundles} - {None}
display(Markdown((f"Intervals are {' / '.join(level_label(lv) for lv in sorted(levels))} confidence intervals; "
                  if levels else "") + '"withheld" means the figure describes too few customers to share.'))
display(cmp.kpi_table())

# %% [markdown]
# ## Effects and random-effects meta-analysis
# Each operator's estimate with its interval, and the pooled estimate (random effects; between-operator
# variance by DerSimonian-Laird and by iterated Paule-Mandel). Ratio effects are pooled on the log scale.
# With few operators the between-operator variance (tau²) is very imprecise.

# %%
def forest(key, xlabel, scale=100.0, reference=0.0):
    r = cmp.meta.get((key, "dl"))
    eff = cmp.effects[cmp.effects["effect"] == key]
    if r is None:
        display(Markdown(f"*{eff['label'].iloc[0]}: not pooled* — "
                         + "; ".join(f"{o}: {n or 'used'}" for o, n in zip(eff["operator"], eff["note"]))))
        return
    s = r.summary
    table = s[s["group"] != "pooled_fixed"].copy()
    it = cmp.meta.get((key, "iterated"))
    if it is not None:
        p = it.summary[it.summary["group"] == "pooled"].copy()
        p["group"] = "pooled (Paule-Mandel)"
        table = pd.concat([table, p])
    table["group"] = table["group"].replace({"pooled": "pooled (DerSimonian-Laird)"})
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.3))
    forest_plot(table, ax=ax, label="group", xlabel=xlabel, scale=scale, reference=reference)
    ax.set_title(eff["label"].iloc[0])
    display(fig)
    plt.close(fig)
    rows = []
    for m in ("dl", "iterated"):
        rr = cmp.meta.get((key, m))
        if rr is None:
            continue
        pooled = rr.summary[rr.summary["group"] == "pooled"].iloc[0]
        rows.append({"between-operator variance": {"dl": "DerSimonian-Laird", "iterated": "Paule-Mandel"}[m],
                     "pooled": pooled["estimate"], "ci_low": pooled["ci_low"], "ci_high": pooled["ci_high"],
                     "tau^2": rr.settings["tau2"], "I^2": rr.settings["i2"], "Q": rr.settings["q"],
                     "p (heterogeneity)": rr.settings["q_pvalue"], "operators": rr.settings["k"]})
    display(pd.DataFrame(rows).round(4))
    display(Markdown(r.text))


forest("spending", "change in theoretical loss, %")

# %%
forest("retention", "hazard ratio of leaving", scale=1.0, reference=1.0)
forest("retention_active", "difference in share still playing at 12 months, pts")

# %%
forest("reach_sms", "change in case reach from the SMS, pts")

# %% [markdown]
# ## Retention curves and reach over time
# Kaplan-Meier points are shared on a coarse grid and only where enough customers are at risk; months with
# too few cases are withheld.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for lab, b in zip(cmp.labels, cmp.bundles):
    km = b.tables["km"]
    for grp, style in (("contact", "-"), ("comparison", "--")):
        g = km[km["group"] == grp]
        if len(g):
            axes[0].step(g["day"], 100 * g["survival"], where="post", linestyle=style, label=f"{lab}, {grp}")
    rs = b.tables["reach_series"]
    if len(rs):
        x = pd.to_datetime(rs["month"] + "-01")
        axes[1].plot(x, 100 * rs["reach"], marker="o", label=lab)
axes[0].set_xlabel("days after index")
axes[0].set_ylabel("still a customer, %")
axes[0].legend(fontsize=8)
axes[1].set_ylabel("cases reached, %")
axes[1].legend(fontsize=8)
for b in cmp.bundles:
    if b.manifest.get("sms_policy_start"):
        axes[1].axvline(pd.Timestamp(b.manifest["sms_policy_start"]), color="grey", linestyle=":", linewidth=1)
fig.autofmt_xdate()
display(fig)
plt.close(fig)

# %% [markdown]
# ## Definitions, suppression and provenance

# %%
if len(cmp.differences):
    display(pd.DataFrame([{"field": r.field, "severity": r.severity, **r.values}
                          for r in cmp.differences.itertuples()]))
else:
    display(Markdown("All bundles use the same metric definitions."))
for n in cmp.notes:
    display(Markdown("* " + n))
prov = pd.DataFrame([{"operator": lab, "quarter": b.manifest.get("quarter") or "all",
                      "data": f"{b.manifest['period']['data_start']} to {b.manifest['period']['data_end']}",
                      "small-cell threshold": b.manifest["small_cell_threshold"],
                      "metric rows with withheld values":
                          b.manifest["suppression"]["metrics"]["rows_with_withheld_values"],
                      "carecall_eval": b.manifest["carecall_eval_version"],
                      "data fingerprint": b.manifest.get("data_fingerprint", "")[:12]}
                     for lab, b in zip(cmp.labels, cmp.bundles)])
display(prov)
display(Markdown(f"Rendered with carecall_eval {carecall_eval.__version__}."))
