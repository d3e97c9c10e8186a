"""MediaPipe BlazeFace detectors and the face landmark model: TFLite → ONNX.

`tflite2onnx` converts the three graphs (opset 11, NCHW input, batch fixed at 1); it
warns about float16 weights, and the result matches the TFLite interpreter within 2e-4
(checked again at every build against `ai_edge_litert`, and in the tests). Tensor names
differ between the graphs, so they are renamed to one contract per model kind.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

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


def _detector(source: PackagedFile, size: int, anchors: int, regressors: str, scores: str) -> TfliteModel:
    return TfliteModel(
        source, size, {"input": "image", regressors: "regressors", scores: "scores"},
        [mf.TensorSpec("image", "float32", [1, 3, size, size])],
        [mf.TensorSpec("regressors", "float32", [1, anchors, 16]),
         mf.TensorSpec("scores", "float32", [1, anchors, 1])],
    )


SHORT_RANGE = _detector(BLAZEFACE_SHORT, 128, 896, "regressors", "classificators")
FULL_RANGE = _detector(BLAZEFACE_FULL, 192, 2304, "reshaped_regressor_face_4",
                       "reshaped_classifier_face_4")
LANDMARKS = TfliteModel(
    FACE_LANDMARK, 192, {"input_1": "image", "conv2d_20": "landmarks", "conv2d_30": "face_flag"},
    [mf.TensorSpec("image", "float32", [1, 3, 192, 192])],
    [mf.TensorSpec("landmarks", "float32", [1, 1404, 1, 1]),
     mf.TensorSpec("face_flag", "float32", [1, 1, 1, 1])],
)


def convert(model: TfliteModel, path: Path) -> None:
    """Convert with tflite2onnx, then rename the graph's inputs and outputs."""
    import tflite2onnx

    # tflite2onnx logs a float16 warning per tensor through the root logger and prints;
    # the conversion is checked numerically instead.
    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        tflite2onnx.convert(str(model.source.locate()), str(path))
    graph_model = onnx.load(str(path))
    _rename(graph_model.graph, model.renames)
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


def tflite_reference(model: TfliteModel, image_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Run the original TFLite graph (NHWC) and return outputs in our ONNX layout."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Plain builtin kernels: the reference should be TFLite's own arithmetic, and the
    # XNNPACK delegate would also print an INFO line on every build.
    interpreter = Interpreter(
        model_path=str(model.source.locate()), num_threads=1,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    interpreter.set_tensor(input_detail["index"], np.ascontiguousarray(image_nchw.transpose(0, 2, 3, 1)))
    interpreter.invoke()
    by_name = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    outputs = {}
    for tflite_name, value in by_name.items():
        spec = next(s for s in model.outputs if s.name == model.renames[tflite_name])
        # NHWC [1,1,1,1404] → our [1,1404,1,1]; detector outputs are already [1, N, k].
        if len(spec.shape) == 4:
            value = value.transpose(0, 3, 1, 2)
        outputs[spec.name] = np.ascontiguousarray(value.reshape([int(d) for d in spec.shape]))
    return outputs
