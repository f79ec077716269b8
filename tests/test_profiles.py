"""Input profiles (frames per clip, tile size): config, the inputs they build, adapters
that carry theirs, and the smaller InternVL3-1B shape running through the same paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tiny_config, tiny_model_folder
from engine import AdapterError, Engine, EngineStatus, InputProfile, ModelNotReadyError
from engine.config import load_config
from engine.errors import ConfigError
from gestures import CLASSES, write_gesture_dataset
from training.layout import DataLayout


def frames(count: int = 12, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def engines(tiny_model_dir):
    made = {name: Engine(tiny_config(tiny_model_dir, video={"profile": name})).start() for name in ("quality", "fast")}
    yield made
    for engine in made.values():
        engine.close()


def save_adapter(model_dir, folder, profile: dict | None) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(model_dir)
    lora = LoraConfig(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(folder)
    if profile is not None:
        (folder / "profile.json").write_text(json.dumps(profile))


def test_profiles_are_chosen_by_name_and_users_add_their_own(tmp_path):
    assert load_config(env={}).input_profile() == InputProfile("quality", 8, 1.0)
    assert load_config(env={"SIGNLENS_PROFILE": "fast"}).input_profile() == InputProfile("fast", 4, 0.5)
    # A frames override (SIGNLENS_FRAMES, configs from before profiles) keeps the profile's tile.
    assert load_config(env={"SIGNLENS_PROFILE": "fast", "SIGNLENS_FRAMES": "6"}).input_profile() == InputProfile("fast", 6, 0.5)
    path = tmp_path / "engine.yml"
    path.write_text("video:\n  profile: mine\nprofiles:\n  mine:\n    frames_per_clip: 6\n    image_scale: 0.75\n")
    config = load_config(path, env={})
    assert config.input_profile() == InputProfile("mine", 6, 0.75)
    assert set(config.profiles) == {"quality", "fast", "mine"}  # added to the shipped ones
    assert config.to_dict()["profiles"]["mine"] == {"frames_per_clip": 6, "image_scale": 0.75}


@pytest.mark.parametrize("yaml_text,message", [
    ("video:\n  profile: turbo\n", "There is no profile called 'turbo'; the profiles are fast, quality."),
    ("profiles:\n  mine:\n    fps: 3\n", "profiles: mine: unknown key(s) fps; known keys are frames_per_clip, image_scale."),
    ("profiles:\n  mine: 5\n", "profiles: mine must hold frames_per_clip and image_scale"),
    ("profiles:\n  mine:\n    image_scale: 0\n", "profiles: mine: image_scale must be above 0 and at most 2, got 0"),
    ("profiles:\n  mine:\n    frames_per_clip: 65\n", "profiles: mine: frames_per_clip must be between 1 and 64"),
])
def test_a_bad_profile_is_refused_naming_it(tmp_path, yaml_text, message):
    path = tmp_path / "engine.yml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert message in str(error.value)


def test_the_profile_sets_frames_tile_and_image_tokens(engines):
    image_token = engines["fast"]._require_model().processor.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    for name, count, pixels, tokens in (("quality", 8, 32, 4), ("fast", 4, 16, 1)):
        engine = engines[name]
        result = engine.recognize(frames())
        assert len(result.clip.frames) == count
        inputs = engine._model_inputs(engine._require_model(), result.clip)
        assert tuple(inputs["pixel_values"].shape) == (count, 3, pixels, pixels)
        # Tokens the prompt reserves per frame = what the vision tower + projector return per tile.
        assert int((inputs["input_ids"] == image_token).sum()) == count * tokens
        status = engine.status()
        assert (status.profile, status.frames_per_clip, status.tile_px) == (name, count, pixels)
    # The processor the model was loaded with keeps its native tile.
    processor = engines["fast"]._require_model().processor
    assert (processor.image_seq_length, processor.image_processor.size.height) == (4, 32)


def test_a_profile_the_model_cannot_split_into_patches_fails_the_load(tiny_model_dir):
    engine = Engine(tiny_config(tiny_model_dir, profiles={"odd": {"image_scale": 0.3}}, video={"profile": "odd"}))
    with pytest.raises(ModelNotReadyError, match=r"profile odd asks for image_scale 0.3, a 10 px tile.*multiple of 16 px, such as 0.5 or 1\."):
        engine.start()


def test_an_adapter_switches_to_its_profile_and_unloading_switches_back(engines, tiny_model_dir, tmp_path):
    engine = engines["quality"]
    save_adapter(tiny_model_dir, tmp_path / "fast-adapter", {"name": "fast", "frames_per_clip": 4, "image_scale": 0.5})
    engine.load_adapter(tmp_path / "fast-adapter")
    try:
        assert engine.profile == InputProfile("fast", 4, 0.5)
        assert (engine.status().profile, engine.status().tile_px) == ("fast", 16)
        result = engine.recognize(frames())
        assert len(result.clip.frames) == 4
        assert engine._model_inputs(engine._require_model(), result.clip)["pixel_values"].shape[-1] == 16
    finally:
        engine.unload_adapter()
    assert engine.profile == InputProfile("quality", 8, 1.0) and engine.status().tile_px == 32
    # Adapters from before profiles were trained on full tiles: said so, never guessed silently.
    save_adapter(tiny_model_dir, tmp_path / "old", None)
    engine.load_adapter(tmp_path / "old")
    assert engine.profile == InputProfile("unrecorded", 8, 1.0)
    engine.unload_adapter()


@pytest.mark.parametrize("record,message", [
    ({"frames_per_clip": 4, "image_scale": 0.5}, "the profile has no name"),
    ({"name": "x", "frames_per_clip": 4, "image_scal": 0.5}, "unknown key(s) image_scal"),
    ({"name": "x", "frames_per_clip": 4, "image_scale": 0.3}, "was trained at a profile this model cannot run"),
])
def test_an_adapter_with_a_bad_profile_is_refused_and_the_engine_keeps_its_own(engines, tiny_model_dir, tmp_path, record, message):
    engine = engines["quality"]
    save_adapter(tiny_model_dir, tmp_path / "adapter", record)
    with pytest.raises(AdapterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        engine.load_adapter(tmp_path / "adapter")
    assert engine.status().adapter == "" and engine.profile.name == "quality"


def test_expected_seconds_per_sign_follow_the_last_calls_at_the_profile(tiny_model_dir, tmp_path):
    import statistics

    from engine.core import RECENT_CALLS

    engine = Engine(tiny_config(tiny_model_dir)).start()
    assert engine.status().expected_seconds == 0.0  # no call yet: no number rather than a guess
    seconds = [engine.recognize(frames(seed=i)).timings.total_ms / 1000 for i in range(RECENT_CALLS + 2)]
    assert engine.status().expected_seconds == pytest.approx(statistics.median(seconds[-RECENT_CALLS:]))
    # Another profile is another pace: the count starts again, and again on the way back.
    save_adapter(tiny_model_dir, tmp_path / "fast-adapter", {"name": "fast", "frames_per_clip": 4, "image_scale": 0.5})
    engine.load_adapter(tmp_path / "fast-adapter")
    assert engine.status().expected_seconds == 0.0
    fast = engine.recognize(frames()).timings.total_ms / 1000
    assert engine.status().expected_seconds == pytest.approx(fast)
    engine.unload_adapter()
    assert engine.status().expected_seconds == 0.0
    engine.close()


def test_header_names_the_profile():
    from webapp.status import status_markdown

    ready = status_markdown(EngineStatus(state="ready", model_id="m", device="cpu", dtype="float32", memory_mb=900,
                                         vocabulary_size=320, profile="fast", frames_per_clip=4, tile_px=224,
                                         expected_seconds=12.34))
    assert "profile fast (4 frames, 224 px, ~12.3 s per sign)" in ready
    loading = status_markdown(EngineStatus(state="loading", model_id="m", profile="quality", frames_per_clip=8))
    assert "profile quality (8 frames)" in loading


def test_the_1b_shape_recognizes_and_trains_a_lora_step_through_the_engine(tmp_path):
    """InternVL3-1B's shape (language model narrower than the vision tower, 7 query heads
    per KV head) through recognize, a LoRA fine-tuning step at the fast profile, and back."""
    from transformers import AutoConfig

    from training.finetune.config import load_finetune_config
    from training.finetune.train import finetune

    folder = tiny_model_folder("1b")
    text = AutoConfig.from_pretrained(folder).text_config
    assert (text.hidden_size, text.num_attention_heads, text.num_key_value_heads) == (56, 7, 1)
    engine_config = tiny_config(folder, video={"profile": "fast"})
    engine = Engine(engine_config).start()
    before = engine.recognize(frames(seed=3), top_k=5).top
    assert len(before) == 5 and 0 < sum(p.probability for p in before) <= 1 + 1e-6

    dataset = write_gesture_dataset(tmp_path / "gestures", train_per_class=1, test_per_class=1)
    config = load_finetune_config(overrides=dict(
        dataset=str(dataset), output_dir=str(tmp_path), run_name="one-step", max_steps=1, batch_size=2,
        grad_accumulation=1, learning_rate=1e-2, warmup_steps=0, save_strategy="no", seed=0,
    ))
    adapter = finetune(config, engine_config, DataLayout.at(tmp_path)).adapter
    assert json.loads((adapter / "profile.json").read_text()) == {"name": "fast", "frames_per_clip": 4, "image_scale": 0.5}
    engine.load_adapter(adapter)
    after = engine.recognize(frames(seed=3), top_k=5).top
    assert engine.profile == InputProfile("fast", 4, 0.5)
    assert {p.gloss for p in after} == set(CLASSES)  # the adapter brought its five glosses
    engine.close()
