"""The optional native kernel (edgecomp_runtime/native/kernel.c; everything else is in
pyproject.toml).

It is compiled with the host's C compiler at install. Without one the install still succeeds
(``optional=True``) and the "native" engine reports itself unavailable, naming why.
"""

import sys

from setuptools import Extension, setup

# -fno-trapping-math: lets gcc vectorize the gate loops' clamps on aarch64 (no FP traps are used)
ARGS = [] if sys.platform == "win32" else ["-O3", "-fno-math-errno", "-fno-trapping-math"]

setup(
    ext_modules=[
        Extension(
            "edgecomp_runtime.native._kernel",
            sources=["edgecomp_runtime/native/kernel.c"],
            extra_compile_args=ARGS,
            optional=True,
        )
    ]
)
