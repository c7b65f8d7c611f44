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

# Quarterly care-call report: rendered by `carecall-eval report --data DIR --quarter 2025Q3 --out reports/`,
# which executes this file with papermill and exports it as HTML without code. The numbers come from
# carecall_eval.report.context.build_quarterly; this notebook lays them out.

# %% tags=["parameters"]
data = "../data/sample"          # operator data directory
quarter = "2025Q4"               # report quarter
design = ""                      # study design file (TOML or JSON); empty: the default design
out_dir = "."                    # where metrics.json and metrics.csv are written
placebo = True                   # run the placebo check (slow; off in the CI setting)
selfcheck_replicates = 20        # replicates of the self-check (section 8) when computed here
pool_quarters = 4                # quarters of cases pooled for the effect estimates
rendered_at = ""                 # render timestamp (set by the renderer)
git_commit = ""                  # commit of the code (set by the renderer)
git_uncommitted_changes = False  # whether the package had uncommitted changes
context_file = ""                # figures already computed by the renderer (a pickle it wrote); empty: compute here

# %%
import html
import warnings
from pathlib import Path

import pandas as pd

from carecall_eval import plotting
from carecall_eval.narrative import ci, horizon_phrase, level_label, spct1
from carecall_eval.report import display as rd
from carecall_eval.report.context import build_quarterly, load_report, provenance
from carecall_eval.report.quarters import kpi_table

rd.setup()
warnings.filterwarnings("ignore")  # the library's caveats are collected into the data-quality section

if context_file:   # the renderer computed everything (with progress lines); this notebook lays it out
    rep = load_report(context_file)
else:
    rep = build_quarterly(data, quarter, design or None, placebo=placebo, pool_quarters=pool_quarters,
                          selfcheck_replicates=selfcheck_replicates)
written = rep.write_metrics(out_dir)   # full figures, for the operator's own use
rep = rep.for_people()                  # below, every table and sentence: small cells withheld (bundle rules)
ev = rep.evaluation
cfg = rep.config
T = cfg.small_cell_threshold
q = rep.quarter
ds = rep.dataset
data_start, data_end = pd.Timestamp(ds.data_start).date(), pd.Timestamp(ds.data_end).date()
res = ev.results if ev is not None else {}


def missing(section: str, text: str | None = None) -> None:
    rd.show_markdown(f'<p class="missing"><b>Not available.</b> {html.escape(text or rep.missing[section])}.</p>')


def _pp0(x: float) -> str:
    return f"{100 * x:+.0f}"


def note(text: str) -> None:
    rd.show_markdown(f'<p class="note">{html.escape(text)}</p>')


def row(result, metric, group=None, **where):
    s = result.summary
    s = s[s["metric"] == metric]
    if group is not None:
        s = s[s["group"] == group]
    for k, v in where.items():
        s = s[s[k] == v]
    return s.iloc[0] if len(s) == 1 else None


# %%
start, end = rep.cohort_period
rd.show_markdown(
    f"# {html.escape(cfg.operator)} care calls: quarterly report {q}\n\n"
    f"Responsible-gambling care calls of **{html.escape(cfg.operator)}** in **{q}** ({q.start} to {q.end}), "
    f"with the four quarters before it for comparison. Data: {data_start} to {data_end}; amounts in "
    f"{html.escape(cfg.currency)}. Each section says which customers it describes."
)
if not rep.complete_quarter:
    note(f"{q} is not complete in the data (they end on {data_end}): its figures cover part of the quarter.")

# %%
bullets = []
kp = rep.kpis.set_index(["metric", "quarter"])


def kpi(metric, qq=q.label):
    return kp.loc[(metric, qq)] if (metric, qq) in kp.index else None


r_now, r_prev = kpi("kpi.reach_rate"), kpi("kpi.reach_rate", q.shift(-1).label)
if r_now is not None and r_now["n"] > 0:
    bullets.append(f"**Reach:** {rd.pct(r_now['estimate'], 0)} of {r_now['n']:,} phone cases opened in {q} were "
                   f"answered" + (f" ({rd.pct(r_prev['estimate'], 0)} in {q.shift(-1)})."
                                  if r_prev is not None and r_prev["n"] > 0 else "."))
if "reach" in res and row(res["reach"], "reach.sms_effect") is not None:
    e = row(res["reach"], "reach.sms_effect")
    bullets.append(f"**Missed-call SMS:** it raised reach by about {100 * e['estimate']:.0f} percentage points "
                   f"({ci(e['ci_low'], e['ci_high'], res['reach'].settings['level'], fmt=_pp0)}).")
if "spending" in res:
    nv = row(res["spending"], "spending.naive_change", "contact", window=84)
    mt = row(res["spending"], "spending.matched_change", "difference", window=84)
    if nv is not None and mt is not None:
        bullets.append(f"**Spending:** reached customers' theoretical loss changed by "
                       f"{rd.pct(nv['estimate'], 0, True)} after the call, but comparable customers who were not "
                       f"reached changed too; the call's own effect is estimated at {rd.pct(mt['estimate'], 0, True)} "
                       f"({ci(mt['ci_low'], mt['ci_high'], res['spending'].settings['level'])})"
                       + (", which cannot be told apart from no effect." if mt["ci_low"] <= 0 <= mt["ci_high"]
                          else "."))
if rep.retention is not None:
    rc = row(rep.retention, "retention.account_12m", "contact")
    if rc is not None and pd.isna(rc["estimate"]):   # nobody could be followed a year: a reason, never a number
        bullets.append(f"**Retention:** {rc.get('note', 'not available')} (cases opened in {rep.retention_quarter}).")
    elif rc is not None:
        bullets.append(f"**Retention:** {rd.pct(rc['estimate'], 0)} of customers reached in {rep.retention_quarter} "
                       "were still customers a year later.")
if "actions" in res:
    act_days = res["actions"].settings["days"]
    a = row(res["actions"], f"actions.any_{act_days}d", "difference")
    c = row(res["actions"], f"actions.any_{act_days}d", "contact")
    if a is not None and c is not None and pd.notna(a["estimate"]):
        bullets.append(f"**Actions:** {rd.pct(c['estimate'], 0)} of reached customers set a limit, paused or "
                       f"self-excluded within {horizon_phrase(act_days)} ({rd.pts(a['estimate'], 0)} against "
                       "comparable customers).")
if bullets:
    import re as _re

    items = "".join("<li>" + _re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(b, quote=False)) + "</li>"
                    for b in bullets)
    rd.show_markdown(f'<div class="headline"><ul>{items}</ul></div>')

# %% [markdown]
# ## 1. Headline figures

# %%
rd.show_markdown(
    f"Cases, reach and SMS count by the quarter the case was opened; attempts, call length, outcomes and "
    f"reception by the quarter of the call. Counts below {T} (the operator's small-cell threshold) are shown "
    f"as <{T}; shares based on them likewise.".replace("<", "&lt;"))
rd.show_table(kpi_table(rep.kpis, threshold=T), caption=f"{q} with the four quarters before it")

# %% [markdown]
# ## 2. Reach and the missed-call SMS

# %%
if "reach" not in res:
    missing("evaluation")
else:
    reach = res["reach"]
    rd.show_markdown(reach.text)
    if "sms_policy" in rep.missing:
        missing("sms_policy")
    rows = []
    names = {"reach.before_sms": "Reach before the SMS policy", "reach.after_sms": "Reach after the SMS policy",
             "reach.sms_effect": "Effect of the SMS on reach (primary)",
             "reach.after_sms_without_policy": "Reach after, had there been no SMS",
             "reach.sms_difference": "Raw after - before (also moves with trends)",
             "reach.its_level_change": "Interrupted time series: level change (for comparison)"}
    for m, label in names.items():
        r = row(reach, m)
        if r is not None:
            diff = r["group"] == "difference"
            rows.append({"": label, "estimate": rd.pts(r["estimate"]) if diff else rd.pct(r["estimate"]),
                         f"{level_label(reach.settings['level'])} CI": (rd.pts_ci(r["ci_low"], r["ci_high"]) if diff
                                    else rd.ci_pct(r["ci_low"], r["ci_high"], signed=False)),
                         "phone cases": rd.suppress(r["n"], T)})
    if rows:
        rd.show_table(pd.DataFrame(rows), index=False)
    fig, ax = rd.figure(9, 4)
    try:
        plotting.reach_its_plot(reach, ax=ax)
    except KeyError:
        plotting.reach_its_plot({"weekly": reach.get_plot_data("weekly"), "policy_start": None}, ax=ax)
    ax.set_title("Weekly reach of phone cases" + (" around the SMS policy" if cfg.sms_policy_start else ""))
    rd.show_figure(fig, "Weekly share of phone cases reached, with the interrupted-time-series fit",
                   "Dots: weekly share of phone cases reached (size: number of cases). Line: segmented fit; "
                   "dashed: the pre-policy trend carried forward. Red line: SMS policy starts.")
    fig, ax = rd.figure(8, 3.6)
    plotting.answer_rate_plot(reach, ax=ax)
    ax.set_title("Answer rate by attempt number, before and after the SMS policy")
    rd.show_figure(fig, "Answer rate by attempt number before and after the SMS policy",
                   f"Bars: share of attempts answered, with {level_label(reach.settings['level'])} intervals. "
                   "The SMS follows unanswered attempts, "
                   "so it can only change the later ones.")

# %% [markdown]
# ## 3. Spending after a call

# %%
if "spending" not in res:
    missing("evaluation")
else:
    sp = res["spending"]
    w = sp.settings["window"]
    sp_lv = level_label(sp.settings["level"])
    rd.show_markdown(
        f"**Who:** phone cases opened from {start or data_start} to {end} ({pool_quarters} quarters pooled), the "
        f"latest whose {w}-day follow-up is complete by the end of {q}. Reached customers are compared with "
        f"customers whose case was opened the same way but who never answered, matched on their play and "
        f"profile before the case. Theoretical loss (stakes x house edge) in the {w} days after the case was opened "
        f"is compared with the {ev.design.pre_window} days before.")
    nv = row(sp, "spending.naive_change", "contact", window=w)
    mt = row(sp, "spending.matched_change", "difference", window=w)
    cc = row(sp, "spending.comparison_change", "comparison", window=w)
    labels = [("spending.naive_change", "contact", "Naive before/after, reached customers (what is usually quoted)"),
              ("spending.comparison_change", "comparison", "Same change among matched customers not reached"),
              ("spending.matched_change", "difference", "Matched estimate: effect of the call (primary)"),
              ("spending.did_change", "difference", "Difference in differences (reference only)"),
              ("spending.placebo_change", "difference", f"Placebo, {ev.design.pre_window} days earlier (should be 0)")]
    rows = []
    for m, g, label in labels:
        r = row(sp, m, g, window=w)
        if r is not None:
            rows.append({"": label, "change": rd.pct(r["estimate"], 1, True),
                         f"{sp_lv} CI": rd.ci_pct(r["ci_low"], r["ci_high"]), "customers": rd.suppress(r["n"], T)})
    rd.show_table(pd.DataFrame(rows), index=False, caption=f"Change in theoretical loss, {w} days after vs before")
    if nv is not None and mt is not None and cc is not None:
        rd.show_markdown(
            f"**Why the two figures differ.** Customers are called when their play is at a peak, and play at a "
            f"peak falls back by itself: the matched customers who were never reached changed by "
            f"{rd.pct(cc['estimate'], 0, True)} over the same days, so "
            + ("all" if cc["estimate"] * nv["estimate"] > 0 and abs(cc["estimate"]) >= abs(nv["estimate"])
               else "much") +
            f" of the naive {rd.pct(nv['estimate'], 0, True)} would have happened without any call. "
            f"The matched estimate compares reached customers with those similar customers and so counts only "
            f"what the call added: {rd.pct(mt['estimate'], 1, True)} "
            f"({ci(mt['ci_low'], mt['ci_high'], sp.settings['level'], fmt=spct1)})"
            + (", which cannot be told apart from no effect." if mt["ci_low"] <= 0 <= mt["ci_high"] else "."))
    mde = row(sp, "spending.mde")
    if mde is not None:
        rd.show_markdown(f"With the numbers of one quarter, only a reduction of about {rd.pct(-mde['estimate'], 0)} "
                         f"or more would reliably show up; pooling quarters narrows the interval.")
    fig, ax = rd.figure(9, 4)
    plotting.event_study_plot(sp, ax=ax, currency=cfg.currency)
    rd.show_figure(fig, "Weekly mean theoretical loss around the case opening, reached vs matched comparison",
                   "Both groups peak at week 0 (when the case is opened) and fall afterwards; only the gap "
                   f"between the lines after week 0 can be credited to the call. Bands: {sp_lv} intervals.")
    fig, ax = rd.figure(8, 4.2)
    plotting.waterfall_plot(sp, ax=ax)
    rd.show_figure(fig, "Waterfall: the naive change split into what would have happened anyway and the call",
                   "The reached customers' spending before the case is set to 100; the naive change is split into "
                   "what would have happened anyway (from the matched comparison) and what the call added.")
    fig, ax = rd.figure(8, 3)
    plotting.estimates_plot(sp, ax=ax)
    ax.set_title("The estimators side by side")
    rd.show_figure(fig, f"Every spending estimator with its {sp_lv} interval",
                   f"Every estimator with its {sp_lv} interval; the matched estimate (blue) is the primary one.")

# %% [markdown]
# ## 4. Retention after 12 months

# %%
if rep.retention is None:
    missing("retention")
else:
    rt = rep.retention
    rd.show_markdown(f"**Who:** phone cases opened in {rep.retention_quarter}, a year before {q}, so that a full "
                     f"year of follow-up is available; reached customers against matched customers who were not "
                     f"reached. *Still a customer*: account not closed and no self-exclusion for good.")
    rd.show_markdown(rt.text)
    rt_level = level_label(rt.settings["level"])
    rows = []
    for m, label in (("retention.account_12m", "Still a customer at 12 months"),
                     ("retention.active_12m", "Played in months 10-12")):
        for g in ("contact", "comparison", "difference"):
            r = row(rt, m, g)
            if r is not None:
                unobserved = pd.isna(r["estimate"]) and isinstance(r.get("note"), str)
                rows.append({"": label, "group": {"contact": "reached", "comparison": "matched, not reached",
                                                  "difference": "difference"}[g],
                             "estimate": (r["note"] if unobserved else rd.pts(r["estimate"]) if g == "difference"
                                          else rd.pct(r["estimate"])),
                             f"{rt_level} CI": (rd.pts_ci(r["ci_low"], r["ci_high"]) if g == "difference"
                                                else rd.ci_pct(r["ci_low"], r["ci_high"], signed=False)),
                             "customers": rd.suppress(r["n"], T)})
    rd.show_table(pd.DataFrame(rows), index=False)
    fig, ax = rd.figure(8, 4)
    plotting.km_plot(rt, ax=ax)
    ax.set_title(f"Still a customer after the case (cases opened in {rep.retention_quarter})")
    rd.show_figure(fig, "Kaplan-Meier curves of remaining a customer, reached vs matched comparison",
                   f"Kaplan-Meier estimate with {rt_level} bands; dotted line: "
                   f"{horizon_phrase(rt.settings['horizon'])}.")

# %% [markdown]
# ## 5. Actions within 28 days

# %%
if "actions" not in res:
    missing("evaluation")
else:
    ac = res["actions"]
    rd.show_markdown(f"**Who:** the same cohort as the spending section (cases opened {start or data_start} to "
                     f"{end}), reached customers against matched customers who were not reached.")
    rd.show_markdown(ac.text)
    fig, ax = rd.figure(8, 3.6)
    plotting.actions_plot(ac, ax=ax)
    act_within = horizon_phrase(ac.settings["days"])
    ax.set_title(f"Responsible-gambling actions within {act_within} of the case")
    rd.show_figure(fig, f"Share of customers with each action within {act_within}, reached vs comparison",
                   f"Share of customers who set or lowered a limit, paused or self-excluded within {act_within}, "
                   f"with {level_label(ac.settings['level'])} intervals.")

# %% [markdown]
# ## When to call

# %%
# Running the programme (issue 16): figures for the care-call team, computed in-process by build_quarterly
from carecall_eval.compare import suppress as sup
from carecall_eval.narrative import programme as pg_text

prog = getattr(rep, "programme", {}) or {}


def shown(result):
    """The result's rows with small cells withheld (the bundle's rules)."""
    return sup.suppress_metrics(result.summary, T)[0]


def prog_missing(name: str) -> None:
    why = rep.missing.get(f"programme.{name}") or ("the effect estimates could not be computed" if ev is None
                                                    else "this section was not computed")
    missing("", why)


if "timing" not in prog:
    prog_missing("timing")
else:
    tm = prog["timing"]
    tm_rows = shown(tm)
    tm_lv = level_label(tm.settings["level"])
    rd.show_markdown(f"**Who:** every phone attempt in the data ({tm.settings['n_attempts']:,} attempts of "
                     f"{tm.settings['n_cases']:,} cases, {data_start} to {data_end}). Each slot's answer rate is "
                     "what the same attempts (the same customers, attempt numbers, months"
                     + (" and callers" if tm.settings.get("by_caller") else "") + ") would have achieved had they "
                     "all been made then, so slots are compared like with like.")
    rd.show_markdown(html.escape(pg_text.timing_text(tm_rows, tm.settings)))
    fig, ax = rd.figure(9, 4.2)
    plotting.answer_heatmap(tm, ax=ax)
    rd.show_figure(fig, "Heatmap of the share of attempts answered by weekday and hour of day",
                   "Each cell: the share of attempts that would be answered in that hour and weekday, for the same "
                   "attempts (greener is better). Read across a row for the best hour, down a column for the "
                   "best day.")
    slot_rows = []
    for m, label in (("timing.best_slot", "Best slot"), ("timing.worst_slot", "Worst slot")):
        r = row(tm, m)
        if r is not None and pd.notna(r["estimate"]):
            slot_rows.append({"": label, "slot": f"{r['weekday']} {int(r['hour']):02d}h",
                              "answered": rd.pct(r["estimate"], 0),
                              f"{tm_lv} CI": rd.ci_pct(r["ci_low"], r["ci_high"], 0, signed=False),
                              "attempts made in the slot": rd.suppress(r["n"], T)})
    if slot_rows:
        rd.show_table(pd.DataFrame(slot_rows), index=False)
    if len(tm.get_plot_data("sms_to_answer")):
        fig, ax = rd.figure(8, 3.4)
        plotting.sms_timing_plot(tm, ax=ax)
        ax.set_title("After the missed-call SMS: when customers answered")
        rd.show_figure(fig, "Hours from the missed-call SMS to the answered call",
                       "Share of the customers who answered after the SMS, by hours from the SMS to the answered "
                       "call; dotted line: the operator's SMS window.")

# %% [markdown]
# ## How fast cases are worked

# %%
if "speed" not in prog:
    prog_missing("speed")
else:
    sp_ = prog["speed"]
    sp_rows = shown(sp_)
    rd.show_markdown(f"**Who:** every phone case in the data for the times; the effect by time to contact uses the "
                     f"effect cohort (cases opened {start or data_start} to {end}), reached customers against "
                     "matched customers who were not reached.")
    rd.show_markdown(html.escape(pg_text.speed_text(sp_rows, sp_.settings)))
    quarters = [x.label for x in q.previous(4)] + [q.label]
    tab = []
    for stem, words in (("trigger_to_opening", "trigger to opening"),
                        ("opening_to_first_attempt", "opening to first attempt"),
                        ("first_attempt_to_reach", "first attempt to reach"), ("trigger_to_reach", "trigger to reach")):
        line = {"median days from": words}
        for qq in quarters:
            r_shown = sp_rows[(sp_rows["metric"] == f"speed.{stem}_median_days") & (sp_rows["group"] == qq)]
            ok = len(r_shown) and pd.notna(r_shown["estimate"].iloc[0])
            line[qq] = f"{r_shown['estimate'].iloc[0]:.0f}" if ok else "-"
        tab.append(line)
    rd.show_table(pd.DataFrame(tab), index=False, caption="Median days per step, by quarter the case was opened")
    fig, ax = rd.figure(8, 0.35 * sp_.get_plot_data("distribution")["quarter"].nunique() + 2.2)
    plotting.speed_plot(sp_, ax=ax, step="trigger_to_reach")
    ax.set_title("Days from the trigger to reaching the customer, by quarter")
    rd.show_figure(fig, "Share of reached cases by days from the trigger to the answered call, per quarter",
                   "Each bar: the reached cases opened in a quarter, split by how many days passed from the "
                   "trigger to the answered call (lighter: faster).")
    bands = sp_rows[(sp_rows["metric"] == "speed.effect_by_days_to_contact") & sp_rows["estimate"].notna()]
    if len(bands):
        fig, ax = rd.figure(7, 0.5 * len(bands) + 1.4)
        plotting.forest_plot(bands, ax=ax, xlabel="change in theoretical loss, %")
        ax.set_title("Effect of the call by days from trigger to contact")
        rd.show_figure(fig, "Matched effect on spending by band of days from trigger to contact",
                       f"Each band against its own matched customers, with {level_label(sp_.settings['level'])} "
                       "intervals; bands are not directly comparable (different customers, fewer days of the "
                       "window after a late call).")

# %% [markdown]
# ## Who benefits most

# %%
if "heterogeneity" not in prog:
    prog_missing("heterogeneity")
else:
    ht = prog["heterogeneity"]
    ht_rows = shown(ht)
    rd.show_markdown(f"**Who:** the effect cohort (cases opened {start or data_start} to {end}). Baseline spending: "
                     "theoretical loss in the 12 weeks before the case, in three equal groups of reached customers.")
    rd.show_markdown(html.escape(pg_text.heterogeneity_text(ht_rows, ht.settings)))
    ht_sub = ht_rows[ht_rows["metric"] == "heterogeneity.change"][["group", "estimate", "ci_low", "ci_high"]]
    forest = ht.get_plot_data("forest")[["by", "level", "group"]].merge(ht_sub, on="group", how="left")
    fig, ax = rd.figure(8, 0.3 * len(forest) + 2)
    plotting.heterogeneity_plot({"forest": forest, "overall": ht.get_plot_data("overall")}, ax=ax)
    ax.set_title("Effect of the call by group of customers")
    rd.show_figure(fig, "Forest plot of the matched effect on spending by subgroup",
                   f"Each square: the effect of the call within one group, with its "
                   f"{level_label(ht.settings['level'])} interval; dashed line and band: all reached customers. "
                   "Groups with too few customers are not estimated.")

# %% [markdown]
# ## Does it last

# %%
if "durability" not in prog:
    prog_missing("durability")
else:
    du = prog["durability"]
    du_rows = shown(du)
    rd.show_markdown(f"**Who:** every phone case opened up to {end}, so that some have a full year of follow-up; "
                     "each window compares the customers whose window is complete with their own matched "
                     "customers.")
    rd.show_markdown(html.escape(pg_text.durability_text(du_rows, du.settings)))
    fig, ax = rd.figure(8, 3.8)
    plotting.durability_plot({"durability": du_rows[du_rows["metric"].isin(
        ["durability.matched_change", "durability.matched_change_common"])]}, ax=ax)
    ax.set_title("The call's effect on spending over time")
    rd.show_figure(fig, "Matched effect on spending at 28 days, 12 weeks and 12 months",
                   f"Blue: each window against its own matched comparison; orange: only the customers followed for "
                   f"the longest window, so that every point describes the same people. "
                   f"{level_label(du.settings['level'])} intervals.")

# %% [markdown]
# ## Repeat contact

# %%
if "repeat" not in prog:
    prog_missing("repeat")
else:
    rp = prog["repeat"]
    rd.show_markdown(html.escape(pg_text.repeat_text(shown(rp), rp.settings)))

# %% [markdown]
# ## Callers (this operator's own report only)

# %%
if "callers" not in prog:
    prog_missing("callers")
else:
    cl_ = prog["callers"]
    cl_rows = shown(cl_)
    rd.show_markdown("Callers are shown by rank only, never by name, and only in the operator's own report (never "
                     f"in a shared bundle); a caller with fewer than {T} calls in a measure is left out of it.")
    rd.show_markdown(html.escape(pg_text.callers_text(cl_rows, cl_.settings)))
    cat = sup.suppress_counts(cl_.get_plot_data("caterpillar"), ["n"], T,
                              stat_cols=["estimate", "ci_low", "ci_high", "raw"])
    for measure, title in (("answer", "Share of attempts answered, by caller"),
                           ("action", "Share of calls ending in a limit, pause or self-exclusion, by caller"),
                           ("spending", "Effect of the call on spending, by caller")):
        c = cat[(cat["measure"] == measure) & cat["estimate"].notna()]
        if len(c) < 2:
            continue
        fig, ax = rd.figure(8, 3.4)
        plotting.caterpillar_plot(c, ax=ax, measure=measure)
        ax.set_title(title)
        rd.show_figure(fig, f"Caterpillar plot: {title.lower()}",
                       "Callers ordered from lowest to highest. Dots: the caller's figure for the same kind of "
                       "cases, pulled towards the average in proportion to how few calls it rests on, with "
                       f"{level_label(cl_.settings['level'])} intervals; open circles: the raw figure. Overlapping "
                       "intervals mean the data cannot tell those callers apart.")

# %% [markdown]
# ## 6. Who was compared: cohort flow and balance

# %%
if ev is None:
    missing("evaluation")
else:
    shown = rd.flow_table(ev.cohort.flow, T)
    rd.show_markdown(f"{ev.cohort.text} Each row removes cases that cannot be compared fairly.")
    rd.show_table(shown, index=False, caption="Cohort flow (cases opened in the effect-cohort period)")
    m = ev.matched
    rd.show_markdown(m.text)
    bal = m.balance()
    bal = bal.drop(index="distance", errors="ignore")
    before = int((bal["smd_before"].abs() >= 0.1).sum())
    after = int((bal["smd_after"].abs() >= 0.1).sum())
    rd.show_markdown(f"Standardised mean difference (SMD) of each baseline covariate: {before} of {len(bal)} terms "
                     f"differed by 0.1 or more before matching, {after} after. Below 0.1 is the usual mark of "
                     "good balance.")
    fig, ax = rd.figure(7, 0.28 * len(bal) + 1.5)
    plotting.love_plot(m, ax=ax)
    rd.show_figure(fig, "Love plot of standardised mean differences before and after matching",
                   "Open circles: before matching; filled: after. Dashed line: |SMD| = 0.1.")

# %%
# The randomized study: a section only when the data carry randomized arms (call_cases.arm)
if "randomized" in res:
    from carecall_eval.compare.export import consort_counts, suppress_trial
    from carecall_eval.narrative import randomized as rz_text

    rz = res["randomized"]
    rz_lv = level_label(rz.settings["level"])
    shown_rz = suppress_trial(rz.summary, T)          # the bundle's small-cell rules, arm by arm
    rd.show_markdown("## Randomized study: " + ", ".join(rz.settings["arms"]))
    rd.show_markdown(
        "**Who:** every case the operator randomized to an arm, analysed as randomized (whether reached or "
        "not), over the whole data period; customers are compared arm against control, so regression to the "
        "mean and who answers cannot bias the comparison. The effect of being reached uses the assignment as "
        "the instrument for reach; per protocol (reached members of the call arm against all of control) is "
        "shown because it is often quoted, but it is not randomized.")
    rd.show_markdown(html.escape(rz_text.text(shown_rz, rz.settings)))
    labels = [("spending.rct_itt_change", "call", "Call arm vs control (ITT, as randomized)"),
              ("spending.rct_itt_change", "letter", "Letter arm vs control (ITT, as randomized)"),
              ("spending.rct_cace_change", "call", "Effect of being reached (assignment as the instrument)"),
              ("spending.rct_pp_change", "call", "Per protocol: reached vs control (not randomized)")]
    rows = []
    for w_ in rz.settings["windows"]:
        for m, g, label in labels:
            hit = shown_rz[(shown_rz["metric"] == m) & (shown_rz["group"] == g) & (shown_rz["window"] == w_)]
            if len(hit) != 1:
                continue
            r = hit.iloc[0]
            rows.append({"after": horizon_phrase(w_), "": label, "change": rd.pct(r["estimate"], 1, True),
                         f"{rz_lv} CI": rd.ci_pct(r["ci_low"], r["ci_high"]), "customers": rd.suppress(r["n"], T)})
    if rows:
        measure = "theoretical loss" if rz.settings["outcome"] == "tl" else rz.settings["outcome"]
        rd.show_table(pd.DataFrame(rows), index=False, caption=f"Change in {measure} by arm, after the index")
    rd.show_markdown(html.escape(rz_text.outcomes_text(shown_rz, rz.settings)))
    fig, ax = rd.figure(3.2 * len(rz.settings["arms"]) + 1, 5.5)
    plotting.consort_plot(consort_counts(rz.get_plot_data("consort"), T), ax=ax)
    rd.show_figure(fig, "CONSORT flow of the randomized study",
                   f"Cases allocated to each arm, who received the allocated contact, who the cohort rules left out, "
                   f"and who was analysed at each window (follow-up complete by the data end). Counts below {T} "
                   "are withheld.")

# %% [markdown]
# ## 7. Data quality

# %%
v = rep.validation
rows = [{"table": t, "rows": f"{n:,}"} for t, n in v.n_rows.items()]
rd.show_markdown(
    ("The data meet the carecall_eval data contract (v{}): every required table and column is present, types, "
     "vocabularies, ranges, keys and cross-table rules hold.".format(v.contract_version)) if v.ok else
    f"The data break {len(v.problems)} rule(s) of the data contract; see the table below.")
rd.show_table(pd.DataFrame(rows), index=False, caption=f"Rows checked per table; data period {data_start} to "
                                                       f"{data_end}; data fingerprint {ds.fingerprint()[:16]}...")
if not v.ok:
    rd.show_table(v.problems[["table", "column", "rule", "n_failing", "expected"]], index=False)
if ev is not None:
    cens = rd.censoring_table(ev.cohort.table, ev.design.post_windows, T)
    rd.show_markdown("**Censoring.** Customers whose follow-up window runs past the data end are left out of that "
                     "window's estimates (retention uses them up to the data end, as censored).")
    rd.show_table(cens, index=False, caption="Effect cohort: complete and censored follow-up")
if rep.missing:
    rd.show_markdown("**Sections not available:**\n\n" + "\n".join(f"* {k}: {html.escape(m)}"
                                                                   for k, m in rep.missing.items()))
if rep.notes:
    rd.show_markdown("**Caveats raised during the analysis:**\n\n" + "\n".join(f"* {html.escape(n)}"
                                                                             for n in rep.notes))

# %% [markdown]
# ## 8. Can these figures be trusted?

# %%
sc = getattr(rep, "selfcheck", None)
sens = res.get("sensitivity")
sp = res.get("spending")
if sc is None:
    missing("selfcheck" if "selfcheck" in rep.missing else "evaluation")
else:
    lv = level_label(sc.settings["level"])
    rd.show_markdown(
        f"**A test on our own customers.** Every estimate above rests on the assumption that matching makes "
        f"reached and unreached customers comparable. To check the whole pipeline on {html.escape(cfg.operator)}'s "
        f"own data, we took customers who were never reached (so no call can have changed their play), picked "
        f"some of them the way real customers end up reached, and cut their recorded spending after the case by a "
        f"known {rd.pct(-sc.settings['effect'], 0)}. We then ran exactly the analysis of section 3, "
        f"{sc.settings['replicates']} times with different picks. A trustworthy figure finds the planted change; "
        f"with nothing planted it should report an effect only about {rd.pct(1 - sc.settings['level'], 0)} of "
        "the time.")
    s_ = sc.summary
    names = {"spending.matched_change": "Matched estimate (primary)",
             "spending.naive_change": "Naive before/after",
             "spending.did_change": "Difference in differences",
             "reach.sms_effect": "SMS effect on reach (pseudo-policy date)"}
    verdicts = {"passes": "finds the planted change", "biased": "biased: do not rely on it",
                "intervals too narrow": "intervals too narrow", "too few replicates": "too few replicates"}
    rows = []
    for g, label in names.items():
        mean = row(sc, "selfcheck.mean_estimate", g)
        if mean is None:
            continue
        cov = row(sc, "selfcheck.coverage", g)
        fpr = row(sc, "selfcheck.false_positive_rate", g)
        sms_row = g == "reach.sms_effect"
        fmt = (lambda x: rd.pts(x)) if sms_row else (lambda x: rd.pct(x, 1, True))
        planted = mean.get("truth", mean["injected"])
        rows.append({"": label, "planted": fmt(planted), "average estimate": fmt(mean["estimate"]),
                     f"{lv} intervals containing it": rd.pct(cov["estimate"], 0) if cov is not None else "n/a",
                     "false alarms with nothing planted": rd.pct(fpr["estimate"], 0) if fpr is not None else "n/a",
                     "verdict": verdicts.get(str(mean.get("verdict")), "not available")})
    if rows:
        rd.show_table(pd.DataFrame(rows), index=False,
                      caption=f"Self-check: {sc.settings['replicates']} replicates on "
                              f"{rd.suppress(sc.settings['n_pool'], T)} never-reached customers")
    from carecall_eval.narrative.trust import verdicts_text

    rd.show_markdown(verdicts_text(sc.settings))
    fig, ax = rd.figure(7.5, 4.2)
    plotting.selfcheck_plot(sc, ax=ax)
    ax.set_title("Estimated against planted change in spending")
    rd.show_figure(fig, "Self-check: each estimator's average estimate against the planted change",
                   "Points: average estimate over the replicates at each planted change; bars: the middle 90% of "
                   "the replicates. A figure that can be trusted lies on the dashed diagonal; the naive figure "
                   "sits below it because spending falls after a peak with or without a call.")
if sp is not None:
    w_ = sp.settings["window"]
    pl = row(sp, "spending.placebo_change", "difference", window=w_)
    if pl is not None and pd.notna(pl["estimate"]):
        rd.show_markdown(
            f"**Placebo.** Repeating the analysis {ev.design.pre_window} days before the real case opening, when no "
            f"call can yet have had an effect, gives {rd.pct(pl['estimate'], 1, True)} "
            f"({level_label(sp.settings['level'])} CI {rd.ci_pct(pl['ci_low'], pl['ci_high'])}): "
            + ("no sign of a difference the matching missed." if pl["ci_low"] <= 0 <= pl["ci_high"] else
               "a difference before any call, so part of the estimate may come from who answers, not the call."))
    ev_row = row(sp, "spending.evalue", "difference", window=w_)
    if ev_row is not None and pd.notna(ev_row["estimate"]):
        rd.show_markdown(
            f"**E-value.** To explain the primary estimate away entirely, a trait the data do not record would "
            f"have to make customers {ev_row['estimate']:.1f} times as likely to be reached and, at the same time, "
            f"change their spending {ev_row['estimate']:.1f}-fold; to move its interval to no change it would take "
            f"{ev_row['ci_low']:.1f} times each" + (" (the interval already includes no change)."
                                                  if ev_row["ci_low"] <= 1 else "."))
if sens is not None:
    rd.show_markdown(f"**Hidden differences (Rosenbaum's Γ and tipping points).** {sens.text}")
    tip = sens.summary[sens.summary["metric"] == "sensitivity.tipping_spending_interval"]
    if len(tip) and "rr_reached" in tip:
        shown = pd.DataFrame({
            "hidden trait more common among the reached": [f"{a:g} times" for a in tip["rr_reached"]],
            "would have to change spending": [("no strength is enough" if pd.isna(v) else
                                               "nothing: the interval already includes no change" if v <= 1 else
                                               f"{v:.2f}-fold") for v in tip["estimate"]]})
        rd.show_table(shown, index=False, caption="Tipping points of the primary estimate's interval")

# %% [markdown]
# ## 9. Method notes
#
# * **Index date.** Reached and unreached customers are both indexed on the day their case was opened. Indexing
#   reached customers at the answered call and others at their first attempt compares them at different points
#   of a decaying peak and overstates the effect.
# * **Matching.** Nearest-neighbour matching on the logit of the propensity score (five comparisons per reached
#   customer, with replacement, caliper 0.2 SD, exact on trigger) over age, gender, tenure, trigger, season and
#   play in the 28, 84 and 365 days before the index. Balance is checked in section 6.
# * **Spending.** The primary estimate is a matched Poisson pseudo-likelihood (PPML) ratio of post-window
#   theoretical loss with baseline covariates and cluster-robust errors, shown as a percent change. The naive
#   figure and the difference in differences are reported beside it for comparison only. A placebo at a
#   pseudo-index before the real one should show no effect.
# * **Reach and the SMS.** The primary estimate compares the attempts the SMS can change (after the second
#   unanswered one) with earlier attempts of the same periods (an attempt-level difference in differences,
#   adjusted for who was called). The raw before/after difference and the interrupted time series also move with
#   the trend in answering.
# * **Retention.** Kaplan-Meier with matching weights; leaving = account closed or self-excluded for good.
# * **What this cannot show.** Customers who answer differ from those who do not in ways the data may not
#   record; matching removes the differences it can see. The E-value in `metrics.json` (`spending.evalue`) says
#   how strong such a hidden difference would have to be to explain the estimate away.
# * **Small cells.** Counts below the operator's threshold are suppressed in the tables of this report;
#   `metrics.json` and `metrics.csv` carry the full numbers for the operator's own use.
# * **Self-check and sensitivity.** The self-check is a plasmode simulation: real never-reached customers, their
#   real spending windows, a known change planted on pseudo-contacts chosen with the real propensity model, and the
#   primary design rerun on each replicate (`carecall-eval selfcheck DIR` runs it at full size). Rosenbaum's Γ
#   bounds the one-sided p-value of a Huber m-test on the matched sets over every hidden difference of at most Γ
#   in the odds of being reached; the tipping points use the Ding-VanderWeele bounding factor.

# %%
rd.show_markdown(f"Design: {ev.design.describe() if ev is not None else rep.design.describe()} "
                 + (f"All intervals are {level_label(ev.settings['level'])} intervals." if ev is not None else ""))

# %% [markdown]
# ## 10. Reproducibility

# %%
prov = provenance()
commit = git_commit or prov["git_commit"]
facts = [
    ("carecall_eval version", prov["carecall_eval"]),
    ("code commit", (commit or "not available") + (" (with uncommitted changes)" if git_uncommitted_changes else "")),
    ("data directory", Path(data).name),
    ("data fingerprint (SHA-256 of the input files)", ds.fingerprint()),
    ("data period", f"{data_start} to {data_end}"),
    ("report quarter", q.label),
    ("effect cohort (index dates)", f"{start or data_start} to {end}"),
    ("retention cohort", f"cases opened in {rep.retention_quarter}"),
    ("study design", Path(design).name if design else "default"),
    ("placebo check", "run" if placebo else "skipped (fast setting)"),
    ("metrics files", ", ".join(p.name for p in written) or "none (the evaluation did not run)"),
    ("library versions", ", ".join(f"{k} {v}" for k, v in prov["versions"].items() if v)),
]
rd.show_table(pd.DataFrame(facts, columns=["", "value"]), index=False)
rd.show_markdown(f'<p class="footer">Same inputs and parameters give the same metrics.json byte for byte and '
                 f'this page unchanged except for the render time: '
                 f'<time id="render-timestamp">{html.escape(rendered_at or "not recorded")}</time>.</p>')
