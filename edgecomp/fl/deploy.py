"""A SuperLink deployment on real processes: commands for SuperLink and SuperNodes, and a run.

``edgecomp fl superlink`` and ``edgecomp fl supernode`` start Flower's own ``flower-superlink``
and ``flower-supernode``, with TLS (certificates from ``edgecomp.fl.security`` or your own CA) and
optionally SuperNode authentication; plain text only when ``insecure`` is asked for explicitly.
``submit`` writes a Flower app folder whose pyproject.toml names
``edgecomp.fl.app`` and holds the run's ``FLConfig`` as its run config, then calls ``flwr run``
against the SuperLink. Every process gets ``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1``, so
no server installs packages (it would pull another torch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from edgecomp._net import free_port
from edgecomp.fl.config import FLConfig, FLError
from edgecomp.fl.security import Credentials, check_files, make_credentials

__all__ = [
    "LocalDeployment",
    "detached_helpers",
    "flower_env",
    "free_port",
    "register_node",
    "submit",
    "superlink_command",
    "supernode_command",
    "write_app",
]

APP_NAME = "edgecomp-fl"


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def flower_env(flwr_home: str | Path | None = None) -> dict[str, str]:
    """This environment with dependency installation off, this Python's scripts first on PATH
    (Flower starts ``flower-superexec`` and ``flwr-serverapp`` by name), FLWR_HOME when given."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1", PATH=path)
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


INSECURE_NOTE = "plain text, no node authentication: loopback or a trusted network only"


def _security_args(tls: list[str], insecure: bool, what: str, needed: str) -> list[str]:
    if insecure and tls:
        raise FLError(f"{what}: --insecure and TLS options together; choose one")
    if not insecure and not tls:
        raise FLError(
            f"{what}: TLS needs {needed}; or pass --insecure explicitly ({INSECURE_NOTE})"
        )
    return ["--insecure"] if insecure else tls


def superlink_command(
    host: str = "127.0.0.1",
    port: int = 9092,
    *,
    credentials: Credentials | None = None,
    node_auth: bool = False,
    insecure: bool = False,
) -> list[str]:
    """``flower-superlink`` serving the Fleet and Control APIs on ``host:port`` (in memory).

    Args:
        host: Address to listen on.
        port: Port of the Fleet and Control APIs.
        credentials: CA, server certificate and key for TLS.
        node_auth: Accept only registered SuperNodes (``register_node``); needs TLS.
        insecure: Plain text, explicitly (refused together with ``credentials``).

    Raises:
        FLError: Neither TLS nor ``insecure``, both, node authentication without TLS, or a
            certificate file that does not exist.
    """
    tls = []
    if credentials is not None:
        check_files(
            ssl_ca_certfile=credentials.ca_cert,
            ssl_certfile=credentials.server_cert,
            ssl_keyfile=credentials.server_key,
        )
        tls = ["--ssl-ca-certfile", str(credentials.ca_cert), "--ssl-certfile"]
        tls += [str(credentials.server_cert), "--ssl-keyfile", str(credentials.server_key)]
    if node_auth and credentials is None:
        raise FLError("SuperLink: --enable-supernode-auth needs TLS certificates")
    needed = "--ssl-ca-certfile, --ssl-certfile and --ssl-keyfile"
    security = _security_args(tls, insecure, "SuperLink", needed)
    security += ["--enable-supernode-auth"] if node_auth else []
    return [
        _bin("flower-superlink"),
        *security,
        "--disable-runtime-dependency-installation",
        "--host",
        host,
        "--port",
        str(port),
    ]


def supernode_command(
    data: str | Path,
    superlink: str,
    *,
    port: int,
    root_certificates: str | Path | None = None,
    private_key: str | Path | None = None,
    insecure: bool = False,
) -> list[str]:
    """``flower-supernode`` for one gateway holding ``data``; ``port``: its local runtime API.

    Args:
        data: The gateway's data file (it never leaves the gateway).
        superlink: The SuperLink's ``host:port``.
        port: This node's local runtime API port.
        root_certificates: CA certificate (PEM) the SuperLink's certificate is checked against.
        private_key: This node's private key, for SuperNode authentication.
        insecure: Plain text, explicitly.
    """
    path = Path(data).resolve()
    if not path.is_file():
        raise ValueError(f"{data}: no such data file for this SuperNode")
    check_files(root_certificates=root_certificates, auth_supernode_private_key=private_key)
    tls = [] if root_certificates is None else ["--root-certificates", str(root_certificates)]
    security = _security_args(tls, insecure, "SuperNode", "--root-certificates")
    if private_key is not None:
        if insecure:
            raise FLError("SuperNode: --auth-supernode-private-key needs TLS, not --insecure")
        security += ["--auth-supernode-private-key", str(private_key)]
    return [
        _bin("flower-supernode"),
        *security,
        "--superlink",
        superlink,
        "--node-config",
        f'data-path="{path}"',
        "--port",
        str(port),
    ]


def _connection(
    superlink: str, work_dir: Path, root_certificates: str | Path | None, insecure: bool
) -> dict[str, str]:
    """Write FLWR_HOME/config.toml naming the SuperLink as connection "local"; return the env."""
    import tomli_w

    from edgecomp._io import atomic_write_text

    check_files(root_certificates=root_certificates)
    tls = [] if root_certificates is None else ["root"]
    _security_args(tls, insecure, "flwr", "--root-certificates")
    local: dict[str, object] = {"address": superlink}
    if insecure:
        local["insecure"] = True
    else:
        local["root-certificates"] = str(Path(root_certificates).resolve())
    connection = {"superlink": {"default": "local", "local": local}}
    atomic_write_text(work_dir / "flwr-home" / "config.toml", tomli_w.dumps(connection))
    return flower_env(work_dir / "flwr-home")


def register_node(
    public_key: str | Path,
    superlink: str,
    work_dir: str | Path,
    *,
    root_certificates: str | Path,
) -> None:
    """Register a SuperNode's public key with a SuperLink that authenticates nodes.

    Raises:
        FLError: ``flwr supernode register`` failed (its output is in the message).
    """
    work_dir = Path(work_dir).resolve()
    check_files(public_key=public_key)
    env = _connection(superlink, work_dir, root_certificates, insecure=False)
    command = [_bin("flwr"), "supernode", "register", str(public_key), "local"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stdout + done.stderr).strip().splitlines()
        raise FLError(f"registering {public_key} with {superlink} failed: {detail[-1:]}")


def write_app(config: FLConfig, app_dir: str | Path) -> Path:
    """Write the Flower app folder (pyproject.toml only: the code is the installed edgecomp)."""
    import tomli_w

    from edgecomp._io import atomic_write_text

    pyproject = {
        "project": {
            "name": APP_NAME,
            "version": "1.0.0",
            "description": "edgecomp federated training",
            "license": "Apache-2.0",
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "edgecomp",
                    "components": {
                        "serverapp": "edgecomp.fl.app:server_app",
                        "clientapp": "edgecomp.fl.app:client_app",
                    },
                    "config": config.to_run_config(),
                }
            }
        },
    }
    path = Path(app_dir) / "pyproject.toml"
    atomic_write_text(path, tomli_w.dumps(pyproject))
    return path.parent


def submit(
    config: FLConfig,
    superlink: str,
    work_dir: str | Path,
    *,
    root_certificates: str | Path | None = None,
    insecure: bool = False,
) -> None:
    """Write the app and a Flower connection under ``work_dir``; ``flwr run --stream`` it.

    ``superlink`` is the SuperLink's ``host:port``; ``config.out`` is a path on the SuperLink's
    machine (made absolute here). ``root_certificates``: the CA certificate the SuperLink's TLS
    certificate is checked against; ``insecure``: plain text, explicitly. Returns when the run
    has finished.

    Raises:
        FLError: ``flwr run`` failed (its output above says why), or neither TLS nor insecure.
    """
    work_dir = Path(work_dir).resolve()
    env = _connection(superlink, work_dir, root_certificates, insecure)
    config = dataclasses.replace(config, out=str(Path(config.out).resolve()))
    app = write_app(config, work_dir / "app")
    command = [_bin("flwr"), "run", str(app), "local", "--stream"]
    done = subprocess.run(command, env=env, check=False)
    if done.returncode != 0:
        raise FLError(f"flwr run against {superlink} failed with exit code {done.returncode}")


class LocalDeployment:
    """A SuperLink and one SuperNode per site as separate processes on 127.0.0.1.

    Use as a context manager: the processes start on entry and are terminated (then killed if
    they linger) on exit, also when the run fails. Their logs go to ``work_dir/logs``.
    """

    def __init__(self, sites: list[str], work_dir: str | Path, *, insecure: bool = False) -> None:
        if not sites:
            raise ValueError("a deployment needs at least one site data file")
        self.sites = [str(Path(s).resolve()) for s in sites]
        self.work_dir = Path(work_dir).resolve()
        self.insecure = insecure
        self.credentials: Credentials | None = None
        self.port = free_port()
        self.superlink = f"127.0.0.1:{self.port}"
        self.addresses = [self.superlink]  # runtime APIs: the SuperLink's, each SuperNode's
        self.processes: list[subprocess.Popen] = []

    def _start(self, name: str, command: list[str]) -> None:
        log_dir = self.work_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{name}.log", "wb") as log:
            self.processes.append(
                subprocess.Popen(
                    command,
                    env=flower_env(self.work_dir / "flwr-home"),  # installed apps go there
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def __enter__(self) -> LocalDeployment:
        try:
            if not self.insecure:  # TLS with a fresh CA, and only registered SuperNodes
                self.credentials = make_credentials(
                    self.work_dir / "credentials", nodes=len(self.sites)
                )
            self._start(
                "superlink",
                superlink_command(
                    port=self.port,
                    credentials=self.credentials,
                    node_auth=not self.insecure,
                    insecure=self.insecure,
                ),
            )
            _wait_listening(self.port, self.processes[0])
            for i, site in enumerate(self.sites):
                self._start_node(i, site)
        except BaseException:
            self.close()
            raise
        return self

    def _start_node(self, index: int, site: str) -> None:
        port = free_port()
        self.addresses.append(f"127.0.0.1:{port}")
        tls: dict[str, Path] = {}
        if self.credentials is not None:
            key, ca = self.credentials.nodes[index], self.credentials.ca_cert
            register_node(key.public, self.superlink, self.work_dir, root_certificates=ca)
            tls = {"root_certificates": ca, "private_key": key.private}
        command = supernode_command(site, self.superlink, port=port, insecure=self.insecure, **tls)
        self._start(f"supernode-{index}", command)

    def run(self, config: FLConfig) -> dict:
        """Submit ``config`` (``min_nodes``: the number of sites); returns its ``fl.json``.

        Raises:
            FLError: The run failed or wrote no model (the logs under ``work_dir`` say why).
        """
        from edgecomp.fl.server import FL_FILE, read_summary

        config = dataclasses.replace(config, min_nodes=len(self.sites))
        (Path(config.out) / FL_FILE).unlink(missing_ok=True)
        root = None if self.credentials is None else self.credentials.ca_cert
        submit(
            config, self.superlink, self.work_dir, root_certificates=root, insecure=self.insecure
        )
        return read_summary(config.out)

    def close(self) -> None:
        """Terminate every process started here (SIGTERM, SIGKILL after 15 s), then wait for
        the helpers Flower started detached from them (``--parent-pid``) to exit too."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _reap_detached({proc.pid for proc in self.processes}, set(self.addresses))

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``; fail if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FLError(f"the SuperLink exited with code {proc.returncode}; see its log")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.3)
    raise FLError(f"the SuperLink did not listen on port {port} within {timeout:g} s")


def _option(args: list[bytes], name: bytes) -> str | None:
    return args[args.index(name) + 1].decode() if name in args[:-1] else None


def detached_helpers(parents: set[int], addresses: set[str]) -> list[int]:
    """PIDs of live Flower helpers (Linux): started with ``--parent-pid P`` for a P in
    ``parents`` (SuperExec), or serving ``--runtime-api-address A`` for an A in ``addresses``
    (ServerApp and ClientApp processes). Flower starts them detached from its SuperLink and
    SuperNodes."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        parent = _option(args, b"--parent-pid")
        ours = (parent is not None and parent.isdigit() and int(parent) in parents) or (
            _option(args, b"--runtime-api-address") in addresses
        )
        if ours and state != "Z":
            found.append(int(entry.name))
    return found


def _reap_detached(parents: set[int], addresses: set[str], timeout: float = 15.0) -> None:
    """Wait for Flower's detached helpers to exit; SIGKILL those that remain after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := detached_helpers(parents, addresses)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
