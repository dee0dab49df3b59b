"""ExecuTorch rows of the side-by-side benchmarks (x86_compare.py and arm_compare.py).

Builds an fp32 and an int8 ExecuTorch (XNNPACK) artifact of the benchmark's model through the
pipeline (``edgecomp.pipeline.build``, the ``x86-64-executorch`` or ``aarch64-executorch``
profile), adds their engines to the interleaved timing, and scores them on the test split through
the runtime's ``predict`` (raw counts in, raw counts out), against fp32 torch eager. Skipped, with
the reason in the JSON, where executorch is not installed or the architecture is not in
``--executorch-archs`` (an exported LSTM is unrolled and slow to lower: see
targets/executorch/README.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

import edgecomp_runtime
from edgecomp.config import BuildConfig
from edgecomp.metrics import horizon_metrics
from edgecomp.pipeline import build
from edgecomp.targets import get_target

PRECISIONS = ("fp32", "int8")
MODEL_FILE = "model.pte"


def add_variants(
    model, dataset, target: str, work: Path, variants: dict, args: argparse.Namespace
) -> dict[str, Any]:
    """Build the ExecuTorch artifacts of ``model`` for ``target`` and add their engines
    (``executorch_<precision>_engine``, scaled windows in) to ``variants``.

    Returns:
        ``{"models", "sizes", "build_s"}``, or ``{"skipped": reason}``.
    """
    if model.spec.arch not in args.executorch_archs.split(","):
        return {"skipped": f"{model.spec.arch} not in --executorch-archs {args.executorch_archs}"}
    backend = get_target("executorch")
    if not backend.is_available():
        return {"skipped": backend.missing_reason()}
    state: dict[str, Any] = {"target": target, "models": {}, "sizes": {}, "build_s": {}}
    for precision in PRECISIONS:
        start = time.perf_counter()
        path = work / f"executorch-{precision}.edgepkg"
        build(model, dataset, BuildConfig(target=target, precision=precision), path)
        state["build_s"][precision] = round(time.perf_counter() - start, 1)
        runtime = edgecomp_runtime.load(path, threads=1)
        variants[f"executorch_{precision}_engine"] = _engine_call(runtime)
        state["models"][precision] = runtime
        state["sizes"][f"executorch_{precision}_pte"] = len(
            edgecomp_runtime.read_artifact(path)[1][MODEL_FILE]
        )
        state["sizes"][f"executorch_{precision}_artifact"] = path.stat().st_size
    return state


def summary(state: dict[str, Any], raw_x: np.ndarray, truth: np.ndarray, mae: dict) -> dict:
    """Per-horizon MAE through ``predict`` (added to ``mae``) and its change vs torch fp32 (%).

    ``mae`` must hold ``torch_eager_fp32``; the worst step is the largest change over horizons.
    """
    if "skipped" in state:
        return {"skipped": state["skipped"]}
    ref = np.asarray(mae["torch_eager_fp32"])
    change, worst = {}, {}
    for precision, runtime in state["models"].items():
        name = f"executorch_{precision}_predict"
        mae[name] = horizon_metrics(truth, runtime.predict(raw_x))["mae"]
        change[precision] = ((np.asarray(mae[name]) / ref - 1) * 100).tolist()
        worst[precision] = max(change[precision])
    return {
        "target": state.get("target"),
        "sizes": state["sizes"],
        "build_s": state["build_s"],
        "mae_change_pct": change,
        "worst_step_change_pct": worst,
        "int8_size_fraction_of_fp32": state["sizes"]["executorch_int8_pte"]
        / state["sizes"]["executorch_fp32_pte"],
    }


def print_summary(res: dict) -> None:
    """Sizes, build times and per-horizon MAE change of the ExecuTorch rows."""
    et = res.get("executorch") or {}
    if "skipped" in et or not et:
        print(f"  executorch: skipped ({et.get('skipped', 'not run')})")
        return
    s = et["sizes"]
    print(
        f"  executorch .pte: fp32 {s['executorch_fp32_pte']:,} B, int8 "
        f"{s['executorch_int8_pte']:,} B ({et['int8_size_fraction_of_fp32']:.1%}); build s "
        f"{et['build_s']}"
    )
    for precision, change in et["mae_change_pct"].items():
        steps = " ".join(f"{v:+.2f}" for v in change)
        print(f"  MAE change vs torch per horizon, % executorch_{precision:<15} {steps}")


def _engine_call(runtime):
    return lambda s, r: runtime.run_scaled(s)
