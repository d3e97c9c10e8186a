"""Build functions for the vision models: BlazeFace, face landmarks, image encoders.

Every fp32 model is checked at build time against its original weights (TFLite
interpreter or torch) on real photos, and those outputs become the reference that
`models verify` replays later. Int8 models are checked against their fp32 parent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sensorfuse.engine import manifest as mf
from sensorfuse.perception.prepost import blazeface, imagenet, landmarks
from sensorfuse.models import media, mediapipe, quantize, specs
from sensorfuse.models.builder import (Artifact, BuildContext, copy_into, extra_file, provenance,
                            write_reference)
from sensorfuse.models.sources import EFFICIENTNET_LITE0, MOBILENET_V2, PackagedFile
from sensorfuse.models.verify import compare, load_reference

LABELS_FILE = Path(__file__).parent / "data" / "imagenet_labels.txt"
REFERENCE_PHOTOS = ("astronaut", "chelsea", "coffee")
# The astronaut's face in skimage's 512×512 `astronaut` (from the short-range detector);
# a fixed box keeps the landmark reference independent of the detector's build.
ASTRONAUT_FACE_BOX = np.array([178.0, 81.0, 272.0, 175.0])


class BuildCheckFailed(RuntimeError):
    """A converted/exported model does not reproduce its original weights."""


def check_onnx(path: Path, feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray], *,
               atol: float, min_cosine: float, what: str) -> dict[str, np.ndarray]:
    """Run the fresh ONNX file and fail the build if it departs from the original."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = list(expected)
    outputs = dict(zip(names, session.run(names, feeds)))
    bad = [c for c in compare(outputs, expected, atol=atol, min_cosine=min_cosine) if not c.ok]
    if bad:
        detail = ", ".join(f"{c.output}: max diff {c.max_abs_diff:.3g}, cosine {c.cosine:.6f}"
                           for c in bad)
        raise BuildCheckFailed(f"{path.name} does not match {what}: {detail}")
    return outputs


def _tflite_entry(ctx: BuildContext, name: str, task: str, model: mediapipe.TfliteModel,
                  pre: mf.Preprocessing, post: mf.Postprocessing, feeds_image: np.ndarray,
                  description: str) -> Artifact:
    onnx_path = ctx.staged(f"{name}.onnx")
    ctx.progress.step("converting TFLite → ONNX (tflite2onnx)")
    mediapipe.convert(model, onnx_path)
    ctx.progress.step("reference outputs from the TFLite interpreter")
    feeds = {"image": feeds_image}
    expected = mediapipe.tflite_reference(model, feeds_image)
    check_onnx(onnx_path, feeds, expected, atol=2e-3, min_cosine=0.99999, what="TFLite")
    # the batch is symbolic (mediapipe.batch_dynamic): three different images in one call
    # must each give the interpreter's batch-1 output
    batch = np.concatenate([feeds_image, feeds_image[..., ::-1], feeds_image * 0.5])
    check_onnx(onnx_path, {"image": batch}, mediapipe.tflite_reference(model, batch), atol=2e-3,
               min_cosine=0.99999, what="TFLite, image by image")
    reference, reference_path = write_reference(
        ctx, name, feeds, expected, atol=2e-3, min_cosine=0.99999,
        origin=f"TFLite interpreter (ai-edge-litert) on {model.source.path}")
    manifest = mf.Manifest(
        name=name, task=task, file=onnx_path.name, sha256=mf.sha256_file(onnx_path),
        inputs=model.inputs, outputs=model.outputs, preprocessing=pre, postprocessing=post,
        license=model.source.license, source=provenance(model.source),
        description=description, reference=reference,
    )
    return Artifact(manifest, [onnx_path, reference_path])


def build_blazeface_short(ctx: BuildContext) -> Artifact:
    """BlazeFace short range (faces within ~2 m), 128×128."""
    image, _ = blazeface.letterbox(media.load_rgb("astronaut"), specs.BLAZEFACE_PRE_SHORT)
    return _tflite_entry(ctx, "blazeface_short", "face_detection", mediapipe.SHORT_RANGE,
                         specs.BLAZEFACE_PRE_SHORT, specs.BLAZEFACE_POST_SHORT, image,
                         "MediaPipe BlazeFace short-range face detector (boxes + 6 keypoints)")


def build_blazeface_full(ctx: BuildContext) -> Artifact:
    """BlazeFace full range (faces up to ~5 m), 192×192."""
    image, _ = blazeface.letterbox(media.load_rgb("astronaut"), specs.BLAZEFACE_PRE_FULL)
    return _tflite_entry(ctx, "blazeface_full", "face_detection", mediapipe.FULL_RANGE,
                         specs.BLAZEFACE_PRE_FULL, specs.BLAZEFACE_POST_FULL, image,
                         "MediaPipe BlazeFace full-range face detector (boxes + 6 keypoints)")


def build_face_landmarks(ctx: BuildContext) -> Artifact:
    """468-point face mesh on a 1.5× crop around a detected face."""
    crop, _ = landmarks.crop_face(media.load_rgb("astronaut"), ASTRONAUT_FACE_BOX, specs.LANDMARK_PRE)
    return _tflite_entry(ctx, "face_landmarks", "face_landmarks", mediapipe.LANDMARKS,
                         specs.LANDMARK_PRE, specs.LANDMARK_POST, crop,
                         "MediaPipe face mesh: 468 points (x, y, z) and a face-present score")


def _reference_images(pre: mf.CenterCropPre) -> np.ndarray:
    return imagenet.preprocess_batch([media.load_rgb(n) for n in REFERENCE_PHOTOS], pre)


def _labels(ctx: BuildContext) -> tuple[mf.ExtraFile, Path]:
    path = copy_into(ctx, LABELS_FILE, "imagenet_labels.txt")
    return extra_file(path), path


def _torch_image_entry(ctx: BuildContext, name: str, source: PackagedFile,
                       pre: mf.CenterCropPre, description: str) -> Artifact:
    import torch

    from sensorfuse.models import efficientnet, mobilenet_v2

    module = efficientnet if source is EFFICIENTNET_LITE0 else mobilenet_v2
    ctx.progress.step(f"loading {source.package} weights into torch")
    net = module.load_torch()
    onnx_path = ctx.staged(f"{name}.onnx")
    ctx.progress.step("exporting ONNX (opset 17, dynamic batch)")
    module.export(net, onnx_path)
    feeds = {"image": _reference_images(pre)}
    ctx.progress.step("reference outputs from torch")
    with torch.no_grad():
        logits, embedding = (t.numpy() for t in net(torch.from_numpy(feeds["image"])))
    expected = {"logits": logits, "embedding": embedding}
    check_onnx(onnx_path, feeds, expected, atol=1e-4, min_cosine=0.9999, what="torch")
    reference, reference_path = write_reference(
        ctx, name, feeds, expected, atol=1e-4, min_cosine=0.9999,
        origin=f"torch {torch.__version__} on {source.package} {source.version} weights")
    labels, labels_path = _labels(ctx)
    manifest = mf.Manifest(
        name=name, task="image_classification", file=onnx_path.name,
        sha256=mf.sha256_file(onnx_path), inputs=specs.IMAGE_INPUTS,
        outputs=specs.IMAGE_OUTPUTS, preprocessing=pre, postprocessing=specs.CLASSIFIER_POST,
        license=source.license, source=provenance(source), description=description,
        labels=labels, reference=reference,
    )
    return Artifact(manifest, [onnx_path, reference_path, labels_path])


def build_efficientnet(ctx: BuildContext) -> Artifact:
    """EfficientNet-Lite0: ImageNet logits + 1280-d embedding."""
    return _torch_image_entry(ctx, "efficientnet_lite0", EFFICIENTNET_LITE0, specs.EFFICIENTNET_PRE,
                              "EfficientNet-Lite0 ImageNet-1k classifier and 1280-d image embedding")


def build_mobilenet_v2(ctx: BuildContext) -> Artifact:
    """MobileNetV2: the bring-your-own-model example (same contract as EfficientNet)."""
    return _torch_image_entry(ctx, "mobilenet_v2", MOBILENET_V2, specs.MOBILENET_PRE,
                              "Example of a user-supplied encoder: torchvision MobileNetV2 "
                              "ImageNet-1k classifier and 1280-d embedding")


def build_efficientnet_int8(ctx: BuildContext) -> Artifact:
    """Static QDQ per-channel int8 EfficientNet-Lite0, deltas measured vs fp32."""
    parent_path, parent = ctx.cached_manifest("efficientnet_lite0")
    fp32_path = mf.model_path(parent_path, parent)
    name = "efficientnet_lite0_int8"
    onnx_path = ctx.staged(f"{name}.onnx")
    ctx.progress.step("calibrating and quantising (static QDQ, per-channel)")
    quantize.quantize_efficientnet(fp32_path, onnx_path, ctx.work)
    ctx.progress.step("measuring int8 vs fp32 on held-out photo crops")
    deltas = quantize.image_int8_deltas(fp32_path, onnx_path)
    if parent.reference is None:
        raise BuildCheckFailed(f"{parent_path} has no reference inputs")
    feeds, _ = load_reference(parent_path.parent / parent.reference.file)
    own = check_onnx(onnx_path, feeds, _fp32_outputs(fp32_path, feeds), atol=10.0,
                     min_cosine=0.9, what="its fp32 parent")
    reference, reference_path = write_reference(
        ctx, name, feeds, own, atol=0.1, min_cosine=0.999,
        origin="the int8 model itself at build time (its accuracy vs fp32 is in `accuracy`)")
    labels, labels_path = _labels(ctx)
    manifest = mf.Manifest(
        name=name, task="image_classification", file=onnx_path.name,
        sha256=mf.sha256_file(onnx_path), inputs=specs.IMAGE_INPUTS,
        outputs=specs.IMAGE_OUTPUTS, preprocessing=parent.preprocessing,
        postprocessing=parent.postprocessing, license=parent.license, source=parent.source,
        precision="int8", base_model=parent.name, accuracy=deltas, labels=labels,
        reference=reference,
        description="EfficientNet-Lite0, int8 static QDQ per-channel (calibrated on "
                    "scikit-image/scikit-learn photos)",
    )
    return Artifact(manifest, [onnx_path, reference_path, labels_path])


def _fp32_outputs(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))
