"""``edgecomp bench --device``: run ``edgecomp-runtime bench`` on another device and fetch its JSON.

Devices:
- ``local``: this machine, in this environment (the same measurement, for a like-with-like row);
- ``ssh://user@host[:port]``: over OpenSSH (``ssh``/``scp`` with the user's SSH configuration:
  keys, host keys, jump hosts; nothing of it is stored), or a name in a devices.toml;
- ``qemu-aarch64``: this machine emulating aarch64 (qemu-user and Debian's arm64 Python, as
  ``scripts/arm64-check`` prepares them under ``.cache/arm64``).

The flow: build the runtime wheel from this checkout; check the device (reachable, key accepted,
a Python >= 3.10, CPU architecture matching the artifacts) before copying anything; create or
reuse an environment there keyed by (wheel, extras, Python) (``--wheelhouse DIR``: the dependency
wheels to copy for devices without an index); copy the artifacts and data into a fresh run folder;
run the bench; fetch the JSON; remove the run folder whatever happened. Only the cached
environment stays on the device.

devices.toml::

    [devices.pi5]
    url = "ssh://pi@raspberrypi.local"   # or ssh://pi@10.0.0.7:2222
    python = "python3.11"                # the device's interpreter (default python3)
    workdir = "~/.cache/edgecomp-bench"  # where the environment is cached
    ssh_options = ["-o", "ProxyJump=gateway"]  # extra ssh/scp options (optional)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_DEVICES_FILE",
    "Device",
    "DeviceError",
    "LoopbackSshServer",
    "bench_cli",
    "bench_on_device",
    "parse_device",
]

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime"
DEFAULT_DEVICES_FILE = Path("devices.toml")
_BACKEND_EXTRAS = {"onnx": "onnx", "tflite": "litert", "tensorrt": "tensorrt"}
_URL = re.compile(r"^ssh://(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+)(?::(?P<port>\d+))?/?$")
_KINDS = "'local', 'qemu-aarch64', ssh://user@host[:port] or a name in devices.toml"
# never prompt: a refused key or an unknown host key fails at once
_SSH_BASE = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")
_PROBE = (
    "import json, platform, sys; "
    "print(json.dumps({'machine': platform.machine(), 'python': list(sys.version_info[:3])}))"
)


class DeviceError(ValueError):
    """A device cannot be used; the message is one line naming the device and the cause."""


@dataclass(frozen=True)
class Device:
    """Where ``edgecomp-runtime bench`` runs.

    Attributes:
        name: The name reports show (the devices.toml key, the URL, "local" or "qemu-aarch64").
        kind: "local", "ssh" or "qemu-aarch64".
        host: SSH host (ssh only).
        user: SSH user (None: the SSH configuration's).
        port: SSH port (None: the SSH configuration's).
        python: The device's Python command.
        workdir: Cache folder on the device.
        ssh_options: Extra options for ssh and scp.
    """

    name: str
    kind: str
    host: str | None = None
    user: str | None = None
    port: int | None = None
    python: str = "python3"
    workdir: str = "~/.cache/edgecomp-bench"
    ssh_options: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        """How errors name the device: its name and, for SSH, where it is."""
        if self.kind != "ssh":
            return f"device {self.name}"
        user = f"{self.user}@" if self.user else ""
        where = f"{user}{self.host}{f':{self.port}' if self.port else ''}"
        return f"device {self.name} ({where})" if where != self.name else f"device {self.name}"


def parse_device(spec: str, devices_file: Path | None = None) -> Device:
    """The Device a ``--device`` value names.

    Args:
        spec: "local", "qemu-aarch64", "ssh://user@host[:port]" or a name in ``devices_file``.
        devices_file: devices.toml to look names up in (default ./devices.toml when present).

    Raises:
        DeviceError: A malformed URL, an unknown name, or a malformed devices.toml entry.
    """
    if spec in ("local", "qemu-aarch64"):
        return Device(name=spec, kind=spec)
    if spec.startswith("ssh://"):
        return _from_url(spec, spec)
    table = _devices_table(devices_file or DEFAULT_DEVICES_FILE, spec)
    entry = table.get(spec)
    if not isinstance(entry, dict):
        names = sorted(table)
        raise DeviceError(f"--device {spec!r}: not {_KINDS}; devices.toml names: {names or 'none'}")
    unknown = sorted(set(entry) - {"url", "python", "workdir", "ssh_options"})
    if unknown or not isinstance(entry.get("url"), str):
        raise DeviceError(
            f"devices.toml [devices.{spec}]: needs url = 'ssh://...' and allows python, workdir, "
            f"ssh_options; unknown keys: {unknown}"
        )
    device = _from_url(spec, entry["url"])
    options = entry.get("ssh_options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise DeviceError(f"devices.toml [devices.{spec}]: ssh_options must be a list of strings")
    fields = {k: str(entry[k]) for k in ("python", "workdir") if k in entry}
    return replace(device, ssh_options=tuple(options), **fields)


def bench_on_device(
    device: Device,
    artifacts: Sequence[str | Path],
    *,
    data: str | Path | None = None,
    bench_args: Sequence[str] = (),
    wheelhouse: str | Path | None = None,
    any_arch: bool = False,
) -> list[dict[str, Any]]:
    """Run ``edgecomp-runtime bench`` on ``device`` and return its bench dicts.

    Args:
        device: Where to run (see ``parse_device``).
        artifacts: Artifact files or folders on this machine.
        data: Optional wide CSV/Parquet file (as ``edgecomp-runtime bench --data`` reads it).
        bench_args: Extra ``edgecomp-runtime bench`` flags (--batch-sizes, --threads, ...).
        wheelhouse: Folder of dependency wheels for a device without a package index.
        any_arch: Measure artifacts built for another CPU architecture than the device's.

    Raises:
        DeviceError: The device is unreachable, refuses the key, has no usable Python, cannot run
            the artifacts, or the remote bench failed; one line naming the device and cause.
    """
    paths = [Path(a) for a in artifacts]
    backends = {_manifest(p)["target"]["backend"] for p in paths}
    extras = sorted({_BACKEND_EXTRAS.get(b, b) for b in backends})
    runner = {"local": _Local, "ssh": _Ssh, "qemu-aarch64": _Qemu}[device.kind](device)
    info = runner.probe()
    if not any_arch:
        _check_arch(device, info["machine"], paths)
    wheel = build_runtime_wheel()
    env = runner.environment(wheel, extras, info, wheelhouse)
    args = [*bench_args, "--device-name", device.name]
    results = runner.run(env, paths, None if data is None else Path(data), args)
    used = {"name": runner.env_name, "reused": runner.env_reused, "extras": extras}
    return [{**result, "device_env": used} for result in results]


def bench_cli(
    spec: str,
    artifacts: Sequence[str | Path],
    *,
    data: str | Path | None,
    batch_sizes: Sequence[int],
    threads: int,
    min_iters: int,
    min_seconds: float,
    devices_file: str | Path | None = None,
    wheelhouse: str | Path | None = None,
    any_arch: bool = False,
) -> list[dict[str, Any]]:
    """``edgecomp bench --device SPEC``: the measurement flags as ``edgecomp-runtime bench`` takes
    them, run through ``bench_on_device``."""
    device = parse_device(spec, None if devices_file is None else Path(devices_file))
    flags = ["--batch-sizes", ",".join(map(str, batch_sizes)), "--threads", str(threads)]
    flags += ["--min-iters", str(min_iters), "--min-seconds", str(min_seconds)]
    return bench_on_device(
        device, artifacts, data=data, bench_args=flags, wheelhouse=wheelhouse, any_arch=any_arch
    )


def build_runtime_wheel(cache: Path = ROOT / ".cache" / "runtime-wheel") -> Path:
    """The edgecomp-runtime wheel of this checkout, rebuilt when its sources change.

    Pure Python (``EDGECOMP_RUNTIME_PURE=1``: without the native kernel, whose compiled module
    would tie the wheel to this host's Python and CPU), so it installs on any gateway; there an
    artifact built for the native engine runs on its recorded equivalent engine, with the
    runtime's warning saying so.
    """
    digest = hashlib.sha256()
    sources = [RUNTIME / "pyproject.toml", RUNTIME / "setup.py"]
    for path in sorted([*sources, *RUNTIME.glob("edgecomp_runtime/**/*.py")]):
        digest.update(path.relative_to(RUNTIME).as_posix().encode() + path.read_bytes())
    folder = cache / digest.hexdigest()[:16]
    wheels = sorted(folder.glob("edgecomp_runtime-*.whl"))
    if wheels:
        return wheels[0]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "runtime"
        shutil.copytree(RUNTIME, source, ignore=shutil.ignore_patterns("*.egg-info", "build"))
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
             "-w", str(Path(tmp) / "out"), str(source)],
            capture_output=True, text=True, check=False,
            env={**os.environ, "EDGECOMP_RUNTIME_PURE": "1"},
        )  # fmt: skip
        if proc.returncode != 0:
            raise DeviceError(f"building the runtime wheel failed: {_last_line(proc.stderr)}")
        folder.mkdir(parents=True, exist_ok=True)
        built = next((Path(tmp) / "out").glob("*.whl"))
        shutil.move(str(built), folder / built.name)
    return folder / built.name


def _from_url(name: str, url: str) -> Device:
    match = _URL.match(url)
    if not match:
        raise DeviceError(f"--device {url!r}: expected ssh://user@host[:port]")
    port = match.group("port")
    return Device(
        name=name,
        kind="ssh",
        host=match.group("host"),
        user=match.group("user"),
        port=int(port) if port else None,
    )


def _devices_table(path: Path, spec: str) -> dict[str, Any]:
    if not path.is_file():
        raise DeviceError(f"--device {spec!r}: not {_KINDS} (no {path} to look the name up in)")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DeviceError(f"{path}: not readable TOML ({exc})") from None
    table = data.get("devices", {})
    if not isinstance(table, dict):
        raise DeviceError(f"{path}: [devices] must be a table of named devices")
    return table


def _manifest(path: Path) -> dict[str, Any]:
    if path.is_dir():
        return json.loads((path / "manifest.json").read_text())
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("manifest.json"))


def _check_arch(device: Device, machine: str, paths: list[Path]) -> None:
    here = _arch(machine)
    for path in paths:
        arch = _manifest(path)["target"].get("arch")
        if arch and _arch(arch) != here:
            raise DeviceError(
                f"{device.label}: its CPU is {here}, {path.name} is built for {_arch(arch)}; "
                "build it for this device's target (or pass --any-arch to measure it anyway)"
            )


def _arch(name: str) -> str:
    name = name.lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(name, name)


def _env_key(wheel: Path, extras: list[str], python: list[int], wheelhouse: Path | None) -> str:
    digest = hashlib.sha256(wheel.read_bytes())
    digest.update(json.dumps([extras, python[:2], str(wheelhouse)]).encode())
    return digest.hexdigest()[:16]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


class _Local:
    """This machine, this Python: no environment to build."""

    def __init__(self, device: Device) -> None:
        self.device = device

    def probe(self) -> dict[str, Any]:
        import platform

        return {"machine": platform.machine(), "python": list(sys.version_info[:3])}

    def environment(self, wheel: Path, extras: list[str], info: dict, wheelhouse: Any) -> str:
        self.env_name, self.env_reused = sys.prefix, True
        return sys.executable

    def run(self, python: str, paths: list[Path], data: Path | None, args: list[str]) -> list:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            command = [python, "-m", "edgecomp_runtime", "bench", *map(str, paths)]
            command += [*(["--data", str(data)] if data else []), *args, "-o", str(out)]
            proc = subprocess.run(command, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise DeviceError(f"{self.device.label}: bench failed: {_last_line(proc.stderr)}")
            return json.loads(out.read_text())


class _Ssh:
    """A device over OpenSSH: ``ssh`` runs commands, ``scp`` copies files."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.target = f"{device.user + '@' if device.user else ''}{device.host}"
        # one connection per (device, options), reused by the next commands for 30 s
        tag = hashlib.sha256(json.dumps(device.ssh_options).encode()).hexdigest()[:8]
        control = Path(tempfile.gettempdir()) / f"edgecomp-ssh-{tag}-%C"
        self.options = (
            *_SSH_BASE, "-o", "ControlMaster=auto", "-o", f"ControlPath={control}",
            "-o", "ControlPersist=30", *device.ssh_options,
        )  # fmt: skip

    def ssh(self, command: str, *, check: bool = True) -> subprocess.CompletedProcess:
        port = ["-p", str(self.device.port)] if self.device.port else []
        argv = ["ssh", *self.options, *port, self.target, command]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
        if proc.returncode == 255:
            raise DeviceError(f"{self.device.label}: {_ssh_cause(proc.stderr)}")
        if check and proc.returncode != 0:
            raise DeviceError(f"{self.device.label}: {_last_line(proc.stderr or proc.stdout)}")
        return proc

    def copy(self, sources: list[Path], remote_dir: str) -> None:
        port = ["-P", str(self.device.port)] if self.device.port else []
        argv = ["scp", "-q", "-r", *self.options, *port]
        argv += [*map(str, sources), f"{self.target}:{remote_dir}/"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
        if proc.returncode != 0:
            raise DeviceError(f"{self.device.label}: copy failed: {_ssh_cause(proc.stderr)}")

    def probe(self) -> dict[str, Any]:
        python = shlex.quote(self.device.python)
        proc = self.ssh(f"{python} -c {shlex.quote(_PROBE)}", check=False)
        if proc.returncode != 0:
            raise DeviceError(
                f"{self.device.label}: no usable Python ({self.device.python}: "
                f"{_last_line(proc.stderr)}); set python in devices.toml"
            )
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        if tuple(info["python"][:2]) < (3, 10):
            version = ".".join(map(str, info["python"]))
            raise DeviceError(
                f"{self.device.label}: {self.device.python} is Python {version}; the runtime "
                "needs 3.10 or newer (set python in devices.toml)"
            )
        return info

    def environment(self, wheel: Path, extras: list[str], info: dict, wheelhouse: Any) -> str:
        work = self.device.workdir
        self.env_name = f"env-{_env_key(wheel, extras, info['python'], wheelhouse)}"
        env = f"{work}/{self.env_name}"
        self.env_reused = self.ssh(f"test -f {env}/.ready", check=False).returncode == 0
        if self.env_reused:
            return f"{env}/bin/python"  # cached: same wheel, extras and Python
        self.ssh(f"rm -rf {env} && mkdir -p {env}/wheels")
        try:
            extra_wheels = sorted(Path(wheelhouse).glob("*.whl")) if wheelhouse else []
            self.copy([wheel, *extra_wheels], f"{env}/wheels")
            index = "--no-index " if wheelhouse else ""
            requirement = shlex.quote(f"edgecomp-runtime[{','.join(extras)}]")
            self.ssh(
                f"{shlex.quote(self.device.python)} -m venv {env} && "
                f"{env}/bin/python -m pip install -q --disable-pip-version-check "
                f"{index}--find-links {env}/wheels {requirement} && touch {env}/.ready"
            )
        except DeviceError:
            self.ssh(f"rm -rf {env}", check=False)
            raise
        return f"{env}/bin/python"

    def run(self, python: str, paths: list[Path], data: Path | None, args: list[str]) -> list:
        run = f"{self.device.workdir}/run-{uuid.uuid4().hex[:12]}"
        try:
            self.ssh(f"mkdir -p {run}")
            self.copy([*paths, *([data] if data else [])], run)
            names = " ".join(shlex.quote(f"{run}/{p.name}") for p in paths)
            data_arg = f"--data {shlex.quote(f'{run}/{data.name}')} " if data else ""
            flags = " ".join(shlex.quote(a) for a in args)
            proc = self.ssh(
                f"{python} -m edgecomp_runtime bench {names} {data_arg}{flags} -o {run}/bench.json "
                f">/dev/null && cat {run}/bench.json",
                check=False,
            )
            if proc.returncode != 0:
                raise DeviceError(f"{self.device.label}: bench failed: {_last_line(proc.stderr)}")
            return json.loads(proc.stdout)
        finally:
            self.ssh(f"rm -rf {run}", check=False)


def _ssh_cause(stderr: str) -> str:
    """The reason an ssh/scp command failed, in a few words plus ssh's own line."""
    line = _last_line(stderr)
    for needle, cause in (
        ("Permission denied", "refused the key"),
        ("Host key verification failed", "its host key is unknown or changed"),
        ("Connection refused", "unreachable"),
        ("Could not resolve hostname", "unreachable"),
        ("timed out", "unreachable"),
        ("No route to host", "unreachable"),
        ("Network is unreachable", "unreachable"),
    ):
        if needle in stderr:
            return f"{cause} ({line})"
    return f"ssh failed ({line})"


class _Qemu:
    """aarch64 under qemu-user: Debian's arm64 Python 3.11 and aarch64 wheels (arm64-check)."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.check = _arm64_check()
        self.sysroot, self.qemu = self.check.fetch_debs()

    def command(self) -> list[str]:
        return [str(self.qemu), "-L", str(self.sysroot), str(self.sysroot / "usr/bin/python3.11")]

    def probe(self) -> dict[str, Any]:
        proc = subprocess.run(
            [*self.command(), "-c", _PROBE], capture_output=True, text=True, env=self._env(None)
        )
        if proc.returncode != 0:
            raise DeviceError(f"{self.device.label}: no usable Python ({_last_line(proc.stderr)})")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def environment(self, wheel: Path, extras: list[str], info: dict, wheelhouse: Any) -> str:
        self.env_name = f"env-{_env_key(wheel, extras, info['python'], wheelhouse)}"
        site = self.check.CACHE / self.env_name
        self.env_reused = (site / ".ready").is_file()
        if self.env_reused:
            return str(site)
        shutil.rmtree(site, ignore_errors=True)
        wheels = site.with_suffix(".wheels")
        requirement = f"{wheel}[{','.join(extras)}]"
        source = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", *source,
             "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux_2_27_aarch64",
             "--platform", "manylinux2014_aarch64", "--python-version", "3.11",
             "--implementation", "cp", "-d", str(wheels), requirement],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            shutil.rmtree(wheels, ignore_errors=True)
            raise DeviceError(f"{self.device.label}: aarch64 wheels: {_last_line(proc.stderr)}")
        for path in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(path) as archive:
                archive.extractall(site)
        (site / ".ready").touch()
        return str(site)

    def run(self, site: str, paths: list[Path], data: Path | None, args: list[str]) -> list:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            command = [*self.command(), "-m", "edgecomp_runtime", "bench", *map(str, paths)]
            command += [*(["--data", str(data)] if data else []), *args, "-o", str(out)]
            proc = subprocess.run(command, capture_output=True, text=True, env=self._env(site))
            if proc.returncode != 0:
                raise DeviceError(f"{self.device.label}: bench failed: {_last_line(proc.stderr)}")
            return json.loads(out.read_text())

    def _env(self, site: str | None) -> dict[str, str]:
        env = {"PATH": "/usr/bin:/bin", "PYTHONHOME": str(self.sysroot / "usr")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if site:
            env["PYTHONPATH"] = site
        # the bench re-runs sys.executable for each artifact: point it at the emulated Python
        env["EDGECOMP_BENCH_PYTHON"] = " ".join(self.command())
        return env


def _arm64_check() -> Any:
    """scripts/arm64-check as a module (it prepares the qemu-user aarch64 environment)."""
    import importlib.machinery
    import importlib.util

    path = ROOT / "scripts" / "arm64-check"
    loader = importlib.machinery.SourceFileLoader("edgecomp_arm64_check", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class LoopbackSshServer:
    """A private OpenSSH server on 127.0.0.1 for tests and benchmarks (not the system's).

        with LoopbackSshServer(tmp) as server:    # free port, own host key, key-only login
            device = server.device("loopback")    # a Device with the key and known_hosts set

    Needs Debian's openssh-server (``/usr/sbin/sshd``) and its privilege separation folder
    (/run/sshd, created when missing and allowed).
    """

    SSHD = "/usr/sbin/sshd"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.port = 0
        self._proc: subprocess.Popen | None = None

    @classmethod
    def unavailable(cls) -> str | None:
        """Why no server can run here (None when one can)."""
        if not Path(cls.SSHD).is_file() or not shutil.which("ssh") or not shutil.which("scp"):
            return "needs openssh-server and openssh-client (make system-deps)"
        try:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        except OSError as exc:
            return f"sshd needs /run/sshd ({exc})"
        return None

    def __enter__(self) -> LoopbackSshServer:
        from edgecomp._net import free_port

        self.folder.mkdir(parents=True, exist_ok=True)
        for key in ("host_key", "client_key"):
            for old in (self.folder / key, self.folder / f"{key}.pub"):
                old.unlink(missing_ok=True)  # the server's own folder: fresh keys each start
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.folder / key)],
                check=True,
            )
        shutil.copy(self.folder / "client_key.pub", self.folder / "authorized_keys")
        self.port = free_port()
        config = self.folder / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.folder / 'host_key'}\n"
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}\nPidFile {self.folder / 'pid'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "Subsystem sftp internal-sftp\n"
        )
        host_key = (self.folder / "host_key.pub").read_text().split()[:2]
        (self.folder / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {' '.join(host_key)}\n")
        self._proc = subprocess.Popen(
            [self.SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "sshd.log", "wb"),  # noqa: SIM115 - closed with the server
        )
        self._wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None

    def ssh_options(self, key: str = "client_key") -> tuple[str, ...]:
        """Options that make ssh/scp use this server's key and known_hosts and nothing else."""
        return (
            "-F", "none", "-i", str(self.folder / key), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.folder / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes",
        )  # fmt: skip

    def device(self, name: str = "loopback", **fields: Any) -> Device:
        """A Device for this server, logged in as the current user."""
        import getpass

        return Device(
            name=name,
            kind="ssh",
            host="127.0.0.1",
            user=getpass.getuser(),
            port=self.port,
            ssh_options=self.ssh_options(),
            **fields,
        )

    def _wait_ready(self) -> None:
        import socket
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (self.folder / "sshd.log").read_text(errors="replace")
                raise DeviceError(f"sshd exited: {_last_line(log)}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise DeviceError(f"sshd did not listen on 127.0.0.1:{self.port} within 10 s")
