"""The engine end to end on a tiny random-weight InternVL loaded like the real one."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from conftest import tiny_config
from engine import Engine, ModelNotReadyError, SignLensError, load_engine
from engine.errors import AdapterError
from engine.scoring import score_candidates, score_candidates_reference
from media import index_frame, write_video


def moving_square_frames(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        frame = np.full((48, 64, 3), 30, np.uint8)
        x = int(4 + i * 40 / max(1, count - 1))
        frame[16:32, x : x + 16] = rng.integers(0, 255, 3)
        frames.append(frame)
    return frames


def prefix_inputs(engine: Engine, frames) -> dict:
    from engine.video import load_clip

    clip = load_clip(frames, num_frames=4, limits=engine.config.limits)
    return engine._model_inputs(engine._require_model(), clip)


def test_shared_prefill_scores_equal_per_candidate_forwards(tiny_engine):
    inputs = prefix_inputs(tiny_engine, moving_square_frames(10, seed=1))
    candidates = tiny_engine._candidate_ids(tiny_engine._require_model())[:40]
    assert max(len(c) for c in candidates) >= 3  # multi-token glosses are covered
    reference = score_candidates_reference(tiny_engine._require_model().model, inputs, candidates)
    model = tiny_engine._require_model().model
    for batch_size in (512, 7):  # one chunk, and several chunks re-using the prefix cache
        fast = score_candidates(model, inputs, candidates, batch_size=batch_size)
        assert torch.allclose(fast, reference, atol=1e-4), (fast - reference).abs().max()
    assert reference.std() > 0.5  # the tiny model's scores really depend on the candidate


def test_recognize_returns_sorted_topk_probabilities(tiny_engine, tmp_path):
    path = write_video(tmp_path / "sign.mp4", moving_square_frames(45, seed=2))
    result = tiny_engine.recognize(path, top_k=5)
    probabilities = [p.probability for p in result.top]
    assert len(result.top) == 5
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1 + 1e-6
    assert result.text == result.top[0].gloss
    assert all(p.gloss in tiny_engine.vocabulary for p in result.top)
    assert len(result.clip.frames) == tiny_engine.profile.frames_per_clip
    assert result.timings.model_ms > 0 and result.timings.total_ms >= result.timings.model_ms
    # Ranking the whole vocabulary scores every gloss: a softmax over the vocabulary, with
    # the same best gloss. The top-5 run may have left glosses unscored (pruned ranking),
    # which makes its probabilities lower bounds of these.
    again = tiny_engine.recognize(path, top_k=len(tiny_engine.vocabulary))
    assert again.glosses_scored == len(tiny_engine.vocabulary)
    assert sum(p.probability for p in again.top) == pytest.approx(1.0, abs=1e-4)
    assert again.top[0].gloss == result.top[0].gloss
    assert result.top[0].probability <= again.top[0].probability * (1 + 1e-5)


def test_different_clips_get_different_rankings(tiny_engine):
    first = tiny_engine.recognize(moving_square_frames(12, seed=3))
    second = tiny_engine.recognize([np.flip(f, axis=1).copy() for f in moving_square_frames(12, seed=4)])
    assert [p.probability for p in first.top] != [p.probability for p in second.top]


def test_model_sees_one_tile_per_frame_in_the_video_layout(tiny_engine):
    loaded = tiny_engine._require_model()
    inputs = prefix_inputs(tiny_engine, moving_square_frames(8, seed=5))
    text = loaded.processor.tokenizer.decode(inputs["input_ids"][0])
    assert inputs["pixel_values"].shape[0] == 4  # 4 frames, 4 tiles: no crop_to_patches
    assert text.count("<img>") == 4
    for index in range(1, 5):
        assert f"Frame{index}: <img>" in text
    assert text.endswith(tiny_engine.config.recognition.prompt + "<|im_end|>\n<|im_start|>assistant\n")


def test_generate_mode_answers_in_free_text(tiny_engine):
    result = tiny_engine.recognize(moving_square_frames(8, seed=6), mode="generate")
    assert result.mode == "generate" and len(result.top) == 1
    assert 0 < result.top[0].probability <= 1
    assert result.text == result.top[0].gloss
    # Greedy decoding is deterministic: the same clip gives the same words.
    assert tiny_engine.recognize(moving_square_frames(8, seed=6), mode="generate").text == result.text


def test_sentence_uses_the_language_model_on_the_glosses(tiny_engine):
    loaded = tiny_engine._require_model()
    glosses = ["i", "want", "drink"]
    answer = tiny_engine.sentence(glosses)
    prompt = tiny_engine.config.recognition.sentence_prompt.format(glosses="I WANT DRINK")
    text = loaded.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": prompt}]}], add_generation_prompt=True, tokenize=False
    )
    inputs = loaded.processor.tokenizer([text], return_tensors="pt")
    out = loaded.model.generate(**inputs, max_new_tokens=48, do_sample=False)
    expected = loaded.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer == expected.strip()
    with pytest.raises(SignLensError, match="no signs"):
        tiny_engine.sentence([" ", ""])


def test_adapter_changes_outputs_and_unloading_restores_them(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    lora = LoraConfig(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")

    engine = Engine(tiny_config(tiny_model_dir)).start()
    frames = moving_square_frames(8, seed=7)
    before = [p.probability for p in engine.recognize(frames, top_k=5).top]
    engine.load_adapter(tmp_path / "adapter")
    assert engine.status().adapter.endswith("adapter")
    during = [p.probability for p in engine.recognize(frames, top_k=5).top]
    engine.unload_adapter()
    after = [p.probability for p in engine.recognize(frames, top_k=5).top]
    assert during != pytest.approx(before, abs=1e-4)
    assert after == pytest.approx(before, abs=1e-6)
    assert engine.status().adapter == ""
    # An adapter from training.finetune carries its glosses: they become the vocabulary.
    (tmp_path / "adapter" / "vocabulary.txt").write_text("# trained on\nbook\ndrink\nmother\n")
    engine.load_adapter(tmp_path / "adapter")
    assert engine.vocabulary.glosses == ("book", "drink", "mother")
    assert {p.gloss for p in engine.recognize(frames, top_k=5).top} == {"book", "drink", "mother"}
    engine.unload_adapter()
    assert len(engine.vocabulary) == 320
    with pytest.raises(AdapterError, match="not a LoRA adapter folder"):
        engine.load_adapter(tmp_path)
    engine.close()


def test_status_reports_device_dtype_and_memory(tiny_engine):
    status = tiny_engine.status()
    assert (status.state, status.device, status.dtype, status.quantization) == ("ready", "cpu", "float32", "none")
    assert status.memory_mb > 0 and status.vocabulary_size == 320
    assert "cpu requested" in status.detail


def test_background_load_serves_status_and_refuses_early_calls(tiny_model_dir):
    engine = Engine(tiny_config(tiny_model_dir))
    assert engine.status().state == "idle"
    with pytest.raises(ModelNotReadyError, match="not loaded"):
        engine.recognize([index_frame(1)])
    engine.start(background=True)
    assert engine.status().state in ("loading", "ready")
    assert engine.wait(timeout=120).state == "ready"
    assert len(engine.recognize([index_frame(1)]).top) == 5
    engine.close()
    assert engine.status().state == "closed"
    with pytest.raises(ModelNotReadyError):
        engine.recognize([index_frame(1)])


def test_unreachable_model_fails_with_a_clear_sentence_and_no_token(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_print_me")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotReadyError) as error:
        load_engine(tiny_config(tiny_model_dir, model={"id": "OpenGVLab/NoSuchModel-hf"}))
    message = str(error.value)
    assert "Could not load the model OpenGVLab/NoSuchModel-hf" in message
    assert "local folder" in message and "hf_do_not_print_me" not in message
    engine = Engine(tiny_config(tiny_model_dir, model={"id": str(tiny_model_dir / "missing")})).start(background=True)
    status = engine.wait(timeout=60)
    assert status.state == "failed" and "Could not load the model" in status.detail


def test_cpu_4bit_quantizes_the_language_model_only(tiny_model_dir):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    engine = Engine(tiny_config(tiny_model_dir, model={"quantization": "4bit"})).start()
    model = engine._require_model().model
    quantized = {name for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)}
    assert quantized and all("language_model" in name for name in quantized)
    assert engine.status().quantization == "4bit"
    assert len(engine.recognize(moving_square_frames(6, seed=8)).top) == 5
    engine.close()


def test_cpu_8bit_is_dynamic_int8_and_ranks_like_fp32(tiny_engine, tiny_model_dir):
    engine = Engine(tiny_config(tiny_model_dir, model={"quantization": "8bit"})).start()
    frames = moving_square_frames(8, seed=9)
    assert engine.status().quantization == "8bit"
    quantized = engine.recognize(frames, top_k=320)
    reference = tiny_engine.recognize(frames, top_k=320)
    ranks = {p.gloss: i for i, p in enumerate(reference.top)}
    # int8 weights shift scores slightly; the ranking must stay close to fp32's.
    assert np.mean([abs(ranks[p.gloss] - i) for i, p in enumerate(quantized.top)]) < 20
    assert engine._require_model().memory_bytes < tiny_engine._require_model().memory_bytes
    engine.close()


def test_auto_quantization_is_int8_on_cpu_unless_bf16_timed_faster(tiny_model_dir):
    from engine.model import resolve_quantization

    assert resolve_quantization("auto", "cpu", torch.float32)[0] == "8bit"
    assert resolve_quantization("auto", "cpu", torch.bfloat16)[0] == "none"  # bf16's own 2x, int8 needs fp32
    assert resolve_quantization("auto", "cuda", torch.bfloat16)[0] == "4bit"
    assert resolve_quantization("auto", "mps", torch.float16)[0] == "none"
    assert resolve_quantization("none", "cpu", torch.float32)[0] == "none"  # asked for: honoured
    # Through the engine: a CPU load with everything on auto but the dtype serves int8.
    engine = Engine(tiny_config(tiny_model_dir, model={"quantization": "auto"})).start()
    status = engine.status()
    assert status.quantization == "8bit" and "int8" in status.detail
    engine.close()


def test_the_load_log_names_a_local_model_folder_without_its_path(tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger="engine.model")
    engine = Engine(tiny_config(tiny_model_dir)).start()
    engine.close()
    loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Loaded ")]
    assert loaded and tiny_model_dir.name in loaded[0] and str(tiny_model_dir.parent) not in loaded[0]


def test_cli_keeps_going_when_one_file_fails(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from engine.__main__ import main

    good = write_video(tmp_path / "good.mp4", moving_square_frames(30, seed=10))
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    for name, value in (("SIGNLENS_MODEL", str(tiny_model_dir)), ("SIGNLENS_DEVICE", "cpu"), ("SIGNLENS_QUANTIZATION", "none")):
        monkeypatch.setenv(name, value)
    # In-process: a subprocess would mostly time `import torch`; main() is what `python -m engine` runs.
    assert main(["recognize", str(bad), str(good), "--json", "--top-k", "3"]) == 1
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0] == {"clip": str(bad), "error": "The file bad.mp4 is not a video we can read."}
    assert lines[1]["clip"] == str(good) and len(lines[1]["top"]) == 3
    assert "1 of 2 file(s) failed" in err


def test_early_encoded_frames_rank_like_recognize(tiny_engine):
    """Live encodes frames one at a time while a sign goes on; the answer must not change."""
    frames = moving_square_frames(tiny_engine.profile.frames_per_clip, seed=11)
    reference = tiny_engine.recognize(frames, top_k=10)
    assert list(reference.clip.indices) == list(range(len(frames)))  # the same frames, none resampled
    encoded = [tiny_engine.encode_frames([frame])[0] for frame in frames]
    for given in (encoded, [frames[0], *encoded[1:-1], frames[-1]]):  # some frames not encoded yet
        early = tiny_engine.recognize_encoded(given, top_k=10)
        assert [p.gloss for p in early.top] == [p.gloss for p in reference.top]
        assert [p.probability for p in early.top] == pytest.approx([p.probability for p in reference.top], rel=1e-5)
        assert all(a is b for a, b in zip(early.clip.frames, frames))
    generated = tiny_engine.recognize_encoded(encoded, mode="generate")
    assert generated.text == tiny_engine.recognize(frames, mode="generate").text


def test_early_encoded_features_go_stale_when_an_adapter_changes_them(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    # A LoRA on the projector: the image features themselves change.
    lora = LoraConfig(r=4, target_modules=r".*multi_modal_projector\.linear_\d", init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")

    engine = Engine(tiny_config(tiny_model_dir)).start()
    frames = moving_square_frames(engine.profile.frames_per_clip, seed=12)
    before = engine.encode_frames(frames)
    engine.load_adapter(tmp_path / "adapter")
    during = engine.encode_frames(frames)
    assert not torch.allclose(before[0].features, during[0].features, atol=1e-4)
    reference = engine.recognize(frames, top_k=10)
    early = engine.recognize_encoded(before, top_k=10)  # encoded before the swap: encoded again
    assert [p.gloss for p in early.top] == [p.gloss for p in reference.top]
    assert [p.probability for p in early.top] == pytest.approx([p.probability for p in reference.top], rel=1e-5)
    engine.unload_adapter()
    unloaded = engine.recognize_encoded(during, top_k=10)
    assert [p.probability for p in unloaded.top] == pytest.approx([p.probability for p in engine.recognize(frames, top_k=10).top], rel=1e-5)
    engine.close()


@pytest.mark.parametrize("quantize_vision", [False, True])
def test_early_encoding_on_int8_ranks_like_its_own_recognize(tiny_model_dir, quantize_vision):
    engine = Engine(tiny_config(tiny_model_dir, model={"quantization": "8bit", "quantize_vision": quantize_vision})).start()
    frames = moving_square_frames(engine.profile.frames_per_clip, seed=13)
    reference = engine.recognize(frames, top_k=10)
    early = engine.recognize_encoded(engine.encode_frames(frames), top_k=10)
    assert [p.gloss for p in early.top] == [p.gloss for p in reference.top]
    assert [p.probability for p in early.top] == pytest.approx([p.probability for p in reference.top], rel=1e-5)
    one_by_one = engine.recognize_encoded([engine.encode_frames([f])[0] for f in frames], top_k=10)
    if quantize_vision:
        # torch's dynamic int8 scales activations per call: a frame encoded alone comes out
        # a little different from the same frame encoded among the clip's others.
        assert one_by_one.top[0].gloss == reference.top[0].gloss
    else:
        assert [p.probability for p in one_by_one.top] == pytest.approx([p.probability for p in reference.top], rel=1e-5)
    engine.close()
