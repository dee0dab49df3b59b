"""load() checks the model against its manifest; predict's bounded memory, masks and ranges."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgecomp_runtime as ecr
import edgecomp_runtime.model as runtime_model
from edgecomp_runtime.opcheck import TFLITE_OPS, check_onnx, check_tflite


@pytest.fixture
def variant(tmp_path, toy, toy_model_bytes, write_artifact, set_path):
    """variant(edit, **manifest) -> artifact path: the toy's ONNX model changed by ``edit``."""
    import onnx

    def make(edit=None, **overrides):
        model = onnx.load_from_string(toy_model_bytes)
        if edit is not None:
            edit(model)
        data = model.SerializeToString()
        manifest = toy.manifest(data)
        for path, value in overrides.items():
            set_path(manifest, path.replace("__", "."), value)
        return write_artifact(
            tmp_path / f"v{len(list(tmp_path.iterdir()))}.edgepkg", manifest, {"model.onnx": data}
        )

    return make


def time_axis_variable(model):
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "time"


def add_node(*args, **kwargs):
    def edit(model):
        model.graph.node.insert(0, helper.make_node(*args, **kwargs))

    return edit


def loop_node(model):
    body = helper.make_graph([], "body", [], [])
    model.graph.node.insert(0, helper.make_node("Loop", ["", ""], ["x"], body=body))


def huge_constant_of_shape(model):
    shape = numpy_helper.from_array(np.array([1 << 31], dtype=np.int64), "huge_shape")
    model.graph.initializer.append(shape)
    model.graph.node.insert(0, helper.make_node("ConstantOfShape", ["huge_shape"], ["zeros"]))


def external_data(model):
    tensor = model.graph.initializer[0]
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/passwd")


def nan_bias(model):
    bias = next(t for t in model.graph.initializer if t.name == "b")
    array = numpy_helper.to_array(bias).copy()
    array[0] = np.nan
    bias.CopyFrom(numpy_helper.from_array(array, "b"))


@pytest.mark.parametrize(
    ("edit", "manifest", "message"),
    [
        (
            time_axis_variable,
            {},
            "input 'window': axis 1 is 'time' in the model, 6 in the manifest",
        ),
        (None, {"io__inputs__0__dtype": "float16"}, "is float32 in the model, float16 in the"),
        (None, {"io__inputs__0__name": "x"}, "the model's inputs are ['window'], the manifest's"),
        (None, {"io__outputs__0__name": "y"}, "the model's outputs are ['forecast']"),
        (loop_node, {}, "a node carries a subgraph (control flow): not allowed"),
        (add_node("RandomNormal", [], ["r"], shape=[1]), {}, "operator RandomNormal is not one"),
        (add_node("Relu", ["window"], ["r"], domain="evil.ops"), {}, "operator evil.ops:Relu"),
        (huge_constant_of_shape, {}, "ConstantOfShape would allocate 2.15e+09 elements"),
        (external_data, {}, "keeps its data outside the file"),
        (None, {"spec__scaler__mean": [1e39, 0.0, 0.0]}, "'spec.scaler.mean' must be numbers"),
        (None, {"spec__scaler__std": [1e-39, 1.0, 1.0]}, "and whose inverse is"),
    ],
)
def test_load_refuses_a_model_the_manifest_does_not_describe(variant, edit, manifest, message):
    # setup
    path = variant(edit, **manifest)
    # execute / assert
    with pytest.raises(ecr.ArtifactError) as info:
        ecr.load(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_local_functions_are_refused(toy, toy_model_bytes):
    # setup: a model file that defines a function (the lowering never does)
    import onnx

    model = onnx.load_from_string(toy_model_bytes)
    model.functions.append(helper.make_function("evil", "f", [], [], [], [], []))
    manifest = toy.manifest(model.SerializeToString())
    # execute / assert
    with pytest.raises(ecr.ArtifactError, match="defines local functions"):
        check_onnx(model.SerializeToString(), manifest, "onnx")


def test_non_finite_output_blames_the_model(variant, toy):
    # setup
    model = ecr.load(variant(nan_bias))
    # execute / assert
    with pytest.raises(ecr.ModelOutputError, match="the model file, not the window, is at fault"):
        model.predict(toy.window(seed=1))


def test_large_batches_run_in_chunks_with_the_same_results(make_artifact, toy, monkeypatch):
    # setup: chunks of 3 windows, a masked value and an infinity far into the batch
    model = ecr.load(make_artifact())
    windows = toy.window(batch=20, seed=2)
    expected = model.predict(windows)
    monkeypatch.setattr(runtime_model, "_CHUNK_ELEMENTS", 3 * toy.input_len * len(toy.features))
    bad = windows.copy()
    bad[16, 2, 1] = np.inf
    # execute
    chunked = model.predict(windows)
    # assert
    np.testing.assert_array_equal(chunked, expected)
    with pytest.raises(ecr.InputError, match="batch row 16, step 2, feature 'b'"):
        model.predict(bad)


def test_masked_values_are_missing_readings(make_artifact, toy):
    # setup
    model = ecr.load(make_artifact())
    window = toy.window(seed=3)
    mask = np.zeros(window.shape, dtype=bool)
    mask[2, 0] = mask[4, 2] = True
    with_nan = window.copy()
    with_nan[mask] = np.nan
    masked = np.ma.masked_array(window.astype(np.int64), mask=mask)
    # execute / assert: the masked values (here 10**6 underneath) never reach the model
    masked.data[mask] = 10**6
    np.testing.assert_array_equal(
        model.predict(masked), model.predict(np.ma.filled(masked.astype(float), np.nan))
    )
    np.testing.assert_array_equal(
        model.predict(np.ma.masked_array(window, mask=mask)), model.predict(with_nan)
    )


def quantized_input(model):
    """QuantizeLinear -> DequantizeLinear on the input: int8, scale 0.05 (range [-6.4, 6.35])."""
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(0.05, dtype=np.float32), "qs"),
            numpy_helper.from_array(np.array(0, dtype=np.int8), "qz"),
        ]
    )
    reshape = next(n for n in model.graph.node if n.input[0] == "window")
    reshape.input[0] = "dq"
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", ["q", "qs", "qz"], ["dq"]))
    model.graph.node.insert(0, helper.make_node("QuantizeLinear", ["window", "qs", "qz"], ["q"]))


def test_int8_input_refuses_values_far_outside_its_range(variant, toy):
    # setup: feature 'a' has mean 10, std 2: raw 70 is 30 std away, beyond 4 x 6.4
    path = variant(quantized_input)
    strict, off = ecr.load(path), ecr.load(path, range_factor=None)
    window = toy.window(seed=4)
    far = window.copy()
    far[3, 0] = 70.0
    # execute / assert
    assert strict.predict(window).shape == (toy.horizon, len(toy.targets))
    with pytest.raises(ecr.InputError, match=r"step 3, feature 'a' lies more than 4x beyond"):
        strict.predict(far)
    with pytest.raises(ecr.InputError, match="calibrated range"):
        strict.predict(np.full_like(window, 1e38))
    assert np.isfinite(off.predict(far)).all()  # saturates silently, as asked
    assert ecr.load(path, range_factor=10).predict(far).shape == (2, 2)
    with pytest.raises(ValueError, match="range_factor must be a number >= 1"):
        ecr.load(path, range_factor=0.5)


def tflite_bytes(codes: list[tuple[int, str | None]], subgraphs: int = 1) -> bytes:
    """A TFLite flatbuffer with these operator codes (built with LiteRT's own schema)."""
    flatbuffers = pytest.importorskip("flatbuffers", reason="builds a TFLite flatbuffer")
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated", reason="TFLite schema")
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = []
    for code, custom in codes:
        entry = schema.OperatorCodeT()
        entry.builtinCode, entry.deprecatedBuiltinCode = code, min(code, 127)
        entry.customCode = custom
        model.operatorCodes.append(entry)
    model.subgraphs = [schema.SubGraphT() for _ in range(subgraphs)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize(
    ("codes", "subgraphs", "message"),
    [
        ([(118, None)], 1, "builtin code 118 is not one the 'tflite' lowering emits"),  # IF
        ([(119, None), (58, None)], 1, "1 subgraphs; .* three with a WHILE loop"),  # WHILE
        ([(119, None), (58, None)], 2, "2 subgraphs; .* three with a WHILE loop"),
        ([(0, None), (32, "FlexRandom")], 1, "custom operator 'FlexRandom'"),
        ([(146, None)], 1, "builtin code 146"),  # RANDOM_STANDARD_NORMAL
        ([(0, None)], 2, "2 subgraphs; the ARM lowering emits one"),
    ],
)
def test_tflite_operators_outside_the_lowering_are_refused(
    valid_manifest, codes, subgraphs, message
):
    # setup
    data = tflite_bytes(codes, subgraphs)
    # execute / assert
    with pytest.raises(ecr.ArtifactError, match=message):
        check_tflite(data, valid_manifest)
    check_tflite(tflite_bytes([(0, None), (9, None), (44, None), (114, None)]), valid_manifest)
    check_tflite(tflite_bytes([(9, None), (119, None), (58, None)], 3), valid_manifest)  # loop


def test_tflite_codes_match_the_litert_schema():
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated", reason="TFLite schema")
    codes = vars(schema.BuiltinOperator)
    assert {name: codes.get(name) for name in TFLITE_OPS} == TFLITE_OPS
