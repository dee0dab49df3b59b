"""The native recurrent kernel against its numpy reference; the .native file against bad input."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgecomp_runtime import engines as engines_module
from edgecomp_runtime import load, native
from edgecomp_runtime.engines import get_engine
from edgecomp_runtime.engines.native import NativeEngine
from edgecomp_runtime.errors import ArtifactError, EngineUnavailableError, InputShapeError
from edgecomp_runtime.native import format as fmt
from edgecomp_runtime.native import reference

needs_kernel = pytest.mark.skipif(not native.available(), reason=f"{native.unavailable_reason()}")
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _weights(cell, n_features, hidden, outputs, seed=0):
    from conftest import rnn_weights

    return rnn_weights(cell, n_features, hidden, outputs, seed)


def _pack(cell="lstm", hidden=(8, 5), precision="fp32", *, input_len=7, n_features=3,
          target_index=(2, 0), horizon=2, residual=True, seed=0):  # fmt: skip
    layers, head_w, head_b = _weights(cell, n_features, hidden, horizon * len(target_index), seed)
    return native.pack(
        cell, layers, head_w, head_b, input_len=input_len, n_features=n_features,
        target_index=list(target_index), residual=residual, precision=precision,
    )  # fmt: skip


def _windows(batch, input_len=7, n_features=3, seed=1):
    return (
        np.random.default_rng(seed)
        .normal(0, 1.5, (batch, input_len, n_features))
        .astype(np.float32)
    )


# ------------------------------------------------------------------------------ kernel vs numpy


# isa: None the best paths of this CPU, "portable" the plain C loops (aarch64 runs them),
# "avx2" no AVX-512 (AVX2-only x86-64: int8 maps on AVX2, the rest plain C)
PORTABLE = pytest.mark.parametrize(
    "isa", [None, "portable", "avx2"], ids=["dispatch", "portable", "avx2"]
)


@needs_kernel
@PORTABLE
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("hidden", [(1,), (7,), (33, 64), (64, 7, 33)])
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_fp32_kernel_matches_the_reference(cell, hidden, batch, isa):
    data = _pack(cell, hidden, "fp32", input_len=9, n_features=5, target_index=(4, 1, 0))
    kernel = native.Kernel(data, isa=isa)
    x = _windows(batch, 9, 5)
    expected = reference.run(kernel.model, x)
    got = kernel.run(x)
    assert got.shape == (batch, 2, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-5)


@needs_kernel
@PORTABLE
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("hidden", [(1,), (7,), (33, 64), (64, 7, 33)])
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_int8_kernel_matches_the_reference_and_stays_near_fp32(cell, hidden, batch, isa):
    # setup: the same weights in int8 and fp32
    shape = {"input_len": 9, "n_features": 5, "target_index": (4, 1, 0)}
    int8 = native.Kernel(_pack(cell, hidden, "int8", **shape), isa=isa)
    fp32 = native.Kernel(_pack(cell, hidden, "fp32", **shape))
    x = _windows(batch, 9, 5)
    # execute
    got = int8.run(x)
    # assert: the int8 reference up to rare rounding flips, fp32 up to int8 error
    expected = reference.run(int8.model, x)
    close = np.abs(got - expected) <= 1e-4 + 1e-4 * np.abs(expected)
    assert close.mean() >= 0.97, np.abs(got - expected).max()
    assert np.abs(got - expected).max() < 0.05
    assert np.abs(got - reference.run(fp32.model, x)).max() < 0.1


def _avx2_kernel(data):
    kernel = native.Kernel(data, isa="avx2")
    if kernel.isa != "avx2":
        pytest.skip(f"this CPU has no AVX2 (int8 runs on {kernel.isa})")
    return kernel


@needs_kernel
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(("hidden", "n_features"), [((7,), 5), ((5, 3), 33), ((1,), 9)])
@pytest.mark.parametrize("batch", [1, 2, 3, 64])
def test_avx2_int8_gives_the_exact_integer_sums_of_the_portable_path(
    cell, hidden, n_features, batch
):
    # setup: under 8 units the AVX2 gates run the plain C cell's math, so any difference would be
    # the GEMM's; odd widths (padded 4-byte groups, quantization tails), a head of 80 outputs
    # (two 64-column blocks), odd and even batches
    shape = {"input_len": 9, "n_features": n_features, "target_index": (4, 1), "horizon": 40}
    data = _pack(cell, hidden, "int8", **shape)
    avx2, portable = _avx2_kernel(data), native.Kernel(data, portable=True)
    x = _windows(batch, 9, n_features) * np.float32(3)
    # assert: the same integer sums and the same rescaling, so the same floats
    assert portable.isa == "portable"
    np.testing.assert_array_equal(avx2.run(x), portable.run(x))


@needs_kernel
def test_a_weight_of_minus_128_leaves_avx2_for_the_exact_path():
    # setup: one hh weight set to -128 (pack never writes it; vpsignb cannot negate it); under 8
    # units both paths run the same gate math
    header, body = _split(_pack("lstm", (7,), "int8"))
    body = bytearray(body)
    body[_scale_entry(header, "layer0.hh.weight")["offset"] + 5] = 0x80
    data = _join(header, bytes(body))
    avx2 = _avx2_kernel(data)
    x = _windows(6) * np.float32(4)
    # assert: the -128 multiplies as -128
    assert avx2.model.layers[0].hh.weight.min() == -128
    np.testing.assert_array_equal(avx2.run(x), native.Kernel(data, portable=True).run(x))
    np.testing.assert_allclose(avx2.run(x), reference.run(avx2.model, x), atol=1e-3)


@needs_kernel
def test_an_unknown_isa_is_refused():
    with pytest.raises(ValueError, match="isa must be None, 'avx2' or 'portable', got 'sse'"):
        native.Kernel(_pack(), isa="sse")
    assert native.host_isa() in ("avx512-vnni", "avx2", "portable")


@needs_kernel
@PORTABLE
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_saturating_inputs_and_constant_rows_match_the_reference(cell, isa):
    # setup: gate inputs far past the nonlinearities' knees, an all-zero and a constant window
    data = _pack(cell, (16, 5), "fp32")
    kernel = native.Kernel(data, isa=isa)
    x = _windows(4) * 60
    x[1] = 0
    x[2] = 3.5
    # assert: the kernel's exp, sigmoid and tanh hold their accuracy where they clamp
    np.testing.assert_allclose(kernel.run(x), reference.run(kernel.model, x), atol=2e-5)
    int8 = native.Kernel(_pack(cell, (16, 5), "int8"), isa=isa)
    np.testing.assert_allclose(int8.run(x[1:3]), reference.run(int8.model, x[1:3]), atol=1e-3)


@needs_kernel
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_mixed_precisions_follow_the_plan(cell):
    # setup: layer 0 int8, layer 1 fp32, head int8
    plan = ["int8", "fp32", "int8"]
    kernel = native.Kernel(_pack(cell, (16, 9), plan))
    x = _windows(5)
    # assert: the header records the plan and the kernel follows it
    header = native.describe(_pack(cell, (16, 9), plan))
    assert [layer["precision"] for layer in header["layers"]] == plan[:2]
    assert header["head"]["precision"] == "int8"
    np.testing.assert_allclose(kernel.run(x), reference.run(kernel.model, x), atol=1e-3)
    assert kernel.model.layers[1].ih.weight.dtype == np.float32


@needs_kernel
@PORTABLE
@pytest.mark.parametrize(("precision", "input_precision"), [("int8", "fp32"), ("fp32", "int8")])
def test_layer_0_input_projection_has_its_own_precision(precision, input_precision, isa):
    # setup
    layers, head_w, head_b = _weights("lstm", 3, (8, 5), 4)
    args = {"input_len": 7, "n_features": 3, "target_index": [2, 0], "residual": True}
    data = native.pack("lstm", layers, head_w, head_b, precision=precision,
                       input_precision=input_precision, **args)  # fmt: skip
    kernel = native.Kernel(data, isa=isa)
    x = _windows(5)
    # assert: only layer 0's input map differs from the layer's precision
    model = kernel.model
    assert model.layers[0].ih.precision == input_precision
    assert model.layers[0].hh.precision == model.layers[1].ih.precision == precision
    assert native.describe(data)["layers"][0]["input_precision"] == input_precision
    np.testing.assert_allclose(kernel.run(x), reference.run(model, x), atol=1e-3)
    with pytest.raises(ValueError, match="input_precision must be"):
        native.pack("lstm", layers, head_w, head_b, precision="int8", input_precision="int4",
                    **args)  # fmt: skip


@needs_kernel
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_large_batch_projects_the_input_one_step_at_a_time(precision):
    # setup: 300 windows x 256 gate columns: the hoisted input projection runs per step
    kernel = native.Kernel(_pack("lstm", (64,), precision))
    x = _windows(300)
    # assert
    expected = reference.run(kernel.model, x)
    close = np.abs(kernel.run(x) - expected) <= 2e-5 + 1e-4 * np.abs(expected)
    assert close.mean() >= 0.97
    np.testing.assert_allclose(kernel.run(x[:7]), kernel.run(x)[:7], atol=1e-6)


@needs_kernel
def test_residual_adds_the_last_reading_of_each_target():
    # setup: the same weights with and without the residual
    with_res = native.Kernel(_pack(residual=True))
    without = native.Kernel(_pack(residual=False))
    x = _windows(4)
    # assert
    diff = with_res.run(x) - without.run(x)
    np.testing.assert_allclose(diff, np.broadcast_to(x[:, -1:, [2, 0]], diff.shape), atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("isa", [None, "avx2"], ids=["dispatch", "avx2"])
def test_two_threads_get_the_same_results(isa):
    # setup
    kernel = native.Kernel(_pack("gru", (64, 64), "int8"), isa=isa)
    batches = [_windows(b, seed=b) for b in (1, 64, 3, 17)]
    expected = [kernel.run(x) for x in batches]
    results, errors = {}, []

    def work(index):
        try:
            results[index] = [kernel.run(x) for x in batches * 20]
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    # execute
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # assert
    assert not errors
    for runs in results.values():
        for got, want in zip(runs, expected * 20, strict=True):
            np.testing.assert_array_equal(got, want)


@needs_kernel
def test_a_window_of_the_wrong_shape_is_refused():
    kernel = native.Kernel(_pack())
    with pytest.raises(ValueError, match=r"model.native: windows must be \[batch, 7, 3\]"):
        kernel.run(np.zeros((2, 6, 3), np.float32))
    with pytest.raises(ValueError, match="windows must be"):
        kernel.run(np.zeros((0, 7, 3), np.float32))


def test_reference_sigmoid_and_quantization_are_what_the_docs_say():
    q, scale = reference.quantize_activations(np.array([[0.5, -1.0, 0.25], [0, 0, 0]], np.float32))
    assert q.tolist() == [[64, -127, 32], [0, 0, 0]]
    assert scale.tolist() == [np.float32(1) / np.float32(127), 0.0]
    assert reference.sigmoid(np.float32(0)) == np.float32(0.5)


# ------------------------------------------------------------------------------ other CPUs

HARNESS = Path(__file__).resolve().parent / "native_harness.c"
CROSS = {
    # arch: (C compiler, how to run its binaries)
    "aarch64": ("aarch64-linux-gnu-gcc", ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]),
    "host": ("gcc", []),
}


def _harness_input(data, x, portable):
    meta, arrays = native._kernel_arrays(native.parse(data))
    parts = [struct.pack("<q", len(meta)), struct.pack(f"<{len(meta)}q", *meta)]
    parts.append(struct.pack("<q", len(arrays)))
    for array in arrays:
        raw = np.ascontiguousarray(array).tobytes()
        parts += [struct.pack("<q", len(raw)), raw]
    parts += [struct.pack("<qq", int(portable), len(x)), np.ascontiguousarray(x, "<f4").tobytes()]
    return b"".join(parts)


@pytest.mark.parametrize("arch", sorted(CROSS))
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_kernel_builds_and_matches_the_reference_on_other_cpus(arch, cell, tmp_path):
    # setup: the kernel alone (no Python), built with the arch's compiler, flags as setup.py's
    compiler, runner = CROSS[arch]
    if not shutil.which(compiler) or (runner and not shutil.which(runner[0])):
        pytest.skip(f"needs {compiler} and {runner[0] if runner else 'nothing else'}")
    binary = tmp_path / "harness"
    flags = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wextra", "-Werror"]
    subprocess.run([compiler, *flags, str(HARNESS), "-o", str(binary), "-lm"], check=True)
    x = _windows(5, 9, 5)
    shape = {"input_len": 9, "n_features": 5, "target_index": (4, 1, 0)}
    for precision, portable in [("fp32", True), ("int8", True), ("int8", False)]:
        data = _pack(cell, (33, 7), precision, **shape)
        (tmp_path / "in").write_bytes(_harness_input(data, x, portable))
        # execute
        subprocess.run([*runner, str(binary), str(tmp_path / "in"), str(tmp_path / "out")],
                       check=True, timeout=120)  # fmt: skip
        got = np.fromfile(tmp_path / "out", "<f4").reshape(5, 2, 3)
        # assert
        expected = reference.run(native.parse(data), x)
        np.testing.assert_allclose(got, expected, atol=2e-5 if precision == "fp32" else 1e-3)


# ------------------------------------------------------------------------------ pack arguments


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cell": "rnn"}, "cell must be one of"),
        ({"precision": "int4"}, "precision must be"),
        ({"precision": ["int8", "fp32"]}, "precision must be"),
        ({"target_index": [3]}, "target_index"),
        ({"input_len": 0}, "input_len must be in"),
    ],
)
def test_pack_names_the_bad_argument(change, message):
    layers, head_w, head_b = _weights("lstm", 3, (4, 4), 4)
    args = {"cell": "lstm", "input_len": 5, "n_features": 3, "target_index": [2, 0],
            "residual": True, "precision": "fp32", **change}  # fmt: skip
    cell = args.pop("cell")
    with pytest.raises(ValueError, match=message):
        native.pack(cell, layers, head_w, head_b, **args)


def test_pack_names_the_layer_with_a_bad_shape():
    layers, head_w, head_b = _weights("gru", 3, (4, 4), 4)
    layers[1]["w_ih"] = layers[1]["w_ih"][:, :3]
    with pytest.raises(ValueError, match=r"layers\[1\].w_ih must be \[12, 4\]"):
        native.pack("gru", layers, head_w, head_b, input_len=5, n_features=3,
                    target_index=[2, 0], residual=True, precision="int8")  # fmt: skip
    layers, head_w, head_b = _weights("gru", 3, (4,), 4)
    layers[0]["b_hh"] = layers[0]["b_hh"] * np.nan
    with pytest.raises(ValueError, match=r"layers\[0\].b_hh holds NaN"):
        native.pack("gru", layers, head_w, head_b, input_len=5, n_features=3,
                    target_index=[2, 0], residual=True, precision="int8")  # fmt: skip


def test_describe_gives_the_validated_header():
    header = native.describe(_pack("gru", (8, 5), "int8"))
    assert header["cell"] == "gru" and header["version"] == fmt.VERSION
    assert [(layer["input"], layer["hidden"]) for layer in header["layers"]] == [(3, 8), (8, 5)]
    assert (header["horizon"], header["n_targets"], header["target_index"]) == (2, 2, [2, 0])


# ------------------------------------------------------------------------------ hostile files


def _split(data):
    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[12 : 12 + length])
    body_start = 12 + length + (-(12 + length) % fmt.ALIGN)
    return header, data[body_start:]


def _join(header, body):
    text = json.dumps(header).encode()
    start = 12 + len(text)
    return fmt.MAGIC + struct.pack("<I", len(text)) + text + b"\0" * (-start % fmt.ALIGN) + body


def _edit(data, **changes):
    header, body = _split(data)
    for path, value in changes.items():
        obj, *keys = [header, *path.split("__")]
        for key in keys[:-1]:
            obj = obj[int(key)] if isinstance(obj, list) else obj[key]
        last = keys[-1]
        obj[int(last) if isinstance(obj, list) else last] = value
    return _join(header, body)


def _scale_entry(header, name):
    return next(a for a in header["arrays"] if a["name"] == name)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 2}, "version 2 is not 1"),
        ({"format": "onnx"}, "header.format"),
        ({"cell": "rnn"}, "cell must be one of"),
        ({"layers__0__hidden": 1 << 30}, r"layers\[0\].hidden must be an int in 1..4096"),
        ({"layers__0__hidden": 4096}, r"array layer0.ih.weight must be int8 \[16384, 3\]"),
        ({"input_len": -1}, "input_len must be an int"),
        ({"input_len": 100_000, "layers__0__hidden": 4096}, "array layer0.ih.weight must be"),
        ({"horizon": 1 << 40}, "horizon must be an int"),
        ({"horizon": 2000, "n_targets": 1000}, "horizon \\* n_targets exceeds"),
        ({"target_index": [2, 7]}, "target_index must list 2 feature positions < 3"),
        ({"residual": 1}, "residual must be true or false"),
        ({"layers__0__precision": "int4"}, r"layers\[0\].precision must be one of"),
        ({"layers__0__input_precision": "fp16"}, r"layers\[0\].input_precision must be one"),
        ({"layers__1__input": 9}, r"layers\[1\].input must be 8"),
        ({"layers": []}, "layers must list"),
        ({"arrays__0__offset": 1 << 40}, "layer0.ih.weight: offset .* runs past the file"),
        ({"arrays__0__shape": [32, 4]}, "array layer0.ih.weight must be int8"),
        ({"arrays__0__dtype": "float64"}, "array layer0.ih.weight must be int8"),
        ({"arrays__1__name": "layer0.ih.weight"}, "unnamed or repeated"),
    ],
)
def test_a_hostile_header_is_refused_naming_the_field(changes, message):
    data = _edit(_pack("lstm", (8, 5), "int8"), **changes)
    with pytest.raises(ArtifactError, match=f"^net.native: .*{message}"):
        native.describe(data, "net.native")


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.0, -1.0])
def test_a_bad_scale_is_refused(value):
    header, body = _split(_pack("gru", (8,), "int8"))
    entry = _scale_entry(header, "layer0.hh.scale")
    body = bytearray(body)
    struct.pack_into("<f", body, entry["offset"] + 4, value)
    with pytest.raises(
        ArtifactError, match="net.native: (array )?layer0.hh.scale (must be pos|holds NaN)"
    ):
        native.describe(_join(header, bytes(body)), "net.native")


def test_a_nan_weight_is_refused():
    header, body = _split(_pack("lstm", (4,), "fp32"))
    entry = _scale_entry(header, "head.weight")
    body = bytearray(body)
    struct.pack_into("<f", body, entry["offset"], np.nan)
    with pytest.raises(ArtifactError, match="array head.weight holds NaN"):
        native.describe(_join(header, bytes(body)), "net.native")


@pytest.mark.parametrize("cut", [0, 5, 12, 40, 200, -1])
def test_a_truncated_file_is_refused(cut):
    data = _pack("lstm", (8, 5), "int8")
    data = data[:cut] if cut >= 0 else data[:-7]
    with pytest.raises(ArtifactError, match="^net.native: "):
        native.describe(data, "net.native")


@pytest.mark.parametrize("blob", [b"", b"EDGENATV", b"EDGENATV\xff\xff\xff\xff", b"PK\x03\x04" * 9,
                                  fmt.MAGIC + struct.pack("<I", 4) + b"[1]x"])  # fmt: skip
def test_garbage_is_refused(blob):
    with pytest.raises(ArtifactError, match="^net.native: "):
        native.describe(blob, "net.native")


def test_a_long_window_of_a_wide_model_is_refused():
    # setup: a consistent file whose sequence buffer per window would be 100_000 x 256 floats
    data = _pack("gru", (256,), "int8", input_len=100_000)
    # assert
    with pytest.raises(ArtifactError, match="net.native: input_len \\* widest layer = 25600000"):
        native.describe(data, "net.native")


@needs_kernel
def test_a_hostile_file_never_reaches_the_kernel():
    data = _edit(_pack("lstm", (8, 5), "int8"), layers__0__hidden=4096)
    with pytest.raises(ArtifactError, match="x.native"):
        native.Kernel(data, "x.native")


# ------------------------------------------------------------------------------ the engine


def _native_artifact(make_artifact, toy, data, *, equivalents=("onnx",)):
    from conftest import native_artifact

    return native_artifact(make_artifact, toy, data, equivalents=equivalents)


def _toy_native(toy, precision="int8"):
    index = [toy.features.index(t) for t in toy.targets]
    return _pack("lstm", (6,), precision, input_len=toy.input_len,
                 n_features=len(toy.features), target_index=index, horizon=toy.horizon)  # fmt: skip


@needs_kernel
def test_load_runs_the_native_file_the_build_named(make_artifact, toy):
    # setup
    data = _toy_native(toy)
    path = _native_artifact(make_artifact, toy, data)
    # execute
    model = load(path)
    x = _windows(3, toy.input_len, len(toy.features))
    # assert: the native engine ran the .native file, not the ONNX model
    assert model.backend == "native"
    np.testing.assert_array_equal(model.run_scaled(x), native.Kernel(data).run(x))
    with pytest.raises(InputShapeError, match="model.native: windows must be"):
        model.engine.run(x[:, :2])


@needs_kernel
def test_predict_through_the_engine_binding_matches_run(make_artifact, toy):
    # setup
    model = load(_native_artifact(make_artifact, toy, _toy_native(toy)))
    raw = toy.window(batch=5)
    scaled = model.scale_window(raw)
    # execute: predict twice (the second call reuses the thread's binding), run_scaled once
    first, second = model.predict(raw), model.predict(raw + 1)
    # assert
    np.testing.assert_allclose(first, model.unscale_forecast(model.run_scaled(scaled)), rtol=1e-6)
    assert not np.allclose(first, second)
    call = model.engine.bind(np.zeros((2, toy.input_len, 3), np.float32), (2, 2, 2))
    assert call().shape == (2, 2, 2)
    with pytest.raises(InputShapeError, match="bind needs float32"):
        model.engine.bind(np.zeros((2, toy.input_len, 3)), (2, 2, 2))


def test_without_the_kernel_the_engine_is_unavailable_and_load_falls_back(
    make_artifact, toy, monkeypatch
):
    # setup: the kernel did not build
    monkeypatch.setattr(native, "_KERNEL", None)
    monkeypatch.setattr(native, "_WHY", "the native kernel was not built (no C compiler)")
    monkeypatch.setattr(engines_module, "_WARNED", set())
    path = _native_artifact(make_artifact, toy, _toy_native(toy))
    # assert: get_engine says why; load runs the recorded equivalent with one warning
    with pytest.raises(EngineUnavailableError, match="'native' is unavailable: .*no C compiler"):
        get_engine("native")
    with pytest.raises(EngineUnavailableError, match="no C compiler"):
        NativeEngine(_toy_native(toy), {"model_file": "model.onnx"}, threads=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(path)
    assert model.backend == "onnx"
    assert [str(w.message) for w in caught if "native" in str(w.message)]
    # and without an equivalent, load refuses, naming why
    path = _native_artifact(make_artifact, toy, _toy_native(toy), equivalents=())
    with pytest.raises(EngineUnavailableError, match="not built"):
        load(path)


@needs_kernel
def test_int8_without_a_fast_int8_path_loads_the_equivalent_unless_native_is_asked(
    make_artifact, toy, monkeypatch
):
    # setup: a CPU without AVX512-VNNI or AVX2 (the test hook: native.host_isa patched)
    monkeypatch.setattr(native, "host_isa", lambda: "portable")
    monkeypatch.setattr(engines_module, "_WARNED", set())
    path = _native_artifact(make_artifact, toy, _toy_native(toy))
    # execute
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        models = [load(path), load(path)]
    # assert: the recorded equivalent runs, with one warning per process naming why
    assert [model.backend for model in models] == ["onnx", "onnx"]
    messages = [str(w.message) for w in caught if "'native'" in str(w.message)]
    assert len(messages) == 1, messages
    assert "would run slower on this host" in messages[0]
    assert "lacks AVX512-VNNI and AVX2" in messages[0] and "engine='native'" in messages[0]
    # asked for, native runs; an fp32 file, or no installed equivalent, keeps native
    x = _windows(2, toy.input_len, len(toy.features))
    asked = load(path, engine="native")
    assert asked.backend == "native"
    np.testing.assert_array_equal(asked.run_scaled(x), native.Kernel(_toy_native(toy)).run(x))
    assert load(_native_artifact(make_artifact, toy, _toy_native(toy, "fp32"))).backend == "native"
    alone = _native_artifact(make_artifact, toy, _toy_native(toy), equivalents=("no-such-engine",))
    assert load(alone).backend == "native"
    # and a CPU with a fast int8 path keeps native
    for isa in ("avx2", "avx512-vnni"):
        monkeypatch.setattr(native, "host_isa", lambda isa=isa: isa)
        assert load(path).backend == "native"


@needs_kernel
def test_a_malformed_native_file_in_an_artifact_names_it(make_artifact, toy):
    data = _edit(_toy_native(toy), version=9)
    with pytest.raises(ArtifactError, match="model.native: version 9"):
        load(_native_artifact(make_artifact, toy, data))
