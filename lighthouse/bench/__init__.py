"""The benchmark harness behind `lighthouse-bench`: Lighthouse against dense SDPA, and what to make of it.

Data flows one way, one module per step:
options (option values, TOML suites) -> points (the Point type; points -> tasks) -> runner + timing (one task ->
one measurement) -> sweep (orchestration, resume, progress) -> results (the one owner of every CSV format)
-> summary, plots, check (regression gate), report (content) + document (rendering).
`profile` (+ profile_view, peaks) times the layer's own stage functions; `parity` compares the two paths;
`flops` holds the arithmetic and `machine` the provenance (machine.json). See README "How the code is laid out".
"""
