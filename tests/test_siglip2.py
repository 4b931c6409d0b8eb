"""SigLIP 2 (FixRes): SigLIP's architecture with a Gemma tokenizer, loaded the way a hub id is,
trained through both stages, exported with its tokenizer and scored; NaFlex checkpoints refused."""

import pytest
import torch
from helpers import tiny_encoder_config, train_and_score_mmvp


def gemma_tokenizer():
    """A real GemmaTokenizer (byte-fallback BPE, SigLIP 2's) over a character vocabulary, offline."""
    from transformers import GemmaTokenizer

    chars = "▁abcdefghijklmnopqrstuvwxyz."
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, **{c: i + 5 for i, c in enumerate(chars)}}
    return GemmaTokenizer(vocab=vocab, merges=[], model_max_length=64)


def save_siglip2(directory):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    torch.manual_seed(0)
    encoder = build_encoder("siglip", HFEncoderParams(config=tiny_encoder_config("siglip")))
    encoder.tokenizer = gemma_tokenizer()
    encoder.save_pretrained(directory)
    return directory


def test_a_siglip2_checkpoint_loads_as_siglip_with_its_gemma_tokenizer(tmp_path):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.image_text import load_image_text_model
    from genhancer_hf_encoders.params import HFEncoderParams
    from transformers import GemmaTokenizer

    source = save_siglip2(tmp_path / "siglip2")
    encoder = build_encoder("siglip", HFEncoderParams(source=str(source)))  # the hub-id code path, on a directory
    assert isinstance(encoder.tokenizer, GemmaTokenizer)
    ids = encoder.tokenizer("a red circle")["input_ids"]
    assert 3 not in ids and encoder.tokenizer.decode(ids, skip_special_tokens=True) == "a red circle"
    texts = load_image_text_model(str(source)).text_embeddings(["a red circle", "two blue squares"])
    assert texts.shape == (2, 32) and torch.allclose(texts.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_naflex_checkpoints_are_refused_with_the_reason(tmp_path):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams
    from transformers import Siglip2Config, Siglip2Model

    config = tiny_encoder_config("siglip")
    Siglip2Model(Siglip2Config(vision_config={**config["vision"], "num_patches": 16}, text_config=config["text"])).save_pretrained(tmp_path / "naflex")
    with pytest.raises(ValueError, match="NaFlex checkpoints take variable patch grids.*use a FixRes SigLIP 2 checkpoint"):
        build_encoder("siglip", HFEncoderParams(source=str(tmp_path / "naflex")))


def test_the_siglip2_presets_plan_offline_at_the_checkpoints_sizes():
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    from genhancer_plugins import load_presets

    preset = load_presets("genhancer_hf_encoders")["siglip"]["siglip2-so400m-patch14-384"]
    encoder = build_encoder("siglip", HFEncoderParams(**preset), meta=True)
    assert encoder.spec.image_size == 384 and encoder.spec.num_local_tokens == 729 and encoder.spec.global_dim == 1152
    assert encoder.model.config.text_config.vocab_size == 256000


@pytest.mark.slow
def test_a_siglip2_recipe_trains_both_stages_exports_its_tokenizer_and_scores_mmvp(tmp_path):
    source = save_siglip2(tmp_path / "siglip2")
    train_and_score_mmvp(tmp_path, {"name": "siglip", "preset": "tiny", "params": {"source": str(source)}})
    from transformers import AutoTokenizer, GemmaTokenizer

    assert isinstance(AutoTokenizer.from_pretrained(tmp_path / "out" / "export"), GemmaTokenizer)  # exported with the tower
