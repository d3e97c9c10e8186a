"""The face pipeline, one or more cameras at a time: detect → regions and tiles →
landmark confirmation → landmark tracking of missed faces → IoU tracks.

    pipeline = FacePipeline(encoders, cameras=4)
    for frames in ticks:                       # one RGB frame (or None) per camera
        for camera, faces in enumerate(pipeline.step(frames)):
            ...                                # CameraFaces: observations, track ids, appeared, left

Per frame of a camera: the detector sees the whole frame, a region around each face of
the camera's previous frame (`blazeface.roi_tile`) and a share of each tile level, in
rotation (`tiles_now`); region candidates go through one weighted NMS with the whole
frame's, tiles only add faces nothing else found. Detections are confirmed by the landmark
model (`landmarks.presence_needed`); a face of the previous frame that no detection
overlaps is followed by the landmark model alone for at most `track_frames` frames
(MediaPipe's face mesh tracking).

Batching: a step makes at most three model calls whatever the number of cameras: every
detector crop of every camera (whole frames, regions, tiles) in one call, every landmark
crop confirming a detection in one, every landmark crop following a missed face in one.
The selection is the sequential one's (at most 2 × `max_faces` landmark runs per frame,
the first `max_faces` accepted): the landmarks run on the same candidate list, then the
same rules pick. Each camera keeps its own state (previous faces, tile rotation, tracker);
the trackers share one id counter, so track ids are unique across cameras and a track
never moves between cameras.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import msgspec
import numpy as np

from sensorfuse.engine import manifest as mf
from sensorfuse.perception.encoders import Encoders
from sensorfuse.perception.prepost import blazeface, landmarks
from sensorfuse.perception.tracking import IouTracker, iou

# Landmark indices of the MediaPipe 468-point mesh: inner lips and the eye corners.
UPPER_LIP, LOWER_LIP = 13, 14
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
MOUTH_KEYPOINT = 3  # BlazeFace keypoint order: right eye, left eye, nose, mouth, ears
PATCH = 16
PATCH_SIDE = 0.45  # of the face box width

MAX_FACES = 3
# Below the pack's 0.65: faces in profile (the held-out sessions' speaker) score 0.4-0.6;
# the fusion head, not the detector threshold, decides who speaks. A detection between
# FACE_MIN_SCORE and 0.70 is kept only when the landmark model confirms a face (presence
# ≥ 0.9, FACE_PRESENCE_RULE): at 0.5 alone, textures and the cat pass too. A face followed
# by the landmark model alone needs presence ≥ FACE_CONFIRM_PRESENCE.
FACE_MIN_SCORE = 0.5
FACE_CONFIRM_PRESENCE = 0.7
# Every detection below 0.85 needs the landmark model to see a face, more so the weaker it
# is (`landmarks.presence_needed`): on face-free textured photos the detector's false faces
# score 0.6–0.75 with presence ~0 (median 0.001) and the face-like ones (a headlight, a
# cat) 0.5–0.7 with presence 0.7–0.99; faces of 32 px and more score ≥ 0.73 (5th
# percentile) with presence 0.5–1 (bench/faces.py, docs/fusion.md).
FACE_PRESENCE_RULE: landmarks.PresenceRule = ((0.70, 0.9), (0.85, 0.3))
# Detector tiles of 3/4 of the frame's short side (`blazeface.square_tiles`): a face ~1/8
# of the frame wide is too small for the short-range detector on the whole frame. On the
# held-out sessions per-frame face recall went from ~0.5 to ~0.96 with every tile on every
# frame, for ~3x the face cost. Instead each frame gets FACE_TILES_PER_FRAME tiles in
# rotation (a small new face is found within one cycle: 6 frames for the 6 tiles of a 4:3
# frame; held-out recall ~0.96 as with every tile on every frame)
# plus a region around each face of the previous frame (`blazeface.roi_tile`), where a face
# once found is looked for at a scale the detector sees: the same cost on every frame, so
# no frame waits behind a frame that ran all the tiles.
FACE_TILE_FRACTION = 0.75
FACE_TILES_PER_FRAME = 1
# Finer tile levels too (`blazeface.tile_levels`): faces down to ~32 px tall at 640×480,
# found in 0 % of frames with the 3/4 tiles alone (bench/faces.py, docs/fusion.md). Each
# level runs max(FACE_TILES_PER_FRAME, ⌈its tiles / FACE_TILE_CYCLE⌉) tiles a frame, so a
# new face waits at most FACE_TILE_CYCLE frames for its tile: 6 detector runs a frame at
# 640×480 (1 + 2 + 3), 2 at 320×240.
FACE_TILE_LEVELS = True
FACE_TILE_CYCLE = 8
# A face the detector misses is followed by the landmark model alone (MediaPipe's face
# mesh tracking) for at most this many consecutive frames; then it needs a detection again.
FACE_TRACK_FRAMES = 15

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels


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
    tracked_frames: int = 0  # consecutive frames found by the landmark model alone; 0: detected


@dataclass
class CameraFaces:
    """One camera's faces after a step: observations best first (detections, then faces
    followed by landmarks), their track ids, and the camera's track changes."""

    observations: list[FaceObservation]
    track_ids: list[int]  # parallel to observations
    appeared: list[int]  # tracks started this frame, ascending
    left: list[int]  # tracks dropped this frame (missed for longer than the tracker allows)
    live: list[int]  # every track of the camera after this frame, seen now or not (tracker order)
    frame_shape: tuple[int, int]  # height, width


@dataclass(frozen=True)
class FaceRequest:
    """One frame for `find_faces`: the detector also runs on `rois` (merged with the whole
    frame's candidates) and `acquire` tiles (only faces nothing else found)."""

    rgb: np.ndarray
    rois: Sequence[Region] = ()
    acquire: Sequence[Region] = ()


@dataclass
class _CameraState:
    tracker: IouTracker
    last_faces: list[FaceObservation] = field(default_factory=list)
    frames: int = 0  # frames seen (the tile rotation)


class FacePipeline:
    """Faces of `cameras` cameras, one `step` per tick; see the module docstring."""

    def __init__(self, encoders: Encoders, *, cameras: int = 1, max_faces: int = MAX_FACES,
                 min_score: float = FACE_MIN_SCORE, presence_rule: landmarks.PresenceRule = FACE_PRESENCE_RULE,
                 track_presence: float = FACE_CONFIRM_PRESENCE, track_frames: int = FACE_TRACK_FRAMES,
                 tile_fraction: float | None = FACE_TILE_FRACTION, tiles_per_frame: int = FACE_TILES_PER_FRAME,
                 tile_levels: bool = FACE_TILE_LEVELS, tile_cycle: int = FACE_TILE_CYCLE) -> None:
        if cameras < 1:
            raise ValueError(f"a face pipeline needs at least one camera, got {cameras}")
        self.enc = encoders
        self.max_faces = max_faces
        self.min_score = min_score
        self.presence_rule = presence_rule
        self.track_presence = track_presence
        self.track_frames = track_frames
        self.tile_fraction = tile_fraction
        self.tiles_per_frame = max(1, tiles_per_frame)
        self.tile_levels = tile_levels
        self.tile_cycle = max(1, tile_cycle)
        ids = itertools.count(1)  # one counter: no two cameras ever hand out the same id
        self.cameras = [_CameraState(IouTracker(ids=ids)) for _ in range(cameras)]

    def step(self, frames: Sequence[np.ndarray | None]) -> list[CameraFaces | None]:
        """One RGB frame per camera (None: no frame this tick; that camera's state is kept
        and its entry of the result is None)."""
        if len(frames) != len(self.cameras):
            raise ValueError(f"{len(frames)} frames for {len(self.cameras)} cameras")
        present = [i for i, rgb in enumerate(frames) if rgb is not None]
        requests = []
        for i in present:
            rgb, camera = frames[i], self.cameras[i]
            assert rgb is not None
            camera.frames += 1
            height, width = rgb.shape[:2]
            requests.append(FaceRequest(rgb, [blazeface.roi_tile(o.box, height, width) for o in camera.last_faces],
                                        self.tiles_now(camera.frames, height, width)))
        detected = find_faces(self.enc, requests, max_faces=self.max_faces, min_score=self.min_score,
                              presence_rule=self.presence_rule)
        followed = self._track_missed([self.cameras[i] for i in present], requests, detected)
        results: list[CameraFaces | None] = [None] * len(frames)
        for i, request, found, extra in zip(present, requests, detected, followed):
            results[i] = self._update(self.cameras[i], found + extra, request.rgb.shape[:2])
        return results

    def tiles_now(self, frame_number: int, height: int, width: int) -> list[Region]:
        """The detector tiles of a camera's `frame_number`-th frame (from 1): of each level
        max(`tiles_per_frame`, ⌈tiles / `tile_cycle`⌉), each level rotating on its own
        (only the first level without `tile_levels`)."""
        if self.tile_fraction is None:
            return []
        levels = _tile_levels(height, width, self.tile_fraction, self.enc.face_input_size)
        if not self.tile_levels:
            levels = levels[:1]
        now = []
        for tiles in levels:
            count = max(self.tiles_per_frame, -(-len(tiles) // self.tile_cycle))
            first = (frame_number - 1) * count
            now += [tiles[(first + j) % len(tiles)] for j in range(min(count, len(tiles)))]
        return now

    def last_faces(self, camera: int = 0) -> list[FaceObservation]:
        """The camera's faces of its last frame (what the next frame's regions and tracking start from)."""
        return list(self.cameras[camera].last_faces)

    def _track_missed(self, cameras: list[_CameraState], requests: list[FaceRequest],
                      detected: list[list[FaceObservation]]) -> list[list[FaceObservation]]:
        """Per camera, the previous frame's faces that no detection overlaps, found again by
        the landmark model (one call for all cameras)."""
        min_iou = cameras[0].tracker.min_iou if cameras else 0.0
        candidates: list[list[FaceObservation]] = []
        for camera, found in zip(cameras, detected):
            # what the sequential loop would skip whatever the other followed faces are
            candidates.append([] if len(found) >= self.max_faces else [
                p for p in camera.last_faces
                if p.tracked_frames < self.track_frames and not any(iou(p.box, o.box) >= min_iou for o in found)])
        meshes = iter(_meshes(self.enc, [(r.rgb, p.box, landmarks.eye_angle(p.keypoints))
                                         for r, previous in zip(requests, candidates) for p in previous]))
        results = []
        for request, found, previous in zip(requests, detected, candidates):
            followed: list[FaceObservation] = []
            pairs = [(p, next(meshes)) for p in previous]
            for p, mesh in pairs:
                if len(found) + len(followed) >= self.max_faces:
                    break
                if any(iou(p.box, o.box) >= min_iou for o in followed):
                    continue
                face = follow_face(self.enc, request.rgb, p, mesh, min_presence=self.track_presence)
                if face is not None:
                    followed.append(face)
            results.append(followed)
        return results

    @staticmethod
    def _update(camera: _CameraState, observed: list[FaceObservation], shape: tuple[int, ...]) -> CameraFaces:
        known = {t.track_id for t in camera.tracker.tracks}
        camera.last_faces = observed
        ids, dropped = camera.tracker.update([o.box for o in observed])
        return CameraFaces(observed, ids, sorted(i for i in ids if i not in known), [t.track_id for t in dropped],
                           [t.track_id for t in camera.tracker.tracks], (int(shape[0]), int(shape[1])))


def find_faces(encoders: Encoders, requests: Sequence[FaceRequest], *, max_faces: int,
               min_score: float | None = None, confirm_presence: float | None = None,
               presence_rule: landmarks.PresenceRule = ()) -> list[list[FaceObservation]]:
    """Faces of each frame, best first: one detector call for every crop of every frame,
    one landmark call for every detection to confirm.

    `min_score` overrides the manifest's detection threshold. With `confirm_presence`, a
    detection scoring below the manifest's threshold is kept only when the landmark model's
    face-present probability on it reaches `confirm_presence`. `presence_rule` asks the
    same of every detection by its score (`landmarks.presence_needed`).
    """
    pre, post = encoders.face_model.manifest.preprocessing, encoders.face_model.manifest.postprocessing
    assert isinstance(pre, mf.LetterboxPre) and isinstance(post, mf.SsdFacePost)
    confident = post.min_score
    if min_score is not None and min_score != post.min_score:
        post = msgspec.structs.replace(post, min_score=min_score)
    found_per_request = _detections(encoders, requests, pre, post)
    # Rejected candidates cost a landmark run each: bounded so a textured frame full of
    # weak candidates cannot blow the frame budget.
    candidates = [[i for i in range(len(found)) if found.boxes[i][2] - found.boxes[i][0] >= 4
                   and found.boxes[i][3] - found.boxes[i][1] >= 4][:2 * max_faces]  # degenerate: no crop
                  for found in found_per_request]
    meshes = iter(_meshes(encoders, [(r.rgb, f.boxes[i], landmarks.eye_angle(f.keypoints[i]))
                                     for r, f, picked in zip(requests, found_per_request, candidates) for i in picked]))
    results = []
    for request, found, picked in zip(requests, found_per_request, candidates):
        result: list[FaceObservation] = []
        for i, mesh in [(i, next(meshes)) for i in picked]:
            if len(result) >= max_faces:
                break
            score = float(found.scores[i])
            if confirm_presence is not None and score < confident and mesh.presence < confirm_presence:
                continue
            if mesh.presence < landmarks.presence_needed(score, presence_rule):
                continue
            result.append(observation(encoders, request.rgb, found.boxes[i].astype(np.float64), score,
                                      found.keypoints[i].astype(np.float64), mesh))
        results.append(result)
    return results


def _detections(encoders: Encoders, requests: Sequence[FaceRequest], pre: mf.LetterboxPre,
                post: mf.SsdFacePost) -> list[blazeface.Faces]:
    """The detector on the whole frame, regions and tiles of every request in one call;
    the detections of each request, best first."""
    crops: list[tuple[int, Region]] = []  # (request, region); the whole frame first
    for index, request in enumerate(requests):
        height, width = request.rgb.shape[:2]
        crops += [(index, region) for region in [(0, 0, width, height), *request.rois, *request.acquire]]
    placed = [blazeface.letterbox(np.ascontiguousarray(requests[i].rgb[y0:y1, x0:x1]), pre)
              for i, (x0, y0, x1, y1) in crops]
    out = encoders.detect(np.concatenate([tensor for tensor, _ in placed])) if placed else {}
    found_per_request: list[blazeface.Faces] = []
    at = 0
    for request in requests:
        regions = 1 + len(request.rois)
        # per crop of this request: its outputs (batch 1), letterbox placement and region
        parts = [(out["regressors"][k:k + 1], out["scores"][k:k + 1], placed[k][1], crops[k][1])
                 for k in range(at, at + regions + len(request.acquire))]
        at += len(parts)
        if not request.rois:
            # the whole frame alone: its own NMS in the model's square, as a single call did
            found = blazeface.postprocess(parts[0][0], parts[0][1], parts[0][2], pre, post)
        else:
            found = blazeface.merge_tiles([blazeface.tile_candidates(*p, pre, post) for p in parts[:regions]], post)
        if request.acquire:
            new = blazeface.merge_tiles([blazeface.tile_candidates(*p, pre, post) for p in parts[regions:]], post)
            found = blazeface.add_new_faces(found, new, post.iou_threshold)
        found_per_request.append(found)
    return found_per_request


def follow_face(encoders: Encoders, rgb: np.ndarray, previous: FaceObservation, mesh: landmarks.FaceMesh, *,
                min_presence: float) -> FaceObservation | None:
    """The face of the previous frame's `previous`, found again by the landmark model alone
    (`mesh`: the landmark model on `previous`'s region of this frame).

    MediaPipe's face mesh tracks the same way between detections: the landmark model runs
    on the region of the previous frame's face and its face-present score says whether the
    face is still there. The box and keypoints follow the mesh (shift of its centre, change
    of its spread); the score stays the last detection's. None when the face is not
    confirmed or its centre has left the frame.
    """
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
    return replace(observation(encoders, rgb, box, previous.score, keypoints, mesh),
                   tracked_frames=previous.tracked_frames + 1)


def track_face(encoders: Encoders, rgb: np.ndarray, previous: FaceObservation, *,
               min_presence: float) -> FaceObservation | None:
    """`follow_face` for one face, its landmark model run included."""
    [mesh] = _meshes(encoders, [(rgb, previous.box, landmarks.eye_angle(previous.keypoints))])
    return follow_face(encoders, rgb, previous, mesh, min_presence=min_presence)


def _meshes(encoders: Encoders, crops: list[tuple[np.ndarray, np.ndarray, float]]) -> list[landmarks.FaceMesh]:
    """The landmark model on (frame, box, roll) crops, in one call."""
    if not crops:
        return []
    pre, post = encoders.landmark_model.manifest.preprocessing, encoders.landmark_model.manifest.postprocessing
    assert isinstance(pre, mf.FaceCropPre) and isinstance(post, mf.LandmarksPost)
    cropped = [landmarks.crop_face(rgb, box, pre, angle=angle) for rgb, box, angle in crops]
    out = encoders.landmarks(np.concatenate([tensor for tensor, _ in cropped]))
    return [landmarks.postprocess(out["landmarks"][k], out["face_flag"][k], crop, post)
            for k, (_, crop) in enumerate(cropped)]


def observation(encoders: Encoders, rgb: np.ndarray, box: np.ndarray, score: float, keypoints: np.ndarray,
                mesh: landmarks.FaceMesh) -> FaceObservation:
    """A face with its mouth opening (from the mesh, when the landmark model saw a face) and mouth patch."""
    post = encoders.landmark_model.manifest.postprocessing
    assert isinstance(post, mf.LandmarksPost)
    mouth = float("nan")
    if mesh.presence >= post.min_presence:
        p = mesh.points[:, :2]
        eyes = float(np.linalg.norm(p[LEFT_EYE_OUTER] - p[RIGHT_EYE_OUTER]))
        gap = float(np.linalg.norm(p[LOWER_LIP] - p[UPPER_LIP]))
        mouth = gap / eyes if eyes > 1e-6 else float("nan")
    patch = mouth_patch(rgb, keypoints[MOUTH_KEYPOINT], float(box[2] - box[0]) * PATCH_SIDE)
    return FaceObservation(box, score, keypoints, mouth, float(mesh.presence), patch, mesh.points[:, :2].copy())


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


@functools.lru_cache(maxsize=8)
def _tile_levels(height: int, width: int, fraction: float, min_side: int) -> tuple[tuple[Region, ...], ...]:
    """The detector tiles of a frame size per level, coarse to fine (the same for every frame of a stream)."""
    return tuple(tuple(level) for level in blazeface.tile_levels(height, width, fraction, min_side=min_side))
