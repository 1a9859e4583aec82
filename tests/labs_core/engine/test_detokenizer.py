from transformers import AutoTokenizer

from labs_core.engine.detokenizer import IncrementalDetokenizer


def stream(tokenizer, text, prompt=""):
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    d = IncrementalDetokenizer(tokenizer, prompt_ids)
    pieces = [d.add(i) for i in ids]
    pieces.append(d.flush())
    return pieces


def test_multibyte_characters_never_break(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    text = "Prix: 12€ — naïve café 日本語のテキスト 🙂👍 ok"
    pieces = stream(tokenizer, text)
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_leading_space_kept_after_prompt(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert "".join(stream(tokenizer, " world and more", prompt="Hello")) == " world and more"
