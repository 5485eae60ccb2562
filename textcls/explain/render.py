"""Explanations shown: coloured words on a terminal (rich), and a self-contained HTML page.

Green pushed toward the label, red away from it; the stronger the colour, the larger the score next to
the text's largest one. A list of the top words with their scores follows each text, so the output
reads the same in a log without colours.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np
from rich.console import Console
from rich.text import Text

from textcls.explain.explainer import METHODS, Explanation
from textcls.io import atomic_write_text

TOP = 5
LEGEND = {"ig": "green pushed toward the label, red away from it",
          "attention": "the darker, the more of the pooled position's attention reaches the word (the same for "
                       "every label)"}


def _strength(scores: np.ndarray) -> np.ndarray:
    """Each score over the largest |score| of its text: in [-1, 1]."""
    peak = float(np.abs(scores).max()) if len(scores) else 0.0
    return scores / peak if peak > 0 else np.zeros_like(scores)


def _pieces(e: Explanation):
    """(text, word index or None) in order: the words and the text between them."""
    at = 0
    for i, w in enumerate(e.words):
        if w.start > at:
            yield e.text[at:w.start], None
        yield e.text[w.start:w.end], i
        at = w.end
    if at < len(e.text):
        yield e.text[at:], None


def _style(s: float) -> str:
    colour = "green" if s > 0 else "red"
    if abs(s) >= 0.5:
        return f"bold white on {'dark_green' if s > 0 else 'dark_red'}"
    return f"bold {colour}" if abs(s) >= 0.2 else (colour if abs(s) >= 0.05 else "")


def _top(e: Explanation) -> str:
    order = np.argsort(-np.abs(e.scores), kind="stable")[:TOP]
    return "  ".join(f"{e.words[i].text} {e.scores[i]:+.3f}" for i in order)


def _heading(e: Explanation, index: int) -> str:
    head = f"{index}. {e.label} ({e.probability:.3f})"
    if e.target != e.label:
        head += f"; scores for {e.target}"
    return head + ("; the text is longer than data.max_length, the scores cover its start" if e.truncated else "")


def print_explanations(explanations: Sequence[Explanation], method: str, console: Console, note: str = "") -> None:
    console.print(Text(f"{METHODS[method]}: {LEGEND[method]}" + (f"; {note}" if note else ""), style="dim"),
                  soft_wrap=True)
    for index, e in enumerate(explanations, start=1):
        strength = _strength(e.scores)
        line = Text("   ")
        for piece, i in _pieces(e):
            line.append(piece, style=_style(strength[i]) if i is not None else "")
        console.print(Text(_heading(e, index), style="bold"), soft_wrap=True)
        console.print(line, soft_wrap=True)
        console.print(Text(f"   top: {_top(e)}"), soft_wrap=True)


_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.2rem}.note{color:#666}section{margin:1.2rem 0;padding-bottom:.8rem;border-bottom:1px solid #ddd}
.head{font-weight:600}.text{line-height:2;font-size:1.05rem;white-space:pre-wrap}
.w{border-radius:3px;padding:1px 2px}.top{color:#555;font-size:.9rem}"""


def _colour(s: float) -> str:
    rgb = "22,163,74" if s > 0 else "220,38,38"
    return f"background:rgba({rgb},{abs(s):.3f})"


def explanations_html(explanations: Sequence[Explanation], method: str, note: str = "") -> str:
    """A page with inline CSS only: no script, no link to anything outside it."""
    parts = [f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>textcls explain</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>textcls explain: {html.escape(METHODS[method])}</h1>",
             f"<p class=\"note\">{html.escape(LEGEND[method].capitalize())}; hover a word for its score."
             + (f" {html.escape(note[:1].upper() + note[1:])}." if note else "") + "</p>"]
    for index, e in enumerate(explanations, start=1):
        strength = _strength(e.scores)
        spans = []
        for piece, i in _pieces(e):
            if i is None:
                spans.append(html.escape(piece))
            else:
                spans.append(f"<span class=\"w\" style=\"{_colour(strength[i])}\" title=\"{e.scores[i]:+.4f}\">"
                             f"{html.escape(piece)}</span>")
        parts.append(f"<section><div class=\"head\">{html.escape(_heading(e, index))}</div>"
                     f"<div class=\"text\">{''.join(spans)}</div>"
                     f"<div class=\"top\">top: {html.escape(_top(e))}</div></section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(path: Path | str, explanations: Sequence[Explanation], method: str, note: str = "") -> None:
    atomic_write_text(path, explanations_html(explanations, method, note))
