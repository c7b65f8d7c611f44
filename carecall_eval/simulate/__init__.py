"""Simulate an operator's data in the contract, with known true effects.

The simulator is built so that the naive figures are wrong in the way they are
wrong in real life (see ``shared/DOMAIN.md``):

* daily play is zero-inflated and heavy-tailed, spread over products with
  different paybacks;
* each customer's intensity swings slowly around their usual level (risky
  customers widely) with occasional binge days; triggers fire near the peaks,
  so spending falls afterwards with no call at all (regression to the mean);
* whether a case is opened and whether the customer answers depend on
  observable covariates (age, intensity, product mix), so reached and unreached
  customers differ at baseline;
* an answered call multiplies the amounts staked from the day it is answered
  (``call_effect``, default x0.90) and a letter does the same from three days
  after it is sent (``letter_effect``, default x0.95); a randomized sub-study
  assigns call / letter / control arms for a few months;
* up to four attempts per phone case; after ``sms_policy_start`` an SMS follows
  two unanswered attempts and raises the odds of answering later attempts;
  answer odds also follow a secular trend, weekly seasonality and a drifting
  case mix (a risk model begins to open cases half-way through);
* call durations, outcomes, reception, responsible-gambling events (including
  self-service actions by people never called), and account closures with a
  small true hazard ratio for answered calls.

Customers are simulated in chunks, and the day loop is vectorised over the
customers of a chunk; activity is written to Parquet chunk by chunk so that a
million customers fit in a few GB.  ``truth.json`` records every parameter and
the realised quantities tests check against, computed from the potential
outcomes the simulator knows (the same random draws with and without a call, or
with and without the SMS policy).

Modules, one concern each: ``params`` (every knob and its default), ``population`` (customers, products),
``play`` (the spending process, activity, deposits, closures, self-service events), ``calls`` (triggers,
cases, attempts, SMS, calls), ``truth`` (potential-outcome sums and ``truth.json``), ``writer`` (files and
``operator.toml``), ``chunk`` (the day loop of one chunk) and ``run`` (:func:`simulate`).
"""
from __future__ import annotations

from .calls import OUTCOMES, RECEPTIONS
from .params import SimulationParams
from .population import PRODUCTS
from .run import simulate

__all__ = ["simulate", "SimulationParams", "PRODUCTS", "OUTCOMES", "RECEPTIONS"]
