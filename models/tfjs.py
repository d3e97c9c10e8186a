"""Convert a TF.js graph model (`model.json` + weight shards) straight to ONNX.

Only the ops NanoDet's graph uses are supported (an unknown op raises, naming it), so
no TensorFlow install is needed: the graph JSON is TensorFlow's GraphDef in JSON form,
and the shards are the weights in manifest order (fp16-quantized floats are widened
back to fp32 here). Subgraphs made only of constants (the shape arithmetic onnx-tf left
behind: SparseToDense, AddV2 on shape vectors) are evaluated with numpy at conversion.

TF's NHWC convolutions, pooling and resizes become NCHW ONNX ops between a pair of
transposes; onnxruntime's transpose optimizer cancels those against the NCHW↔NHWC
transposes onnx-tf had already put around every op.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TO_NCHW = [0, 3, 1, 2]
TO_NHWC = [0, 2, 3, 1]
_DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64}


class UnsupportedGraph(ValueError):
    """The TF.js graph uses an op or attribute this converter does not handle."""


def load_weights(model_json: dict, shard_dir: Path) -> dict[str, np.ndarray]:
    """Weights by node name, fp16-quantized ones widened to float32."""
    weights: dict[str, np.ndarray] = {}
    for group in model_json["weightsManifest"]:
        data = b"".join((shard_dir / path).read_bytes() for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"], dtype=np.int64))
            quantization = spec.get("quantization")
            stored = np.dtype(quantization["dtype"] if quantization else spec["dtype"])
            if stored.name not in ("float16", *_DTYPES):
                raise UnsupportedGraph(f"weight {spec['name']}: dtype {stored.name}")
            nbytes = count * stored.itemsize
            array = np.frombuffer(data, dtype=stored, count=count, offset=offset)
            offset += nbytes
            weights[spec["name"]] = array.astype(_DTYPES[spec["dtype"]]).reshape(spec["shape"])
    return weights


def _attr_ints(node: dict, name: str) -> list[int]:
    return [int(i) for i in node.get("attr", {}).get(name, {}).get("list", {}).get("i", [])]


def _attr_str(node: dict, name: str) -> str:
    return base64.b64decode(node["attr"][name]["s"]).decode()


@dataclass
class _Builder:
    """ONNX nodes and initializers under construction; numpy values of constant tensors."""

    consts: dict[str, np.ndarray]
    nodes: list = field(default_factory=list)
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    _count: int = 0

    def value(self, name: str) -> np.ndarray:
        return self.consts[name]

    def tensor(self, name: str) -> str:
        """The ONNX name of an input; a constant becomes an initializer on first use."""
        if name in self.consts and name not in self.initializers:
            self.initializers[name] = self.consts[name]
        return name

    def const(self, array: np.ndarray) -> str:
        self._count += 1
        name = f"tfjs_const_{self._count}"
        self.initializers[name] = array
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attrs: object) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def in_nchw(self, op_type: str, x: str, output: str, extra: list[str] = (), **attrs: object) -> str:
        """An NHWC TF op as Transpose → NCHW ONNX op → Transpose."""
        nchw = self.op("Transpose", [x], f"{output}__nchw", perm=TO_NCHW)
        core = self.op(op_type, [nchw, *extra], f"{output}__core", **attrs)
        return self.op("Transpose", [core], output, perm=TO_NHWC)


def _pads(paddings: np.ndarray) -> np.ndarray:
    """TF [[begin, end], ...] → ONNX [begins..., ends...]."""
    return np.concatenate([paddings[:, 0], paddings[:, 1]]).astype(np.int64)


def _check_nhwc(node: dict) -> None:
    if _attr_str(node, "data_format") != "NHWC" or _attr_str(node, "padding") != "VALID":
        raise UnsupportedGraph(f"{node['name']}: only NHWC with VALID padding is supported")


def _conv2d(b: _Builder, node: dict, shapes: dict[str, tuple[int, ...]]) -> str:
    _check_nhwc(node)
    x, w = node["input"]
    kernel = b.value(w)  # HWIO
    channels_in = shapes[x][3]
    group = channels_in // kernel.shape[2]
    weight = b.const(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))  # OIHW
    return b.in_nchw("Conv", b.tensor(x), node["name"], [weight], group=group,
                     kernel_shape=list(kernel.shape[:2]), strides=_attr_ints(node, "strides")[1:3],
                     dilations=_attr_ints(node, "dilations")[1:3])


def _max_pool(b: _Builder, node: dict, _shapes: dict) -> str:
    _check_nhwc(node)
    return b.in_nchw("MaxPool", b.tensor(node["input"][0]), node["name"],
                     kernel_shape=_attr_ints(node, "ksize")[1:3], strides=_attr_ints(node, "strides")[1:3])


def _resize_bilinear(b: _Builder, node: dict, _shapes: dict) -> str:
    x, size = node["input"]
    attrs = node.get("attr", {})
    if attrs.get("align_corners", {}).get("b") or not attrs.get("half_pixel_centers", {}).get("b"):
        raise UnsupportedGraph(f"{node['name']}: only half_pixel_centers resizes are supported")
    height, width = (int(v) for v in b.value(size))
    # Resize's `sizes` must name every axis: batch and channels are read from the input.
    sizes = b.op("Concat", [b.op("Slice", [b.op("Shape", [b.tensor(x)], f"{node['name']}__shape"),
                                            b.const(np.array([0], np.int64)), b.const(np.array([1], np.int64))],
                                  f"{node['name']}__batch"),
                            b.op("Gather", [f"{node['name']}__shape", b.const(np.array([3], np.int64))],
                                 f"{node['name']}__channels"),
                            b.const(np.array([height, width], np.int64))],
                 f"{node['name']}__sizes", axis=0)
    return b.in_nchw("Resize", b.tensor(x), node["name"], ["", "", sizes],
                     mode="linear", coordinate_transformation_mode="half_pixel")


def _pad(b: _Builder, node: dict, _shapes: dict) -> str:
    x, paddings, *value = node["input"]
    inputs = [b.tensor(x), b.const(_pads(b.value(paddings)))]
    if value:
        inputs.append(b.const(b.value(value[0]).astype(np.float32).reshape(())))
    return b.op("Pad", inputs, node["name"], mode="constant")


def _transpose(b: _Builder, node: dict, _shapes: dict) -> str:
    x, perm = node["input"]
    return b.op("Transpose", [b.tensor(x)], node["name"], perm=[int(p) for p in b.value(perm)])


def _concat(b: _Builder, node: dict, _shapes: dict) -> str:
    *xs, axis = node["input"]
    return b.op("Concat", [b.tensor(x) for x in xs], node["name"], axis=int(b.value(axis)))


def _reshape(b: _Builder, node: dict, _shapes: dict) -> str:
    x, shape = node["input"]
    return b.op("Reshape", [b.tensor(x), b.const(b.value(shape).astype(np.int64))], node["name"])


def _split_v(b: _Builder, node: dict, _shapes: dict) -> str:
    x, sizes, axis = node["input"]
    outputs = [node["name"]] + [f"{node['name']}:{i}" for i in range(1, len(b.value(sizes)))]
    from onnx import helper

    b.nodes.append(helper.make_node("Split", [b.tensor(x), b.const(b.value(sizes).astype(np.int64))],
                                    outputs, name=node["name"], axis=int(b.value(axis))))
    return node["name"]


def _unary(op_type: str) -> Callable[[_Builder, dict, dict], str]:
    def convert(b: _Builder, node: dict, _shapes: dict) -> str:
        attrs = {"alpha": float(node["attr"]["alpha"]["f"])} if op_type == "LeakyRelu" else {}
        return b.op(op_type, [b.tensor(node["input"][0])], node["name"], **attrs)
    return convert


def _add(b: _Builder, node: dict, _shapes: dict) -> str:
    return b.op("Add", [b.tensor(i) for i in node["input"]], node["name"])


_CONVERTERS: dict[str, Callable[[_Builder, dict, dict], str]] = {
    "Conv2D": _conv2d, "MaxPool": _max_pool, "ResizeBilinear": _resize_bilinear,
    "Pad": _pad, "PadV2": _pad, "Transpose": _transpose, "ConcatV2": _concat,
    "Reshape": _reshape, "SplitV": _split_v, "Add": _add, "AddV2": _add,
    "LeakyRelu": _unary("LeakyRelu"), "Sigmoid": _unary("Sigmoid"), "Relu": _unary("Relu"),
    "Identity": _unary("Identity"),
}


def _fold(node: dict, consts: dict[str, np.ndarray]) -> np.ndarray | None:
    """numpy value of an op whose inputs are all constants (None when not foldable)."""
    inputs = node.get("input", [])
    if not inputs or any(i not in consts for i in inputs):
        return None
    values = [consts[i] for i in inputs]
    if node["op"] in ("Add", "AddV2"):
        return values[0] + values[1]
    if node["op"] == "SparseToDense":
        indices, shape, sparse, default = values
        dense = np.full(shape.astype(np.int64), default, dtype=sparse.dtype)
        if indices.size:
            dense[tuple(indices.reshape(indices.shape[0], -1).T)] = sparse
        return dense
    return None


def _shape_of(node: dict, out: str, shapes: dict[str, tuple[int, ...]], b: _Builder) -> None:
    """Static shapes, only as far as Conv2D's group count needs them."""
    op, inputs = node["op"], node.get("input", [])
    shape = shapes.get(inputs[0]) if inputs else None
    if shape is None:
        return
    if op == "Transpose":
        shapes[out] = tuple(shape[int(p)] for p in b.value(inputs[1]))
    elif op in ("Pad", "PadV2"):
        shapes[out] = tuple(int(s + p.sum()) for s, p in zip(shape, b.value(inputs[1])))
    elif op == "Conv2D" or op == "MaxPool":
        kernel = b.value(inputs[1]).shape[:2] if op == "Conv2D" else _attr_ints(node, "ksize")[1:3]
        stride = _attr_ints(node, "strides")[1:3]
        channels = b.value(inputs[1]).shape[3] if op == "Conv2D" else shape[3]
        shapes[out] = (shape[0], (shape[1] - kernel[0]) // stride[0] + 1,
                       (shape[2] - kernel[1]) // stride[1] + 1, channels)
    elif op == "ConcatV2":
        axis = int(b.value(inputs[-1]))
        parts = [shapes[i] for i in inputs[:-1]]
        shapes[out] = tuple(sum(p[axis] for p in parts) if d == axis else s for d, s in enumerate(shape))
    elif op == "ResizeBilinear":
        height, width = (int(v) for v in b.value(inputs[1]))
        shapes[out] = (shape[0], height, width, shape[3])
    elif op in ("Add", "AddV2", "LeakyRelu", "Sigmoid", "Relu", "Identity"):
        shapes[out] = shape


def _topological(nodes: list[dict]) -> list[dict]:
    by_name = {n["name"]: n for n in nodes}
    done: set[str] = set()
    order: list[dict] = []

    def visit(name: str) -> None:
        stack = [(name, False)]
        while stack:
            current, expanded = stack.pop()
            if current in done:
                continue
            if expanded:
                done.add(current)
                order.append(by_name[current])
                continue
            stack.append((current, True))
            for parent in by_name[current].get("input", []):
                base = parent.split(":")[0].lstrip("^")
                if base not in done:
                    stack.append((base, False))

    for node in nodes:
        visit(node["name"])
    return order


@dataclass(frozen=True)
class Renames:
    """ONNX names for the graph's inputs and outputs (TF names → friendly names)."""

    inputs: dict[str, str]
    outputs: dict[str, str]


def convert(model_json_path: Path, renames: Renames, *, opset: int = 17):
    """The TF.js graph model at `model_json_path` as an onnx.ModelProto."""
    from onnx import TensorProto, checker, helper, numpy_helper

    model_json = json.loads(model_json_path.read_text())
    consts = load_weights(model_json, model_json_path.parent)
    b = _Builder(consts)
    shapes: dict[str, tuple[int, ...]] = {}
    graph_inputs = []
    for node in _topological(model_json["modelTopology"]["node"]):
        op, name = node["op"], node["name"]
        if op == "Const":
            if name not in consts:
                raise UnsupportedGraph(f"constant {name} has no weight in the manifest")
            continue
        if op == "Placeholder":
            dims = [int(d["size"]) for d in node["attr"]["shape"]["shape"]["dim"]]
            shapes[name] = tuple(dims)
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
            continue
        folded = _fold(node, consts)
        if folded is not None:
            consts[name] = folded
            continue
        if op not in _CONVERTERS:
            raise UnsupportedGraph(f"op {op} ({name}) is not supported by this converter")
        _CONVERTERS[op](b, node, shapes)
        _shape_of(node, name, shapes, b)
    for tf_name, onnx_name in renames.inputs.items():
        _rename(b.nodes, graph_inputs, tf_name, onnx_name)
    outputs = []
    for tf_name, onnx_name in renames.outputs.items():
        b.op("Identity", [tf_name], onnx_name)
        dims = model_json["signature"]["outputs"][f"{tf_name}:0"]["tensorShape"]["dim"]
        outputs.append(helper.make_tensor_value_info(onnx_name, TensorProto.FLOAT,
                                                     [int(d["size"]) for d in dims]))
    initializers = [numpy_helper.from_array(array, name) for name, array in b.initializers.items()]
    graph = helper.make_graph(b.nodes, "tfjs", graph_inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="sensorfuse.models.tfjs")
    model.ir_version = 8
    checker.check_model(model)
    return model


def _rename(nodes: list, graph_inputs: list, old: str, new: str) -> None:
    for node in nodes:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new
    for value in graph_inputs:
        if value.name == old:
            value.name = new
