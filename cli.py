"""`python cli.py sweep ...` from a source checkout, without installing.

Forwards to the one app, `lighthouse.cli` (what the installed `lighthouse-bench` runs); nothing is defined
here. Not installed: pyproject.toml lists packages only, so no top-level `cli` module lands in site-packages.
"""

from lighthouse.cli import main

if __name__ == "__main__":
    main()
