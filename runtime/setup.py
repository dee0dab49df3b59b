"""The optional native kernel (edgecomp_runtime/native/kernel.c; everything else is in
pyproject.toml).

It is compiled with the host's C compiler at install. Without one the install still succeeds
(``optional=True``) and the "native" engine reports itself unavailable, naming why.
``EDGECOMP_RUNTIME_PURE=1`` leaves it out: a pure-Python wheel (py3-none-any) that installs on
any Python and CPU, as ``edgecomp bench --device`` ships to a gateway.
"""

import os
import sys

from setuptools import Extension, setup

# -fno-trapping-math: lets gcc vectorize the gate loops' clamps on aarch64 (no FP traps are used)
ARGS = [] if sys.platform == "win32" else ["-O3", "-fno-math-errno", "-fno-trapping-math"]

KERNEL = Extension(
    "edgecomp_runtime.native._kernel",
    sources=["edgecomp_runtime/native/kernel.c"],
    extra_compile_args=ARGS,
    optional=True,
)

setup(ext_modules=[] if os.environ.get("EDGECOMP_RUNTIME_PURE") == "1" else [KERNEL])
