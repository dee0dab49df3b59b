"""Command line: ``edgecomp-runtime info|predict|serve|bench ARTIFACT``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp_runtime.bench import add_parser as add_bench_parser
from edgecomp_runtime.errors import EdgecompRuntimeError, InputError
from edgecomp_runtime.model import Model, load
from edgecomp_runtime.tabular import csv_window


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 with a one-line error on failure)."""
    args = _parser().parse_args(argv)
    try:
        result = args.command(args)
    except (EdgecompRuntimeError, ValueError) as exc:
        print(f"edgecomp-runtime: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecomp-runtime", description="Run edgecomp artifacts (.edgepkg) without torch."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="print the artifact's summary as JSON")
    info.add_argument("artifact", type=Path, help=".edgepkg file or unpacked folder")
    _trusted_key_option(info)
    info.set_defaults(command=_info)
    predict = commands.add_parser("predict", help="forecast one raw window, print JSON")
    predict.add_argument("artifact", type=Path, help=".edgepkg file or unpacked folder")
    predict.add_argument(
        "--input",
        required=True,
        type=Path,
        help="raw window [L, F] or [B, L, F]: .json (nested list; null is missing), .npy, or "
        ".csv (L rows; a header row selects the feature columns by name; empty cells are missing)",
    )
    predict.add_argument("--threads", type=_positive_int, default=None, help="engine threads")
    _trusted_key_option(predict)
    predict.set_defaults(command=_predict)
    _serve_parser(commands)
    add_bench_parser(commands)
    _stream_parser(commands)
    return parser


def _serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="forecast MQTT readings as they arrive; HTTP health, manifest, forecast"
    )
    serve.add_argument("artifact", type=Path, help=".edgepkg file or unpacked folder")
    serve.add_argument("--broker", required=True, help="MQTT broker HOST:PORT")
    serve.add_argument("--device", default="gateway", help="topic segment naming this site")
    serve.add_argument("--topic-prefix", default="edgecomp", help="first topic segment")
    serve.add_argument(
        "--http", default="127.0.0.1:8080", help="HOST:PORT of the HTTP endpoint ('off': none)"
    )
    serve.add_argument("--every", type=_positive_int, default=1, help="forecast every k readings")
    serve.add_argument("--mode", choices=("auto", "incremental", "windowed"), default="auto")
    serve.add_argument("--state", type=Path, help="stream state file: resumed, saved atomically")
    serve.add_argument(
        "--save-interval", type=float, default=1.0, help="save the state at most every S seconds"
    )
    serve.add_argument(
        "--save-every", type=_positive_int, default=10_000, help="or once N readings are unsaved"
    )
    serve.add_argument(
        "--max-ahead",
        type=float,
        default=None,
        help="refuse readings more than S seconds ahead of this clock (default: 2 periods, "
        "at least 300; 'inf' turns the check off)",
    )
    serve.add_argument(
        "--admin", action="store_true", help="accept admin commands (POST /admin/reset, topic)"
    )
    serve.add_argument("--threads", type=_positive_int, default=None, help="engine threads")
    _trusted_key_option(serve)
    serve.set_defaults(command=_serve)


def _serve(args: argparse.Namespace) -> dict[str, Any]:
    from edgecomp_runtime.serve import GatewayConfig, parse_address, serve

    broker = parse_address(args.broker, what="--broker")
    http = None if args.http == "off" else parse_address(args.http, what="--http")
    config = GatewayConfig(
        device=args.device,
        prefix=args.topic_prefix,
        state=args.state,
        save_interval_s=args.save_interval,
        save_every=args.save_every,
        admin=args.admin,
    )
    model = load(args.artifact, threads=args.threads, trusted_keys=args.trusted_key)
    resume = args.state if args.state is not None and args.state.exists() else None
    stream = model.stream(
        every=args.every, mode=args.mode, resume=resume, max_ahead_s=args.max_ahead
    )
    return serve(stream, broker=broker, http=http, config=config)


def _stream_parser(commands: Any) -> None:
    stream = commands.add_parser("stream", help="manage a stream state file")
    actions = stream.add_subparsers(required=True, metavar="ACTION")
    reset = actions.add_parser(
        "reset", help="reset a stream: empty window, new position (counters kept when readable)"
    )
    reset.add_argument("artifact", type=Path, help=".edgepkg file or unpacked folder")
    reset.add_argument("--state", type=Path, required=True, help="the state file to reset")
    reset.set_defaults(command=_stream_reset)


def _stream_reset(args: argparse.Namespace) -> dict[str, Any]:
    from edgecomp_runtime.state import StateFileError
    from edgecomp_runtime.stream import StreamError

    model = load(args.artifact)
    try:
        stream, note = model.stream(resume=args.state), "reset"
    except (StateFileError, StreamError) as exc:  # unreadable or foreign: start a fresh one
        stream, note = model.stream(), f"replaced ({exc})"
    stream.reset()
    stream.save(args.state)
    return {"state": str(args.state), "action": note, "stats": stream.stats}


def _trusted_key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trusted-key",
        action="append",
        type=Path,
        help="ed25519 public key (PEM); repeatable. With it, unsigned or wrongly signed "
        "artifacts are refused",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _info(args: argparse.Namespace) -> dict[str, Any]:
    return load(args.artifact, trusted_keys=args.trusted_key).info()


def _predict(args: argparse.Namespace) -> dict[str, Any]:
    model = load(args.artifact, threads=args.threads, trusted_keys=args.trusted_key)
    extra = {}  # a CSV's times (calendar inputs) and known-future rows (see csv_window)
    if args.input.suffix.lower() == ".csv":
        extra = csv_window(args.input, model.manifest["spec"])[1]
    forecast = model.predict(_read_window(args.input, model), **extra)
    return {"targets": model.targets, "horizon": model.horizon, "forecast": forecast.tolist()}


def _read_window(path: Path, model: Model) -> Any:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".npy", ".csv"):
        raise InputError(f"{path}: unsupported input type '{suffix}'; use .json, .npy or .csv")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".json":
            return _nulls_as_nan(json.loads(path.read_text()))
        return csv_window(path, model.manifest["spec"])[0]
    except (OSError, ValueError, IndexError, RecursionError) as exc:  # JSON nested too deep
        raise InputError(f"{path}: cannot read the window ({exc})") from None


def _nulls_as_nan(value: Any) -> Any:
    """A JSON window with ``null`` for a missing reading (JSON has no NaN) as NaN there."""
    if isinstance(value, list):
        return [_nulls_as_nan(item) for item in value]
    return math.nan if value is None else value


if __name__ == "__main__":
    sys.exit(main())
