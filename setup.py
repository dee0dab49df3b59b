"""Package discovery for the edgecomp distribution (everything else is in pyproject.toml).

setuptools' ``find`` cannot apply the ``edgecomp.targets = targets`` folder mapping, so the
packages are found here: every package under edgecomp/ and, as ``edgecomp.targets.*``, every
package under targets/. A new backend folder (with its ``__init__.py``) needs no edit here.
"""

from setuptools import find_packages, setup

TARGETS = ["edgecomp.targets", *(f"edgecomp.targets.{p}" for p in find_packages("targets"))]

setup(packages=[*find_packages(include=["edgecomp", "edgecomp.*"]), *TARGETS])
