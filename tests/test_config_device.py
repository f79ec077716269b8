"""Config loading, environment overrides, .env handling and device selection."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from engine.config import DEFAULT_CONFIG, InputProfile, build_config, load_config, load_dotenv, read_config_file
from engine.device import Accelerators, choose_device
from engine.errors import ConfigError, DeviceError

NONE = Accelerators(cuda=False, cuda_major=0, directml=False, mps=False)


def test_shipped_config_loads_with_documented_defaults():
    config = load_config(DEFAULT_CONFIG, env={})
    assert config.model.id == "OpenGVLab/InternVL3-2B-hf"
    assert config.input_profile() == InputProfile("quality", 8, 1.0)
    assert config.recognition.mode == "score"
    assert config.vocabulary_path().is_file()


def test_every_config_turns_text_and_numbers_into_field_types(tmp_path):
    # One coercion for engine, live, dataset and fine-tune settings: values come from
    # YAML, environment strings, CLI key=value text and UI numbers.
    from training.dataset import DatasetConfig
    from training.errors import FinetuneConfigError
    from training.finetune.config import FinetuneConfig

    config = build_config(DatasetConfig, {"seed": "7", "max_side": 448.0, "crop_to_bbox": "no", "sources": "aslpro, signingsavvy",
                                          "split_fractions": ["0.7", 0.2, 0.1]}, "test")
    assert (config.seed, config.max_side, config.crop_to_bbox) == (7, 448, False)
    assert config.sources == ("aslpro", "signingsavvy") and config.split_fractions == (0.7, 0.2, 0.1)
    assert build_config(FinetuneConfig, {"max_steps": "1e3", "learning_rate": "2e-4"}, "test", FinetuneConfigError).max_steps == 1000
    with pytest.raises(FinetuneConfigError, match="lora_r must be a whole number, got 2.5"):
        build_config(FinetuneConfig, {"lora_r": 2.5}, "test", FinetuneConfigError)
    saved = tmp_path / "saved.json"
    saved.write_text('{"learning_rate": 5e-05, "epochs": 2}')
    assert build_config(FinetuneConfig, read_config_file(saved), "test").learning_rate == 5e-05
    saved.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        read_config_file(saved)


def test_environment_overrides_single_fields():
    config = load_config(env={"SIGNLENS_MODEL": "/models/internvl", "SIGNLENS_FRAMES": "4", "SIGNLENS_DEVICE": "cpu"})
    assert (config.model.id, config.input_profile().frames_per_clip, config.model.device) == ("/models/internvl", 4, "cpu")


@pytest.mark.parametrize(
    "yaml_text,message",
    [
        ("model:\n  idd: x\n", "unknown key(s) idd"),
        ("modle:\n  id: x\n", "unknown key(s) modle"),
        ("model:\n  device: tpu\n", "model.device must be one of"),
        ("video:\n  frames_per_clip: many\n", "must be a whole number"),
        ("video:\n  frames_per_clip: 65\n", "between 1 and 64"),
        ("recognition:\n  sentence_prompt: no placeholder\n", "{glosses}"),
        ("- a list\n", "mapping"),
    ],
)
def test_bad_config_is_refused_with_the_offending_key(tmp_path, yaml_text, message):
    path = tmp_path / "engine.yml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert message in str(error.value)


def test_dotenv_sets_token_without_overwriting_and_config_never_holds_it(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# secrets\nHF_TOKEN='hf_secret_value'\nexport SIGNLENS_MODE=generate\nKEEP=new\n")
    environ = {"KEEP": "old"}
    names = load_dotenv(env_file, environ=environ)
    assert names == ["HF_TOKEN", "SIGNLENS_MODE"]
    assert environ == {"KEEP": "old", "HF_TOKEN": "hf_secret_value", "SIGNLENS_MODE": "generate"}
    config = load_config(env=environ)
    assert config.recognition.mode == "generate"
    assert "hf_secret_value" not in repr(config) and "hf_secret_value" not in str(config.to_dict())


@pytest.mark.parametrize(
    "accelerators,kind,dtype",
    [
        (Accelerators(cuda=True, cuda_major=8, directml=True, mps=False), "cuda", torch.bfloat16),
        (Accelerators(cuda=True, cuda_major=7, directml=False, mps=False), "cuda", torch.float16),
        (Accelerators(cuda=False, cuda_major=0, directml=True, mps=True), "directml", torch.float16),
        (Accelerators(cuda=False, cuda_major=0, directml=False, mps=True), "mps", torch.float16),
        (NONE, "cpu", torch.float32),
    ],
)
def test_auto_picks_the_first_available_accelerator(monkeypatch, accelerators, kind, dtype):
    monkeypatch.setitem(sys.modules, "torch_directml", types.SimpleNamespace(device=lambda: "privateuseone:0"))
    choice = choose_device("auto", accelerators=accelerators, cpu_bf16_faster=lambda: False)
    assert (choice.kind, choice.dtype) == (kind, dtype)
    assert choice.reason.startswith("auto:")
    expected_device = {"cuda": "cuda:0", "directml": "privateuseone:0", "mps": "mps", "cpu": "cpu"}[kind]
    assert choice.torch_device == expected_device


def test_cpu_dtype_follows_the_measurement():
    assert choose_device("cpu", accelerators=NONE, cpu_bf16_faster=lambda: True).dtype == torch.bfloat16
    assert choose_device("cpu", accelerators=NONE, cpu_bf16_faster=lambda: False).dtype == torch.float32
    # fp16 on CPU falls back to fp32 with a reason
    choice = choose_device("cpu", "float16", accelerators=NONE)
    assert choice.dtype == torch.float32 and "slow on CPU" in choice.reason


@pytest.mark.parametrize("device,message", [("cuda", "CUDA was requested"), ("directml", "DirectML was requested"), ("mps", "MPS was requested")])
def test_requested_device_that_is_missing_is_an_error(device, message):
    with pytest.raises(DeviceError) as error:
        choose_device(device, accelerators=NONE)
    assert message in str(error.value)
