"""The pack's encoders behind small typed calls: faces, landmarks, scene, VAD, text.

Every model is opened through `sensorfuse.engine.inference.open_model` (hash, graph and warm-up
checks, one intra-op thread) from the model cache. Pre/post-processing is the pack's own
(`sensorfuse.perception.prepost`), so a detection here is exactly what the `encoder` node would give.

Why the scene encoder looks at two square crops instead of the manifest's centre crop:
the sample sessions (and real rooms) put objects near the frame edges; a 4:3 frame
centre-cropped at 87.5 % of its short side loses a third of its width. The left and
right squares cover the whole frame; per class we keep the larger probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import msgspec
import numpy as np

from sensorfuse.engine import inference
from sensorfuse.engine import manifest as mf
from sensorfuse.perception.prepost import blazeface, imagenet, landmarks, text, vad

FACE_MODEL = "blazeface_short"
LANDMARK_MODEL = "face_landmarks"
SCENE_MODEL = "efficientnet_lite0_int8"
VAD_MODEL = "silero_vad"
TEXT_MODEL = "minilm_l6_v2_int8"
# Landmark indices of the MediaPipe 468-point mesh: inner lips and the eye corners.
UPPER_LIP, LOWER_LIP = 13, 14
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
MOUTH_KEYPOINT = 3  # BlazeFace keypoint order: right eye, left eye, nose, mouth, ears
PATCH = 16
PATCH_SIDE = 0.45  # of the face box width


@dataclass(frozen=True)
class FaceObservation:
    """One detected face in frame pixels, with its mouth opening from the landmarks."""

    box: np.ndarray  # x0, y0, x1, y1
    score: float
    keypoints: np.ndarray  # [6, 2]
    mouth_open: float  # inner-lip gap / eye-corner distance; nan when landmarks failed
    presence: float  # landmark model's face-present probability
    mouth_patch: np.ndarray  # [PATCH, PATCH] float32 grey levels in [0, 1] around the mouth
    mesh_xy: np.ndarray  # [468, 2] landmark points in frame pixels (whatever the presence)
    tracked_frames: int = 0  # consecutive frames found by `Encoders.track_face` alone; 0: detected


@dataclass(frozen=True)
class SceneObservation:
    probabilities: np.ndarray  # [1000] float32, max over the crops
    embedding: np.ndarray  # [1280] float32, mean over the crops


class Encoders:
    """Opened pack models. `cache` None: $SENSORFUSE_MODEL_CACHE or the user cache."""

    def __init__(self, cache: Path | None = None, *, threads: int = 1) -> None:
        config = inference.SessionConfig(intra_op_threads=threads)

        def load(name: str) -> inference.ModelSession:
            return inference.open_model(mf.find_manifest(name, cache), config)

        self.face = load(FACE_MODEL)
        self.landmarks = load(LANDMARK_MODEL)
        self.scene = load(SCENE_MODEL)
        self.vad = load(VAD_MODEL)
        self.text = load(TEXT_MODEL)
        scene_manifest = self.scene.manifest
        assert scene_manifest.labels is not None, "the scene encoder must ship its labels"
        self.labels = imagenet.load_labels(self.scene.manifest_path.parent / scene_manifest.labels.file,
                                           expected=1000)
        text_pre = self.text.manifest.preprocessing
        assert isinstance(text_pre, mf.TokenizerPre)
        self.tokenizer = text.load_tokenizer(self.text.manifest_path.parent / text_pre.file, text_pre)
        self.providers = {m.name: m.provider for m in (self.face, self.landmarks, self.scene, self.vad, self.text)}

    # -- vision ------------------------------------------------------------------------
    @property
    def face_input_size(self) -> int:
        """Side of the face detector's square input, in pixels."""
        pre = self.face.manifest.preprocessing
        assert isinstance(pre, mf.LetterboxPre)
        return pre.size

    def faces(self, rgb: np.ndarray, *, max_faces: int, min_score: float | None = None,
              confirm_presence: float | None = None, presence_rule: landmarks.PresenceRule = (),
              rois: Sequence[tuple[int, int, int, int]] = (),
              acquire: Sequence[tuple[int, int, int, int]] = ()) -> list[FaceObservation]:
        """Faces best first.

        `min_score` overrides the manifest's detection threshold. With `confirm_presence`,
        a detection scoring below the manifest's threshold is kept only when the landmark
        model's face-present probability on it reaches `confirm_presence` (the landmark
        model runs on every detection anyway, for the mouth). `presence_rule` asks the same
        of every detection by its score (`landmarks.presence_needed`). The detector always sees the
        whole frame; `rois` adds regions (x0, y0, x1, y1), e.g. around the previous frame's
        faces (`blazeface.roi_tile`), whose candidates go through one weighted NMS with the
        whole frame's. `acquire` regions (tiles, `blazeface.square_tiles`) only add faces
        that overlap none found there (`blazeface.add_new_faces`).
        """
        pre, post = self.face.manifest.preprocessing, self.face.manifest.postprocessing
        assert isinstance(pre, mf.LetterboxPre) and isinstance(post, mf.SsdFacePost)
        confident = post.min_score
        if min_score is not None and min_score != post.min_score:
            post = msgspec.structs.replace(post, min_score=min_score)
        height, width = rgb.shape[:2]
        if not rois:
            tensor, placement = blazeface.letterbox(rgb, pre)
            out = self.face.run({"image": tensor})
            found = blazeface.postprocess(out["regressors"], out["scores"], placement, pre, post)
        else:
            regions = [(0, 0, width, height), *rois]
            found = blazeface.merge_tiles([self._candidates(rgb, t, pre, post) for t in regions], post)
        if acquire:
            new = blazeface.merge_tiles([self._candidates(rgb, t, pre, post) for t in acquire], post)
            found = blazeface.add_new_faces(found, new, post.iou_threshold)
        result: list[FaceObservation] = []
        # Rejected candidates cost a landmark run each: bounded so a textured frame full of
        # weak candidates cannot blow the frame budget.
        runs_left = 2 * max_faces
        for i in range(len(found)):
            if len(result) >= max_faces or runs_left == 0:
                break
            box, keypoints, score = found.boxes[i], found.keypoints[i], float(found.scores[i])
            if box[2] - box[0] < 4 or box[3] - box[1] < 4:
                continue  # a degenerate box cannot be cropped for landmarks
            runs_left -= 1
            mesh = self._mesh(rgb, box, landmarks.eye_angle(keypoints))
            if confirm_presence is not None and score < confident and mesh.presence < confirm_presence:
                continue
            if mesh.presence < landmarks.presence_needed(score, presence_rule):
                continue
            result.append(self._observation(rgb, box.astype(np.float64), score, keypoints.astype(np.float64), mesh))
        return result

    def _candidates(self, rgb: np.ndarray, tile: tuple[int, int, int, int], pre: mf.LetterboxPre,
                    post: mf.SsdFacePost) -> blazeface.Faces:
        x0, y0, x1, y1 = tile
        tensor, placement = blazeface.letterbox(np.ascontiguousarray(rgb[y0:y1, x0:x1]), pre)
        out = self.face.run({"image": tensor})
        return blazeface.tile_candidates(out["regressors"], out["scores"], placement, tile, pre, post)

    def track_face(self, rgb: np.ndarray, previous: FaceObservation, *,
                   min_presence: float) -> FaceObservation | None:
        """The face of the previous frame's `previous`, found again by the landmark model alone.

        MediaPipe's face mesh tracks the same way between detections: the landmark model
        runs on the region of the previous frame's face and its face-present score says
        whether the face is still there. The box and keypoints follow the mesh (shift of
        its centre, change of its spread); the score stays the last detection's. None
        when the face is not confirmed or its centre has left the frame.
        """
        mesh = self._mesh(rgb, previous.box, landmarks.eye_angle(previous.keypoints))
        if mesh.presence < min_presence:
            return None
        before, after = previous.mesh_xy, mesh.points[:, :2]
        center0, center1 = before.mean(axis=0), after.mean(axis=0)
        spread0 = float(np.sqrt(((before - center0) ** 2).sum(axis=1).mean()))
        spread1 = float(np.sqrt(((after - center1) ** 2).sum(axis=1).mean()))
        # a face does not change size by 25 % in one frame; a larger ratio is a bad mesh
        scale = float(np.clip(spread1 / spread0, 0.8, 1.25)) if spread0 > 1e-6 else 1.0
        box = np.concatenate([center1 + (previous.box[:2] - center0) * scale,
                              center1 + (previous.box[2:] - center0) * scale])
        height, width = rgb.shape[:2]
        if not (0.0 <= (box[0] + box[2]) / 2 < width and 0.0 <= (box[1] + box[3]) / 2 < height):
            return None
        keypoints = center1 + (previous.keypoints - center0) * scale
        observation = self._observation(rgb, box, previous.score, keypoints, mesh)
        return replace(observation, tracked_frames=previous.tracked_frames + 1)

    def _mesh(self, rgb: np.ndarray, box: np.ndarray, angle: float) -> landmarks.FaceMesh:
        pre, post = self.landmarks.manifest.preprocessing, self.landmarks.manifest.postprocessing
        assert isinstance(pre, mf.FaceCropPre) and isinstance(post, mf.LandmarksPost)
        tensor, crop = landmarks.crop_face(rgb, box, pre, angle=angle)
        out = self.landmarks.run({"image": tensor})
        return landmarks.postprocess(out["landmarks"], out["face_flag"], crop, post)

    def _observation(self, rgb: np.ndarray, box: np.ndarray, score: float, keypoints: np.ndarray,
                     mesh: landmarks.FaceMesh) -> FaceObservation:
        post = self.landmarks.manifest.postprocessing
        assert isinstance(post, mf.LandmarksPost)
        mouth = float("nan")
        if mesh.presence >= post.min_presence:
            p = mesh.points[:, :2]
            eyes = float(np.linalg.norm(p[LEFT_EYE_OUTER] - p[RIGHT_EYE_OUTER]))
            gap = float(np.linalg.norm(p[LOWER_LIP] - p[UPPER_LIP]))
            mouth = gap / eyes if eyes > 1e-6 else float("nan")
        patch = mouth_patch(rgb, keypoints[MOUTH_KEYPOINT], float(box[2] - box[0]) * PATCH_SIDE)
        return FaceObservation(box, score, keypoints, mouth, float(mesh.presence), patch, mesh.points[:, :2].copy())

    def scene_probabilities(self, rgb: np.ndarray) -> SceneObservation:
        pre = self.scene.manifest.preprocessing
        assert isinstance(pre, mf.CenterCropPre)
        h, w = rgb.shape[:2]
        side = min(h, w)
        crops = [rgb[:side, :side], rgb[h - side:, w - side:]] if w != h else [rgb]
        full_pre = msgspec.structs.replace(pre, crop_fraction=1.0)
        batch = np.concatenate([imagenet.preprocess(np.ascontiguousarray(c), full_pre) for c in crops])
        out = self.scene.run({"image": batch})
        probs = imagenet.softmax(out["logits"]).max(axis=0)
        return SceneObservation(probs.astype(np.float32), out["embedding"].mean(axis=0).astype(np.float32))

    # -- audio and text ------------------------------------------------------------------
    def vad_stream(self, probabilities: list[float]) -> vad.SileroStream:
        """A streaming VAD; each chunk's speech probability is appended to `probabilities`."""
        pre, post = self.vad.manifest.preprocessing, self.vad.manifest.postprocessing
        assert isinstance(pre, mf.AudioStreamPre) and isinstance(post, mf.VadPost)
        model = vad.silero_model(self.vad.run)

        def recording(window: np.ndarray, state: np.ndarray, rate: np.ndarray) -> tuple[float, np.ndarray]:
            probability, state = model(window, state, rate)
            probabilities.append(probability)
            return probability, state

        return vad.SileroStream(recording, pre, post)

    def embed_texts(self, texts: list[str], *, batch: int = 64) -> np.ndarray:
        """Unit-length sentence embeddings [N, 384] (float32)."""
        chunks = []
        for i in range(0, len(texts), batch):
            feeds = text.encode(self.tokenizer, texts[i:i + batch])
            chunks.append(self.text.run(feeds)["embedding"].astype(np.float32))
        return np.concatenate(chunks) if chunks else np.zeros((0, 384), np.float32)


def mouth_patch(rgb: np.ndarray, center: np.ndarray, side: float) -> np.ndarray:
    """A PATCH×PATCH grey patch of `side` pixels around the mouth (zero outside the frame).

    Why pixels as well as landmarks: the 468-point mesh wants a frontal face; on a face in
    profile its lip points barely move while the mouth region visibly changes.
    """
    side = max(side, 4.0)
    scale = PATCH / side
    cx, cy = float(center[0]), float(center[1])
    matrix = np.array([[scale, 0.0, PATCH / 2 - scale * cx], [0.0, scale, PATCH / 2 - scale * cy]])
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    patch = cv2.warpAffine(grey, matrix, (PATCH, PATCH), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
    return patch.astype(np.float32) / 255.0


def to_rgb(frame: np.ndarray, layout: str | None) -> np.ndarray:
    """A camera frame (HWC bgr8 by the stream table, or rgb8 / mono8) as HxWx3 RGB."""
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[0], frame.shape[1]), cv2.COLOR_GRAY2RGB)
    if layout is not None and layout.endswith("rgb8"):
        return np.ascontiguousarray(frame)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
