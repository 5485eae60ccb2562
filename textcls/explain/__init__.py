"""`textcls explain`: which words pushed a run's prediction, by integrated gradients or attention rollout."""

from textcls.explain.explainer import (
    METHODS,
    Explanation,
    attention_records,
    explain_note,
    explain_texts,
    read_texts,
    write_attention,
)
from textcls.explain.render import explanations_html, print_explanations, write_html
from textcls.explain.words import Word, encoding_words, word_scores, words_from_offsets, words_from_tokens

__all__ = ["METHODS", "Explanation", "Word", "attention_records", "explain_note", "encoding_words", "explain_texts",
           "explanations_html", "print_explanations", "read_texts", "word_scores", "words_from_offsets",
           "words_from_tokens", "write_attention", "write_html"]
