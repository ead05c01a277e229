"""`lighthouse-bench train`: does Lighthouse pay off in a real training run?

presets (model shapes) -> model (transformers Llama, lighthouse.hf) -> loss (no full logits) -> throughput
(one point) / benchmark (many points, CSV) and data + recipe (the two-stage run on the stdlib's bytes) ->
plots, report (tables for `lighthouse-bench report`). command turns CLI options into a run.
"""
