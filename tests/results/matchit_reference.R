# Reference fixtures from R's MatchIt for tests/test_matching_against_R.py.
#
# Regenerate (from the repository root, with R and MatchIt installed, e.g.
# `apt-get install r-base-core r-cran-matchit`; produced with R 4.2.2 and
# MatchIt 4.5.1 from Debian 12):
#
#     python tests/results/make_matchit_data.py
#     Rscript tests/results/matchit_reference.R
#
# Each case is one matchit() call on matchit_data.csv (written verbatim into
# the `call` column of matchit_cases.csv).  matchit() supplies the propensity
# scores, coefficients, discarded units, caliper (converted to distance
# units), the CEM strata and the Mahalanobis matches.
#
# Nearest-neighbour pairs on the propensity score are NOT taken from
# matchit() itself: MatchIt 4.5.1's fast 1-D matcher (nn_matchC_vec) calls
# integer abs() on doubles on this platform, so every distance difference
# truncates to 0 -- the lower-score neighbour always wins and calipers never
# bind (MatchIt issue #163, fixed in 4.5.4; e.g. a treated unit at 0.50 with
# controls at 0.10 and 0.52 gets 0.10).  The pairs below come from MatchIt's
# own general matcher nn_matchC (the one matchit() uses for mahvars and
# distance matrices, and for everything before 4.5.1), called exactly as
# matchit2nearest() would call the matcher: same order (`ord`), ratio,
# discarded units, reuse.max and caliper.  Weights, subclasses and the
# balance summary are then MatchIt's (weights.matrix, mm2subclass,
# summary.matchit) applied to those pairs.
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
  replace_ratio2 = quote(matchit(f5, data = d, method = "nearest", distance = "glm", replace = TRUE, ratio = 2)),
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

ns <- asNamespace("MatchIt")

# MatchIt's matcher for a fitted matchit object, bypassing nn_matchC_vec (see above).
rematch <- function(m, cl) {
  treat <- setNames(as.integer(m$treat), names(m$treat))
  dist <- setNames(unname(m$distance), names(treat))
  n1 <- sum(treat == 1)
  ratio <- if (is.null(cl$ratio)) 1L else as.integer(cl$ratio)
  replace <- isTRUE(cl$replace)
  m.order <- if (is.null(cl$m.order)) "largest" else cl$m.order
  if (replace) m.order <- "data"                      # as matchit2nearest does
  ord <- switch(m.order,
                largest = order(dist[treat == 1], decreasing = TRUE),
                smallest = order(dist[treat == 1], decreasing = FALSE),
                data = seq_len(n1))
  reuse.max <- if (replace) n1 else 1L
  cal <- if (is.null(m$caliper)) NULL else unname(m$caliper[names(m$caliper) == ""])
  ex <- if (is.null(cl$exact)) NULL else as.integer(factor(d[[all.vars(eval(cl$exact))]]))
  mm <- ns$nn_matchC(treat, ord, rep(ratio, n1), unname(m$discarded), reuse.max, dist,
                     NULL, ex, cal, NULL, NULL, NULL, NULL, NULL, FALSE)
  rownames(mm) <- names(treat)[treat == 1]
  w <- ns$weights_matrixC(mm, treat)
  c0 <- treat == 0 & w > 0
  w[c0] <- w[c0] * sum(c0) / sum(w[c0])             # matchit() rescales control weights
  m$match.matrix <- ns$nummm2charmm(mm, treat)
  m$weights <- setNames(w, names(treat))
  m$subclass <- if (replace) NULL else ns$mm2subclass(mm, treat)
  m
}

pairs <- list(); units <- list(); bal <- list(); nn <- list(); coefs <- list(); calls <- list()
for (nm in names(cases)) {
  m <- eval(cases[[nm]])
  cl <- as.list(cases[[nm]])
  if (!nm %in% c("mahvars", "cem")) m <- rematch(m, cl)
  calls[[nm]] <- data.frame(case = nm, call = paste(deparse(cases[[nm]], width.cutoff = 500L), collapse = " "),
                            matcher = if (nm %in% c("mahvars", "cem")) "matchit()" else "nn_matchC",
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
