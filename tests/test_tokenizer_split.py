"""The shared pre-tokenizer: CJK characters are isolated, Latin words and numbers stay whole."""

from __future__ import annotations

from textcls.config import TokenizerConfig
from textcls.data.tokenizer import _pre_tokenizer


def test_pre_tokenizer_isolates_cjk_only():
    text = "a fine day, 2019 dad 中文かな한국 \U00020001x"
    pieces = [p for p, _ in _pre_tokenizer(TokenizerConfig()).pre_tokenize_str(text)]
    assert pieces == ["a", "fine", "day", ",", "2019", "dad", "中", "文", "か", "な", "한", "국", "\U00020001", "x"]
