# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python (carecall-eval)
#     language: python
#     name: carecall-eval
# ---

# %% [markdown]
# # Research walkthrough: the matched analysis of care calls, step by step
#
# For researchers who want to see every step, check the diagnostics and change things. In a checkout, open
# it with `jupyter lab notebooks/research_walkthrough.py` (jupytext opens the `.py` as a notebook, kernel
# `carecall-eval`); from an installed package, the source is
# `carecall_eval.report.render.notebook_path("research_walkthrough")`. Run it end to end with
# `jupytext --to ipynb` then `papermill research_walkthrough.ipynb out.ipynb -p data DIR` (the documentation
# site shows it executed on the sample). Executed notebooks are build outputs: do not commit them.
#
# Steps: load and validate -> cohort (who, indexed when) -> matching and balance -> spending (naive beside
# matched, event study, placebo, E-value, subgroups) -> alternative designs (IPW instead of matching,
# unreached vs not-selected, randomized arms) -> retention, reach and actions.

# %% tags=["parameters"]
data = ""                 # operator data directory; empty: the sample that ships with carecall_eval
window = 84               # headline spending window (days)
level = 0.95              # confidence level
placebo = True            # placebo analysis at a pseudo-index (slow)
alternatives = True       # also run the alternative designs

# %%
import warnings

import matplotlib.pyplot as plt
import pandas as pd

import carecall_eval as ce
from carecall_eval import datasets, plotting
from carecall_eval.narrative import ci, spct1
from carecall_eval.outcomes import actions as act
from carecall_eval.outcomes import reach
from carecall_eval.report import display as rd

rd.setup()                # fixed fonts and seeds (and the Agg backend, for a plain `python` run) ...
# %matplotlib inline
pd.set_option("display.width", 160)   # ... while in Jupyter, plt.show() draws the figure in the notebook
if not data:
    data = str(datasets.sample_path())

# %% [markdown]
# ## 1. Load and validate
#
# `load` validates against the data contract and raises with every problem named; `validate` returns the
# report without raising. Activity stays in DuckDB; only small tables come back as pandas.

# %%
report = ce.validate(data)
print(report.message())
ds = ce.load(data)
print(ds, ds.config, f"data {ds.data_start.date()} to {ds.data_end.date()}", ds.fingerprint()[:16], sep="\n")

# %% [markdown]
# ## 2. The cohort: reached vs unreached phone cases, both indexed at opening
#
# Both groups are indexed on the day the case was opened: customers are selected at a peak of their play,
# and indexing the reached at their answered call (later, further down the decaying peak) would credit the
# call with part of the natural decline. The flow table shows who was excluded and why.

# %%
design = ce.StudyDesign()
cohort = ce.build_cohort(ds, design)
print(cohort.text)
cohort.flow

# %% [markdown]
# ## 3. Matching and balance
#
# Nearest neighbour on the logit propensity score, 5:1 with replacement, caliper 0.2 SD, exact on trigger
# (the design's `MatchingSpec`). Check balance before trusting anything downstream: |SMD| < 0.1 and variance
# ratios near 1.

# %%
m = cohort.match()
print(m.text)
bal = m.balance()
bal[["smd_before", "smd_after", "var_ratio_before", "var_ratio_after", "ecdf_max_after"]].round(3)

# %%
ax = plotting.love_plot(m)
plt.show()

# %% [markdown]
# ## 4. Spending: naive beside matched
#
# The naive before/after among reached customers is what operators quote; the matched PPML estimate is the
# primary one. The event study shows why they differ: both groups peak at week 0 and fall afterwards.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    sp = ce.spending_effect(ds, ce.cohorts.MatchedSample(cohort, m), window=window, level=level, placebo=placebo)
print(sp.text)
mt, nv = sp.metric("spending.matched_change", "difference"), sp.metric("spending.naive_change", "contact")
print(f"\nHeadline ({sp.settings['window']} days): naive {spct1(nv['estimate'])}, matched {spct1(mt['estimate'])} "
      f"({ci(mt['ci_low'], mt['ci_high'], sp.settings['level'], fmt=spct1)})")
sp.summary[sp.summary["metric"].isin(["spending.naive_change", "spending.matched_change",
                                      "spending.post_only_change", "spending.did_change",
                                      "spending.comparison_change", "spending.placebo_change",
                                      "spending.evalue", "spending.mde"])].round(4)

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 4))
plotting.event_study_plot(sp, ax=axes[0], currency=ds.config.currency)
plotting.waterfall_plot(sp, ax=axes[1])
plt.show()
plotting.estimates_plot(sp)
plt.show()

# %% [markdown]
# ### Placebo and E-value
#
# The placebo repeats the whole analysis at a pseudo-index `pre_window` days before the real one, where no
# call can have acted: its estimate should be near 0. The E-value is the minimum strength of association
# (risk-ratio scale) an unmeasured confounder would need with both answering and spending to explain the
# matched estimate away; its `ci_low` column is the E-value of the interval limit.

# %%
sp.summary[sp.summary["metric"].isin(["spending.placebo_change", "spending.evalue"])]

# %% [markdown]
# ### Subgroups
#
# Matched PPML within trigger type, age band, gender and main product (subgroups with fewer than 20 in
# either group are skipped). Read them as descriptive: many intervals, no correction for multiplicity.

# %%
sub = sp.get_plot_data("subgroups")
if len(sub):
    plotting.forest_plot(sub, xlabel="change in theoretical loss, %")
    plt.show()
sub.round(3)

# %% [markdown]
# ## 5. Alternative designs
#
# * **IPW instead of matching**: ATT inverse-probability weights on the same propensity model.
# * **Unreached vs not selected**: intention to treat; every opened case against customers with a qualifying
#   trigger and no case, indexed at the trigger.
# * **Randomized arms**: where the operator randomised call / letter / control, the unbiased benchmark.
#
# Each is wrapped so that a design the data cannot support prints why instead of stopping the notebook.

# %%
alt = {}
if alternatives:
    for name, make in {
        "ipw": lambda: ce.spending_effect(ds, cohort.sample(method="ipw", ratio=1, replace=False, caliper=None,
                                                            exact=()), window=window, level=level,
                                          placebo=False, subgroups=False),
        "not_selected": lambda: ce.spending_effect(
            ds, ce.build_cohort(ds, ce.StudyDesign(contact="selected", comparison="not_selected")),
            window=window, level=level, placebo=False, subgroups=False),
        "randomized": lambda: ce.randomized_effects(
            ds, ce.build_cohort(ds, ce.StudyDesign(contact="randomized", comparison="arms")), window=window,
            level=level),
    }.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                alt[name] = make()
            print(f"{name}: {alt[name].text}\n")
        except Exception as exc:  # a design the data cannot support
            print(f"{name}: not estimable here ({type(exc).__name__}: {exc})\n")
rows = [r.summary.assign(design=k) for k, r in alt.items()]
if rows:
    t = pd.concat(rows, ignore_index=True)
    t = t[t["metric"].isin(["spending.matched_change", "spending.naive_change", "spending.rct_itt_change",
                            "spending.rct_pp_change"]) & (t.get("window", window) == window)]
    display_cols = ["design", "metric", "group", "estimate", "ci_low", "ci_high", "n"]
    t[display_cols].round(4)

# %% [markdown]
# ## 6. Retention, reach and actions

# %%
matched_sample = ce.cohorts.MatchedSample(cohort, m)   # the cohort, its matched rows and the cluster rule
ret = ce.retention(ds, matched_sample, level=level)
print(ret.text)
plotting.km_plot(ret)
plt.show()

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    rc = reach.sms_effect(ds, level=level)
print(rc.text)
fig, axes = plt.subplots(1, 2, figsize=(15, 4))
plotting.reach_its_plot(rc, ax=axes[0])
plotting.answer_rate_plot(rc, ax=axes[1])
plt.show()

# %%
with warnings.catch_warnings():   # rows whose 28 days are cut by the data end are left out (said once here)
    warnings.simplefilter("ignore", ce.errors.FollowupWarning)
    ac = act.actions(ds, matched_sample, level=level)
print(ac.text)
plotting.actions_plot(ac)
plt.show()

# %% [markdown]
# ## 7. Running the programme: when to call, how fast, who benefits, how long, callers, repeat contact
#
# Six estimators for the responsible-gambling team, each with the one signature (`carecall_eval.outcomes.programme`;
# sentences from `carecall_eval.narrative.programme`). None runs in `evaluate`; the quarterly report computes them.
#
# **When to call.** One attempt-level logit (attempt number, hour, weekday, month, the SMS term, case mix and, when
# every attempt names its caller, the caller); each hour x weekday slot's rate is the mean predicted chance of
# every modelled attempt moved into that slot, so slots are compared for the same customers.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ce.errors.ConvergenceWarning)
    tm = ce.answer_timing(ds, level=level)
print(tm.text)
fig, axes = plt.subplots(1, 2, figsize=(16, 4))
plotting.answer_heatmap(tm, ax=axes[0])
plotting.sms_timing_plot(tm, ax=axes[1])
plt.show()
tm.summary[tm.summary["metric"].isin(["timing.hour_log_odds", "timing.weekday_log_odds", "timing.hour_test",
                                      "timing.weekday_test"])]

# %% [markdown]
# **How fast cases are worked.** Days from trigger to opening, first attempt and reach, by quarter; the matched
# effect by band of days from trigger to contact (comparisons follow their matched set; each row's own days from
# trigger to opening is a covariate, since a later opening starts the window further down the decaying peak).

# %%
sp_ = ce.case_speed(ds, matched_sample, level=level, window=window)
print(sp_.text)
plotting.speed_plot(sp_)
plt.show()

# %% [markdown]
# **Who benefits.** The spending module's subgroup estimates plus tertiles of baseline theoretical loss (each
# customer in their own tertile: a subgroup defined by the reached customer's pre-window level alone selects
# customers whose spending regresses more than their comparisons'); Cochran's Q per dimension, Holm across them.

# %%
ht = ce.effect_heterogeneity(ds, matched_sample, level=level, window=window)
print(ht.text)
plotting.heterogeneity_plot(ht)
plt.show()
ht.summary[ht.summary["metric"] == "heterogeneity.q_test"][["group", "estimate", "q", "df", "i2", "p_holm"]]

# %% [markdown]
# **Does it last.** Each window against its own complete-follow-up comparison (the numbers of
# `spending.matched_change` at that window), and the same windows on the customers followed for the longest one.

# %%
du = ce.effect_durability(ds, matched_sample, level=level)
print(du.text)
plotting.durability_plot(du)
plt.show()

# %% [markdown]
# **Callers** (the operator's own use only). Random-intercept logits by the Laplace approximation and normal random
# effects, each averaged over the between-caller sd (uniform prior), so a caller with a dozen calls is pulled
# towards the average; `details["pseudonyms"]` holds the agent-id key (never export it).

# %%
cl_ = ce.caller_profiles(ds, matched_sample, level=level, window=window)
print(cl_.text)
fig, axes = plt.subplots(1, 2, figsize=(15, 4))
plotting.caterpillar_plot(cl_, measure="answer", ax=axes[0])
plotting.caterpillar_plot(cl_, measure="spending", ax=axes[1])
plt.show()

# %% [markdown]
# **Repeat contact.** Another case within 12 months (all first cases, and reached vs matched unreached), and
# reached-again vs not-reached-again among later cases of customers reached before, as far as the data allow.

# %%
with warnings.catch_warnings():   # matched rows without 12 months of follow-up are left out (said here)
    warnings.simplefilter("ignore", ce.errors.FollowupWarning)
    rp = ce.repeat_contact(ds, matched_sample, level=level, window=window)
print(rp.text)

# %% [markdown]
# ## 8. Everything at once, with stable metric ids
#
# `evaluate` runs the same steps for a design and stacks every estimator's rows; this is what reports and
# exports read (`carecall-eval evaluate DIR --out metrics.json`).

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ev = ce.evaluate(ds, design, level=level, window=window, placebo=False)
ev.summary.groupby("estimator").size()
