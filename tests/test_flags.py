"""One meaning per flag: every option of every `edgecomp` command (nested groups included) is
declared once in MEANINGS, with its value kind and, where names were once ambiguous, a word its
help must use. A name reused with another kind or another meaning fails here; so does an option
nobody declared. Old spellings (cliopts.OldSpelling) are checked apart, each with a test that it
still works and says so in one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgecomp.cli import main
from edgecomp.cliopts import OldSpelling

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = "choice:grid,random,tpe,gp,nsga2,motpe"

# name -> (value kind, meaning, a word the help must contain or None)
MEANINGS: dict[str, tuple[str, str, str | None]] = {
    # outputs: -o/--out is the artifact a command writes; --out-dir the folder it writes into
    "--out": ("path:any", "artifact (.edgepkg) the command writes", "artifact"),
    "-o": ("path:any", "artifact (.edgepkg) the command writes", "artifact"),
    "--out-dir": ("path:dir", "folder the command writes its files into", "folder"),
    "--save-model": ("path:dir", "folder for the transformed model's checkpoint", None),
    "--work-dir": ("path:any", "working folder of a federated deployment", None),
    # error budgets, per horizon step
    "--max-error": ("text", "absolute MAE per step, in the targets' units", "absolute"),
    "--max-error-increase": ("text", "relative MAE increase per step", "relative"),
    "--at-horizon": ("text", "the one step (1-based) the budget applies to", "step"),
    "--no-error-limit": ("flag", "no error budget", None),
    # splits: --split is fractions; which split is --on-split
    "--split": ("text", "train,val,test fractions", "fractions"),
    "--on-split": ("choice:train,val,test", "which split's windows", "split"),
    # data options
    "--data": ("path:file", "data file (CSV/Parquet)", None),
    "--time-col": ("text", "time column", None),
    "--id-col": ("text", "series id column (long format)", None),
    "--value-col": ("text*", "value column(s) (long format)", None),
    "--features": ("text", "comma-separated input features", None),
    "--targets": ("text", "comma-separated target columns", None),
    "--exclude": ("text", "comma-separated columns left out", None),
    "--drop-sparse": ("float range", "fraction of missing values that drops a column", None),
    "--on-duplicate": ("choice:error,first,last,mean", "repeated timestamps policy", None),
    "--stride": ("integer", "window stride", None),
    "--interpolate-limit": ("integer", "steps per gap filled by interpolation", None),
    "--spike-threshold": ("float", "robust z-score above which values are missing", None),
    "--season": ("text", "seasonal-naive baseline periods", None),
    "--target-transform": ("choice:auto,none,clamp", "forecast lower bound", None),
    "--calendar": ("text", "calendar features", None),
    "--future-cols": ("text", "known-in-advance features", None),
    "--input-len": ("integer", "input window length (steps)", None),
    "-L": ("integer", "input window length (steps)", None),
    "--horizon": ("integer", "forecast horizon (steps)", None),
    "-H": ("integer", "forecast horizon (steps)", None),
    # model and training
    "--arch": ("choice:gru,lstm,stgnn,tcn", "architecture", None),
    "--hparam": ("text*", "architecture hyperparameter KEY=VALUE", None),
    "--epochs": ("integer", "training epochs", None),
    "--local-epochs": ("integer", "training epochs per federated round", None),
    "--finetune-epochs": ("integer", "fine-tune epochs of a tuned recipe", None),
    "--batch-size": ("integer", "training batch size", None),
    "--lr": ("float", "learning rate", None),
    "--loss": ("choice:mse,mae", "training loss", None),
    "--patience": ("integer", "early-stopping patience", None),
    "--seed": ("integer", "random seed", None),
    "--weights": ("path:file", "weights of a module.py:factory source", None),
    "--spec": ("path:file", "ModelSpec JSON", None),
    # compilation
    "--target": ("text", "target profile", None),
    "-t": ("text", "target profile", None),
    "--precision": ("text", "precision", None),
    "-p": ("text", "precision", None),
    "--calibration-windows": ("integer", "calibration windows", None),
    "--option": ("text*", "profile lowering option KEY=VALUE", None),
    "--recipe": ("path:file", "TOML build recipe", None),
    "--set": ("text*", "recipe pass option PASS.KEY=VALUE", None),
    "--sign": ("path:file", "ed25519 private key that signs the artifact", None),
    "--trusted-key": ("path:file*", "public key the artifact must be signed by", None),
    "--force": ("flag", "replace existing files", None),
    # measurement and reports
    "--batch": ("integer*", "batch sizes measured", None),
    "--threads": ("integer", "runtime threads", None),
    "--min-iters": ("integer", "minimum timed iterations", None),
    "--min-seconds": ("float", "minimum timed seconds", None),
    "--no-memory": ("flag", "skip peak-memory measurement", None),
    "--device": ("text", "device to measure on", None),
    "--devices-file": ("path:file", "devices TOML", None),
    "--wheelhouse": ("path:dir", "wheels for a device", None),
    "--any-arch": ("flag", "measure artifacts built for another CPU arch", None),
    "--baseline": ("path:any", "earlier report to check for regressions", None),
    "--fail-on-regression": ("flag", "exit 4 on a regression", None),
    "--confirm": ("integer", "re-measurements of a regressed latency", None),
    "--title": ("text", "report title", None),
    # tuning
    "--sampler": (SAMPLERS, "optuna sampler", "sampler"),
    "--trials": ("integer", "trials of the study", None),
    "--timeout": ("float", "seconds this process searches", None),
    "--objective": ("choice:latency,size,error", "what a single objective minimizes", None),
    "--max-p99-ms": ("float", "p99 latency limit", None),
    "--max-size-kb": ("float", "artifact size limit", None),
    "--max-memory-mb": ("float", "peak memory limit", None),
    "--space": ("path:file", "search space file", None),
    "--students": ("flag", "search distilled students", None),
    "--no-students": ("flag", "search distilled students", None),
    "--storage": ("text", "optuna storage URL", None),
    "--study-name": ("text", "optuna study name", None),
    "--allow-mixed-hosts": ("flag", "mix hosts in one study", None),
    "--heartbeat": ("float range", "seconds between worker heartbeats", None),
    "--build": ("flag", "build the chosen recipe", None),
    "--no-build": ("flag", "build the chosen recipe", None),
    # federated
    "--strategy": ("choice:fedavg,fedprox", "Flower aggregation strategy", "aggregation"),
    "--rounds": ("integer", "federated rounds", None),
    "--mu": ("float", "FedProx proximal weight", None),
    "--fraction-train": ("float", "fraction of nodes training per round", None),
    "--fraction-evaluate": ("float", "fraction of nodes evaluating per round", None),
    "--updates": ("choice:fp32,int8", "client update encoding", None),
    "--num-cpus": ("integer", "CPUs Ray may use", None),
    "--site-col": ("text", "column naming each row's site", None),
    "--site": ("text*", "site to write", None),
    "--max-rows": ("integer", "rows kept per site", None),
    "--cert-host": ("text*", "name or IP the SuperLink certificate is valid for", "certificate"),
    "--nodes": ("integer", "SuperNode key pairs to generate", None),
    "--host": ("text", "address the SuperLink binds", None),
    "--port": ("integer", "TCP port this process listens on", None),
    "--superlink": ("text", "SuperLink host:port", None),
    "--min-nodes": ("integer", "SuperNodes to wait for", None),
    "--root-certificates": ("path:file", "CA certificate checked against", None),
    "--ssl-ca-certfile": ("path:file", "CA certificate", None),
    "--ssl-certfile": ("path:file", "SuperLink certificate", None),
    "--ssl-keyfile": ("path:file", "SuperLink private key", None),
    "--enable-supernode-auth": ("flag", "registered SuperNodes only", None),
    "--auth-supernode-private-key": ("path:file", "this node's private key", None),
    "--insecure": ("flag", "plain text, no node authentication", "plain"),
    # output of every command
    "--json": ("flag", "one JSON document on stdout", "JSON"),
    "--quiet": ("flag", "no progress and no logs", "progress"),
    "-q": ("flag", "no progress and no logs", "progress"),
    "--verbose": ("flag", "third-party logs shown", "third-party"),
    "-v": ("flag", "third-party logs shown", "third-party"),
    "--mlflow": ("text", "MLflow tracking URI", "MLflow"),
    "--version": ("flag", "print the version", None),
}

# (command path, old spelling) -> new spelling: each has a test below
DEPRECATED = {
    ("train", "--out"): "--out-dir",
    ("bench", "--out"): "--out-dir",
    ("report", "--out"): "--out-dir",
    ("analyze", "--split"): "--on-split",
    ("tune", "--out"): "--out-dir",
    ("tune", "--strategy"): "--sampler",
    ("fl simulate", "--out"): "--out-dir",
    ("fl local", "--out"): "--out-dir",
    ("fl run", "--out"): "--out-dir",
    ("fl split", "--out"): "--out-dir",
    ("fl credentials", "--out"): "--out-dir",
    ("fl credentials", "--host"): "--cert-host",
}


def kind(param: click.Option) -> str:
    """The value kind of an option: flag, text, integer, path:dir|file|any, choice:..., '*'
    for a repeatable one."""
    value = param.type
    if param.is_flag and not isinstance(value, click.Choice):
        name = "flag"
    elif isinstance(value, click.Path):
        name = "path:" + ("dir" if not value.file_okay else "file" if not value.dir_okay else "any")
    elif isinstance(value, click.Choice):
        name = "choice:" + ",".join(map(str, value.choices))
    else:
        name = value.name
    return name + ("*" if param.multiple else "")


def commands(group: click.Group = main, path: tuple[str, ...] = ()):
    """(path, command) for the group and every command under it, nested groups included."""
    ctx = click.Context(group)
    yield path, group
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


def options(old: bool = False):
    """(command path, option name, option) over the whole CLI."""
    for path, command in commands():
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param, OldSpelling) == old:
                for name in (*param.opts, *param.secondary_opts):
                    yield " ".join(path), name, param


def test_every_option_has_its_declared_kind_and_meaning():
    wrong = []
    for path, name, param in options():
        if name not in MEANINGS:
            wrong.append(f"{path} {name}: not in MEANINGS (declare what it means)")
            continue
        want, meaning, word = MEANINGS[name]
        if kind(param) != want:
            wrong.append(f"{path} {name}: {kind(param)}, but {name} means {meaning} ({want})")
        if word and word.lower() not in (param.help or "").lower():
            wrong.append(f"{path} {name}: help does not say '{word}' ({meaning})")
    assert not wrong, "\n".join(wrong)


def test_the_walk_reaches_nested_groups_and_the_checks_can_fail():
    # setup: a command that reuses --split for "which split", as analyze once did
    bad = click.Command("bad", params=[click.Option(["--split"], default="val", help="Which.")])
    seen = {(path, name) for path, name, _ in options()}
    # assert: nested commands are walked, and the kind/meaning check refuses the reuse
    assert ("fl credentials", "--out-dir") in seen and ("tune", "--sampler") in seen
    assert kind(bad.params[0]) == MEANINGS["--split"][0]  # same kind: the help word decides
    assert MEANINGS["--split"][2] not in (bad.params[0].help or "")


def test_each_old_spelling_is_declared_and_maps_to_an_option_of_the_same_kind():
    found = {}
    for path, name, param in options(old=True):
        if name.startswith("--"):
            found[(path, name)] = param.new
            command = dict(commands())[tuple(path.split())]
            new = [p for p in command.params if param.new in getattr(p, "opts", ())]
            assert new and kind(new[0]) == kind(param), f"{path} {name} -> {param.new}"
    assert found == DEPRECATED


# --- each old spelling still works, and says so in one line on stderr --------------------------


def deprecated_run(args: list[str], old: str, new: str):
    result = CliRunner().invoke(main, args)
    notes = [line for line in result.stderr.splitlines() if "deprecated" in line]
    assert len(notes) == 1 and old in notes[0] and new in notes[0], result.stderr
    return result


def test_fl_credentials_old_out_and_host(tmp_path):
    result = deprecated_run(
        ["fl", "credentials", "-o", str(tmp_path), "--cert-host", "gw.local"], "--out", "--out-dir"
    )
    again = deprecated_run(
        ["fl", "credentials", "--out-dir", str(tmp_path / "b"), "--host", "gw.local"],
        "--host",
        "--cert-host",
    )
    assert result.exit_code == 0 and (tmp_path / "ca.crt").is_file()
    assert again.exit_code == 0 and (tmp_path / "b" / "server.pem").is_file()


def test_fl_split_old_out(tmp_path):
    source = ROOT / "examples" / "data" / "nyc_airports_weather_2013_hourly.csv.gz"
    args = ["fl", "split", str(source), "--site-col", "origin", "--site", "JFK"]
    result = deprecated_run(
        [*args, "--max-rows", "10", "--out", str(tmp_path)], "--out", "--out-dir"
    )
    assert result.exit_code == 0 and len(list(tmp_path.iterdir())) == 1


def test_old_and_new_spelling_together_are_refused(tmp_path):
    result = CliRunner().invoke(main, ["fl", "credentials", "-o", "a", "--out-dir", "b"])
    assert result.exit_code == 2 and "old spelling of --out-dir" in result.stderr


def test_required_new_option_missing_names_it():
    result = CliRunner().invoke(main, ["fl", "credentials"])
    assert result.exit_code == 2 and "--out-dir" in result.stderr


class Recorder:
    """Stands in for a long library call (training, a study): records what the CLI passed."""

    def __init__(self, value=None) -> None:
        self.calls: list[tuple] = []
        self.value = value

    def __call__(self, *args, **kw):
        self.calls.append((args, kw))
        return self.value


def test_tune_old_out_and_strategy(monkeypatch, tmp_path, traffic_checkpoints, traffic_path):
    # setup: the study itself is tested in test_tune.py; here only the flags' mapping
    recorder = Recorder({})
    monkeypatch.setattr("edgecomp.tune.cli._run", recorder)
    args = ["tune", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path)]
    # execute
    out = deprecated_run([*args, "-o", str(tmp_path / "t")], "--out", "--out-dir")
    strategy = deprecated_run(
        [*args, "--strategy", "random", "--out-dir", str(tmp_path / "u")], "--strategy", "--sampler"
    )
    # assert
    assert out.exit_code == 0 and strategy.exit_code == 0, out.output + strategy.output
    (_, _, _, _, first_dir, *_), _ = recorder.calls[0]
    (_, _, config2, *_), _ = recorder.calls[1]
    assert first_dir == tmp_path / "t" and config2.strategy == "random"


def test_fl_simulate_old_out(monkeypatch, tmp_path):
    # setup: Flower's simulation is tested in test_fl.py; here only the flags' mapping
    summary = {"rounds": []}
    recorder = Recorder(summary)
    monkeypatch.setattr("edgecomp.fl.simulation.simulate", recorder)
    site = ROOT / "tests" / "data" / "bixi_late_start.csv"
    # execute
    result = deprecated_run(
        ["fl", "simulate", str(site), "-o", str(tmp_path)], "--out", "--out-dir"
    )
    # assert
    assert result.exit_code == 0, result.output
    (config,), _ = recorder.calls[0]
    assert config.out == str(tmp_path)


@pytest.mark.parametrize("command", ["local", "run"])
def test_fl_local_and_run_old_out_reach_the_config(monkeypatch, tmp_path, command):
    # setup: stop at the config, before any process starts
    def stop(kw, **_):
        raise click.UsageError(f"config out={kw['out_dir']}")

    monkeypatch.setattr("edgecomp.fl.cli._config", stop)
    site = ROOT / "tests" / "data" / "bixi_late_start.csv"
    args = ["fl", command, *([str(site)] if command == "local" else []), "-o", str(tmp_path)]
    # execute
    result = deprecated_run(args, "--out", "--out-dir")
    # assert
    assert f"config out={tmp_path}" in result.stderr


def test_train_old_out(tmp_path, traffic_path):
    args = ["train", str(traffic_path), "--id-col", "detector", "--value-col", "total"]
    args += ["-L", "8", "-H", "2", "--arch", "tcn", "--hparam", "channels=4", "--epochs", "1"]
    result = deprecated_run([*args, "--calendar", "off", "-o", str(tmp_path)], "--out", "--out-dir")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "spec.json").is_file()


def test_bench_report_old_out_and_analyze_old_split(tmp_path, traffic_checkpoints, traffic_path):
    # setup: a small artifact
    artifact = tmp_path / "a.edgepkg"
    built = CliRunner().invoke(
        main,
        ["build", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path), "-p", "fp32",
         "--out", str(artifact)],
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    bench = ["bench", str(artifact), "--batch", "1", "--min-iters", "2", "--min-seconds", "0"]
    analyze = ["analyze", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path)]
    analyze += ["-p", "int8", "--calibration-windows", "16", "--out-dir", str(tmp_path / "an")]
    # execute
    benched = deprecated_run(
        [*bench, "--no-memory", "-o", str(tmp_path / "b")], "--out", "--out-dir"
    )
    analyzed = deprecated_run([*analyze, "--split", "test"], "--split", "--on-split")
    report = ["report", str(tmp_path / "b" / "report.json"), "-o", str(tmp_path / "r")]
    reported = deprecated_run(report, "--out", "--out-dir")
    # assert
    assert benched.exit_code == 0 and (tmp_path / "b" / "report.json").is_file(), benched.output
    assert reported.exit_code == 0 and (tmp_path / "r" / "report.html").is_file(), reported.output
    assert analyzed.exit_code == 0, analyzed.output
    assert json.loads((tmp_path / "an" / "sensitivity.json").read_text())["split"] == "test"
