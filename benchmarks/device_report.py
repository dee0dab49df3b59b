"""The traffic int8 artifacts measured on three devices, and one `edgecomp report` over them.

    .venv/bin/python benchmarks/device_report.py [--artifacts DIR] [--min-iters 100]

Devices: the build host (``--device local``), a loopback SSH "device" (a private OpenSSH server
on 127.0.0.1 whose login runs Python 3.10 from pyenv; ``edgecomp bench`` builds its own
runtime-only environment there) and aarch64 under qemu-user (``--device qemu-aarch64``, the
environment of scripts/arm64-check; the x86 artifacts run there with --any-arch). Artifacts: a
TCN and an LSTM (L=48, H=8) trained on the ODOT traffic counts and built int8 for x86-64-avx2
(or the .edgepkg files in --artifacts). Data: the last 15 % of rows, wide (one column per
detector) as the runtime reads it. Writes benchmarks/out/devices/ (each device's bench JSON and
the report) and benchmarks/out/device_report.json; prints the side-by-side table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
OUT = ROOT / "benchmarks" / "out" / "devices"
ARCHS = ("tcn", "lstm")


def main() -> None:
    """Build (or take) the artifacts, bench them on each device, report side by side."""
    args = _args()
    OUT.mkdir(parents=True, exist_ok=True)
    artifacts = sorted(args.artifacts.glob("*.edgepkg")) if args.artifacts else _build()
    data = _wide_tail(OUT / "traffic-test.csv")
    flags = ["--batch", "1", "--batch", "64", "--min-iters", str(args.min_iters)]
    flags += ["--min-seconds", str(args.min_seconds), "--data", str(data)]
    from edgecomp.bench.device import LoopbackSshServer

    timings = {}
    with LoopbackSshServer(OUT / "sshd") as server:
        devices = _devices_file(server)
        for device, extra in (("local", []), ("loopback", []), ("qemu-aarch64", ["--any-arch"])):
            start = time.monotonic()
            _edgecomp("bench", *map(str, artifacts), "--device", device, "--devices-file",
                      str(devices), *flags, *extra, "--out-dir", str(OUT / device))  # fmt: skip
            timings[device] = time.monotonic() - start
    inputs = [str(OUT / d / "report.json") for d in timings]
    title = "traffic int8 per device"
    _edgecomp("report", *inputs, "--out-dir", str(OUT / "report"), "--title", title)
    summary = _summary(json.loads((OUT / "report" / "report.json").read_text()), timings)
    (OUT.parent / "device_report.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {OUT / 'report'}/report.{{md,html}} and {OUT.parent / 'device_report.json'}")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, help="folder of .edgepkg files (else built)")
    parser.add_argument("--min-iters", type=int, default=100)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    return parser.parse_args()


def _edgecomp(*args: str) -> None:
    command = [str(Path(sys.executable).with_name("edgecomp")), *args]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])}: {proc.stdout.strip()} {proc.stderr.strip()}")


def _build() -> list[Path]:
    """Train a TCN and an LSTM on the traffic counts (5 epochs) and build x86 int8 artifacts."""
    common = ["--id-col", "detector", "--value-col", "total", "-L", "48", "-H", "8"]
    out = []
    for arch in ARCHS:
        ckpt = OUT / "checkpoints" / arch
        if not (ckpt / "spec.json").is_file():
            _edgecomp("train", str(DATA), *common[:4], "--arch", arch, *common[4:],
                      "--epochs", "5", "--out-dir", str(ckpt))  # fmt: skip
        artifact = OUT / "artifacts" / f"traffic-{arch}-int8.edgepkg"
        if not artifact.is_file():
            _edgecomp("build", str(ckpt), "--data", str(DATA), "-t", "x86-64-avx2", "-p", "int8",
                      "-o", str(artifact))  # fmt: skip
        out.append(artifact)
    return out


def _wide_tail(dest: Path) -> Path:
    """The last 15 % of the traffic rows, one column per detector, as a CSV with timestamps."""
    import pandas as pd

    frame = pd.read_parquet(DATA)
    wide = frame.pivot_table(index="timestamp", columns="detector", values="total", aggfunc="sum")
    wide.columns = [str(c) for c in wide.columns]
    wide.tail(int(len(wide) * 0.15)).to_csv(dest, index_label="timestamp", float_format="%g")
    return dest


def _devices_file(server) -> Path:
    """devices.toml naming the loopback server: Python 3.10 (what JetPack 6 ships)."""
    python = sorted(Path.home().glob(".pyenv/versions/3.10.*/bin/python3.10"))
    device = server.device("loopback")
    path = OUT / "devices.toml"
    path.write_text(
        f'[devices.loopback]\nurl = "ssh://{device.user}@127.0.0.1:{server.port}"\n'
        f'python = "{python[-1] if python else "python3"}"\n'
        f'workdir = "{OUT / "device-cache"}"\n'
        f"ssh_options = {json.dumps(list(device.ssh_options))}\n"
    )
    return path


def _summary(report: dict, timings: dict[str, float]) -> dict:
    rows = []
    print(f"{'device':13s} {'artifact':22s} {'engine':22s} {'p50 b1':>9s} {'p50 b64':>9s} "
          f"{'peak RSS':>9s} {'MAE':>7s}")  # fmt: skip
    for row in sorted(report["rows"], key=lambda r: (r["name"], list(timings).index(r["device"]))):
        b1, b64 = row["latency"].get("b1", {}), row["latency"].get("b64", {})
        item = {
            "device": row["device"],
            "artifact": row["name"],
            "engine": row["engine"]["engine"],
            "native": row["engine"]["native"],
            "p50_b1_ms": b1.get("p50_ms"),
            "p50_b64_ms": b64.get("p50_ms"),
            "peak_rss_mb": row["peak_rss_mb"],
            "mae_mean": row["mae_mean"],
        }
        rows.append(item)
        print(f"{item['device']:13s} {item['artifact']:22s} {item['engine']:22s} "
              f"{item['p50_b1_ms']:9.3f} {item['p50_b64_ms']:9.3f} {item['peak_rss_mb']:9.1f} "
              f"{item['mae_mean']:7.3f}")  # fmt: skip
    return {"rows": rows, "wall_s": timings, "report": str(OUT / "report")}


if __name__ == "__main__":
    main()
