"""edgecomp bench --device: devices.toml, and the SSH flow against a loopback OpenSSH server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecomp._net import free_port
from edgecomp.bench.device import (
    Device,
    DeviceError,
    LoopbackSshServer,
    bench_on_device,
    parse_device,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "runtime" / "fixtures"
INT8 = FIXTURES / "tcn-int8.edgepkg"
DATA = FIXTURES / "traffic-tail.csv"
PY310 = sorted(Path.home().glob(".pyenv/versions/3.10.*/bin/python3.10"))
PY38 = sorted(Path.home().glob(".pyenv/versions/3.8.*/bin/python3.8"))
QUICK = ["--batch-sizes", "1,8", "--min-iters", "10", "--min-seconds", "0"]

needs_sshd = pytest.mark.skipif(
    LoopbackSshServer.unavailable() is not None, reason=str(LoopbackSshServer.unavailable())
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if reason := LoopbackSshServer.unavailable():
        pytest.skip(reason)
    with LoopbackSshServer(tmp_path_factory.mktemp("sshd")) as running:
        yield running


@pytest.fixture(scope="module")
def workdir() -> Path:
    """The device's cache folder: kept between test runs (.cache is gitignored), so its
    environment is built once per change of the runtime's sources."""
    path = ROOT / ".cache" / "test-device"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def device(server, workdir) -> Device:
    python = str(PY310[-1]) if PY310 else "python3"  # Python 3.10: what JetPack 6 ships
    return server.device("loopback", python=python, workdir=str(workdir))


@pytest.fixture(scope="module")
def first_run(device, workdir) -> list[dict]:
    results = bench_on_device(device, [INT8], data=DATA, bench_args=QUICK)
    for stale in workdir.glob("env-*"):  # environments of earlier runtime sources
        if stale.name != results[0]["device_env"]["name"]:
            shutil.rmtree(stale)
    return results


def _leftovers(workdir: Path) -> list[str]:
    return sorted(p.name for p in workdir.iterdir())


# --- devices.toml and URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "user", "host", "port"),
    [
        ("ssh://pi@raspberrypi.local", "pi", "raspberrypi.local", None),
        ("ssh://nvidia@10.0.0.7:2222", "nvidia", "10.0.0.7", 2222),
        ("ssh://jetson", None, "jetson", None),
    ],
)
def test_ssh_urls(url, user, host, port):
    device = parse_device(url)
    assert (device.kind, device.user, device.host, device.port) == ("ssh", user, host, port)


def test_a_devices_toml_entry(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text(
        '[devices.pi5]\nurl = "ssh://pi@pi5:2200"\npython = "python3.11"\n'
        'ssh_options = ["-o", "ProxyJump=gw"]\n'
    )
    device = parse_device("pi5", path)
    assert (device.name, device.host, device.port, device.python) == (
        "pi5",
        "pi5",
        2200,
        "python3.11",
    )
    assert device.ssh_options == ("-o", "ProxyJump=gw")


def test_an_unknown_device_lists_the_alternatives(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text('[devices.pi5]\nurl = "ssh://pi@pi5"\n')
    with pytest.raises(DeviceError) as info:
        parse_device("jetson", path)
    assert "'local', 'qemu-aarch64', ssh://user@host[:port]" in str(info.value)
    assert "['pi5']" in str(info.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('url = "ssh://pi@pi5"\npasword = "x"\n', "unknown keys: ['pasword']"),
        ('python = "python3"\n', "needs url = 'ssh://...'"),
        ('url = "http://pi5"\n', "expected ssh://user@host[:port]"),
        ('url = "ssh://pi@pi5"\nssh_options = "-v"\n', "ssh_options must be a list of strings"),
    ],
)
def test_a_malformed_entry_is_named(tmp_path, entry, message):
    path = tmp_path / "devices.toml"
    path.write_text(f"[devices.pi5]\n{entry}")
    with pytest.raises(DeviceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_device("pi5", path)


# --- the SSH flow on a loopback OpenSSH server --------------------------------------------------


@needs_sshd
def test_bench_over_ssh_returns_the_device_json(first_run, device):
    (result,) = first_run
    assert result["schema"] == "edgecomp-bench"
    assert result["device"]["name"] == "loopback"
    assert result["device"]["python"]["version"].startswith("3.10." if PY310 else "3.")
    assert result["engine"]["engine"].startswith("onnxruntime ")
    assert set(result["latency"]) == {"b1", "b8"}
    assert result["accuracy"]["n_windows"] > 0


@needs_sshd
def test_the_environment_is_cached_and_nothing_else_is_left(first_run, device, workdir):
    # setup: the run above left one environment
    envs = _leftovers(workdir)
    ready = workdir / envs[0] / ".ready"
    stamp = ready.stat().st_mtime_ns
    # execute: a second run
    (again,) = bench_on_device(device, [INT8], bench_args=QUICK)
    # assert: the same environment, untouched, and no run folder
    assert again["device_env"] == {**first_run[0]["device_env"], "reused": True}
    assert len(envs) == 1 and envs[0].startswith("env-")
    assert _leftovers(workdir) == envs
    assert ready.stat().st_mtime_ns == stamp


@needs_sshd
def test_a_failed_remote_run_leaves_only_the_environment(first_run, device, workdir, tmp_path):
    # setup: an artifact whose manifest reads but whose model file is corrupt
    bad = tmp_path / "corrupt.edgepkg"
    with zipfile.ZipFile(INT8) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data if item.filename == "manifest.json" else data[::-1])
    before = _leftovers(workdir)
    # execute + assert
    with pytest.raises(DeviceError, match=r"device loopback \(.*\): bench failed: .*corrupt"):
        bench_on_device(device, [bad], bench_args=QUICK)
    assert _leftovers(workdir) == before


@needs_sshd
def test_an_unreachable_device_fails_in_one_line(device, workdir):
    # setup: nothing listens on this port
    dead = replace(device, port=free_port())
    # execute + assert
    with pytest.raises(DeviceError) as info:
        bench_on_device(dead, [INT8], bench_args=QUICK)
    message = str(info.value)
    assert message.startswith("device loopback (") and ": unreachable (" in message
    assert "Connection refused" in message and "\n" not in message


@needs_sshd
def test_a_refused_key_fails_in_one_line(server, device, tmp_path):
    # setup: a key the server does not know
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(server.folder / "stranger")],
        check=True,
    )
    stranger = replace(device, ssh_options=server.ssh_options("stranger"))
    # execute + assert
    with pytest.raises(
        DeviceError, match=r"^device loopback \(.*\): refused the key \(.*Permission denied"
    ):
        bench_on_device(stranger, [INT8], bench_args=QUICK)


@needs_sshd
def test_a_device_without_python_fails_before_copying(device, tmp_path):
    work = tmp_path / "fresh"
    nopython = replace(device, python="/nonexistent/python3", workdir=str(work))
    missing = r"no usable Python \(/nonexistent/python3: .*No such file"
    with pytest.raises(DeviceError, match=missing):
        bench_on_device(nopython, [INT8], bench_args=QUICK)
    assert not work.exists()


@needs_sshd
@pytest.mark.skipif(
    not PY38, reason="needs a Python 3.8 interpreter (pyenv) to stand for an old one"
)
def test_a_python_older_than_3_10_is_named(device, tmp_path):
    old = replace(device, python=str(PY38[-1]), workdir=str(tmp_path / "w"))
    with pytest.raises(DeviceError, match=r"is Python 3\.8\.\d+; the runtime needs 3\.10 or newer"):
        bench_on_device(old, [INT8], bench_args=QUICK)
    assert not (tmp_path / "w").exists()


@needs_sshd
def test_an_artifact_for_another_cpu_fails_before_copying(device, tmp_path, write_aarch64):
    work = tmp_path / "fresh"
    fresh = replace(device, workdir=str(work))
    with pytest.raises(DeviceError, match=r"its CPU is x86_64, arm\.edgepkg is built for aarch64"):
        bench_on_device(fresh, [write_aarch64(tmp_path / "arm.edgepkg")], bench_args=QUICK)
    assert not work.exists()


@pytest.fixture
def write_aarch64():
    """Copy the int8 fixture with its manifest's target.arch set to aarch64 (no checksum change:
    the manifest is not among the files it lists)."""

    def write(dest: Path) -> Path:
        with zipfile.ZipFile(INT8) as src, zipfile.ZipFile(dest, "w") as dst:
            for item in src.infolist():
                data = src.read(item)
                if item.filename == "manifest.json":
                    manifest = json.loads(data)
                    manifest["target"]["arch"] = "aarch64"
                    data = json.dumps(manifest).encode()
                dst.writestr(item.filename, data)
        return dest

    return write


@needs_sshd
def test_cli_bench_on_a_named_device(first_run, server, device, tmp_path):
    # setup: a devices.toml naming the loopback server (its key and known_hosts as ssh_options)
    options = json.dumps(list(device.ssh_options))
    (tmp_path / "devices.toml").write_text(
        f'[devices.lab]\nurl = "ssh://{device.user}@127.0.0.1:{device.port}"\n'
        f'python = "{device.python}"\nworkdir = "{device.workdir}"\nssh_options = {options}\n'
    )
    from edgecomp.cli import main

    # execute
    result = CliRunner().invoke(
        main,
        ["bench", str(INT8), "--device", "lab", "--devices-file", str(tmp_path / "devices.toml"),
         "--batch", "1", "--min-iters", "10", "--min-seconds", "0",
         "--out-dir", str(tmp_path / "out")],
    )  # fmt: skip
    # assert
    assert result.exit_code == 0, result.output
    (bench,) = json.loads((tmp_path / "out" / "report.json").read_text())
    assert bench["device"]["name"] == "lab"


@needs_sshd
def test_an_offline_device_installs_from_a_wheelhouse(server, tmp_path):
    # setup: the dependency wheels for the device's Python, fetched here (as a user would on a
    # machine with an index), then installed there with --no-index
    python = str(PY310[-1]) if PY310 else sys.executable
    wheelhouse = tmp_path / "wheelhouse"
    fetched = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "download",
            "-q",
            "-d",
            str(wheelhouse),
            "numpy",
            "onnxruntime>=1.19",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if fetched.returncode != 0:
        pytest.skip(f"no package index to fill the wheelhouse: {fetched.stderr.strip()[-200:]}")
    device = server.device("offline", python=python, workdir=str(tmp_path / "device"))
    # execute
    (result,) = bench_on_device(device, [INT8], data=DATA, bench_args=QUICK, wheelhouse=wheelhouse)
    # assert: it ran from wheels only, and the wheels stayed in the cached environment
    assert result["engine"]["engine"].startswith("onnxruntime ")
    assert result["device_env"]["reused"] is False and result["device_env"]["extras"] == ["onnx"]
    env = tmp_path / "device" / result["device_env"]["name"]
    assert (env / ".ready").is_file()
    assert {p.name.split("-")[0] for p in (env / "wheels").glob("*.whl")} >= {
        "numpy",
        "onnxruntime",
    }


def test_the_runtime_wheel_for_devices_is_pure_python(tmp_path):
    # setup + execute: a fresh build of this checkout's runtime wheel
    from edgecomp.bench.device import build_runtime_wheel

    wheel = build_runtime_wheel(cache=tmp_path)
    # assert: installable on any Python and CPU (the native kernel's compiled module would tie it
    # to this host's, and a gateway's pip refuses it: "No matching distribution")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        assert not [n for n in archive.namelist() if n.endswith((".so", ".pyd"))]
