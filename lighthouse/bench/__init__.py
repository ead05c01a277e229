"""The benchmark harness behind `lighthouse-bench`: Lighthouse against dense SDPA over a parameter grid.

Data flows one way, one module per step:
grid (options, suites -> points and tasks) -> runner + timing (one task -> one measurement)
-> sweep (orchestration, results.csv, resume, progress) -> plots and the summary (read the CSV back).
`flops` holds the arithmetic (FLOP counts, TFLOP/s, speedups) and `machine` the provenance (machine.json).
"""
