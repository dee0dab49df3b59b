"""The native engine attacked from outside: hostile ``.native`` files inside a valid artifact
(fuzzed, or disagreeing with the manifest), inputs at float32's edges, concurrent callers."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from edgecomp_runtime import load, native
from edgecomp_runtime.errors import ArtifactError, InputError, ModelOutputError
from edgecomp_runtime.native import format as fmt
from edgecomp_runtime.native import reference

needs_kernel = pytest.mark.skipif(not native.available(), reason=f"{native.unavailable_reason()}")
FIXTURES = Path(__file__).resolve().parent / "fixtures"
GATES = {"lstm": 4, "gru": 3}


def _pack(toy, cell="lstm", precision="int8", hidden=(6,), **changes):
    """A ``.native`` file shaped for the toy artifact, with ``changes`` to its arguments."""
    args = {
        "input_len": toy.input_len,
        "n_features": len(toy.features),
        "target_index": [toy.features.index(t) for t in toy.targets],
        "horizon": toy.horizon,
        "residual": True,
        **changes,
    }
    rng = np.random.default_rng(0)
    layers, width = [], args["n_features"]
    for size in hidden:
        rows = GATES[cell] * size
        layers.append(
            {
                "w_ih": rng.uniform(-0.5, 0.5, (rows, width)),
                "w_hh": rng.uniform(-0.5, 0.5, (rows, size)),
                "b_ih": rng.uniform(-0.5, 0.5, rows),
                "b_hh": rng.uniform(-0.5, 0.5, rows),
            }
        )
        width = size
    outputs = args.pop("horizon") * len(args["target_index"])
    head = rng.normal(0, 0.3, (outputs, width)), rng.normal(0, 0.1, outputs)
    return native.pack(cell, layers, *head, precision=precision, **args)


def _artifact(make_artifact, toy, data):
    from conftest import native_artifact

    return native_artifact(make_artifact, toy, data)


def _split(data):
    (length,) = struct.unpack_from("<I", data, 8)
    start = 12 + length + (-(12 + length) % fmt.ALIGN)
    return json.loads(data[12 : 12 + length]), bytearray(data[start:])


def _join(text: bytes, body: bytes) -> bytes:
    start = 12 + len(text)
    return fmt.MAGIC + struct.pack("<I", len(text)) + text + b"\0" * (-start % fmt.ALIGN) + body


# ------------------------------------------------------------------ the file against the manifest


@needs_kernel
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"input_len": 5}, "input_len 5"),
        ({"input_len": 7}, "input_len 7"),
        ({"n_features": 4}, "n_features 4"),
        ({"horizon": 1}, "horizon 1"),
        ({"horizon": 4}, "horizon 4"),
        ({"target_index": [2]}, "n_targets 1"),
        ({"target_index": [2, 0, 1]}, "n_targets 3"),
        ({"target_index": [1, 0]}, r"target_index \[1, 0\]"),
    ],
)
def test_a_native_file_shaped_unlike_the_manifest_is_refused_at_load(
    make_artifact, toy, changes, field
):
    # setup: a valid, checksummed artifact whose .native file disagrees with spec / io
    path = _artifact(make_artifact, toy, _pack(toy, **changes))
    # assert: refused at load, naming the file and the field, not a forecast of another shape
    with pytest.raises(ArtifactError, match=f"model.native: .*{field}"):
        load(path)


@needs_kernel
def test_without_the_residual_target_index_is_not_compared(make_artifact, toy):
    # setup: target_index [1, 0] differs from the spec's targets (c, a) = [2, 0], unused here
    path = _artifact(make_artifact, toy, _pack(toy, target_index=[1, 0], residual=False))
    # execute
    model = load(path)
    # assert
    assert model.backend == "native"
    assert model.predict(toy.window(batch=2)).shape == (2, toy.horizon, len(toy.targets))


# ------------------------------------------------------------------ header corner cases


def test_a_header_with_a_repeated_key_is_refused():
    header, body = _split(_pack_plain())
    text = json.dumps(header).encode().replace(b'"input_len"', b'"input_len":3,"input_len"', 1)
    with pytest.raises(ArtifactError, match="net.native: .*repeats the key 'input_len'"):
        native.describe(_join(text, bytes(body)), "net.native")


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_a_version_that_only_equals_1_loosely_is_refused(version):
    header, body = _split(_pack_plain())
    header["version"] = version
    with pytest.raises(ArtifactError, match="net.native: version .* is not 1"):
        native.describe(_join(json.dumps(header).encode(), bytes(body)), "net.native")


@pytest.mark.parametrize("number", [b"9" * 5000, b"1e999", b"-0", b"NaN", b"6.0"])
def test_a_number_json_reads_oddly_is_refused_naming_the_file(number):
    # 5000 digits: Python's int conversion limit raises ValueError inside json.loads
    header, body = _split(_pack_plain())
    text = json.dumps(header).encode().replace(b'"input_len": 6', b'"input_len": ' + number, 1)
    assert text != json.dumps(header).encode()
    with pytest.raises(ArtifactError, match="^net.native: "):
        native.describe(_join(text, bytes(body)), "net.native")


@pytest.mark.parametrize("depth", [100, 100_000])
def test_a_deeply_nested_header_is_refused(depth):
    text = b'{"format":"edgecomp-native","version":1,"x":' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(ArtifactError, match="net.native: "):
        native.describe(_join(text, b""), "net.native")


def test_an_array_no_layer_reads_is_refused():
    header, body = _split(_pack_plain())
    extra = {"name": "layer9.ih.weight", "dtype": "float32", "shape": [1, 1], "offset": 0}
    header["arrays"].append(extra)
    with pytest.raises(ArtifactError, match="net.native: .*layer9.ih.weight"):
        native.describe(_join(json.dumps(header).encode(), bytes(body)), "net.native")


def _pack_plain(precision="int8"):
    from conftest import Toy

    return _pack(Toy(), precision=precision, hidden=(8, 5))


# ------------------------------------------------------------------ a byte-level fuzzer

FUZZ = textwrap.dedent(
    """
    import json, random, struct, sys
    import numpy as np
    from edgecomp_runtime import native
    from edgecomp_runtime.errors import ArtifactError

    seeds = [bytes.fromhex(h) for h in json.loads(sys.argv[1])]
    rnd = random.Random(int(sys.argv[2]))
    found = {}
    for _ in range(int(sys.argv[3])):
        data = bytearray(rnd.choice(seeds))
        length = int.from_bytes(data[8:12], "little")
        for _ in range(rnd.randint(1, 4)):
            kind, at = rnd.random(), rnd.randrange(len(data)) if data else 0
            if kind < 0.5 and length:  # a header byte: digits and JSON punctuation mostly
                at = 12 + rnd.randrange(min(length, max(1, len(data) - 12)))
                if at < len(data):
                    data[at] = ord(rnd.choice("0123456789-,:[]{}e.\\"x ")) if rnd.random() < 0.7 \\
                        else rnd.randrange(256)
            elif kind < 0.7 and data:
                data[at] = rnd.randrange(256)
            elif kind < 0.8:
                del data[at : at + rnd.randint(1, 8)]
            elif kind < 0.9:
                data[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
            else:
                del data[rnd.randrange(len(data) + 1) :]
        try:
            for isa in (None, "avx2", "portable"):  # every kernel path
                kernel = native.Kernel(bytes(data), "f.native", isa=isa)
                m = kernel.model
                for batch in (1, 3):
                    x = np.ones((batch, m.input_len, m.n_features), np.float32)
                    assert kernel.run(x).shape == (batch, m.horizon, m.n_targets)
            found["ran"] = found.get("ran", 0) + 1
        except ArtifactError as exc:
            assert str(exc).startswith("f.native: "), str(exc)
            found["refused"] = found.get("refused", 0) + 1
    print(json.dumps(found))
    """
)


@needs_kernel
@pytest.mark.parametrize("seed", [1, 2])
def test_random_mutations_of_real_files_are_refused_or_run_never_crash(seed):
    # setup: LSTM int8, GRU fp32, mixed precisions with a float input projection
    from conftest import Toy

    toy = Toy()
    seeds = [
        _pack(toy, "lstm", "int8", (8, 5)),
        _pack(toy, "gru", "fp32", (7,)),
        _pack(toy, "lstm", ["int8", "fp32", "int8"], (4, 3)),
    ]
    # execute: in a child process, so a segfault or an abort is a failed exit, not a lost run
    result = subprocess.run(
        [sys.executable, "-c", FUZZ, json.dumps([s.hex() for s in seeds]), str(seed), "3000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # assert: every mutation refused with ArtifactError naming the file, or run to the shape
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found.get("refused", 0) > 2000 and found.get("ran", 0) > 10, found


# ------------------------------------------------------------------ inputs at float32's edges


@needs_kernel
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_edge_inputs_get_the_refusals_of_the_onnx_fallback(make_artifact, toy, precision):
    # setup: the same artifact run by its native file and by its ONNX file
    path = _artifact(make_artifact, toy, _pack(toy, precision=precision))
    models = [load(path), load(path, engine="onnx")]
    assert [m.backend for m in models] == ["native", "onnx"]
    base = toy.window(batch=2)
    infinite, beyond = base.copy(), base.copy()
    infinite[1, 2, 0] = np.inf
    beyond[0, 1, 1] = 1e300  # finite in float64, beyond float32 once scaled
    # assert: both engines refuse the same windows with the same error
    for window in (infinite, beyond):
        for model in models:
            with pytest.raises(InputError, match="batch row"):
                model.predict(window)


@needs_kernel
@pytest.mark.parametrize("precision", ["int8", "fp32"])
@pytest.mark.parametrize("edge", ["negative_zero", "subnormal", "1e30"])
def test_edge_inputs_give_finite_forecasts_as_the_onnx_fallback_does(
    make_artifact, toy, precision, edge
):
    # setup: raw windows whose scaled values are -0.0, subnormal, or +-1e30 (float32)
    path = _artifact(make_artifact, toy, _pack(toy, precision=precision))
    native_model, onnx_model = load(path), load(path, engine="onnx")
    mean = np.array(toy.mean, np.float32)
    window = np.tile(mean, (2, toy.input_len, 1)).astype(np.float32)
    if edge == "negative_zero":
        scaled = np.full(window.shape, -0.0, np.float32)
    elif edge == "subnormal":
        scaled = np.zeros(window.shape, np.float32)
        scaled[:, :, 1] = 1e-45
    else:
        scaled = np.zeros(window.shape, np.float32)
        scaled[0, :, 0], scaled[1, :, 2] = 1e30, -1e30
    # execute: the bare model on those scaled values, and predict on raw ones
    outs = [m.run_scaled(scaled) for m in (native_model, onnx_model)]
    forecast = native_model.predict(window)
    # assert: finite forecasts like the fallback's (the toy ONNX file is another model)
    assert all(np.isfinite(y).all() for y in outs)
    assert np.isfinite(forecast).all() and forecast.shape == (2, toy.horizon, len(toy.targets))


@needs_kernel
@pytest.mark.parametrize("isa", [None, "avx2", "portable"])
@pytest.mark.parametrize(
    ("cell", "edge"),
    [("lstm", "tiny_input_row"), ("gru", "tiny_input_row"), ("lstm", "saturated_gates")],
)
def test_int8_rows_of_tiny_values_match_the_reference_on_every_path(toy, isa, cell, edge):
    # setup: int8 maps whose input rows peak below ~3.7e-37: a window step of 1e-37 and zeros,
    # or inputs of 1e4 that saturate the LSTM's output gate so h underflows to ~1e-44
    data = _pack(toy, cell, "int8", (8, 5))
    rng = np.random.default_rng(0)
    if edge == "tiny_input_row":
        x = np.zeros((2, toy.input_len, 3), np.float32)
        x[:, :, 0] = 1e-37
    else:
        x = (rng.normal(0, 1, (4, toy.input_len, 3)) * 1e4).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # exp(-x) saturating
        expected = reference.run(native.parse(data), x)
    # execute
    got = native.Kernel(data, isa=isa).run(x)
    # assert
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=1e-5)


@needs_kernel
def test_a_non_finite_native_forecast_is_refused_as_on_other_engines(make_artifact, toy):
    # setup: a head weight of 3e38 (finite float32): its forecast overflows
    header, body = _split(_pack(toy, precision="fp32"))
    entry = next(a for a in header["arrays"] if a["name"] == "head.weight")
    for k in range(int(np.prod(entry["shape"]))):
        struct.pack_into("<f", body, entry["offset"] + 4 * k, 3e38)
    data = _join(json.dumps(header, separators=(",", ":")).encode(), bytes(body))
    model = load(_artifact(make_artifact, toy, data))
    # assert: fast path (float arrays) and general path (lists) both refuse
    with pytest.raises(ModelOutputError, match="not finite"):
        model.predict(toy.window(batch=3))
    with pytest.raises(ModelOutputError, match="not finite"):
        model.predict(toy.window().tolist())


# ------------------------------------------------------------------ concurrency


@needs_kernel
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_threads_with_different_batch_sizes_get_the_serial_results(make_artifact, toy, precision):
    # setup
    model = load(_artifact(make_artifact, toy, _pack(toy, precision=precision, hidden=(16, 9))))
    windows = {b: toy.window(batch=b, seed=b) for b in (1, 2, 3, 7, 64, 200)}
    serial = {b: model.predict(w) for b, w in windows.items()}
    results, errors = {}, []

    def work(batch):
        try:
            for _ in range(30):
                y = model.predict(windows[batch])
                if not np.array_equal(y, serial[batch]):
                    results[batch] = y
                    return
            results.setdefault(batch, None)
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    # execute
    threads = [threading.Thread(target=work, args=(b,)) for b in windows for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # assert: every thread, every call, bit-identical to the serial forecast
    assert not errors, errors
    assert results == dict.fromkeys(windows), {b: y for b, y in results.items() if y is not None}


# ------------------------------------------------------------------ the kernel's scratch


@needs_kernel
def test_a_batch_whose_scratch_would_exceed_the_limit_runs_in_sub_batches(toy, monkeypatch):
    # setup: a limit of 3 windows' sequence buffers (input_len * widest layer 8), a spy on the
    # compiled kernel's run
    data = _pack(toy, "lstm", "int8", (8, 5))
    x = np.random.default_rng(3).normal(0, 1, (8, toy.input_len, 3)).astype(np.float32)
    whole = native.Kernel(data).run(x)
    monkeypatch.setattr(native, "_SCRATCH_FLOATS", 3 * toy.input_len * 8)
    compiled, sizes = native._KERNEL, []

    def run(capsule, xs, ys):
        sizes.append(len(xs))
        compiled.run(capsule, xs, ys)

    spy = types.SimpleNamespace(run=run, prepare=compiled.prepare)
    monkeypatch.setattr(native, "_KERNEL", spy)
    kernel = native.Kernel(data)
    # execute: run, and a binding (predict's path)
    got = kernel.run(x)
    bound = kernel.bind(x, whole.shape)()
    # assert: three calls of at most 3 windows each, the forecasts of one call
    assert sizes == [3, 3, 2, 3, 3, 2]
    np.testing.assert_allclose(got, whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(bound, got)


def test_a_file_near_the_sequence_limit_runs_few_windows_per_call(toy):
    # setup: 1024 steps of 4096 features: 2^22 floats per window's sequence buffer
    data = _pack(toy, "gru", "int8", (2,), input_len=1024, n_features=4096, target_index=[0])
    # assert: 4 windows per kernel call (two 64 MiB buffers at most), not predict's 256
    if native.available():
        assert native.Kernel(data)._step == 4
    assert native._SCRATCH_FLOATS == fmt.LIMITS["sequence"] == 1 << 24


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("recipe.lowering.equivalent_engines", 5, "equivalent_engines"),
        ("recipe.lowering.equivalent_engines", "onnx", "equivalent_engines"),
        ("recipe.lowering.equivalent_engines", [["onnx"]], "equivalent_engines"),
        ("recipe.lowering.engine", ["native"], "lowering.engine"),
        ("recipe.lowering", "native", "recipe.lowering"),
    ],
)
def test_a_malformed_engine_record_is_refused_naming_the_field(make_artifact, path, value, field):
    # setup: the manifest's engine choice tampered (a type no build writes)
    artifact = make_artifact(manifest={path: value})
    # execute + assert: an ArtifactError naming the field, not a TypeError / AttributeError
    with pytest.raises(ArtifactError, match=field):
        load(artifact)
