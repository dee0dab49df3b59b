"""`edgecomp fl`: federated training across gateways (Flower), thin wrappers over edgecomp.fl.

Imports only click and the standard library at top level; Flower, torch and pandas load inside
the commands.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from edgecomp.archs import ARCHS
from edgecomp.cliopts import RequiredOption, json_output, renamed
from edgecomp.dataflags import flag_options
from edgecomp.tracking import TrackedGroup


@click.group("fl", cls=TrackedGroup)
def fl() -> None:
    """Federated training across gateways with Flower: each site's data stays on its gateway."""


def _names(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",")) if value else None


def _run_options(fn):
    """Data, model, local training and federation options shared by `simulate` and `run`."""
    opts = [
        click.option("--input-len", "-L", default=48, show_default=True),
        click.option("--horizon", "-H", default=8, show_default=True),
        click.option("--features", help="Comma-separated input features (default: all)."),
        click.option("--targets", help="Comma-separated targets (default: the features)."),
        click.option("--time-col", help="Time column (default: detected)."),
        *flag_options(time_col=False),
        click.option(
            "--split",
            default="0.7,0.15,0.15",
            show_default=True,
            help="Train,val,test fractions (chronological).",
        ),
        click.option("--arch", type=click.Choice(ARCHS), default="lstm"),
        click.option("--hparam", multiple=True, help="Architecture hyperparameter KEY=JSON."),
        click.option("--local-epochs", default=1, show_default=True),
        click.option("--batch-size", default=64, show_default=True),
        click.option("--lr", default=1e-3, show_default=True),
        click.option("--seed", default=0, show_default=True),
        click.option("--rounds", default=3, show_default=True),
        click.option(
            "--strategy",
            type=click.Choice(["fedavg", "fedprox"]),
            default="fedavg",
            show_default=True,
            help="Flower aggregation strategy.",
        ),
        click.option("--mu", default=0.0, show_default=True, help="FedProx proximal weight."),
        click.option("--fraction-train", default=1.0, show_default=True),
        click.option("--fraction-evaluate", default=1.0, show_default=True),
        click.option(
            "--updates",
            type=click.Choice(["fp32", "int8"]),
            default="fp32",
            show_default=True,
            help="Client updates: fp32 weights or int8-quantized deltas.",
        ),
        click.option(
            "--out-dir",
            type=click.Path(file_okay=False),
            cls=RequiredOption,
            help="Checkpoint folder for the global model.",
        ),
    ]
    fn = renamed("-o", "--out", to="--out-dir", required=True, type=_DIR)(json_output(fn))
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


_DIR = click.Path(file_okay=False)


def _config(kw: dict, sites: tuple[str, ...] = (), min_nodes: int = 2):
    from edgecomp.cli import _parse_pairs  # loaded already: this group is part of its CLI
    from edgecomp.data import DataConfig
    from edgecomp.fl.config import FLConfig
    from edgecomp.train import TrainConfig

    data = DataConfig(
        input_len=kw["input_len"],
        horizon=kw["horizon"],
        features=_names(kw["features"]),
        targets=_names(kw["targets"]),
        time_col=kw["time_col"],
        split=tuple(float(v) for v in kw["split"].split(",")),
        exclude=kw["exclude"],
        drop_sparse=kw["drop_sparse"],
        on_duplicate=kw["on_duplicate"] or "error",
    )
    train = TrainConfig(
        arch=kw["arch"],
        hparams=_parse_pairs(kw["hparam"], "--hparam"),
        epochs=kw["local_epochs"],
        batch_size=kw["batch_size"],
        lr=kw["lr"],
        seed=kw["seed"],
    )
    keys = ("rounds", "strategy", "fraction_train", "fraction_evaluate", "updates")
    return FLConfig(
        data=data,
        train=train,
        sites=sites,
        proximal_mu=kw["mu"],
        min_nodes=min_nodes,
        out=kw["out_dir"],
        **{k: kw[k] for k in keys},
    )


def _training(config):
    """A spinner on stderr while the federation trains (off without a terminal)."""
    from edgecomp import progress

    sites = f" across {len(config.sites)} sites" if config.sites else ""
    return progress.bar(f"federated training: {config.rounds} rounds{sites}")


def _print_rounds(summary: dict, out: str) -> dict:
    click.echo("round  clients  up bytes  down bytes  val loss  val MAE (mean over steps)")
    for r in summary["rounds"]:
        ev = r["evaluate"]
        click.echo(
            f"{r['round']:5d}  {r['clients']:7d}  {r['up_bytes']:8d}  {r['down_bytes']:10d}  "
            f"{ev.get('val-loss', float('nan')):8.4f}  {ev.get('val-mae-mean', float('nan')):.4f}"
        )
    click.echo(f"wrote {out} (checkpoint: `edgecomp build {out} --data SITE_FILE ...`)")
    return {"checkpoint": str(out), **summary}


@fl.command("split")
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@click.option("--site-col", required=True, help="Column naming each row's site.")
@click.option("--site", "sites", multiple=True, help="Site to write (default: all).")
@click.option("--max-rows", type=int, help="Keep each site's first N rows.")
@click.option("--out-dir", type=_DIR, cls=RequiredOption, help="Folder for the site files.")
@renamed("-o", "--out", to="--out-dir", required=True, type=_DIR)
@json_output
def split_cmd(data: str, site_col: str, sites: tuple[str, ...], max_rows, out_dir: str) -> dict:
    """Write one data file per site of DATA (what each gateway holds)."""
    from edgecomp.fl.sites import split_by_site

    written = split_by_site(data, site_col, out_dir, sites=sites, max_rows=max_rows)
    for site, path in written.items():
        click.echo(f"{site}\t{path}")
    return {str(site): str(path) for site, path in written.items()}


@fl.command("simulate")
@click.argument("sites", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_run_options
@click.option("--num-cpus", default=2, show_default=True, help="CPUs Ray may use.")
def simulate_cmd(sites: tuple[str, ...], num_cpus: int, **kw) -> dict:
    """Train across SITES (one data file per client) on Flower's simulation engine."""
    from edgecomp import progress
    from edgecomp.fl.simulation import simulate

    config = _config(kw, sites=sites, min_nodes=len(sites))
    if not progress.STATE["verbose"]:  # Flower's per-round log, in this process and Ray's actors
        os.environ.setdefault("FLWR_LOG_LEVEL", "ERROR")
    with _training(config):
        summary = simulate(config, num_cpus=num_cpus)
    return _print_rounds(summary, config.out)


_INSECURE_HELP = "Plain text and no node authentication (loopback or a trusted network only)."
_FILE = click.Path(exists=True, dir_okay=False)
_ROOT_HELP = "CA certificate (PEM) that the SuperLink's certificate is checked against."


@fl.command("local")
@click.argument("sites", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_run_options
@click.option("--work-dir", default="fl-deploy", show_default=True, type=click.Path())
@click.option("--insecure", is_flag=True, help=_INSECURE_HELP)
def local_cmd(sites: tuple[str, ...], work_dir: str, insecure: bool, **kw) -> dict:
    """Run a SuperLink and one SuperNode per SITE as processes on 127.0.0.1, and train.

    By default with TLS (a CA and certificates generated under WORK_DIR/credentials) and
    SuperNode authentication (each node's key registered with the SuperLink).
    """
    from edgecomp.fl.deploy import LocalDeployment

    config = _config(kw, min_nodes=len(sites))
    with _training(config), LocalDeployment(list(sites), work_dir, insecure=insecure) as deployment:
        summary = deployment.run(config)
    return _print_rounds(summary, config.out)


@fl.command("credentials")
@click.option("--out-dir", type=_DIR, cls=RequiredOption, help="Folder for the certificates/keys.")
@click.option(
    "--cert-host",
    "cert_hosts",
    multiple=True,
    help="A name or IP the SuperLink certificate is valid for; repeatable [default: loopback].",
)
@click.option("--nodes", default=0, show_default=True, help="SuperNode key pairs to generate.")
@renamed("-o", "--out", to="--out-dir", required=True, type=_DIR)
@renamed("--host", to="--cert-host", dest="cert_hosts", multiple=True)
@json_output
def credentials_cmd(out_dir: str, cert_hosts: tuple[str, ...], nodes: int) -> dict:
    """Write a CA, a SuperLink TLS certificate and SuperNode key pairs (private keys 0600)."""
    from edgecomp.fl.security import make_credentials

    hosts = cert_hosts or ("127.0.0.1", "localhost")
    made = make_credentials(out_dir, hosts=hosts, nodes=nodes)
    click.echo(f"CA {made.ca_cert}; SuperLink {made.server_cert} + {made.server_key}")
    for node in made.nodes:
        click.echo(f"SuperNode key {node.private} (register {node.public})")
    return {
        "ca_cert": str(made.ca_cert),
        "server_cert": str(made.server_cert),
        "server_key": str(made.server_key),
        "nodes": [{"private": str(n.private), "public": str(n.public)} for n in made.nodes],
    }


@fl.command("superlink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9092, show_default=True)
@click.option("--ssl-ca-certfile", type=_FILE, help="CA certificate (PEM).")
@click.option("--ssl-certfile", type=_FILE, help="This SuperLink's certificate (PEM).")
@click.option("--ssl-keyfile", type=_FILE, help="This SuperLink's private key (PEM).")
@click.option("--enable-supernode-auth", is_flag=True, help="Accept registered SuperNodes only.")
@click.option("--insecure", is_flag=True, help=_INSECURE_HELP)
def superlink_cmd(host: str, port: int, insecure: bool, enable_supernode_auth: bool, **tls) -> None:
    """Start a Flower SuperLink with TLS (or, explicitly, --insecure)."""
    from edgecomp.fl.deploy import flower_env, superlink_command
    from edgecomp.fl.security import Credentials

    credentials = None
    if any(tls.values()):
        if not all(tls.values()):
            raise click.UsageError("TLS needs --ssl-ca-certfile, --ssl-certfile and --ssl-keyfile")
        credentials = Credentials(
            Path(tls["ssl_ca_certfile"]), Path(tls["ssl_certfile"]), Path(tls["ssl_keyfile"])
        )
    command = superlink_command(
        host, port, credentials=credentials, node_auth=enable_supernode_auth, insecure=insecure
    )
    sys.exit(subprocess.call(command, env=flower_env()))


@fl.command("supernode")
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@click.option("--superlink", default="127.0.0.1:9092", show_default=True, help="host:port")
@click.option("--port", default=9094, show_default=True, help="This node's local runtime API.")
@click.option("--root-certificates", type=_FILE, help=_ROOT_HELP)
@click.option("--auth-supernode-private-key", type=_FILE, help="This node's key (registered).")
@click.option("--insecure", is_flag=True, help=_INSECURE_HELP)
def supernode_cmd(data: str, superlink: str, port: int, **security) -> None:
    """Start a Flower SuperNode for a gateway holding DATA (it never leaves this machine)."""
    from edgecomp.fl.deploy import flower_env, supernode_command

    command = supernode_command(
        data,
        superlink,
        port=port,
        root_certificates=security["root_certificates"],
        private_key=security["auth_supernode_private_key"],
        insecure=security["insecure"],
    )
    sys.exit(subprocess.call(command, env=flower_env()))


@fl.command("register")
@click.argument("public_key", type=_FILE)
@click.option("--superlink", default="127.0.0.1:9092", show_default=True, help="host:port")
@click.option("--root-certificates", type=_FILE, required=True)
@click.option("--work-dir", default="fl-run", show_default=True, type=click.Path())
@json_output
def register_cmd(public_key: str, superlink: str, root_certificates: str, work_dir: str) -> dict:
    """Register a SuperNode's PUBLIC_KEY with a SuperLink started with --enable-supernode-auth."""
    from edgecomp.fl.deploy import register_node

    register_node(public_key, superlink, work_dir, root_certificates=root_certificates)
    click.echo(f"registered {public_key} with {superlink}")
    return {"registered": str(public_key), "superlink": superlink}


@fl.command("run")
@click.option("--superlink", default="127.0.0.1:9092", show_default=True, help="host:port")
@click.option("--min-nodes", default=2, show_default=True, help="SuperNodes to wait for.")
@click.option("--work-dir", default="fl-run", show_default=True, type=click.Path())
@click.option("--root-certificates", type=_FILE, help=_ROOT_HELP)
@click.option("--insecure", is_flag=True, help=_INSECURE_HELP)
@_run_options
def run_cmd(
    superlink: str, min_nodes: int, work_dir: str, root_certificates, insecure: bool, **kw
) -> dict:
    """Submit a federated training to a running SuperLink and stream its log."""
    from edgecomp.fl.deploy import submit

    config = _config(kw, min_nodes=min_nodes)
    summary_path = Path(config.out) / "fl.json"
    summary_path.unlink(missing_ok=True)
    submit(config, superlink, work_dir, root_certificates=root_certificates, insecure=insecure)
    if summary_path.is_file():  # the SuperLink ran on this machine
        return _print_rounds(json.loads(summary_path.read_text()), config.out)
    return {"checkpoint": str(config.out), "submitted_to": superlink, "rounds": None}
