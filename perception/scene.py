"""The scene encoder at its own rate, off the per-frame path, with event-time results
(`sensorfuse.perception.worker`).

The scene classifier (EfficientNet-Lite0, two square crops of a wide frame) costs ~18 ms
on one core of this kind of machine — four times the face path. Run inline, every
`period_ns` one tick took that much longer, which is what set the p99 of frame→detection
latency. Here it runs on a worker thread (onnxruntime and OpenCV release the GIL, so it
uses the second core) and its result enters the features at the first tick at least
`delay_ns` of *event time* after the frame it was computed from. The result a tick sees
depends only on tick times, never on how fast the worker was (a tick that reaches the
delay before the worker is done waits for it), so live, replay at any rate and offline
training all see the same scene vectors. Without a worker the same schedule runs inline.

ConSE (Norouzi et al. 2014): the scene in the text encoder's space is the convex
combination of the top `CONSE_TOP` labels' sentence embeddings, weighted by class
probability.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from sensorfuse.perception.encoders import Encoders
from sensorfuse.perception.worker import EventTimeWorker

CONSE_TOP = 10
TEXT_DIM = 384


@dataclass(frozen=True)
class SceneResult:
    frame_t_ns: int  # capture time of the frame it describes
    text: np.ndarray  # [TEXT_DIM] unit ConSE vector
    top: list[tuple[str, float]]
    embedding: np.ndarray  # the classifier's pooled feature (1280)


def unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 1e-8 else v.astype(np.float32)


class SceneStage:
    def __init__(self, encoders: Encoders, label_embeddings: np.ndarray, *, period_ns: int, delay_ns: int,
                 top_k: int = 5, executor: Executor | None = None) -> None:
        self.enc = encoders
        self.label_embeddings = label_embeddings
        self.top_k = top_k
        self.worker = EventTimeWorker(self._run, period_ns=period_ns, delay_ns=delay_ns, executor=executor,
                                      what="scene")
        self.current: SceneResult | None = None

    @property
    def text(self) -> np.ndarray:
        return self.current.text if self.current is not None else np.zeros(TEXT_DIM, np.float32)

    def due(self, t_ns: int) -> bool:
        return self.worker.due(t_ns)

    def start(self, t_ns: int, rgb: np.ndarray) -> None:
        """Run the encoder on the frame captured at `t_ns` (call when `due`)."""
        self.worker.start(t_ns, rgb)

    def advance(self, t_ns: int) -> bool:
        """At tick time `t_ns`: take a result that is due. True when `current` changed."""
        fresh, result = self.worker.advance(t_ns)
        if fresh:
            self.current = result
        return fresh

    def _run(self, t_ns: int, rgb: np.ndarray) -> SceneResult:
        obs = self.enc.scene_probabilities(rgb)
        order = np.argsort(-obs.probabilities, kind="stable")
        top = order[:CONSE_TOP]
        weights = obs.probabilities[top] / max(1e-8, float(obs.probabilities[top].sum()))
        text = unit((weights[:, None] * self.label_embeddings[top]).sum(axis=0))
        labels = [(self.enc.labels[i], round(float(obs.probabilities[i]), 4)) for i in order[:self.top_k]]
        return SceneResult(t_ns, text, labels, obs.embedding)
