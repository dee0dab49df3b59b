"""Federated deployment security: TLS certificates, SuperNode keys, and insecure only when asked.

The loopback deployment with TLS and node authentication runs in test_fl_deploy.py (slow).
"""

from __future__ import annotations

import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgecomp.fl.config import FLError
from edgecomp.fl.deploy import superlink_command, supernode_command
from edgecomp.fl.security import make_credentials


@pytest.fixture(scope="module")
def credentials(tmp_path_factory):
    return make_credentials(tmp_path_factory.mktemp("creds"), nodes=2)


def test_server_certificate_is_signed_by_the_ca_for_loopback(credentials):
    # setup
    ca = x509.load_pem_x509_certificate(credentials.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(credentials.server_cert.read_bytes())
    # execute
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # assert
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_private_keys_are_readable_by_the_owner_only(credentials):
    private = [credentials.server_key] + [node.private for node in credentials.nodes]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for node in credentials.nodes:  # Flower wants EC keys on a NIST curve, in OpenSSH format
        key = serialization.load_ssh_private_key(node.private.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        public = serialization.load_ssh_public_key(node.public.read_bytes())
        assert public.public_numbers() == key.public_key().public_numbers()


def test_superlink_command_carries_tls_and_node_auth(credentials):
    command = superlink_command(port=9100, credentials=credentials, node_auth=True)
    assert "--insecure" not in command
    assert command[command.index("--ssl-certfile") + 1] == str(credentials.server_cert)
    assert "--enable-supernode-auth" in command


def test_supernode_command_carries_ca_and_key(credentials, tmp_path):
    data = tmp_path / "site.csv"
    data.write_text("t,v\n")
    node = credentials.nodes[0]
    command = supernode_command(
        data,
        "127.0.0.1:9100",
        port=9101,
        root_certificates=credentials.ca_cert,
        private_key=node.private,
    )
    assert command[command.index("--root-certificates") + 1] == str(credentials.ca_cert)
    assert command[command.index("--auth-supernode-private-key") + 1] == str(node.private)
    assert "--insecure" not in command


def test_insecure_only_when_asked(credentials, tmp_path):
    data = tmp_path / "site.csv"
    data.write_text("t,v\n")
    with pytest.raises(FLError, match="--insecure explicitly"):
        superlink_command(port=9100)
    with pytest.raises(FLError, match="--insecure explicitly"):
        supernode_command(data, "127.0.0.1:9100", port=9101)
    with pytest.raises(FLError, match="choose one"):
        superlink_command(port=9100, credentials=credentials, insecure=True)
    with pytest.raises(FLError, match="needs TLS"):
        superlink_command(port=9100, node_auth=True, insecure=True)
    assert "--insecure" in superlink_command(port=9100, insecure=True)


def test_a_missing_certificate_file_is_named(credentials, tmp_path):
    data = tmp_path / "site.csv"
    data.write_text("t,v\n")
    with pytest.raises(FLError, match=r"--root-certificates .*nope.crt: no such file"):
        supernode_command(
            data, "127.0.0.1:9100", port=9101, root_certificates=tmp_path / "nope.crt"
        )


def test_cli_refuses_a_superlink_without_tls_or_insecure(tmp_path):
    from click.testing import CliRunner

    from edgecomp.cli import main

    # execute
    refused = CliRunner().invoke(main, ["fl", "superlink", "--port", "9100"])
    made = CliRunner().invoke(
        main, ["fl", "credentials", "--out-dir", str(tmp_path), "--nodes", "1"]
    )
    # assert
    assert refused.exit_code == 2
    assert "--insecure explicitly" in refused.output
    assert made.exit_code == 0, made.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ca.crt",
        "node-0.key",
        "node-0.pub",
        "server.key",
        "server.pem",
    ]
