"""Exit codes of the `edgecomp` command, one meaning each, so CI can tell outcomes apart.

| code | meaning |
|---|---|
| 0 | success |
| 1 | unexpected error (a bug or an environment failure: the traceback says where) |
| 2 | usage or input error (bad flag, bad file, bad value: one line names it) |
| 3 | error budget not met (nothing was written) |
| 4 | regression found (`report --fail-on-regression`) |
"""

from __future__ import annotations

OK = 0
UNEXPECTED = 1
USAGE = 2
BUDGET_NOT_MET = 3
REGRESSION = 4

#: For `edgecomp --help`.
HELP = (
    "Exit codes: 0 success, 1 unexpected error, 2 usage or input error, "
    "3 error budget not met (nothing written), 4 regression found."
)
