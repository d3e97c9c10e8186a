"""MediaPipe BlazeFace detectors and the face landmark model: TFLite → ONNX.

`tflite2onnx` converts the three graphs (opset 11, NCHW input, batch fixed at 1); it
warns about float16 weights, and the result matches the TFLite interpreter within 2e-4
(checked again at every build against `ai_edge_litert`, and in the tests). Tensor names
differ between the graphs, so they are renamed to one contract per model kind.

The converted graphs then get a symbolic batch dimension (`batch_dynamic`): the perceive
node runs every crop of every camera of a tick through one call. What pinned the batch
to 1: the graph's inputs, outputs and intermediate shapes, the detectors' `Reshape`
targets `[1, -1, k]` and the full-range detector's `Resize` to fixed `sizes`
`[1, C, 2H, 2W]`. Each item of a batch gives its batch-1 output (tests/models/test_batched.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from sensorfuse.engine import manifest as mf
from sensorfuse.models.sources import BLAZEFACE_FULL, BLAZEFACE_SHORT, FACE_LANDMARK, PackagedFile


@dataclass(frozen=True)
class TfliteModel:
    """One MediaPipe graph: its source, and the names its tensors get in our ONNX."""

    source: PackagedFile
    input_size: int
    renames: dict[str, str]
    inputs: list[mf.TensorSpec]
    outputs: list[mf.TensorSpec]


#: The symbolic first dimension of every input and output (any number of images per call).
BATCH = "batch"


def _detector(source: PackagedFile, size: int, anchors: int, regressors: str, scores: str) -> TfliteModel:
    return TfliteModel(
        source, size, {"input": "image", regressors: "regressors", scores: "scores"},
        [mf.TensorSpec("image", "float32", [BATCH, 3, size, size])],
        [mf.TensorSpec("regressors", "float32", [BATCH, anchors, 16]),
         mf.TensorSpec("scores", "float32", [BATCH, anchors, 1])],
    )


SHORT_RANGE = _detector(BLAZEFACE_SHORT, 128, 896, "regressors", "classificators")
FULL_RANGE = _detector(BLAZEFACE_FULL, 192, 2304, "reshaped_regressor_face_4",
                       "reshaped_classifier_face_4")
LANDMARKS = TfliteModel(
    FACE_LANDMARK, 192, {"input_1": "image", "conv2d_20": "landmarks", "conv2d_30": "face_flag"},
    [mf.TensorSpec("image", "float32", [BATCH, 3, 192, 192])],
    [mf.TensorSpec("landmarks", "float32", [BATCH, 1404, 1, 1]),
     mf.TensorSpec("face_flag", "float32", [BATCH, 1, 1, 1])],
)


def convert(model: TfliteModel, path: Path) -> None:
    """Convert with tflite2onnx, rename the graph's inputs and outputs, free the batch."""
    import tflite2onnx

    # tflite2onnx logs a float16 warning per tensor through the root logger and prints;
    # the conversion is checked numerically instead.
    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        tflite2onnx.convert(str(model.source.locate()), str(path))
    graph_model = onnx.load(str(path))
    _rename(graph_model.graph, model.renames)
    batch_dynamic(graph_model.graph)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))


def _rename(graph: onnx.GraphProto, renames: dict[str, str]) -> None:
    for value in list(graph.input) + list(graph.output):
        if value.name not in renames:
            raise ValueError(f"converted graph has unexpected tensor {value.name!r}")
        value.name = renames[value.name]
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]


def batch_dynamic(graph: onnx.GraphProto) -> None:
    """Make the first dimension of a batch-1 NCHW graph symbolic (`BATCH`), in place.

    Raises ValueError on an op that could still pin the batch: a Reshape whose target
    does not start with 1, a Resize to sizes whose batch is not 1, or a Resize whose input
    shape is unknown.
    """
    constants = {t.name: t for t in graph.initializer}
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.value_info}
    for node in graph.node:
        if node.op_type == "Reshape":
            target = constants[node.input[1]]
            dims = numpy_helper.to_array(target)
            if dims[0] == 0:
                continue  # a target shared with a Reshape already done
            if dims[0] != 1:
                raise ValueError(f"Reshape {node.name!r} to {dims.tolist()}: batch is not 1")
            # 0 copies the input's dimension (the default allowzero=0): the batch passes through
            target.CopyFrom(numpy_helper.from_array(np.concatenate([[0], dims[1:]]).astype(dims.dtype),
                                                    target.name))
        elif node.op_type == "Resize" and len(node.input) == 4 and node.input[3]:
            sizes = numpy_helper.to_array(constants[node.input[3]]).astype(np.float64)
            before = shapes.get(node.input[0])
            if sizes[0] != 1 or not before or 0 in before:
                raise ValueError(f"Resize {node.name!r} to sizes {sizes.tolist()} from {before}")
            # the same output and sampling: half_pixel maps with out/in, which the scales are
            scales = numpy_helper.from_array((sizes / np.asarray(before)).astype(np.float32),
                                             f"{node.name}/scales")
            graph.initializer.append(scales)
            node.input[:] = [node.input[0], node.input[1], scales.name]
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]  # the sizes replaced by scales
    for tensor in unused:
        graph.initializer.remove(tensor)
    # batch-1 shapes of intermediate tensors: onnxruntime infers them again
    del graph.value_info[:]
    for value in list(graph.input) + list(graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH


def tflite_reference(model: TfliteModel, image_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Run the original TFLite graph (NHWC, batch 1) on each image of an [N, 3, H, W] batch
    and return the outputs stacked in our ONNX layout."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Plain builtin kernels: the reference should be TFLite's own arithmetic, and the
    # XNNPACK delegate would also print an INFO line on every build.
    interpreter = Interpreter(
        model_path=str(model.source.locate()), num_threads=1,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    per_image: list[dict[str, np.ndarray]] = []
    for image in image_nchw:
        interpreter.set_tensor(input_detail["index"], np.ascontiguousarray(image[None].transpose(0, 2, 3, 1)))
        interpreter.invoke()
        by_name = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
        outputs = {}
        for tflite_name, value in by_name.items():
            spec = next(s for s in model.outputs if s.name == model.renames[tflite_name])
            # NHWC [1,1,1,1404] → our [1,1404,1,1]; detector outputs are already [1, N, k].
            if len(spec.shape) == 4:
                value = value.transpose(0, 3, 1, 2)
            outputs[spec.name] = value.reshape([1] + [int(d) for d in spec.shape[1:]])
        per_image.append(outputs)
    return {name: np.ascontiguousarray(np.concatenate([o[name] for o in per_image]))
            for name in per_image[0]}
