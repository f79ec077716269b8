"""The Live tab: sign to the webcam, get a running transcript of glosses.

Every webcam frame goes to `on_frame`, which only feeds the session's
`engine.live.LiveRecognizer` (motion segmentation, ~0.2 ms) and returns at once; a
finished sign is recognized on the session's own worker thread, and the result is drawn
by the next frame's call (or by a timer once the camera stops). Nothing is redrawn while
nothing changed: every output is `gr.skip()` then, so a frame costs the server almost
nothing beyond Gradio's own JPEG decoding.

Mirroring. The preview is mirrored (`WebcamOptions(mirror=True)`), as in every video-call
app, so signers see themselves as in a mirror. Gradio 6.31 also flips the frames it
sends: its webcam draws the video onto a canvas with `scale(-1, 1)` before making the
JPEG (measured on Gradio 6.31: the frontend's `mirror_webcam` branch). The
model must see what a camera sees, as in WLASL's videos: a right-handed signer's
dominant hand on the image's left, and "left"/"right" movements the right way round.
So `on_frame` flips frames back with `frame[:, ::-1]`, a view that costs no copy.
`mirror=False` would send camera frames as they are, but then the preview moves
backwards for the signer, which makes signing to it awkward.

Queueing. A webcam stream holds one slot of the "live" queue group while it runs
(`time_limit` ends it and the page re-joins, keeping its state), so `max_sessions`
people can sign at once. Model work from all sessions meets in the engine's lock, not in
the stream's queue, so no frame ever waits for the model.

A `None` frame (the camera not started yet, or a dropped frame) is ignored silently:
raising would end the stream.

Rate limit. Each finished sign handed to the model counts once against the client's limit
(`server.yml` `rate_limit`, the same count as Upload, the API and Sentence). The client is
the caller of the session's first frame. A sign over the limit is skipped, not recognized:
the status line says so and when to retry, and the stream goes on. The check runs once
per finished sign inside `LiveRecognizer.feed` (its `admit` hook), never per frame.

"Correct this" saves the frames the model saw of a recent sign (the last
`LiveRecognizer.KEEP_FRAMES`) as a short clip in the user data, source "live".
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from engine import Engine, LiveConfig, LiveEntry, LiveRecognizer, SignLensError
from training.curate.userdata import add_clip
from training.layout import DataLayout
from webapp.common import (
    MODEL_CONCURRENCY,
    MODEL_GROUP,
    current_blocks,
    label_value,
    outside_vocabulary,
    user_errors,
    vocabulary_choices,
)
from webapp.status import toy_model_warning
from webapp.access import LOCAL, Access
from webapp.ops import RateLimit, client_key
from webapp.samples import write_video

PREVIEW_MIRRORED = True
LIVE_GROUP = "live"
GUESSES = 3  # the model's guess and two alternatives offered for an uncertain sign
# Transcript categories: the legend shows them, and the text carries a mark as well
# (colour alone does not reach everyone): "?" for uncertain, "recognizing…" for pending.
SURE, UNSURE, PENDING = "sure", "uncertain (?)", "recognizing"


class LiveSession:
    """What one browser tab keeps in `gr.State`: its recognizer and what was drawn last."""

    def __init__(self, engine: Engine, config: LiveConfig, **options: Any):
        self.recognizer = LiveRecognizer(engine, config, admit=self._admit, **options)
        # Whose limit the signs count against; None until the first frame's call binds it.
        self._rate_limit: RateLimit | None = None
        self._caller: gr.Request | None = None
        self.drawn_version: tuple[int, int] | int = -1
        self.drawn_status = ""
        # (index, entry identity, gloss) of the signs saved by "Correct this": one copy each.
        self.saved: set[tuple[int, int, str]] = set()

    @property
    def bound(self) -> bool:
        return self._rate_limit is not None

    def bind(self, rate_limit: RateLimit, request: gr.Request | None) -> None:
        """Count this session's signs against `request`'s client (its login name, else its address)."""
        self._rate_limit, self._caller = rate_limit, request

    def _admit(self) -> str:
        """The recognizer's `admit` hook: one finished sign, counted; "" or the notice of a skip."""
        return sign_refusal(self._rate_limit, self._caller) if self._rate_limit is not None else ""

    def close(self) -> None:
        self.recognizer.close()


def sign_refusal(rate_limit: RateLimit, request: gr.Request | None) -> str:
    """Count one sign against the client's limit: "" to recognize it, else a notice saying when to retry.

    `RateLimit.check` does the counting, as for every other recognition; its refusal is
    for a call that failed, so the Live tab words its own: the stream goes on.
    """
    try:
        rate_limit.check(request)
        return ""
    except gr.Error:
        pass
    key = client_key(request)
    spent = [(rate_limit.limiter.get_window_stats(item, key), item) for item in rate_limit.items]
    reset, item = max(((stats.reset_time, item) for stats, item in spent if stats.remaining <= 0),
                      key=lambda pair: pair[0], default=(time.time(), "your limit"))
    wait = max(1, round(reset - time.time()))
    return f"Too many signs ({item}): this one was skipped, not recognized; try again in {wait} s."


def _close_session(session: LiveSession | None) -> None:
    if session is not None:
        session.close()


def build_live_tab(engine: Engine, config: LiveConfig, *, layout: DataLayout, rate_limit: RateLimit,
                   access: Access = LOCAL) -> None:
    """The tab's components and events; call inside `with gr.Tab(...)`."""
    session = gr.State(None, delete_callback=_close_session)
    with gr.Row():
        with gr.Column(scale=1):
            webcam = gr.Image(
                label="Camera",
                elem_id="live-camera",
                sources=["webcam"],
                streaming=True,
                type="numpy",
                webcam_options=gr.WebcamOptions(
                    mirror=PREVIEW_MIRRORED,
                    # Gradio asks for 1920x1440 by default: 10 such JPEGs a second is
                    # wasted upload, the segmenter and the model need far less.
                    constraints={"video": {"width": {"ideal": config.camera_width}, "height": {"ideal": config.camera_height}}},
                ),
            )
            status = gr.Markdown("Start the camera, then sign; hold still between signs.", elem_id="live-status")
        with gr.Column(scale=1):
            transcript = gr.HighlightedText(
                label="Transcript",
                elem_id="live-transcript",
                combine_adjacent=False,
                show_legend=True,
                # Colour and a mark: uncertain signs end in "?", pending ones read "recognizing…".
                color_map={UNSURE: "orange", SURE: "green", PENDING: "gray"},
            )
            # What a screen reader announces (an ARIA live region, see webapp/a11y.py): the
            # newest sign in words. Visually hidden: the transcript shows the same.
            announce = gr.Markdown(elem_id="live-announce", elem_classes=["sr-only"])
            with gr.Row():
                sentence_button = gr.Button("Sentence", variant="primary")
                clear_button = gr.Button("Clear")
            sentence = gr.Textbox(label="In English", interactive=False)
            top5 = gr.Label(num_top_classes=5, label="Last sign: top 5", elem_id="live-top5")
            with gr.Row():
                fix_entry = gr.Dropdown(label="Sign (uncertain ones marked ?)", choices=[], interactive=True)
                fix_guess = gr.Radio(label="Pick another guess", choices=[], interactive=True)
            # Saving a sign writes data: off on a public server, admins only on a team one.
            with gr.Accordion("Correct this", open=False, visible=access.curation) as correct_box:
                gr.Markdown(f"None of the guesses? Save the sign under the right gloss for the Curate tab (the last {LiveRecognizer.KEEP_FRAMES} signs can be saved).")
                with gr.Row():
                    # No value until a sign is chosen (a Dropdown without one starts on its first
                    # choice: one click filed the clip under "i"); then the sign's own gloss.
                    right = gr.Dropdown(label="Right gloss", choices=list(engine.vocabulary.glosses), value=None, allow_custom_value=True, filterable=True, interactive=True)
                    save = gr.Button("Save to my data")
                saved = gr.Markdown()
    seen = gr.Gallery(label="What the model saw (last sign)", elem_id="live-frames", columns=8, rows=1, height=190, format="jpeg")
    latency = gr.Markdown(elem_id="live-latency")
    timer = gr.Timer(0.5, active=False)

    view = [status, transcript, top5, seen, latency, fix_entry, fix_guess, timer, announce, right]
    skip_all = tuple(gr.skip() for _ in view)

    def draw(live: LiveSession | None, *, force: bool = False) -> tuple:
        """New values for `view`, or skips where nothing changed since the last draw."""
        if live is None:
            return skip_all
        recognizer = live.recognizer
        state = _status(recognizer)
        # A pending sign is drawn in the transcript too ("recognizing…"), so a new pending
        # count is a change even before its result bumps the version.
        version = (recognizer.version, recognizer.pending)
        if version == live.drawn_version and not force:
            if state == live.drawn_status:
                return skip_all
            live.drawn_status = state
            return (state, *skip_all[1:7], gr.Timer(active=recognizer.pending > 0), *skip_all[8:])
        new_result = version[0] != (live.drawn_version[0] if isinstance(live.drawn_version, tuple) else -1)
        live.drawn_version, live.drawn_status = version, state
        entries = list(recognizer.transcript)
        threshold = config.uncertain_below
        last = entries[-1] if entries else None
        uncertain = [i for i, e in enumerate(entries) if e.top[0].probability < threshold]
        chosen = uncertain[-1] if uncertain else (len(entries) - 1 if entries else None)
        if not new_result and not force:  # only the pending count changed: the rest is as drawn
            return (state, _transcript(entries, threshold, recognizer.pending), *skip_all[2:7],
                    gr.Timer(active=recognizer.pending > 0), *skip_all[8:])
        return (
            state,
            _transcript(entries, threshold, recognizer.pending),
            label_value(last.top) if last else None,
            list(last.thumbnails) if last else None,
            _latency(last, entries),
            gr.Dropdown(choices=[(_entry_label(i, e, threshold), i) for i, e in enumerate(entries)], value=chosen),
            _guesses(entries[chosen] if chosen is not None else None),
            gr.Timer(active=recognizer.pending > 0),
            _announcement(len(entries), last, threshold, recognizer.notice),
            entries[chosen].gloss if chosen is not None else None,
        )

    def on_frame(live: LiveSession | None, frame: np.ndarray | None, request: gr.Request = None):
        if frame is None:
            return (gr.skip(), *skip_all)
        created = live is None
        if created:
            live = LiveSession(engine, config)
        if not live.bound:  # its first frame: the caller whose signs count against their limit
            live.bind(rate_limit, request)
        live.recognizer.feed(frame[:, ::-1] if PREVIEW_MIRRORED else frame)
        return (live if created else gr.skip(), *draw(live))

    def on_tick(live: LiveSession | None):
        return draw(live)

    def show_guesses(live: LiveSession | None, index: int | None):
        if live is None or index is None or not 0 <= index < len(live.recognizer.transcript):
            return gr.Radio(choices=[], value=None), None
        entry = live.recognizer.transcript[index]
        return _guesses(entry), entry.gloss

    @user_errors
    def pick_guess(live: LiveSession | None, index: int | None, gloss: str | None):
        if live is None or index is None or not gloss:
            raise SignLensError("Choose an uncertain sign first, then one of its guesses.")
        live.recognizer.choose(index, gloss)
        return _transcript(list(live.recognizer.transcript), config.uncertain_below, live.recognizer.pending), gloss

    @user_errors
    def make_sentence(live: LiveSession | None, request: gr.Request = None) -> str:
        rate_limit.check(request)
        text = engine.sentence(live.recognizer.glosses() if live else [])
        warning = toy_model_warning(engine.status())
        return f"{text}\n\n({warning})" if warning and text else text

    @access.guard
    def save_sign(live: LiveSession | None, index: int | None, gloss: str | None) -> str:
        if live is None or index is None:
            raise SignLensError("Sign something first, then choose the sign to save.")
        entry = live.recognizer.entry(index)
        gloss = (gloss or "").strip()
        if (index, id(entry), gloss.lower()) in live.saved:  # a second click: no second copy
            return f"Sign #{index + 1} is already saved as **{gloss}**; choose another gloss or sign to save again."
        if not entry.frames:
            raise SignLensError(f"Only the last {LiveRecognizer.KEEP_FRAMES} signs keep their frames; this one can no longer be saved.")
        with tempfile.TemporaryDirectory() as folder:
            # The frames the model saw, one per 1/8 s: sampling them again gives the same frames.
            clip = write_video(Path(folder) / f"live-{index + 1}.mp4", list(entry.frames), fps=8)
            best = entry.top[0]
            record = add_clip(layout, clip, gloss, source="live", predicted=best.gloss, confidence=best.probability)
        live.saved.add((index, id(entry), gloss.lower()))
        return (f"Saved sign #{index + 1} as **{record.gloss}** (model said {best.gloss}, {best.probability:.0%}); "
                "it waits in Curate for review." + outside_vocabulary(engine, record.gloss))

    def clear(live: LiveSession | None):
        if live is None:
            return (*skip_all, "")
        live.recognizer.clear()
        return (*draw(live, force=True), "")

    webcam.stream(
        on_frame,
        inputs=[session, webcam],
        outputs=[session, *view],
        stream_every=config.stream_every,
        time_limit=config.time_limit,
        concurrency_id=LIVE_GROUP,
        concurrency_limit=config.max_sessions,
        api_name="live_frame",
        api_visibility="private",
        show_progress="hidden",
    )
    timer.tick(on_tick, inputs=[session], outputs=view, api_name="live_poll", api_visibility="private", show_progress="hidden", queue=False)
    fix_entry.input(show_guesses, inputs=[session, fix_entry], outputs=[fix_guess, right], api_name="live_guesses", api_visibility="private", queue=False)
    fix_guess.input(pick_guess, inputs=[session, fix_entry, fix_guess], outputs=[transcript, right], api_name="live_pick", api_visibility="private", queue=False)
    sentence_button.click(
        make_sentence,
        inputs=[session],
        outputs=[sentence],
        api_name="live_sentence",
        api_visibility="private",
        concurrency_id=MODEL_GROUP,
        concurrency_limit=MODEL_CONCURRENCY,
    )
    save.click(save_sign, inputs=[session, fix_entry, right], outputs=[saved], api_name="live_correct", api_visibility="private", concurrency_limit=None)
    clear_button.click(clear, inputs=[session], outputs=[*view, sentence], api_name="live_clear", api_visibility="private", queue=False)
    # The gloss picker follows the vocabulary: an adapter (de)activated in Fine-tune changes it.
    gr.on([correct_box.expand, current_blocks().load], lambda: vocabulary_choices(engine), None, right,
          api_name="live_glosses", api_visibility="private", queue=False, show_progress="hidden")


def _status(recognizer: LiveRecognizer) -> str:
    if recognizer.segmenter.active:
        line = "● **signing…**"
    else:
        line = "○ waiting for a sign"
    if recognizer.pending:
        line += f" · recognizing {recognizer.pending} sign{'s' if recognizer.pending > 1 else ''}…"
        expected = expected_seconds(list(recognizer.transcript))
        line += f" (about {expected:.1f} s each lately)" if expected else " (the first sign takes longest)"
    if recognizer.notice:
        line += f"  \n⚠️ {recognizer.notice}"
    return line


def expected_seconds(entries: list[LiveEntry], last: int = 5) -> float | None:
    """Median seconds from the end of a sign to its result over the last few signs."""
    recent = sorted(e.latency_ms for e in entries[-last:])
    return recent[len(recent) // 2] / 1000 if recent else None


def _transcript(entries: list[LiveEntry], threshold: float, pending: int = 0) -> list[tuple[str, str | None]]:
    """HighlightedText value: each gloss with its confidence; uncertain ones end in "?"."""
    out: list[tuple[str, str | None]] = []
    for i, entry in enumerate(entries):
        if i:
            out.append((" ", None))
        picked = entry.chosen > 0  # the user chose it: no longer the model's doubt
        sure = picked or entry.confidence >= threshold
        mark = " ✓" if picked else "" if sure else " ?"
        out.append((f"{entry.gloss.upper()} {entry.confidence:.0%}{mark}", SURE if sure else UNSURE))
    for _ in range(pending):
        if out:
            out.append((" ", None))
        out.append(("recognizing…", PENDING))
    return out


def _announcement(count: int, entry: LiveEntry | None, threshold: float, notice: str = "") -> str:
    """The newest sign in words, for screen readers (the live region reads it once).

    A notice (a skipped sign, a failure) is what changed when there is one: it is read instead.
    """
    if notice:
        return notice
    if entry is None:
        return ""
    doubt = "uncertain" if entry.chosen == 0 and entry.confidence < threshold else "sure"
    return f"Sign {count}: {entry.gloss.upper()}, {entry.confidence:.0%}, {doubt}."


def _entry_label(index: int, entry: LiveEntry, threshold: float) -> str:
    doubt = " ?" if entry.top[0].probability < threshold else ""
    return f"#{index + 1} {entry.gloss.upper()} ({entry.confidence:.0%}){doubt}"


def _guesses(entry: LiveEntry | None) -> Any:
    if entry is None:
        return gr.Radio(choices=[], value=None)
    return gr.Radio(choices=[(f"{p.gloss} ({p.probability:.0%})", p.gloss) for p in entry.top[:GUESSES]], value=entry.gloss)


def _latency(entry: LiveEntry | None, entries: list[LiveEntry] = ()) -> str:
    if entry is None:
        return ""
    t = entry.timings
    expected = expected_seconds(list(entries))
    typical = f" Expect about **{expected:.1f} s** per sign on this machine (median of the last signs)." if expected else ""
    return (
        f"Last sign: **{entry.latency_ms:.0f} ms** from the end of the sign to its result "
        f"(decode {t.decode_ms:.0f} · preprocess {t.preprocess_ms:.0f} · model {t.model_ms:.0f} ms; "
        f"the rest is waiting for the model).{typical}"
    )
