"""int4 weight-only for ONNX Runtime on x86 (see README.md).

MatMul -> ``MatMulNBits`` (ORT contrib op: block-wise symmetric int4 weights, computed in int4 by
MLAS; written here, not by onnxruntime.quantization); Gemm is first rewritten as MatMul + Add
because MatMulNBits acts on MatMul only. Conv, LSTM and GRU have no int4 kernel in ONNX Runtime:
their weights are stored as packed INT4 initializers behind a ``DequantizeLinear`` (opset 21),
which the runtime folds back to float32 when it loads the model. That saves download and flash
size, not compute. Their scales are float16, one per output channel or one per block of
consecutive inputs (a blocked ``DequantizeLinear`` along the input axis, in the weight's own
shape), the group size chosen per layer (option ``int4_group_size``: "auto", a size, or
"channel"). Every scale, MatMulNBits' too, is searched per group (``search_scales``: the clipping
ratio with the least squared weight error, never above plain max-abs rounding). No calibration:
weight-only."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecomp.targets.base import TargetError
from edgecomp_runtime.int4 import pack_int4

OPSET = 21  # DequantizeLinear on INT4 inputs
DEFAULT_BLOCK_SIZE = 64  # at most: a MatMul with K < 64 gets the largest power of two <= K
GROUP_SIZES = (128, 64, 32, 16)  # "auto" picks one per layer among these (and "channel")
SCALE_BITS = 16  # a float16 scale: "auto" weighs each scale's bits against the error it saves
STORAGE_OPS = {"Conv": 0, "LSTM": 1, "GRU": 1}  # op -> output-channel axis of its weight input
QMIN, QMAX = -8, 7
CLIP_RATIOS = tuple(1 - 0.025 * k for k in range(21))  # scale search: peak x 1 ... 0.5
BIAS_INPUTS = {"Conv": 2, "LSTM": 3, "GRU": 3}  # biases: stored as float16, expanded at load
STORAGE_NOTE = (
    "int4 storage only: packed int4 weights with group-wise float16 scales (float16 biases), "
    "expanded to float32 when the runtime loads the model; saves download and flash size, not "
    "compute"
)


@dataclass(frozen=True)
class Int4Graph:
    """What quantize_int4_graph produced.

    Attributes:
        proto: The graph with int4 weights.
        steps: The steps that ran, in order.
        storage: Names of the nodes whose weights are stored in int4 and expanded at load.
        groups: Stored weight -> its group size (None: one scale per output channel) and the
            relative RMS error of each size tried.
    """

    proto: onnx.ModelProto
    steps: list[str]
    storage: list[str]
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)


def block_size_option(options: dict[str, Any]) -> int:
    """The profile option ``int4_block_size`` (a power of two >= 16): the largest MatMulNBits
    block, default 64."""
    size = options.get("int4_block_size", DEFAULT_BLOCK_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or size < 16 or size & (size - 1):
        raise TargetError(
            f"onnx: profile option 'int4_block_size' must be a power of two >= 16; got {size!r}"
        )
    return size


def group_size_option(options: dict[str, Any]) -> str | int:
    """The option ``int4_group_size``: "auto" (default: chosen per layer), "channel", or a
    group size >= 2 (inputs per scale; an integer or its digits, "16")."""
    size = options.get("int4_group_size", "auto")
    if size in ("auto", "channel"):
        return size
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size)
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise TargetError(
            f"onnx: profile option 'int4_group_size' must be 'auto', 'channel' or an integer "
            f">= 2; got {size!r}"
        )
    return size


def quantize_int4_graph(
    proto: onnx.ModelProto,
    keep: set[str],
    block_size: int,
    group: str | int = "channel",
    rounding: str = "search",
) -> Int4Graph:
    """int4 weights for every MatMul/Gemm/Conv/LSTM/GRU node whose name is not in ``keep``;
    ``group`` is the storage ops' group size option (see ``group_size_option``), ``rounding``
    the scales' (see ``rounding_option``)."""
    from onnx import version_converter

    try:
        proto = version_converter.convert_version(proto, OPSET)
    except Exception as exc:  # the converter raises plain RuntimeError from C++
        raise TargetError(f"onnx: int4 cannot convert the graph to opset {OPSET}: {exc}") from exc
    steps = [f"convert to opset {OPSET}", "Gemm -> MatMul + Add"]
    ratios = CLIP_RATIOS if rounding == "search" else (1.0,)
    gemm_to_matmul(proto.graph, keep)
    if any(n.op_type == "MatMul" and n.name not in keep for n in proto.graph.node):
        steps.append(f"MatMulNBits (block <= {block_size}, symmetric)")
        proto = _matmul_nbits(proto, keep, block_size, ratios)
    groups: dict[str, dict[str, Any]] = {}
    storage = _int4_storage(proto.graph, keep, group, groups, ratios)
    if storage:
        ops = ", ".join(sorted(_ops(proto, storage)))
        steps.append(f"int4 storage (DequantizeLinear, groups: {group}) for {ops}")
    return Int4Graph(proto, steps, storage, groups)


def gemm_to_matmul(graph: onnx.GraphProto, keep: set[str]) -> None:
    """Rewrite each plain Gemm (constant B, alpha = beta = 1, no transA) as MatMul + Add, in place.

    The MatMul takes the Gemm's name, so layer records and ``keep`` still find it; the Add writes
    the Gemm's output.
    """
    inits = {init.name: init for init in graph.initializer}
    uses = Counter(t for node in graph.node for t in node.input)
    nodes = []
    for node in graph.node:
        if node.op_type != "Gemm" or node.name in keep or not _plain_gemm(node, inits):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if _attr(node, "transB", 0):
            weight = weight.T
        b_name = f"{node.input[1]}.matmul"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), b_name))
        product = f"{node.output[0]}.matmul"
        nodes.append(helper.make_node("MatMul", [node.input[0], b_name], [product], name=node.name))
        if len(node.input) < 3 or not node.input[2]:
            nodes[-1].output[0] = node.output[0]
            continue
        bias = node.input[2]
        if bias in inits and uses[bias] == 1:  # stored as float16, expanded at load
            nodes.append(_half(graph, inits[bias]))
            bias = nodes[-1].output[0]
        nodes.append(helper.make_node("Add", [product, bias], [node.output[0]]))
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused(graph)


def _plain_gemm(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    return (
        node.input[1] in inits
        and _attr(node, "alpha", 1.0) == 1.0
        and _attr(node, "beta", 1.0) == 1.0
        and not _attr(node, "transA", 0)
    )


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    found = [a for a in node.attribute if a.name == name]
    return helper.get_attribute_value(found[0]) if found else default


def _matmul_nbits(
    proto: onnx.ModelProto, keep: set[str], block_size: int, ratios: tuple[float, ...]
) -> onnx.ModelProto:
    """MatMulNBits for each MatMul not in ``keep`` with a constant 2-D weight, in place; the
    block is ``block_size`` or, for a shorter K, the largest power of two <= K (>= 16) so that no
    block is padded. The weights are rounded like the int4 storage ones (``group_quantize``:
    symmetric, a scale searched per block), so a fine-tune that fakes that rounding
    (``edgecomp.qat``) sees what ships."""
    graph = proto.graph
    inits = {init.name: init for init in graph.initializer}
    for node in graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or node.name in keep or len(weight.dims) != 2:
            continue
        k, n = (int(d) for d in weight.dims)
        block = max(16, min(block_size, 1 << (k.bit_length() - 1)))
        array = numpy_helper.to_array(weight)
        try:
            packed, scales = _nbits_tensors(array, block, node.input[1], ratios)
        except ValueError as exc:
            raise TargetError(f"onnx: int4 layer '{node.name}' ({node.input[1]}): {exc}") from None
        graph.initializer.extend([packed, scales])
        nbits = helper.make_node(
            "MatMulNBits",
            [node.input[0], packed.name, scales.name],
            list(node.output),
            name=node.name,
            domain="com.microsoft",
            K=k,
            N=n,
            bits=4,
            block_size=block,
        )
        node.CopyFrom(nbits)
    if not any(entry.domain == "com.microsoft" for entry in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _drop_unused(graph)
    return proto


def _nbits_tensors(
    weight: np.ndarray, block: int, name: str, ratios: tuple[float, ...]
) -> tuple[onnx.TensorProto, onnx.TensorProto]:
    """MatMulNBits' B (uint8 [N, blocks, block / 2]: ``q + 8`` per nibble, low nibble first; no
    zero point input, so 8 is the zero) and float32 scales [N, blocks] of a [K, N] weight."""
    k, n = weight.shape
    q, scales = group_quantize(weight.T, block, ratios)
    blocks = scales.shape[1]
    nibbles = (np.pad(q, ((0, 0), (0, blocks * block - k))) + 8).astype(np.uint8)
    nibbles = nibbles.reshape(n, blocks, block)
    packed = (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).astype(np.uint8)
    base = name.removesuffix(".matmul")
    return (
        numpy_helper.from_array(packed, f"{base}.q4"),
        numpy_helper.from_array(scales.astype(np.float32), f"{base}.s"),
    )


def _int4_storage(
    graph: onnx.GraphProto,
    keep: set[str],
    group: str | int,
    groups: dict[str, dict[str, Any]],
    ratios: tuple[float, ...],
) -> list[str]:
    """Put the weights of Conv/LSTM/GRU nodes not in ``keep`` behind an INT4 DequantizeLinear.

    Only weights that one node alone reads are converted (a shared tensor keeps its type). The
    group size of each weight goes into ``groups``.
    """
    inits = {init.name: init for init in graph.initializer}
    uses = Counter(t for node in graph.node for t in node.input)
    taken = set(inits) | {t for node in graph.node for t in (*node.input, *node.output)}
    stored, dequant = [], []
    for node in graph.node:
        weights = [1, 2] if node.op_type in ("LSTM", "GRU") else [1]  # W (and R for RNNs)
        own = [i < len(node.input) and uses[node.input[i]] == 1 for i in weights]
        if node.op_type not in STORAGE_OPS or node.name in keep or not all(own):
            continue
        if any(node.input[i] not in inits for i in weights):
            continue
        for i in weights:
            init, axis = inits[node.input[i]], STORAGE_OPS[node.op_type]
            init.name = node.input[i] = _weight_name(node, i, taken)
            weight = numpy_helper.to_array(init)
            try:
                size, groups[init.name] = choose_group(weight, axis, group, ratios)
            except ValueError as exc:
                raise TargetError(f"onnx: int4 layer '{node.name}' ({init.name}): {exc}") from None
            dequant += _dequantize(graph, init, axis, size, ratios)
            node.input[i] = dequant[-1].output[0]
        bias = BIAS_INPUTS[node.op_type]
        if len(node.input) > bias and node.input[bias] in inits and uses[node.input[bias]] == 1:
            merge = _sum_lstm_biases if node.op_type == "LSTM" else None
            dequant.append(_half(graph, inits[node.input[bias]], merge))
            node.input[bias] = dequant[-1].output[0]
        stored.append(node.name)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(dequant + nodes)  # constants first: the graph stays topologically sorted
    _drop_unused(graph)
    return stored


def _weight_name(node: onnx.NodeProto, index: int, taken: set[str]) -> str:
    """A short unused name after the layer (``rnn.W``, ``blocks.0.conv1.W``; ``rnn/LSTM_1.W``
    where the scope has several such layers), else the weight's own: an exporter's generated one
    (``onnx::GRU_110``) grows with every Q/DQ suffix, and every byte shows at int4."""
    from .naming import short_node_name

    role = "R" if index == 2 else "W"
    short = short_node_name(node.name, node.op_type) or node.op_type
    for name in (f"{short.rpartition('/')[0]}.{role}", f"{short}.{role}"):
        if not name.startswith(".") and name not in taken:
            taken.add(name)
            return name
    return node.input[index]


def _rows(weight: np.ndarray, axis: int) -> np.ndarray:
    """[..., out channel (axis), inputs, tail...] -> 2-D [channels x tail, inputs]: one row per
    run of consecutive inputs that a block may cover (the input axis is ``axis + 1``)."""
    moved = np.moveaxis(np.asarray(weight, dtype=np.float32), axis + 1, -1)
    return moved.reshape(-1, moved.shape[-1])


ROUNDINGS = ("search", "max")  # option int4_rounding: searched clipping ratio, or peak / 7


def rounding_option(options: dict[str, Any]) -> str:
    """The option ``int4_rounding``: "search" (default: the clipping ratio with the least
    weight error, per group) or "max" (plain max-abs scales, no clipping)."""
    rounding = options.get("int4_rounding", "search")
    if rounding not in ROUNDINGS:
        raise TargetError(
            f"onnx: profile option 'int4_rounding' must be one of {list(ROUNDINGS)}; "
            f"got {rounding!r}"
        )
    return rounding


def search_scales(
    blocks: np.ndarray, ratios: tuple[float, ...] = CLIP_RATIOS
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 of ``blocks`` [..., n] with one float16 scale per block (last axis).

    Each block keeps, among ``ratios`` x its peak / 7, the scale whose rounded values
    ``clip(rint(w / s), -8, 7) * s`` have the least squared error: clipping a few large weights
    buys a finer step for the rest. Ratio 1 (no clipping) is a candidate, so the error is never
    above plain max-abs rounding. Returns (int8 values in [-8, 7], float16 scales [...]).
    """
    w = np.asarray(blocks, dtype=np.float32)
    peak = np.abs(w).max(axis=-1)
    best_q = best_s = best_err = None
    for ratio in ratios:
        with np.errstate(over="ignore", invalid="ignore"):  # past float16: never kept (below)
            scales = np.where(peak > 0, peak * np.float32(ratio) / QMAX, 1.0).astype(np.float16)
            scales[scales == 0] = 1  # a peak below float16's smallest normal
            step = scales.astype(np.float32)[..., None]
            q = np.clip(np.rint(w / step), QMIN, QMAX)
            err = np.where(np.isfinite(scales), np.square(q * step - w).sum(axis=-1), np.inf)
        if best_err is None:
            best_q, best_s, best_err = q, scales, err
            continue
        better = err < best_err
        best_q = np.where(better[..., None], q, best_q)
        best_s = np.where(better, scales, best_s)
        best_err = np.where(better, err, best_err)
    if not np.isfinite(best_s).all():
        raise ValueError(
            f"a weight of magnitude {float(np.nanmax(peak)):.3g} needs an int4 scale above "
            f"float16's largest ({float(np.finfo(np.float16).max):.0f}); keep it in float "
            "(option keep_float)"
        )
    return best_q.astype(np.int8), best_s.astype(np.float16)


def group_quantize(
    rows: np.ndarray, size: int, ratios: tuple[float, ...] = CLIP_RATIOS
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 of 2-D ``rows`` with one float16 scale per ``size`` consecutive inputs,
    each scale searched (``search_scales``): (int8 values [R, C] in [-8, 7], float16 scales
    [R, ceil(C / size)])."""
    r, c = rows.shape
    blocks = -(-c // size)
    padded = np.pad(np.asarray(rows, dtype=np.float32), ((0, 0), (0, blocks * size - c)))
    q, scales = search_scales(padded.reshape(r, blocks, size), ratios)
    return q.reshape(r, -1)[:, :c], scales


def block_quantize(
    weight: np.ndarray, axis: int, size: int, ratios: tuple[float, ...] = CLIP_RATIOS
) -> tuple[np.ndarray, np.ndarray]:
    """int4 of ``weight`` in blocks of ``size`` along ``axis`` (the layout of a blocked
    DequantizeLinear on that axis): (int8 values shaped like ``weight``, float16 scales shaped
    like it with ``axis`` of length ceil(n / size))."""
    moved = np.moveaxis(np.asarray(weight, dtype=np.float32), axis, -1)
    q, scales = group_quantize(moved.reshape(-1, moved.shape[-1]), size, ratios)
    q = np.moveaxis(q.reshape(moved.shape), -1, axis)
    return q, np.moveaxis(scales.reshape(*moved.shape[:-1], -1), -1, axis)


def channel_quantize(
    weight: np.ndarray, axis: int, ratios: tuple[float, ...] = CLIP_RATIOS
) -> tuple[np.ndarray, np.ndarray]:
    """int4 of ``weight`` with one searched float16 scale per slice along ``axis``: (int8 values
    shaped like ``weight``, float16 scales [weight.shape[axis]])."""
    moved = np.moveaxis(np.asarray(weight, dtype=np.float32), axis, 0)
    q, scales = search_scales(moved.reshape(moved.shape[0], -1), ratios)
    return np.moveaxis(q.reshape(moved.shape), 0, axis), scales


def _expand(q: np.ndarray, scales: np.ndarray, axis: int, size: int | None) -> np.ndarray:
    """float32 ``q * scale`` of ``channel_quantize`` (size None) or ``block_quantize``."""
    step = scales.astype(np.float32)
    if size is None:
        shape = [1] * q.ndim
        shape[axis] = -1
        return q * step.reshape(shape)
    step = np.repeat(step, size, axis=axis + 1)
    return q * np.take(step, np.arange(q.shape[axis + 1]), axis=axis + 1)


def _relative_error(weight: np.ndarray, expanded: np.ndarray, axis: int) -> float:
    """Mean relative RMS error over slices of ``GROUP_SIZES[-1]`` consecutive inputs: each
    slice is judged against its own magnitude, so small weights zeroed by a large neighbour's
    scale count."""
    rows, err = _rows(weight, axis), _rows(expanded, axis) - _rows(weight, axis)
    slice_size = min(GROUP_SIZES[-1], rows.shape[1])
    blocks = -(-rows.shape[1] // slice_size)
    pad = ((0, 0), (0, blocks * slice_size - rows.shape[1]))
    err_norm = np.linalg.norm(np.pad(err, pad).reshape(len(rows), blocks, -1), axis=2)
    norm = np.linalg.norm(np.pad(rows, pad).reshape(len(rows), blocks, -1), axis=2)
    kept = norm > 0
    return float((err_norm[kept] / norm[kept]).mean()) if kept.any() else 0.0


def weight_error(
    weight: np.ndarray, axis: int, size: int | None, ratios: tuple[float, ...] = CLIP_RATIOS
) -> float:
    """The relative error (``_relative_error``) of storing ``weight`` (output channels on
    ``axis``) per channel (size None) or in blocks of ``size`` inputs."""
    if size is None:
        q, scales = channel_quantize(weight, axis, ratios)
    else:
        q, scales = block_quantize(weight, axis + 1, size, ratios)
    return _relative_error(weight, _expand(q, scales, axis, size), axis)


def choose_group(
    weight: np.ndarray, axis: int, option: str | int, ratios: tuple[float, ...] = CLIP_RATIOS
) -> tuple[int | None, dict[str, Any]]:
    """The group size of one weight (None: per output channel) and what was measured.

    Blocks run along the input axis (``axis + 1``). "auto" tries one scale per channel and each
    of ``GROUP_SIZES`` shorter than the input axis, and keeps the one with the least error at
    equal size: error (relative RMS per slice of 16 inputs, see ``_relative_error``) times
    ``2 ** (scale bits per weight)``. One more bit per weight halves the RMS error of uniform
    rounding, so a finer group is kept only where it saves more error than its scales' bytes
    would buy as weight bits: finer groups only where the weights need them, and the error
    budget's ladder retries finer groups where the model needs them.
    """
    weight = np.asarray(weight, dtype=np.float32)
    if weight.ndim < axis + 2:
        weight = weight.reshape(*weight.shape, *([1] * (axis + 2 - weight.ndim)))
    width = weight.shape[axis + 1]
    if option == "channel" or (isinstance(option, int) and option >= width):
        return None, {"group_size": None, "inputs_per_channel": width}
    if isinstance(option, int):
        return option, {"group_size": option, "inputs_per_channel": width}
    sizes: list[int | None] = [None, *(g for g in GROUP_SIZES if g < width)]
    errors = {g: weight_error(weight, axis, g, ratios) for g in sizes}
    cost = {g: errors[g] * 2 ** (scale_bits(weight, axis, g)) for g in sizes}
    chosen = min(sizes, key=lambda g: cost[g])
    record = {
        "group_size": chosen,
        "inputs_per_channel": width,
        "rel_rms_error": {
            ("channel" if g is None else str(g)): round(e, 5) for g, e in errors.items()
        },
        "scale_bits_per_weight": {
            ("channel" if g is None else str(g)): round(scale_bits(weight, axis, g), 4)
            for g in sizes
        },
    }
    return chosen, record


def scale_bits(weight: np.ndarray, axis: int, size: int | None) -> float:
    """float16 scale bits per weight of ``weight`` per channel (size None) or in blocks of
    ``size`` inputs along ``axis + 1``."""
    channels = int(np.prod(weight.shape[: axis + 1]))
    if size is None:
        return SCALE_BITS * channels / weight.size
    tail = int(np.prod(weight.shape[axis + 2 :]))
    return SCALE_BITS * channels * tail * -(-weight.shape[axis + 1] // size) / weight.size


def _dequantize(
    graph: onnx.GraphProto,
    init: onnx.TensorProto,
    axis: int,
    group: int | None,
    ratios: tuple[float, ...],
) -> list[onnx.NodeProto]:
    """INT4 values and float16 scales -> DequantizeLinear (float16) -> Cast to float32: one
    scale per output channel (``axis``), or with ``group`` a blocked DequantizeLinear along the
    input axis (``axis + 1``), in the weight's own shape."""
    weight = numpy_helper.to_array(init)
    if group is None:
        q, scales = channel_quantize(weight, axis, ratios)
        attrs: dict[str, int] = {"axis": axis}
    else:
        q, scales = block_quantize(weight, axis + 1, group, ratios)
        attrs = {"axis": axis + 1, "block_size": group}
    packed = helper.make_tensor(  # takes the float weight's name: that one is dropped
        init.name, onnx.TensorProto.INT4, q.shape, pack_int4(q).tobytes(), raw=True
    )
    scale = numpy_helper.from_array(scales, f"{init.name}.scale")
    graph.initializer.remove(init)
    graph.initializer.extend([packed, scale])
    dq = helper.make_node(
        "DequantizeLinear", [packed.name, scale.name], [f"{init.name}.dq"], **attrs
    )
    return [dq, _cast(dq.output[0], f"{init.name}.w")]


def _half(graph: onnx.GraphProto, init: onnx.TensorProto, transform: Any = None) -> onnx.NodeProto:
    """The float32 initializer ``init`` (after ``transform``) stored as float16 -> Cast."""
    values = numpy_helper.to_array(init)
    values = values if transform is None else transform(values)
    if np.abs(values).max(initial=0) > np.finfo(np.float16).max:
        raise TargetError(
            f"onnx: int4: '{init.name}' holds values past float16's range (largest "
            f"{float(np.abs(values).max()):.3g}); keep its layer in float (option keep_float)"
        )
    half = numpy_helper.from_array(values.astype(np.float16), init.name)
    graph.initializer.remove(init)  # the float16 copy takes its name
    graph.initializer.append(half)
    return _cast(half.name, f"{init.name}.f")


def _sum_lstm_biases(bias: np.ndarray) -> np.ndarray:
    """LSTM B = [Wb, Rb] per direction; every gate adds both, so [Wb + Rb, 0] is the same model
    (and its zero half packs to almost nothing in the artifact's zip)."""
    d, width = bias.shape
    pair = bias.reshape(d, 2, width // 2)
    return np.concatenate([pair[:, 0] + pair[:, 1], np.zeros_like(pair[:, 1])], axis=1)


def _cast(source: str, output: str) -> onnx.NodeProto:
    return helper.make_node("Cast", [source], [output], to=onnx.TensorProto.FLOAT)


def _drop_unused(graph: onnx.GraphProto) -> None:
    used = {t for node in graph.node for t in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _ops(proto: onnx.ModelProto, names: list[str]) -> set[str]:
    return {node.op_type for node in proto.graph.node if node.name in names}


@dataclass(frozen=True)
class Int8Layers:
    """The layers of an int4 build that go int8 instead (option ``keep_int8``).

    Attributes:
        nodes: Node name of the exported graph -> why it goes int8.
        windows: Calibration windows [N, L, F] for the static int8 layers.
        features: Input feature names (the int8 rule's heavy-tailed input check names them).
    """

    nodes: dict[str, str]
    windows: Any = None
    features: list[str] | None = None


def lower_int4(
    exported: onnx.ModelProto,
    module: Any,
    options: dict[str, Any],
    keep: dict[str, str],
    int8: Int8Layers | None = None,
) -> tuple[onnx.ModelProto, list[dict[str, Any]], dict[str, Any]]:
    """int4 graph, layer records and the lowering record for the manifest's recipe.

    ``keep`` names the nodes left in float; ``int8`` the nodes quantized as the int8 build
    quantizes them (``quantize.quantize_int8``: int8 weights, int8 compute where ONNX Runtime has
    the kernel), before every other layer goes int4.
    """
    from .layers import layer_records

    block_size = block_size_option(options)
    group = group_size_option(options)
    rounding = rounding_option(options)
    wanted = {n: why for n, why in (int8.nodes if int8 else {}).items() if n not in keep}
    source, int8_record, steps = exported, {}, []
    if wanted:
        chosen = replace(int8, nodes=wanted)
        source, int8_record = _int8_layers(exported, module, options, keep, chosen)
        steps = [f"int8 for {sorted(int8_record['layers'])} (option keep_int8)"]
    graph = quantize_int4_graph(
        source, set(keep) | _int8_names(wanted), block_size, group, rounding
    )
    reasons = {
        "int4-matmulnbits": f"int4 weight-only, block-wise (blocks of up to {block_size} along K, "
        "symmetric float32 scales): ONNX Runtime MatMulNBits computes with the int4 weights",
        "int4-storage": STORAGE_NOTE,
    }
    layers = layer_records(
        exported,
        graph.proto,
        module,
        precision="int4",
        static_reason=int8_record.get("static", ""),
        kept_float=keep,
        method_reasons=reasons,
    )
    _note_int8(layers, exported, module, wanted)
    kept_float = sorted({layer["name"] for layer in layers if layer["node"] in keep})
    _name_layer_nodes(graph.proto, layers)
    storage = [layer["name"] for layer in layers if layer["method"] == "int4-storage"]
    lowering = {
        "tool": "edgecomp int4 (MatMulNBits for ONNX Runtime, DequantizeLinear storage)",
        "block_size": block_size,
        "rounding": rounding,
        "steps": [*steps, *graph.steps],
        "keep_float": kept_float,
        "int4_storage": {
            "layers": storage,
            "expand_at_load": bool(storage),
            "note": STORAGE_NOTE,
            "group_size": group,
            "groups": graph.groups,
        },
    }
    if wanted:
        lowering["keep_int8"] = {k: v for k, v in int8_record.items() if k != "static"}
    return graph.proto, layers, lowering


def _int8_layers(
    exported: onnx.ModelProto,
    module: Any,
    options: dict[str, Any],
    keep: dict[str, str],
    int8: Int8Layers,
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """``exported`` with the ``int8`` nodes quantized by the x86 int8 rules (every other compute
    node left as it is, for int4 next) and what was done, for the lowering record."""
    from .layers import COMPUTE_OPS, layer_names
    from .quantize import MAX_CALIBRATION_WINDOWS, Int8Settings, quantize_int8, select_windows

    if int8.windows is None:
        raise TargetError(
            "onnx: option 'keep_int8' needs calibration windows (the int8 layers' activation "
            "ranges); the build passes them when the option is set"
        )
    settings = Int8Settings.from_options(options)
    others = {
        n.name: "int4 build: quantized to int4 after the int8 layers"
        for n in exported.graph.node
        if n.op_type in COMPUTE_OPS and n.name not in int8.nodes
    }
    windows = select_windows(int8.windows, MAX_CALIBRATION_WINDOWS)
    quantized = quantize_int8(exported, windows, settings, int8.features, {**others, **keep})
    names = layer_names(exported, module)
    record = {
        "layers": sorted(names.get(n, n) for n in int8.nodes),
        **settings.lowering(len(windows)),
        "steps": quantized.steps,
        "static": settings.describe(len(windows)),
    }
    record.pop("keep_float", None)
    return quantized.proto, record


def _int8_names(nodes: dict[str, str]) -> set[str]:
    """The int8 nodes' names, and the MatMul ONNX Runtime's dynamic quantizer splits a Gemm into."""
    return set(nodes) | {f"{name}_MatMul" for name in nodes}


def _note_int8(
    layers: list[dict[str, Any]], exported: onnx.ModelProto, module: Any, nodes: dict[str, str]
) -> None:
    """Prefix the records of the ``keep_int8`` layers with why they went int8, in place."""
    from .layers import layer_names

    why = {layer_names(exported, module)[n]: reason for n, reason in nodes.items()}
    for layer in layers:
        if layer["name"] in why:
            layer["reason"] = f"{why[layer['name']]}: {layer['reason']}"


def _name_layer_nodes(proto: onnx.ModelProto, layers: list[dict[str, Any]]) -> None:
    """Only layer nodes keep a name, and it is the layer's own (``blocks.0.conv1``, not the
    exporter's ``/blocks/blocks.0/conv1/Conv``; records follow): every byte shows at int4."""
    named = {layer["node"]: layer for layer in layers}
    for node in proto.graph.node:
        layer = named.get(node.name)
        node.name = "" if layer is None else layer["name"]
        if layer is not None:
            layer["node"] = node.name
