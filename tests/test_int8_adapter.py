"""LoRA adapters on the CPU int8 model (issue 11): merged into fp32 weights, then quantized."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from engine import Engine
from engine.errors import AdapterError


def frames(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (32, 40, 3), dtype=np.uint8) for _ in range(4)]


def all_probabilities(engine: Engine, clip) -> dict[str, float]:
    return {p.gloss: p.probability for p in engine.recognize(clip, top_k=len(engine.vocabulary)).top}


def save_adapter(model_dir, folder, target_modules: str) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(model_dir)
    torch.manual_seed(0)
    lora = LoraConfig(r=4, target_modules=target_modules, init_lora_weights=False)  # random, non-zero B
    get_peft_model(base, lora).save_pretrained(folder)


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora") / "adapter"
    save_adapter(tiny_model_dir, folder, r".*language_model.*\.(q_proj|v_proj)")
    return folder


@pytest.fixture(scope="module")
def int8_engine(tiny_model_dir):
    engine = Engine(tiny_config(tiny_model_dir, model={"quantization": "8bit"})).start()
    yield engine
    engine.close()


def test_adapter_on_int8_changes_outputs_and_unloading_restores_them_exactly(int8_engine, adapter):
    clip = frames(1)
    before = all_probabilities(int8_engine, clip)
    int8_engine.load_adapter(adapter)
    assert int8_engine.status().adapter == str(adapter)
    during = all_probabilities(int8_engine, clip)
    int8_engine.unload_adapter()
    after = all_probabilities(int8_engine, clip)
    assert max(abs(during[g] - before[g]) for g in before) > 1e-3
    assert after == before  # bit-identical: the base model was never written to
    assert int8_engine.status().adapter == "" and int8_engine.status().quantization == "8bit"


def test_int8_merge_puts_the_lora_into_the_right_weights(int8_engine, adapter, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    reference = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tiny_model_dir), str(adapter))
    layer = reference.base_model.model.model.language_model.layers[1].self_attn.q_proj
    expected = layer.base_layer.weight + layer.get_delta_weight("default")
    int8_engine.load_adapter(adapter)
    merged = int8_engine._merged.model.language_model.layers[1].self_attn.q_proj.weight()
    base = int8_engine._require_model().model.model.language_model.layers[1].self_attn.q_proj.weight()
    step = merged.q_scale()
    # The merged int8 weights are the fp32 merge rounded once; the base's are far from it.
    assert (merged.dequantize() - expected).abs().max() <= step * 0.51
    assert (base.dequantize() - expected).abs().max() > 10 * step
    # The adapted copy shares the base's unquantized tensors instead of copying them.
    assert int8_engine._merged.model.vision_tower is not int8_engine._require_model().model.model.vision_tower
    assert next(int8_engine._merged.model.vision_tower.parameters()) is next(int8_engine._require_model().model.model.vision_tower.parameters())
    int8_engine.unload_adapter()
    assert int8_engine._merged is None


def test_int8_refuses_an_adapter_on_the_vision_tower_and_keeps_the_base(int8_engine, tiny_model_dir, tmp_path):
    save_adapter(tiny_model_dir, tmp_path / "vision", r".*vision_tower.*\.(q_proj|v_proj)")
    clip = frames(2)
    before = all_probabilities(int8_engine, clip)
    with pytest.raises(AdapterError, match="more than the language model"):
        int8_engine.load_adapter(tmp_path / "vision")
    assert int8_engine.status().adapter == ""
    assert all_probabilities(int8_engine, clip) == before


def test_int8_adapter_brings_its_vocabulary(int8_engine, adapter, tmp_path):
    import shutil

    folder = tmp_path / "with-vocabulary"
    shutil.copytree(adapter, folder)
    (folder / "vocabulary.txt").write_text("book\ndrink\nmother\n")
    int8_engine.load_adapter(folder)
    assert {p.gloss for p in int8_engine.recognize(frames(3), top_k=5).top} == {"book", "drink", "mother"}
    int8_engine.unload_adapter()
    assert len(int8_engine.vocabulary) == 320


def test_int8_adapter_shares_what_it_does_not_change(int8_engine, adapter):
    int8_engine.load_adapter(adapter)
    merged = int8_engine._merged.model.language_model
    base = int8_engine._require_model().model.model.language_model
    assert merged.embed_tokens.weight is base.embed_tokens.weight
    assert merged.norm.weight is base.norm.weight
    assert merged.layers[0].self_attn.q_proj is not base.layers[0].self_attn.q_proj
    int8_engine.unload_adapter()


def test_quantize_vision_int8s_the_vision_tower_and_still_takes_adapters(tiny_model_dir, int8_engine, adapter):
    from engine.errors import ConfigError

    quantized = torch.ao.nn.quantized.dynamic.Linear
    engine = Engine(tiny_config(tiny_model_dir, model={"quantization": "8bit", "quantize_vision": True})).start()
    vision = engine._require_model().model.model.vision_tower
    assert any(isinstance(m, quantized) for m in vision.modules())
    assert not any(isinstance(m, quantized) for m in int8_engine._require_model().model.model.vision_tower.modules())
    assert "vision tower int8" in engine.status().detail
    clip = frames(4)
    before = all_probabilities(engine, clip)
    assert before != all_probabilities(int8_engine, clip)  # the vision tower really runs in int8
    engine.load_adapter(adapter)
    assert engine._merged.model.vision_tower is vision  # shared, not copied
    assert all_probabilities(engine, clip) != before
    engine.unload_adapter()
    assert all_probabilities(engine, clip) == before
    engine.close()
    with pytest.raises(ConfigError, match="quantize_vision needs model.quantization 8bit"):
        tiny_config(tiny_model_dir, model={"quantization": "none", "quantize_vision": True})
