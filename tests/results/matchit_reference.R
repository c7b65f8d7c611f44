# Reference fixtures from R's MatchIt for tests/test_matching_against_R.py.
#
# Regenerate (from the repository root, with R and MatchIt installed, e.g.
# `apt-get install r-base-core r-cran-matchit`; produced with R 4.2 / MatchIt 4.5.1):
#
#     python tests/results/make_matchit_data.py
#     Rscript tests/results/matchit_reference.R
#
# Each case below is one matchit() call on matchit_data.csv; the exact call is
# also written into the `call` column of matchit_cases.csv.
suppressPackageStartupMessages(library(MatchIt))

here <- "tests/results"
d <- read.csv(file.path(here, "matchit_data.csv"))
rownames(d) <- d$id

f5 <- treat ~ age + income + tenure + married + region
f6 <- treat ~ age + income + tenure + married + region + trigger

cases <- list(
  nearest       = quote(matchit(f5, data = d, method = "nearest", distance = "glm")),
  caliper       = quote(matchit(f5, data = d, method = "nearest", distance = "glm", caliper = 0.2)),
  ratio2        = quote(matchit(f5, data = d, method = "nearest", distance = "glm", ratio = 2)),
  ratio3_cal    = quote(matchit(f5, data = d, method = "nearest", distance = "glm", ratio = 3, caliper = 0.1)),
  replace       = quote(matchit(f5, data = d, method = "nearest", distance = "glm", replace = TRUE)),
  replace_cal   = quote(matchit(f5, data = d, method = "nearest", distance = "glm", replace = TRUE, caliper = 0.05)),
  logit_caliper = quote(matchit(f5, data = d, method = "nearest", distance = "glm", link = "linear.logit", caliper = 0.25)),
  exact_trigger = quote(matchit(f6, data = d, method = "nearest", distance = "glm", exact = ~ trigger, caliper = 0.2)),
  smallest      = quote(matchit(f5, data = d, method = "nearest", distance = "glm", m.order = "smallest")),
  data_order    = quote(matchit(f5, data = d, method = "nearest", distance = "glm", m.order = "data", caliper = 0.1)),
  discard_both  = quote(matchit(f5, data = d, method = "nearest", distance = "glm", discard = "both", caliper = 0.2)),
  discard_ctrl  = quote(matchit(f5, data = d, method = "nearest", distance = "glm", discard = "control")),
  mahvars       = quote(matchit(f5, data = d, method = "nearest", distance = "glm", mahvars = ~ age + income + tenure, caliper = 0.25)),
  cem           = quote(matchit(treat ~ age + married + region, data = d, method = "cem"))
)

pairs <- list(); units <- list(); bal <- list(); nn <- list(); coefs <- list(); calls <- list()
for (nm in names(cases)) {
  m <- eval(cases[[nm]])
  calls[[nm]] <- data.frame(case = nm, call = paste(deparse(cases[[nm]], width.cutoff = 500L), collapse = " "),
                            caliper = if (is.null(m$caliper)) NA_real_ else unname(m$caliper[1]))
  if (!is.null(m$match.matrix)) {
    mm <- m$match.matrix
    for (j in seq_len(ncol(mm))) {
      ok <- !is.na(mm[, j])
      if (any(ok)) pairs[[paste(nm, j)]] <- data.frame(case = nm, treated_id = as.integer(rownames(mm)[ok]),
                                                       slot = j, control_id = as.integer(mm[ok, j]))
    }
  }
  units[[nm]] <- data.frame(case = nm, id = d$id,
                            distance = if (is.null(m$distance)) NA_real_ else unname(m$distance),
                            weights = unname(m$weights),
                            subclass = if (is.null(m$subclass)) NA_integer_ else as.integer(as.character(m$subclass)),
                            discarded = unname(m$discarded))
  s <- summary(m)
  for (which in c("all", "matched")) {
    tab <- if (which == "all") s$sum.all else s$sum.matched
    bal[[paste(nm, which)]] <- data.frame(case = nm, term = rownames(tab), sample = which,
      mean_treated = tab[, "Means Treated"], mean_control = tab[, "Means Control"],
      smd = tab[, "Std. Mean Diff."], var_ratio = tab[, "Var. Ratio"],
      ecdf_mean = tab[, "eCDF Mean"], ecdf_max = tab[, "eCDF Max"], row.names = NULL)
  }
  nn[[nm]] <- data.frame(case = nm, row = rownames(s$nn), control = s$nn[, "Control"],
                         treated = s$nn[, "Treated"], row.names = NULL)
  if (!is.null(m$model)) {
    cf <- coef(m$model)
    coefs[[nm]] <- data.frame(case = nm, term = names(cf), estimate = unname(cf))
  }
}
w <- function(x, f) write.csv(do.call(rbind, x), file.path(here, f), row.names = FALSE)
op <- options(digits = 15)
w(calls, "matchit_cases.csv")
w(pairs, "matchit_pairs.csv")
w(units, "matchit_units.csv")
w(bal, "matchit_balance.csv")
w(nn, "matchit_counts.csv")
w(coefs, "matchit_coef.csv")
options(op)
cat("MatchIt", as.character(packageVersion("MatchIt")), "R", R.version.string, "\n")
