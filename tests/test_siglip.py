"""SigLIP end to end with a real SentencePiece tokenizer, loaded the way a hub id is."""

import io

import pytest
import torch
from helpers import tiny_encoder_config, train_and_score_mmvp

SENTENCES = [
    "a photo of a red circle", "two blue squares on the left", "the green triangle points up",
    "a yellow cross seen from above", "three small dots in a row", "the dog is facing the camera",
    "an open door and a closed window", "the text reads stop", "a butterfly with its wings spread",
] * 4


def sentencepiece_model(path):
    """Train a tiny SentencePiece model (what SigLIP's tokenizer reads) on a few sentences."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES), model_writer=buffer, vocab_size=64, model_type="unigram",
        unk_id=2, eos_id=1, bos_id=-1, pad_id=-1, hard_vocab_limit=False, character_coverage=1.0, minloglevel=2,
    )
    path.write_bytes(buffer.getvalue())
    return path


def save_siglip(directory):
    """A random tiny SiglipModel with a SentencePiece SiglipTokenizer, saved as a hub checkpoint is laid out."""
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams
    from transformers import SiglipTokenizer

    torch.manual_seed(0)
    config = tiny_encoder_config("siglip")  # its text tower has 64 ids, more than the SentencePiece model uses
    encoder = build_encoder("siglip", HFEncoderParams(config=config))
    directory.mkdir(parents=True)
    encoder.tokenizer = SiglipTokenizer(vocab_file=str(sentencepiece_model(directory.parent / "spiece.model")))
    encoder.save_pretrained(directory)
    assert (directory / "spiece.model").is_file()
    return directory


def test_siglip_checkpoint_loads_its_sentencepiece_tokenizer(tmp_path):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams
    from transformers import SiglipTokenizer

    source = save_siglip(tmp_path / "siglip")
    encoder = build_encoder("siglip", HFEncoderParams(source=str(source)))  # the hub-id code path, on a directory
    assert isinstance(encoder.tokenizer, SiglipTokenizer)
    assert encoder.tokenizer("a red circle")["input_ids"][-1] == 1  # SentencePiece pieces, then </s>


def test_a_missing_tokenizer_library_is_one_clear_error(tmp_path, monkeypatch):
    import transformers
    from genhancer_hf_encoders.processors import load_tokenizer

    from genhancer_plugins.util.errors import RunError

    source = save_siglip(tmp_path / "siglip")

    def missing(*args, **kwargs):
        raise ImportError("SiglipTokenizer requires the SentencePiece library but it was not found in your environment")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", missing)
    with pytest.raises(RunError, match="pip install sentencepiece"):
        load_tokenizer(str(source))


@pytest.mark.slow
def test_siglip_recipe_trains_both_stages_and_scores_mmvp(tmp_path):
    source = save_siglip(tmp_path / "siglip")
    train_and_score_mmvp(tmp_path, {"name": "siglip", "preset": "tiny", "params": {"source": str(source)}},
                         stage2={"steps": 1, "lora": {"bias": "lora_only"}})
    assert (tmp_path / "out" / "export" / "spiece.model").is_file()  # the export keeps SigLIP's tokenizer
