"""An ONNX file taken out of an artifact explains itself: metadata, readable names, named Q/DQ."""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from importlib.metadata import version

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx missing (pip install 'edgecomp[onnx]')")

from edgecomp.targets.onnx.metadata import (  # noqa: E402
    SPEC_KEYS,
    check_against,
    digest,
    read_metadata,
)
from edgecomp.targets.onnx.naming import QDQ_OPS, short_node_name  # noqa: E402

GENERATED = re.compile(r"^(t\d+|q\d+|onnx::.*|_v_\d+|/.*)$")


@pytest.fixture(scope="module")
def built(tmp_path_factory, traffic_tcn):
    """fp32 and int8 x86 artifacts of a tiny TCN (int8: static Q/DQ on every Conv/Gemm)."""
    from edgecomp.config import BuildConfig
    from edgecomp.pipeline import build
    from edgecomp.targets import get_target

    if not get_target("onnx").is_available():
        pytest.skip(get_target("onnx").missing_reason())
    root = tmp_path_factory.mktemp("meta")
    out = {}
    for precision in ("fp32", "int8"):
        config = BuildConfig(target="x86-64-avx2", precision=precision)
        out[precision] = build(*traffic_tcn, config, root / f"{precision}.edgepkg")
    return out


def _graph(result):
    with zipfile.ZipFile(result.path) as zf:
        return onnx.load_from_string(zf.read(result.manifest["model_file"]))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_metadata_carries_version_build_id_spec_precision_and_producer(built, precision):
    # setup
    result = built[precision]
    manifest, proto = result.manifest, _graph(result)
    meta = read_metadata(proto)
    # assert: short fields, and digests of the records the manifest holds in full
    assert proto.producer_name == "edgecomp"
    assert proto.producer_version == meta["version"] == version("edgecomp")
    assert re.fullmatch(r"[0-9a-f]{32}", meta["build_id"])
    assert meta["build_id"] == manifest["build_id"]
    spec = json.loads(meta["spec"])
    for key in ("arch", "input_len", "horizon", "period_s"):
        assert spec[key] == manifest["spec"][key], key
    assert spec["sha256"] == digest({k: manifest["spec"][k] for k in SPEC_KEYS})
    assert meta["precision"] == precision == manifest["precision"]
    assert meta["target"] == "x86-64-avx2"
    for package in ("edgecomp", "torch", "onnx", "onnxruntime"):
        assert manifest["producer"][package] == version(package), package
    assert meta["producer"] == digest(manifest["producer"])
    assert meta["file"] == "model"
    assert check_against(meta, manifest) == []


def test_provenance_mismatches_are_named(built):
    # setup: the int8 file against the fp32 manifest, and a manifest with another feature list
    fp32, int8 = built["fp32"].manifest, built["int8"].manifest
    meta = read_metadata(_graph(built["int8"]))
    renamed = {**int8, "spec": {**int8["spec"], "features": ["other"]}}
    newer = {**int8, "producer": {**int8["producer"], "onnx": "0.0.1"}}
    # execute
    against_fp32 = check_against(meta, fp32)
    # assert
    assert {p.split(":")[0] for p in against_fp32} == {"build_id", "precision"}
    assert [p.split(":")[0] for p in check_against(meta, renamed)] == ["spec"]
    assert [p.split(":")[0] for p in check_against(meta, newer)] == ["producer"]


def test_provenance_is_a_few_hundred_bytes(built):
    # setup: what the metadata costs in the serialized file
    proto = _graph(built["int8"])
    size = len(proto.SerializeToString())
    del proto.metadata_props[:]
    # assert: below the 600+ bytes the full records took (features, targets, every version)
    assert size - len(proto.SerializeToString()) < 400


def test_each_build_gets_its_own_id(built):
    ids = {read_metadata(_graph(r))["build_id"] for r in built.values()}
    assert len(ids) == 2


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_no_generated_tensor_names(built, precision):
    # setup
    graph = _graph(built[precision]).graph
    tensors = {t for node in graph.node for t in (*node.input, *node.output) if t}
    tensors |= {init.name for init in graph.initializer}
    # assert
    assert not [t for t in tensors if GENERATED.match(t)]
    assert len({init.name for init in graph.initializer}) == len(graph.initializer)
    outputs = [t for node in graph.node for t in node.output if t]
    assert len(outputs) == len(set(outputs))  # SSA: every tensor made once


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_compute_outputs_are_named_after_the_torch_module(built, precision):
    # setup: the layer records name the compute nodes; their outputs carry the module path
    result = built[precision]
    graph = _graph(result).graph
    nodes = {node.name: node for node in graph.node}
    graph_outputs = {v.name for v in graph.output}
    # assert
    for layer in result.manifest["layers"]:
        node = nodes[layer["node"]]
        produced = node.output[0]
        assert produced in graph_outputs or produced == short_node_name(node.name, node.op_type)
        assert produced in graph_outputs or produced.startswith(layer["name"].split("[")[0])


def test_qdq_nodes_are_named_after_the_tensor_they_quantize(built):
    # setup
    graph = _graph(built["int8"]).graph
    qdq = [node for node in graph.node if node.op_type in QDQ_OPS]
    producers = {t: node for node in graph.node for t in node.output}
    initializers = {init.name for init in graph.initializer}
    # assert
    assert Counter(node.op_type for node in qdq)["QuantizeLinear"] >= 4
    names = [node.name for node in graph.node if node.name]
    assert len(names) == len(set(names))
    for node in qdq:
        source = node.input[0]
        assert bool(node.name) == (source not in initializers)  # a stored weight's DQ: no name
        if node.op_type == "QuantizeLinear":
            assert node.name == f"{source}_QuantizeLinear"
            assert node.output[0] == f"{source}_q"
        elif source in producers:  # activation: DQ of the Q above, same tensor
            base = producers[source].input[0]
            assert producers[source].op_type == "QuantizeLinear"
            assert node.name == f"{base}_DequantizeLinear"
        else:  # weight or bias: DQ of an int initializer, its output named after it
            assert source in initializers
            assert node.output[0] == f"{source.removesuffix('_quantized')}_dq"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_runtime_still_verifies_and_runs_the_annotated_artifact(built, traffic_tcn, precision):
    from edgecomp_runtime import load

    # setup
    _, dataset = traffic_tcn
    x = dataset.raw_inputs("test", imputed=True)[:4]
    # execute
    model = load(built[precision].path)
    out = model.predict(x)
    # assert
    assert out.shape == (4, dataset.config.horizon, len(dataset.targets))
    assert np.isfinite(out).all()


def test_tensorrt_onnx_carries_the_same_metadata(tmp_path, traffic_tcn):
    from edgecomp.config import BuildConfig
    from edgecomp.pipeline import build
    from edgecomp.targets import get_target

    target = get_target("tensorrt")
    if not target.is_available():
        pytest.skip(target.missing_reason())
    # execute
    result = build(
        *traffic_tcn, BuildConfig(target="jetson-orin-nano", precision="int8"), tmp_path / "j"
    )
    proto = _graph(result)
    meta = read_metadata(proto)
    # assert
    assert meta["build_id"] == result.manifest["build_id"]
    assert meta["target"] == "jetson-orin-nano" and meta["precision"] == "int8"
    weights = {init.name for init in proto.graph.initializer}
    qdq = [n for n in proto.graph.node if n.op_type in QDQ_OPS and n.input[0] not in weights]
    assert qdq and all(node.name.endswith(f"_{node.op_type}") for node in qdq)
    assert len({node.name for node in qdq}) == len(qdq)


def test_naming_rules_on_a_small_graph():
    from onnx import TensorProto, helper

    from edgecomp.targets.onnx.naming import name_graph

    # setup: two unnamed Relus (same op), a scale merged across two Q/DQ pairs, a generated constant
    nodes = [
        helper.make_node("Relu", ["x"], ["/enc/Relu_output_0"], name="/enc/Relu"),
        helper.make_node("Relu", ["x"], ["r2"]),
        helper.make_node("Relu", ["x"], ["r3"]),
        helper.make_node("QuantizeLinear", ["r2", "s", "z"], ["qa"], name="junk"),
        helper.make_node("DequantizeLinear", ["qa", "s", "z"], ["da"]),
        helper.make_node("QuantizeLinear", ["r3", "s", "z2"], ["qb"]),
        helper.make_node("DequantizeLinear", ["qb", "s", "z2"], ["db"]),
        helper.make_node("Add", ["da", "db"], ["sum"], name="/enc/Add"),
        helper.make_node("Reshape", ["sum", "_v_7"], ["y"], name="/Reshape"),
    ]
    inits = [
        helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
        helper.make_tensor("z", TensorProto.UINT8, [], [3]),
        helper.make_tensor("z2", TensorProto.UINT8, [], [4]),
        helper.make_tensor("_v_7", TensorProto.INT64, [1], [-1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        inits,
    )
    # execute
    name_graph(graph)
    # assert
    out = {node.name or node.op_type: (list(node.input), list(node.output)) for node in graph.node}
    assert graph.node[0].output[0] == "enc/Relu"
    assert graph.node[1].output[0] == "Relu" and graph.node[2].output[0] == "Relu_2"
    assert out["Relu_QuantizeLinear"] == (["Relu", "scale.shared0", "Relu_zp"], ["Relu_q"])
    assert out["Relu_DequantizeLinear"] == (["Relu_q", "scale.shared0", "Relu_zp"], ["Relu_dq"])
    assert out["Relu_2_QuantizeLinear"][0] == ["Relu_2", "scale.shared0", "Relu_2_zp"]
    assert out["/enc/Add"] == (["Relu_dq", "Relu_2_dq"], ["enc/Add"])
    assert out["/Reshape"] == (["enc/Add", "Reshape.shape"], ["y"])
    assert sorted(i.name for i in graph.initializer) == [
        "Relu_2_zp",
        "Relu_zp",
        "Reshape.shape",
        "scale.shared0",
    ]
    onnx.checker.check_graph(graph)
