"""The harness every command stands on: the tables (CSV formats), the machine record, timing, option parsing,
the sweep grid, the output folder and the one resumable row loop (`lighthouse.harness.loop`).

It sits on top of the library (config -> plan -> kernels -> attention) and under the commands (sweep, quality,
passkey, train, profile, check), which never reimplement --out, --resume, Ctrl-C or failure handling.
"""
