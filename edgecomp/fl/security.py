"""TLS and SuperNode authentication for a Flower deployment.

A SuperLink serves its APIs over TLS with a server certificate signed by a CA that every SuperNode
and every ``flwr`` client trusts (``--root-certificates``). With node authentication on, the
SuperLink accepts only SuperNodes whose public keys were registered (``flwr supernode register``),
and each SuperNode signs its requests with its private key (an EC key on a NIST curve, as Flower
requires). ``make_credentials`` writes such a set for a test or a first deployment; production
fleets bring certificates from their own CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from edgecomp.fl.config import FLError

__all__ = ["Credentials", "NodeKey", "make_credentials", "check_files"]


@dataclass(frozen=True)
class NodeKey:
    """One SuperNode's key pair (OpenSSH format): ``private`` stays on the gateway, ``public``
    is registered with the SuperLink."""

    private: Path
    public: Path


@dataclass(frozen=True)
class Credentials:
    """What a secured deployment needs.

    Attributes:
        ca_cert: CA certificate (PEM) that clients and SuperNodes trust.
        server_cert: The SuperLink's certificate (PEM), signed by the CA.
        server_key: The SuperLink's private key (PEM).
        nodes: One key pair per SuperNode (empty: node authentication off).
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path
    nodes: tuple[NodeKey, ...] = ()


def check_files(**paths: Path | str | None) -> None:
    """Refuse a credential file that is missing, naming the option it was given for.

    Raises:
        FLError: A given path is not a readable file.
    """
    for option, path in paths.items():
        if path is not None and not Path(path).is_file():
            raise FLError(f"--{option.replace('_', '-')} {path}: no such file")


def make_credentials(
    out_dir: str | Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), nodes: int = 0
) -> Credentials:
    """Write a CA, a SuperLink certificate for ``hosts`` and ``nodes`` SuperNode key pairs.

    Private keys are written with mode 0600. Certificates are valid for 30 days.

    Args:
        out_dir: Folder to write into (created).
        hosts: Names and IP addresses the SuperLink is reached at (subject alternative names).
        nodes: SuperNode key pairs to generate.
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = _certificate("edgecomp fl CA", ca_key, ca_key, None, hosts=(), ca=True)
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = _certificate("edgecomp SuperLink", server_key, ca_key, ca_cert, hosts=hosts)
    credentials = Credentials(
        ca_cert=_write(out / "ca.crt", _pem(ca_cert)),
        server_cert=_write(out / "server.pem", _pem(server_cert)),
        server_key=_write(out / "server.key", _private_pem(server_key), private=True),
        nodes=tuple(_node_key(out, i) for i in range(nodes)),
    )
    return credentials


def _node_key(out: Path, index: int) -> NodeKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    private = key.private_bytes(  # flower-supernode reads OpenSSH private keys
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return NodeKey(
        private=_write(out / f"node-{index}.key", private, private=True),
        public=_write(out / f"node-{index}.pub", public + b"\n"),
    )


def _certificate(common_name, key, signer_key, signer_cert, *, hosts, ca=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer_cert.subject if signer_cert is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False
        )
    return builder.sign(signer_key, hashes.SHA256())


def _san(host: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _private_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    """Write atomically; private keys are never readable by others, not even for a moment."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
    return path
