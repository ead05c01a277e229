"""The command as given: what machine.json records and what a stopped run prints to continue it.

Rebuilt from the parsed command line (click's context: every option the user gave, in its long spelling, with
the value as parsed), so that the printed command runs as printed; outside the CLI, from sys.argv.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Sequence

PROGRAM = "lighthouse-bench"


def as_given(launch: Optional[Sequence[str]] = None, argv: Optional[Sequence[str]] = None) -> List[str]:
    """[launch..., command, options given..., arguments...]; launch defaults to `lighthouse-bench`."""
    launch = list(launch or [PROGRAM])
    ctx = _current_context()
    if ctx is None or ctx.info_name is None:
        return launch + list((argv if argv is not None else sys.argv)[1:])
    args, positional = launch + [ctx.info_name], []
    for param in ctx.command.params:
        if getattr(ctx.get_parameter_source(param.name), "name", None) != "COMMANDLINE":
            continue
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            positional += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        elif getattr(param, "is_flag", False):
            if param.secondary_opts:  # --x/--no-x
                args.append(param.opts[0] if value else param.secondary_opts[0])
            elif value:
                args.append(param.opts[0])
        else:
            name = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            for v in value if getattr(param, "multiple", False) else [value]:
                args += [name, str(v)]
    return args + positional


def _current_context():
    """The click context of the running command: typer >= 0.16 runs commands on its own copy of click
    (typer._click), older typer on click itself; None outside a command."""
    for module in ("typer._click.globals", "click.globals"):
        try:
            from importlib import import_module

            ctx = import_module(module).get_current_context(silent=True)
        except ImportError:
            continue
        if ctx is not None:
            return ctx
    return None
