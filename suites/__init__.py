"""Declarative sweep presets (installed as `lighthouse.suites`): one TOML file per suite."""
