# Reference values for tests/test_retention.py, R 4.x with survival 3.5.3:
#   Rscript tests/results/survival_reference.R > tests/results/survival_reference.csv
suppressMessages(library(survival))
d <- read.csv("tests/results/survival_data.csv")
fit <- coxph(Surv(duration, event) ~ contact, data = d, weights = weights, cluster = cluster, ties = "efron")
s <- summary(fit)
km <- survfit(Surv(duration, event) ~ contact, data = d, weights = weights)
k <- summary(km, times = 365)
out <- data.frame(
  quantity = c("hr", "robust_se", "km365_control", "km365_contact"),
  value = c(exp(coef(fit))[["contact"]], sqrt(fit$var[1, 1]), k$surv[1], k$surv[2]))
write.csv(format(out, digits = 12), row.names = FALSE, quote = FALSE)
