"""`edgecomp --help` and every sub-command's --help start fast: no heavy library is imported.

The figure to hold is 0.3 s per help; on a shared machine time is noise, so the test checks the
cause instead: in a fresh interpreter, printing each help imports none of the modules that cost
seconds (torch, pandas, the engines, the trackers).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = ("torch", "pandas", "onnx", "onnxruntime", "optuna", "flwr", "mlflow", "matplotlib")

PROBE = textwrap.dedent(
    """
    import sys
    import click
    from edgecomp.cli import main

    def paths(group, prefix):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            yield [*prefix, name]
            if isinstance(command, click.Group):
                yield from paths(command, [*prefix, name])

    heavy = sys.argv[1].split(",")
    for args in [[], *paths(main, [])]:
        try:
            main([*args, "--help"], standalone_mode=False)
        except SystemExit:
            pass
        loaded = sorted(m for m in heavy if m in sys.modules)
        if loaded:
            print(" ".join(["edgecomp", *args, "--help"]), "imported", loaded)
            sys.exit(1)
    print("ok")
    """
)


def test_help_imports_no_heavy_module():
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(HEAVY)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr
