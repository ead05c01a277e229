"""The `sweep` and `profile` commands and the regression gate: Lighthouse against dense SDPA.

runner (+ cp) turns one task into one measurement, sweep runs a plan's tasks through the harness's row loop,
summary and plots read results.csv; profile (+ profile_view, peaks) times the layer's own stages; check
(+ parity, plain_reference) judges a run against a recorded baseline. The tables, timing, options, grid and
machine record they share live in `lighthouse.harness`.
"""
