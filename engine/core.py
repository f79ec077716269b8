"""The Engine: one loaded model serving recognition, sentences and adapters.

The web app creates one Engine and keeps it for the life of the process (the only
global state of the product). Loading can run in a background thread so the app serves
pages while 4 GB of weights load; every model call waits on one lock, because two
forwards at once on a 2-core CPU or one GPU are slower than two in a row.

torch and transformers are imported only where the model is used (they take seconds to
import): the web app builds its page around an Engine that is still loading.
"""

from __future__ import annotations

import gc
import json
import logging
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from engine.config import EngineConfig, InputProfile
from engine.errors import AdapterError, ConfigError, ModelNotReadyError, SignLensError
from engine.prompt import FrameTile, answer_ids, encode_clip, frame_tile, sized_processor, text_messages
from engine.video import Clip, load_clip
from engine.vocabulary import Vocabulary, load_vocabulary

if TYPE_CHECKING:
    import torch

    from engine.device import Accelerators
    from engine.model import LoadedModel

log = logging.getLogger(__name__)

# Recognitions the expected seconds per sign are the median of: enough to ride out one
# slow call (a cold cache, a busy neighbour), few enough to follow a change of load.
RECENT_CALLS = 9
# The input profile an adapter was trained at, in its folder beside vocabulary.txt.
ADAPTER_PROFILE = "profile.json"


def adapter_profile(folder: str | Path) -> InputProfile | None:
    """The profile recorded in an adapter folder; None for adapters trained before profiles."""
    path = Path(folder) / ADAPTER_PROFILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise AdapterError(f"The adapter {Path(folder).name} has a {ADAPTER_PROFILE} that is not readable JSON.") from None
    if not isinstance(values, dict):
        raise AdapterError(f"The adapter {Path(folder).name} has a {ADAPTER_PROFILE} that holds no profile.")
    try:
        return InputProfile.from_dict(values, f"{Path(folder).name}/{ADAPTER_PROFILE}")
    except ConfigError as exc:
        raise AdapterError(str(exc)) from None


@dataclass(frozen=True)
class Prediction:
    gloss: str
    # Score mode: softmax over the active vocabulary's scores, where glosses that pruned
    # ranking left unscored count at their upper bound, so it is a lower bound on the
    # full softmax (exact when every gloss was scored). Generate mode: the generated
    # answer's own probability.
    probability: float


@dataclass(frozen=True)
class Timings:
    decode_ms: float
    # Processor work: resizing, normalizing, tokenizing.
    preprocess_ms: float
    model_ms: float

    @property
    def total_ms(self) -> float:
        return self.decode_ms + self.preprocess_ms + self.model_ms


@dataclass(frozen=True)
class RecognitionResult:
    # Best first; top_k entries in score mode, one in generate mode.
    top: tuple[Prediction, ...]
    # The answer as text: the best gloss, or what the model generated.
    text: str
    mode: str
    timings: Timings
    # The frames the model saw and where they came from.
    clip: Clip
    # Glosses scored in full (score mode): fewer than the vocabulary when pruned ranking
    # stopped early, which is what made it fast; 0 in generate mode.
    glosses_scored: int = 0


@dataclass(frozen=True)
class EncodedFrame:
    """A frame already through the vision tower and projector.

    Live encodes a sign's frames while it is being signed (`Engine.encode_frames`), so
    that when it ends only the language model's work is left (`Engine.recognize_encoded`).
    """

    # The frame, RGB uint8 HxWx3 (kept: stale features are computed again from it).
    frame: np.ndarray
    # Its image features, [tokens per tile, hidden size]: what fills its <IMG_CONTEXT> tokens.
    features: "torch.Tensor"
    # The engine's vision state they were computed in; an adapter or profile change since
    # makes them stale (an adapter that trains the projector changes the features).
    state: int


@dataclass(frozen=True)
class EngineStatus:
    # "idle" (not started) | "loading" | "ready" | "failed" | "closed"
    state: str
    model_id: str
    device: str = ""
    dtype: str = ""
    quantization: str = ""
    # Why this device/dtype/quantization, or why loading failed.
    detail: str = ""
    memory_mb: float = 0.0
    load_seconds: float = 0.0
    adapter: str = ""
    vocabulary: str = ""
    vocabulary_size: int = 0
    # The input profile recognition runs at (an active adapter's own): its name, frames
    # per clip and tile side in pixels (0 until the model is loaded: the side is a share
    # of the model's native tile).
    profile: str = ""
    frames_per_clip: int = 0
    tile_px: int = 0
    # Seconds one sign takes to recognize (decode to answer), the median of the last calls
    # at this profile; 0 until the first call. What a signer waits for after each sign.
    expected_seconds: float = 0.0


class Engine:
    def __init__(self, config: EngineConfig, *, accelerators: Accelerators | None = None):
        self.config = config
        self._accelerators = accelerators
        self._lock = threading.RLock()
        self._loaded: LoadedModel | None = None
        self._state = "idle"
        self._error = ""
        self._adapter = ""
        self._peft: Any = None
        # On an int8 model: a second model with the adapter merged in, sharing the base's
        # unquantized weights; the base itself is never touched, so unloading is exact.
        self._merged: Any = None
        self._thread: threading.Thread | None = None
        # The vocabulary without an adapter, restored when one is unloaded.
        self._base_vocabulary = load_vocabulary(config.vocabulary_path())
        self._vocabulary = self._base_vocabulary
        self._candidates: list[list[int]] | None = None
        # The configured input profile, and the one in use (an adapter's, while active).
        self._base_profile = self._profile = config.input_profile()
        # Processors resized per tile side, made once (a shallow copy each).
        self._processors: dict[int, Any] = {}
        # Seconds of the last recognitions at the active profile (emptied when it changes).
        self._recent_seconds: deque[float] = deque(maxlen=RECENT_CALLS)
        # Bumped whenever what the vision tower and projector compute may change (a model
        # loaded, an adapter or profile swapped): `EncodedFrame`s of an older state are stale.
        self._vision_state = 0
        # Tokenized prompts for pre-encoded frames, by (tile side, frame count).
        self._prompts: dict[tuple[int, int], dict[str, Any]] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, background: bool = False) -> "Engine":
        """Load the model now, or in a thread while the caller goes on serving."""
        if self._state in ("loading", "ready"):
            return self
        self._state, self._error = "loading", ""
        if background:
            self._thread = threading.Thread(target=self._load, name="engine-load", daemon=True)
            self._thread.start()
        else:
            self._load()
            if self._state == "failed":
                raise ModelNotReadyError(self._error)
        return self

    def wait(self, timeout: float | None = None) -> EngineStatus:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status()

    def _load(self) -> None:
        try:
            from engine.model import load_model

            loaded = load_model(self.config.model, accelerators=self._accelerators)
            self._tile(loaded, self._base_profile)  # a profile this model cannot take fails the load
            with self._lock:
                self._loaded = loaded
                self._candidates = None
                self._vision_state += 1
                self._state = "ready"
            if self.config.model.adapter:
                self.load_adapter(self.config.model.adapter)
        except SignLensError as exc:
            self._state, self._error = "failed", str(exc)
            log.error("%s", exc)
        except Exception as exc:  # never let the loader thread die silently
            self._state, self._error = "failed", f"Loading failed: {type(exc).__name__}."
            log.exception("model load failed")

    def close(self) -> None:
        """Drop the model and give its memory back (GPU cache included)."""
        with self._lock:
            self._loaded = None
            self._peft, self._merged, self._adapter = None, None, ""
            self._candidates = None
            self._processors, self._prompts = {}, {}
            self._vision_state += 1
            self._state = "closed"
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def status(self) -> EngineStatus:
        loaded = self._loaded
        base = EngineStatus(
            state=self._state,
            model_id=self.config.model.id,
            detail=self._error,
            adapter=self._adapter,
            vocabulary=self._vocabulary.source,
            vocabulary_size=len(self._vocabulary),
            profile=self._profile.name,
            frames_per_clip=self._profile.frames_per_clip,
            # list() copies in one step: a recognition may append meanwhile.
            expected_seconds=statistics.median(recent) if (recent := list(self._recent_seconds)) else 0.0,
        )
        if loaded is None:
            return base
        return replace(
            base,
            device=loaded.device.kind,
            dtype=str(loaded.device.dtype).removeprefix("torch."),
            quantization=loaded.quantization,
            detail=self._error or f"{loaded.device.reason}; {loaded.quantization_reason}",
            memory_mb=loaded.memory_bytes / 2**20,
            load_seconds=loaded.load_seconds,
            tile_px=frame_tile(loaded.model.config, self._profile.image_scale).pixels,
        )

    @property
    def profile(self) -> InputProfile:
        """The input profile recognition runs at now: an active adapter's, else the config's."""
        return self._profile

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def set_vocabulary(self, path: str | Path) -> Vocabulary:
        """Score over these glosses from now on, and after any adapter is unloaded."""
        vocabulary = load_vocabulary(path)
        with self._lock:
            self._base_vocabulary = self._vocabulary = vocabulary
            self._candidates = None
        return vocabulary

    # ---------------------------------------------------------------- recognition
    def recognize(
        self,
        source: str | Path | np.ndarray | Sequence[np.ndarray],
        *,
        frame_start: int = 1,
        frame_end: int = -1,
        start_s: float | None = None,
        end_s: float | None = None,
        bbox: Sequence[int] | None = None,
        top_k: int | None = None,
        mode: str | None = None,
    ) -> RecognitionResult:
        """Recognize the sign in a clip, an image or a list of RGB frames.

        The sign's span is in frames (WLASL's convention) or in seconds (`start_s`,
        `end_s`, as people trim); see `engine.video.load_clip`.
        """
        loaded = self._require_model()
        cfg = self.config
        profile = self._profile  # one profile for the whole call, even if an adapter swaps meanwhile
        clip = load_clip(
            source,
            num_frames=profile.frames_per_clip,
            limits=cfg.limits,
            frame_start=frame_start,
            frame_end=frame_end,
            start_s=start_s,
            end_s=end_s,
            bbox=bbox if cfg.video.crop_to_bbox else None,
        )
        mode = mode or cfg.recognition.mode
        top_k = top_k or cfg.recognition.top_k

        started = time.perf_counter()
        inputs = self._model_inputs(loaded, clip, profile)
        preprocess_ms = (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        with self._lock:
            top, text, scored = self._answer(loaded, inputs, mode, top_k)
        model_ms = (time.perf_counter() - started) * 1000
        return self._result(profile, top, text, mode, Timings(clip.decode_ms, preprocess_ms, model_ms), clip, scored)

    def encode_frames(self, frames: Sequence[np.ndarray]) -> list[EncodedFrame]:
        """Run frames (RGB) through the vision tower and projector now, for `recognize_encoded` later.

        Live calls this while a sign is still being signed, a frame at a time, so the
        expensive half of the model is done by the time the sign ends. Under the engine's
        lock, like every model call. With `quantize_vision` the features of a frame depend a
        little on the frames encoded with it (torch's dynamic int8 scales activations per
        call), so encoding one at a time may rank slightly differently from `recognize`.
        """
        loaded = self._require_model()
        with self._lock:
            return self._encode(loaded, frames)

    def recognize_encoded(
        self,
        frames: Sequence[EncodedFrame | np.ndarray],
        *,
        top_k: int | None = None,
        mode: str | None = None,
    ) -> RecognitionResult:
        """Recognize a sign from frames, each already encoded (`encode_frames`) or not.

        The same answer as `recognize` on the same frames (up to float rounding): frames
        not encoded yet, or encoded before the last adapter or profile change, are encoded
        here; then only the language model runs, with the cached image features placed at
        the prompt's image tokens. No sampling: the frames are the ones the model sees.
        """
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        loaded = self._require_model()
        mode = mode or self.config.recognition.mode
        top_k = top_k or self.config.recognition.top_k
        started = time.perf_counter()
        with self._lock:  # held throughout: no adapter swap between the features and their use
            profile = self._profile
            fresh = [i for i, f in enumerate(frames) if not (isinstance(f, EncodedFrame) and f.state == self._vision_state)]
            encoded = list(frames)
            for i, done in zip(fresh, self._encode(loaded, [_pixels(frames[i]) for i in fresh])):
                encoded[i] = done
            features = torch.stack([f.features for f in encoded])
            inputs = dict(self._prompt(loaded, profile, len(encoded)))
            inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=features)}
            top, text, scored = self._answer(loaded, inputs, mode, top_k)
        model_ms = (time.perf_counter() - started) * 1000
        shown = tuple(f.frame for f in encoded)
        clip = Clip(shown, tuple(range(len(shown))), len(shown), 0.0, 0.0)
        return self._result(profile, top, text, mode, Timings(0.0, 0.0, model_ms), clip, scored)

    def sentence(self, glosses: Sequence[str]) -> str:
        """Turn a gloss sequence into one English sentence with the language model alone."""
        glosses = [g.strip() for g in glosses if g and g.strip()]
        if not glosses:
            raise SignLensError("There are no signs to turn into a sentence yet.")
        loaded = self._require_model()
        prompt = self.config.recognition.sentence_prompt.format(glosses=" ".join(g.upper() for g in glosses))
        text = loaded.processor.apply_chat_template(text_messages(prompt), add_generation_prompt=True, tokenize=False)
        inputs = loaded.processor.tokenizer([text], return_tensors="pt").to(loaded.device.torch_device)
        with self._lock:
            answer, _ = self._generate(loaded, dict(inputs), self.config.recognition.sentence_max_new_tokens)
        return answer

    # ------------------------------------------------------------------- adapters
    def load_adapter(self, path: str | Path) -> str:
        """Apply a PEFT LoRA adapter to the running model, replacing any active one.

        An adapter trained by training.finetune carries the glosses it learned in
        `vocabulary.txt`; they become the active vocabulary, since scoring glosses the
        adapter never saw would only dilute its answers. It also carries the input profile
        it learned (`profile.json`: frames per clip, tile size), which becomes the active
        one: an adapter fed other inputs than it was trained on answers worse, silently.
        Unloading restores both.
        PEFT is called directly rather than through transformers' `load_adapter`, which
        in transformers 5.24 demands a PEFT release that does not exist yet (0.22).
        On an int8 model (CPU `quantization: 8bit`) the adapter is merged instead, see
        `_merged_int8`: slower to swap, as fast as the base to run.
        """
        from peft import PeftModel

        loaded = self._require_model()
        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            # By name: this sentence reaches users (a ZeroGPU worker re-reads the server's adapter).
            shown = path.parent.name if path.name == "adapter" and path.parent.name else path.name
            raise AdapterError(f"{shown} is not a LoRA adapter folder (adapter_config.json is missing).")
        vocabulary = load_vocabulary(path / "vocabulary.txt") if (path / "vocabulary.txt").is_file() else None
        profile = adapter_profile(path)
        if profile is None:
            # Adapters from before profiles were all trained on full-size tiles.
            profile = InputProfile("unrecorded", self._base_profile.frames_per_clip, 1.0)
            log.warning("Adapter %s records no input profile: assuming full-size tiles, %d frames",
                        path.name, profile.frames_per_clip)
        try:
            self._tile(loaded, profile)
        except ConfigError as exc:
            raise AdapterError(f"The adapter {path.name} was trained at a profile this model cannot run: {exc}") from None
        with self._lock:
            self._drop_adapter()
            if _is_dynamic_int8(loaded):
                self._merged = self._merged_int8(loaded, path)
            else:
                try:
                    self._peft = PeftModel.from_pretrained(loaded.model, str(path), is_trainable=False).eval()
                except Exception as exc:
                    raise _misfit(path, exc) from None
            self._adapter = str(path)
            self._vision_state += 1
            if profile != self._profile:
                self._recent_seconds = deque(maxlen=RECENT_CALLS)
            self._profile = profile
            if vocabulary is not None:
                self._vocabulary, self._candidates = vocabulary, None
        if profile != self._base_profile:
            log.info("Adapter %s switches the input profile from %s to %s (%d frames, image_scale %g)", path.name,
                     self._base_profile.name, profile.name, profile.frames_per_clip, profile.image_scale)
        log.info("Adapter active: %s", path.parent.name if path.name == "adapter" else path.name)
        return self._adapter

    def unload_adapter(self) -> None:
        with self._lock:
            self._drop_adapter()

    def follow_adapter(self, adapter: str) -> None:
        """Make `adapter` (a folder, "" for none) the active one, unless it already is.

        For a copy of this engine in another process: a ZeroGPU worker is forked once and
        reused, so an adapter switched in the server afterwards must be switched there too.
        """
        if adapter != self._adapter:
            self.load_adapter(adapter) if adapter else self.unload_adapter()

    def after_fork(self) -> None:
        """Make this engine usable in a forked child process (a ZeroGPU worker).

        A fork copies only the forking thread: a lock another thread held at that moment
        (a Live recognition, an adapter swap) stays held forever in the child's copy, and
        the child's first call would wait on it for good. The child gets a fresh lock.
        """
        self._lock = threading.RLock()

    def _drop_adapter(self) -> None:
        if self._peft is not None:
            # Deleting first matters for adapters that fully train a module (the projector,
            # `modules_to_save`): PEFT's unload() would otherwise leave the trained copy in place.
            self._peft.delete_adapter(self._peft.active_adapter)
            self._peft.unload()  # removes the LoRA layers from the base model in place
        if self._vocabulary is not self._base_vocabulary:
            self._vocabulary, self._candidates = self._base_vocabulary, None
        if self._profile != self._base_profile:
            self._recent_seconds = deque(maxlen=RECENT_CALLS)
        self._profile = self._base_profile
        self._vision_state += 1
        merged = self._merged is not None
        self._peft, self._merged, self._adapter = None, None, ""
        if merged:
            gc.collect()  # a merged int8 model holds a whole language model: free it now

    def _merged_int8(self, loaded: LoadedModel, path: Path) -> Any:
        """The base model with the adapter merged into its language model, quantized again.

        PEFT cannot wrap torch's int8 layers, so the language model's fp32 weights are read
        again from the model files, the LoRA is merged into them and the result quantized
        like the base. The copy shares every other tensor with the base (vision tower,
        projector, output layer): only modules the adapter replaces are new. An adapter
        with LoRA outside the language model is refused before anything is built: merging
        it would write into the base's shared tensors.
        """
        import copy
        import itertools

        import torch
        from peft import PeftModel
        from peft.utils import load_peft_weights

        from engine.model import quantize_language_model, reload_language_model

        try:
            names = list(load_peft_weights(str(path)))
        except Exception as exc:
            raise _misfit(path, exc) from None
        if any(("lora_" in n and ".language_model." not in n) or "vision_tower" in n for n in names):
            raise AdapterError(
                f"The adapter {path.name} changes more than the language model, which an 8bit model cannot take: "
                "load the model with quantization none to use it."
            )
        base = loaded.model
        memo: dict[int, Any] = {id(t): t for t in itertools.chain(base.parameters(), base.buffers())}
        memo[id(base.model.language_model)] = reload_language_model(self.config.model)
        # An int8 vision tower (`quantize_vision`) cannot take part in PEFT's state-dict
        # load (torch's int8 layers demand their own keys): a stand-in takes its place
        # until the merge is done, and the base's is shared afterwards.
        vision = base.model.vision_tower
        int8_vision = any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in vision.modules())
        if int8_vision:
            memo[id(vision)] = torch.nn.Module()
        try:
            peft = PeftModel.from_pretrained(copy.deepcopy(base, memo), str(path), is_trainable=False)
        except Exception as exc:
            raise _misfit(path, exc) from None
        merged = quantize_language_model(peft.merge_and_unload())
        if int8_vision:
            merged.model.vision_tower = vision
        _share_equal_tensors(merged.model.language_model, base.model.language_model)
        return merged.eval()

    def _model(self, loaded: LoadedModel) -> Any:
        """The model to run: the base model, or the base with the active adapter."""
        if self._merged is not None:
            return self._merged
        return self._peft if self._peft is not None else loaded.model

    # -------------------------------------------------------------------- helpers
    def _require_model(self) -> LoadedModel:
        loaded = self._loaded
        if loaded is not None and self._state == "ready":
            return loaded
        if self._state == "loading":
            raise ModelNotReadyError("The model is still loading; try again in a moment.")
        if self._state == "failed":
            raise ModelNotReadyError(self._error)
        raise ModelNotReadyError("The model is not loaded.")

    def _tile(self, loaded: LoadedModel, profile: InputProfile) -> FrameTile:
        return frame_tile(loaded.model.config, profile.image_scale, profile=profile.name)

    def _processor(self, loaded: LoadedModel, profile: InputProfile) -> Any:
        """The processor that resizes frames to the profile's tile (the loaded one at scale 1)."""
        tile = self._tile(loaded, profile)
        if tile.pixels not in self._processors:
            self._processors[tile.pixels] = sized_processor(loaded.processor, tile)
        return self._processors[tile.pixels]

    def _model_inputs(self, loaded: LoadedModel, clip: Clip, profile: InputProfile | None = None) -> dict[str, torch.Tensor]:
        processor = self._processor(loaded, profile or self._profile)
        inputs = encode_clip(processor, clip.frames, self.config.recognition.prompt)
        inputs = inputs.to(loaded.device.torch_device)
        if "pixel_values" in inputs and loaded.quantization != "8bit":
            inputs["pixel_values"] = inputs["pixel_values"].to(loaded.device.dtype)
        return dict(inputs)

    def _encode(self, loaded: LoadedModel, frames: Sequence[np.ndarray]) -> list[EncodedFrame]:
        """Image features of `frames` at the active profile and adapter (call under the lock).

        Preprocessed as `encode_clip` does (one tile per frame, no crop_to_patches), and run
        through the model that recognition runs (an adapter's projector included), so the
        features are the ones `recognize` would compute.
        """
        import torch
        from PIL import Image

        if not frames:
            return []
        processor = self._processor(loaded, self._profile)
        images = [Image.fromarray(np.asarray(frame)) for frame in frames]
        pixels = processor.image_processor(images=images, crop_to_patches=False, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(loaded.device.torch_device)
        if loaded.quantization != "8bit":
            pixels = pixels.to(loaded.device.dtype)
        with torch.no_grad():
            features = self._model(loaded).get_image_features(pixel_values=pixels, return_dict=True).pooler_output
        return [EncodedFrame(np.asarray(frame), features[i], self._vision_state) for i, frame in enumerate(frames)]

    def _prompt(self, loaded: LoadedModel, profile: InputProfile, count: int) -> dict[str, Any]:
        """input_ids and attention_mask of the prompt for `count` frames at `profile`'s tile.

        The tokens do not depend on what the frames show, so they are made once, by the
        processor `recognize` uses, from blank frames: the same ids by construction.
        """
        tile = self._tile(loaded, profile)
        key = (tile.pixels, count)
        if key not in self._prompts:
            blank = np.zeros((tile.pixels, tile.pixels, 3), np.uint8)
            inputs = encode_clip(self._processor(loaded, profile), [blank] * count, self.config.recognition.prompt)
            self._prompts[key] = {name: inputs[name].to(loaded.device.torch_device) for name in ("input_ids", "attention_mask")}
        return self._prompts[key]

    def _answer(self, loaded: LoadedModel, inputs: dict[str, Any], mode: str, top_k: int) -> tuple[tuple[Prediction, ...], str, int]:
        """(top, text, glosses scored) for prepared model inputs; call under the lock."""
        if mode == "score":
            top, scored = self._score(loaded, inputs, top_k)
            return top, top[0].gloss, scored
        text, probability = self._generate(loaded, inputs, self.config.recognition.max_new_tokens)
        return (Prediction(text, probability),), text, 0

    def _result(self, profile: InputProfile, top: tuple[Prediction, ...], text: str, mode: str, timings: Timings,
                clip: Clip, scored: int) -> RecognitionResult:
        if profile is self._profile:  # a call that straddled an adapter swap says nothing about either
            self._recent_seconds.append(timings.total_ms / 1000)
        return RecognitionResult(top, text, mode, timings, clip, scored)

    def _candidate_ids(self, loaded: LoadedModel) -> list[list[int]]:
        if self._candidates is None:
            tokenizer = loaded.processor.tokenizer
            self._candidates = [answer_ids(tokenizer, g) for g in self._vocabulary.glosses]
        return self._candidates

    def _score(self, loaded: LoadedModel, inputs: dict[str, torch.Tensor], top_k: int) -> tuple[tuple[Prediction, ...], int]:
        """The top-k predictions and how many glosses were scored to find them."""
        from engine.scoring import rank_candidates

        recognition = self.config.recognition
        ranking = rank_candidates(
            self._model(loaded),
            inputs,
            self._candidate_ids(loaded),
            top_k=top_k,
            batch_size=recognition.score_batch,
            prune=recognition.pruned_ranking,
        )
        glosses = self._vocabulary.glosses
        top = tuple(Prediction(glosses[i], float(p)) for i, p in zip(ranking.top, ranking.probabilities().tolist()))
        return top, ranking.scored_count

    def _generate(self, loaded: LoadedModel, inputs: dict[str, Any], max_new_tokens: int) -> tuple[str, float]:
        import torch

        tokenizer = loaded.processor.tokenizer
        with torch.no_grad():
            out = self._model(loaded).generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=tokenizer.pad_token_id,
            )
        new_tokens = out.sequences[0, inputs["input_ids"].shape[1] :]
        logprob = 0.0
        for step, token in enumerate(new_tokens.tolist()):
            logprob += torch.log_softmax(out.scores[step][0].float(), dim=-1)[token].item()
        text = tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return text, float(np.exp(logprob))


def _pixels(frame: EncodedFrame | np.ndarray) -> np.ndarray:
    return frame.frame if isinstance(frame, EncodedFrame) else frame


def _is_dynamic_int8(loaded: LoadedModel) -> bool:
    return loaded.quantization == "8bit" and loaded.device.kind == "cpu"


def _share_equal_tensors(duplicate: Any, original: Any) -> None:
    """Point `duplicate`'s parameters and buffers at `original`'s wherever they are equal.

    The reloaded language model brings its own embeddings and norms (0.9 GB of fp32
    embeddings on InternVL3-2B); an adapter rarely changes them, and an equal tensor
    need not be held twice. Comparing after the merge is what makes sharing safe: no
    merge can write into a tensor the base uses.
    """
    import torch

    theirs = dict(original.named_modules())
    for name, module in duplicate.named_modules():
        twin = theirs.get(name)
        if twin is None:
            continue
        for store, twin_store in ((module._parameters, twin._parameters), (module._buffers, twin._buffers)):
            for key, tensor in store.items():
                other = twin_store.get(key)
                if (tensor is not None and other is not None and tensor.shape == other.shape
                        and tensor.dtype == other.dtype and torch.equal(tensor, other)):
                    store[key] = other


def _misfit(path: Path, exc: Exception) -> AdapterError:
    return AdapterError(f"The adapter {path.name} does not fit this model ({type(exc).__name__}).")
