"""What a Lighthouse configuration loses against dense attention, and which configuration to pick.

One module per job: `dense` (the chunked dense causal reference and its log-sum-exp), `metrics` (output
error and per-token cosine), `coverage` (the dense attention mass a query sees at full resolution),
`needles` (planted retrieval pairs and their recall), `inputs` (random, needle and checkpoint q, k, v),
`capture` (q, k, v of a trained model, layer by layer), `runner` (the `quality` command), `recommend`
(the `recommend` command), `charts` (heatmaps and the speed/quality Pareto chart).

Nothing here is imported by `lighthouse` itself: the CLI imports these lazily.
"""
