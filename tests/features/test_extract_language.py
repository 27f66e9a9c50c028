"""extract() on language models: GPT-2 from a config, the packaged MiniLM, word-level stories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroalign.features import extract, load_model, minilm_path
from neuroalign.stimuli import StimulusSet

SENTENCES = {
    "dog1": "A dog is running through the park.",
    "dog2": "A puppy runs across the grass in the park.",
    "fin1": "The central bank raised interest rates again.",
    "fin2": "Interest rates were increased by the central bank.",
}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def gpt2(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=tokenizer.vocab_size,
                     n_positions=128, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module")
def texts():
    return StimulusSet.from_texts(SENTENCES)


def test_gpt2_hooks_equal_hidden_states(gpt2, tokenizer, texts):
    f = extract(gpt2, texts, layers="blocks", tokenizer=tokenizer, pooling="mean", device="cpu")
    assert list(f.data_vars) == ["transformer.h.0", "transformer.h.1", "transformer.h.2"]
    assert f["transformer.h.1"].dims == ("stimulus", "transformer.h.1_unit")
    assert f["transformer.h.1"].shape == (4, 32)
    for i, sid in enumerate(texts.ids):
        enc = tokenizer(SENTENCES[sid], return_tensors="pt")
        with torch.no_grad():
            hs = gpt2(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states
        np.testing.assert_allclose(f["transformer.h.0"].values[i], hs[1][0].mean(0).numpy(), atol=1e-5)
    last = extract(gpt2, texts, layers=["transformer.h.0"], tokenizer=tokenizer, device="cpu")
    enc = tokenizer(SENTENCES["fin1"], return_tensors="pt")
    with torch.no_grad():
        hs = gpt2(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states
    # causal LM: pooling="auto" takes the last real token (padding is ignored)
    np.testing.assert_allclose(last["transformer.h.0"].values[2], hs[1][0, -1].numpy(), atol=1e-5)


def test_gpt2_spec_from_local_dir_is_deterministic(tmp_path, gpt2, tokenizer, texts):
    gpt2.config.save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    spec = f"hf:{tmp_path / 'gpt2'}"
    fm = load_model(spec, weights=None)
    assert fm.causal and fm.modalities == ("text",)
    a = extract(spec, texts, layers="blocks", weights=None, seed=5, device="cpu")
    b = extract(spec, texts, layers="blocks", weights=None, seed=5, device="cpu", batch_size=1)
    np.testing.assert_allclose(a["transformer.h.1"].values, b["transformer.h.1"].values, atol=1e-5)
    assert a.attrs["weights"] == "random(seed=5)"
    with pytest.raises(ValueError, match="image stimuli, but model .* takes text stimuli"):
        extract(spec, StimulusSet.from_arrays(np.zeros((1, 8, 8, 3), np.uint8)), layers="blocks",
                weights=None)


@pytest.fixture(scope="module")
def minilm_feats(texts):
    return extract("minilm", texts, layers="blocks", device="cpu")


def test_minilm_related_sentences_are_closer(minilm_feats):
    x = minilm_feats["encoder.layer.5"].values
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3]
    assert sim[2, 3] > sim[2, 0] and sim[2, 3] > sim[2, 1]
    assert list(minilm_feats.data_vars) == [f"encoder.layer.{i}" for i in range(6)]


def test_minilm_matches_sentence_transformers(minilm_feats, texts):
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(minilm_path()), device="cpu").encode(
        texts.load(), convert_to_numpy=True, normalize_embeddings=True)
    x = minilm_feats["encoder.layer.5"].values
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(x, ref, atol=1e-4)


def test_minilm_hooks_equal_hidden_states(tokenizer, texts):
    fm = load_model("minilm")
    f = extract(fm, texts, layers=["encoder.layer.2"], pooling="cls", device="cpu")
    enc = tokenizer(texts.load(), padding=True, return_tensors="pt")
    with torch.no_grad():
        hs = fm.module(**enc, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(f["encoder.layer.2"].values, hs[3][:, 0].numpy(), atol=1e-5)


def test_story_words_with_context_align_subword_tokens(gpt2, tokenizer):
    story = StimulusSet.from_story("the unbelievable zookeeper fed giraffes", story="s1")
    f0 = extract(gpt2, story, layers=["transformer.h.1"], tokenizer=tokenizer, context=0,
                 pooling="mean", device="cpu")
    f3 = extract(gpt2, story, layers=["transformer.h.1"], tokenizer=tokenizer, context=3,
                 pooling="mean", device="cpu")
    assert f3["transformer.h.1"].shape == (5, 32)
    assert f3["word"].values.tolist() == ["the", "unbelievable", "zookeeper", "fed", "giraffes"]
    # the first word has no preceding words: context changes nothing there
    np.testing.assert_allclose(f0["transformer.h.1"].values[0], f3["transformer.h.1"].values[0], atol=1e-5)
    assert not np.allclose(f0["transformer.h.1"].values[2], f3["transformer.h.1"].values[2])
    # word 2 with 2 words of context = mean over the sub-word tokens of "zookeeper"
    text = "the unbelievable zookeeper"
    enc = tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
    offs = enc.pop("offset_mapping")[0]
    sel = (offs[:, 0] >= 17) & (offs[:, 1] <= 26) & (offs[:, 1] > offs[:, 0])
    assert int(sel.sum()) >= 2  # a word split into several sub-word tokens
    with torch.no_grad():
        hs = gpt2(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states
    np.testing.assert_allclose(f3["transformer.h.1"].values[2], hs[2][0][sel].mean(0).numpy(), atol=1e-5)


def test_text_errors(gpt2, tokenizer, texts):
    with pytest.raises(ValueError, match="None with text stimuli. Token-level features are for images"):
        extract(gpt2, texts, layers=["transformer.h.0"], tokenizer=tokenizer, pooling=None)
    with pytest.raises(ValueError, match="'context' in extract\\(\\): 2 needs word-level text"):
        extract(gpt2, texts, layers=["transformer.h.0"], tokenizer=tokenizer, context=2)


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_causal_lm_families_hooks_equal_hidden_states(family, tokenizer, texts):
    import transformers as tr

    torch.manual_seed(0)
    common = {"vocab_size": tokenizer.vocab_size, "hidden_size": 32, "num_attention_heads": 2,
              "max_position_embeddings": 128, "pad_token_id": 0}
    if family == "opt":
        cfg = tr.OPTConfig(num_hidden_layers=3, ffn_dim=64, word_embed_proj_dim=32, **common)
        model = tr.OPTForCausalLM(cfg).eval()
        block = "model.decoder.layers.1"
    else:
        cfg = tr.LlamaConfig(num_hidden_layers=3, intermediate_size=64, num_key_value_heads=2, **common)
        model = tr.LlamaForCausalLM(cfg).eval()
        block = "model.layers.1"
    fm = load_model(model, tokenizer=tokenizer)
    assert fm.causal
    f = extract(fm, texts, layers="blocks", pooling="mean", device="cpu")
    assert block in f.data_vars and len(f.data_vars) == 3
    enc = tokenizer(SENTENCES["dog2"], return_tensors="pt")
    with torch.no_grad():
        hs = model(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states
    np.testing.assert_allclose(f[block].values[1], hs[2][0].mean(0).numpy(), atol=1e-4)
