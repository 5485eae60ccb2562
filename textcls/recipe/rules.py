"""The automatic recipe's rules: a pure function from the data's statistics, the time budget, the machine
and (optionally) a pretrained base to config keys, each with the reason it was chosen.

`auto_recipe` asks `step_seconds(candidate)` how long one training step of a candidate model takes
(textcls/recipe/speed.py measures it; tests pass a formula), and plans with that. The rules name no
dataset; docs/recipe.md explains where their constants come from.

Without a base:
- Validation: without a validation file, 10% of the rows (at most 2,000) are held out, stratified by
  label and seeded; choices that need data (the n-gram share) are made on them. When half the rows or
  more lie word for word inside another row (a treebank's phrases), 10% of the whole texts are held out
  instead, and the rows inside them leave the training part (`data.valid_whole_texts`).
- Tokenizer: wordpiece; with a CJK share of 30% or more every CJK character is one token. Vocabulary by
  corpus size in tokens: under 300k 4,000; under 3M 8,000; else 16,000 (CJK: 8,000).
- `max_length`: the 95th percentile of token lengths plus 10% for sub-words and the special tokens,
  rounded up to a multiple of 16, within [32, 256] on a CPU and [32, 512] on a GPU. Documents (median
  over 64 tokens) keep their head and tail (a third of the budget from the start), sentences the head.
- Model: a 2-layer encoder (hidden 256, 4 heads, factorized 128-wide embeddings, mean pooling, no
  sharing: at 2 layers it saves parameters, not time), 128 wide under 2,000 rows; texts with a median
  of at most 16 tokens read no positions but hashed word-bigram embeddings. When the preferred size
  cannot train its epochs in the budget, the next smaller size is tried (down to hidden 64, 1 layer).
- Optimisation: AdamW, lr 1e-3, linear decay, warmup 10% (6% from 20,000 rows), batch 32 (64 from
  20,000 rows), weight decay 0.01, bf16 where the device computes in it.
- Epochs: 30,000 / training rows, rounded, within [1, 8]; fewer when the budget allows fewer. A budget
  that cannot train one epoch of the smallest model is refused.
- Members: when the preferred model trains all its epochs with time to spare, the budget is filled with
  ensemble members (at most 10; on a CPU as many at once as there are cores, one thread each), whose
  tokenizers alternate two views: the vocabulary doubled, or for CJK text BPE words of several characters.
  The planned count comes from step times measured before training; while members train, more are added
  (up to the same 10) as long as one more, as slow as the slowest so far, ends within the budget. Where the
  plan holds one model but the time left after it holds 1.5 of it, that model is the first member of an
  ensemble (on every core) that grows the same way, so a plan that errs slow still fills the budget. With 4
  members or more, when the held-out rows are 5% of the rows or more, half the members hold out other rows
  of the same size (cross-fitting, `train.ensemble_folds: 2`), so every row is learned by at least half
  the members and validation is out of fold.
- The bag-of-n-grams model is fitted after the transformer(s) and its share of the mix is chosen on the
  validation rows (cross-fitted: out of fold); where they were held out of the training file, it is then
  fitted on all the rows. It is left out when fitting it (once, or twice with rows held out) would take
  over a quarter of the budget.

With a base (`model.init_from`, the base's tokenizer and architecture):
- lr by the base's hidden size: up to 384 1e-4, up to 640 5e-5, larger 2e-5; warmup 10% under 20,000
  rows, else 6%; epochs 3 under 20,000 rows, 2 under 100,000, else 1, fewer (down to a tenth of an
  epoch) when the budget allows fewer; batch 32; `max_length` from the base tokenizer's 95th percentile
  (+ special tokens, a multiple of 16, at most the base's positions). When the epochs fit with time to
  spare, the budget is filled with more fine-tuned copies (other seeds; at most 5, each a whole copy of the
  base), averaged, and copies are added while time is left, as without a base (also to one planned copy).
  A sentence-transformers base keeps the pooling it was trained with (its Pooling module: mean for
  all-MiniLM-L6-v2); other bases pool as their checkpoint does (BERT's pooler: the first token through a
  dense tanh layer).

Time: the planned training fits 85% of what is left of the budget after the time already spent and
a reserve for tokenizing, the NB-LR model and the final evaluation; `train.time_budget_seconds` stops
each model's training loop at 100% of its share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from textcls.errors import ConfigError
from textcls.recipe.stats import DataStats
from textcls.train.nblr import SHARES as NBLR_GRID

MAX_HELD_OUT = 2000
MAX_MEMBERS = 10
CROSS_FIT_SHARE = 0.05  # members hold out two folds in turn when the held-out rows are at least this share
CROSS_FIT_FOLDS = 2  # each fold is scored by half the members, so the n-gram share chosen on it suits an ensemble
CROSS_FIT_MEMBERS = 4  # at least two members per fold
WHOLE_TEXTS_SHARE = 0.5  # rows inside other rows from which a file counts as phrases of longer texts (a treebank)
NBLR_C = 10.0  # inverse L2 strength on unit-length n-gram vectors (five-fold accuracy on the suite's training rows)
NBLR_CHARS = [3, 5]  # character n-grams of each word beside its word n-grams (the same, and the out-of-fold mix)
BASE_MAX_MEMBERS = 5  # each member of a fine-tuned base is a whole copy of it (90 MB for MiniLM-L6)
PLAN_SHARE = 0.85  # the plan fills this share of the time left; the rest absorbs a slower machine
MEMBER_OVERHEAD = 6.0  # seconds per model outside its steps: process start, model, cached data
EPOCH_OVERHEAD = 0.5  # seconds per epoch end: evaluation set-up, the best weights and last/ saved
PARALLEL_FACTOR = 1.25  # members trained side by side share caches and memory bandwidth
THREAD_GAIN = 0.6  # each core beyond the first speeds a lone model's steps up by this much
GROW_SHARE = 1.5  # one planned model may grow into an ensemble when the fill window holds this many of it: a
# second one fits when real loops take 0.75 of the plan or less (bench/plan_timing.py: 0.64-1.11, median 0.83)

LADDER = {  # model sizes, largest first
    "base": {"hidden_size": 256, "num_layers": 2, "num_heads": 4, "intermediate_size": 1024, "embedding_size": 128},
    "small": {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "intermediate_size": 512, "embedding_size": None},
    "tiny": {"hidden_size": 64, "num_layers": 1, "num_heads": 2, "intermediate_size": 256, "embedding_size": None},
}


@dataclass(frozen=True)
class Machine:
    device: str  # "cpu" or "cuda"
    cores: int
    bf16: bool  # computes in bf16 natively


@dataclass(frozen=True)
class BaseModel:
    """A pretrained base: its spec (`model.init_from`), size and the data's lengths in its tokens."""

    spec: str
    hidden_size: int
    num_layers: int
    max_positions: int
    length_p95: float
    length_mean: float
    pooling: Optional[str] = None  # what a sentence-transformers base declares (run/bases.py declared_pooling)


@dataclass(frozen=True)
class Candidate:
    """A model to time: `model` keys (None: the base's), batch size and padded length of a typical batch."""

    name: str
    model: Optional[dict]
    batch_size: int
    length: int
    precision: str


@dataclass
class Choice:
    key: str
    value: Any
    reason: str


@dataclass
class Recipe:
    raw: dict = field(default_factory=dict)  # nested config keys
    choices: list[Choice] = field(default_factory=list)
    estimate: dict = field(default_factory=dict)  # planned seconds by phase

    def set(self, key: str, value: Any, reason: str) -> None:
        node = self.raw
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        self.choices.append(Choice(key, value, reason))


def round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple - 1e-9) * multiple)  # 110.00000000000001 + 2 is 112


def auto_recipe(stats: DataStats, budget: float, machine: Machine, step_seconds: Callable[[Candidate], float],
                valid_rows: Optional[int] = None, base: Optional[BaseModel] = None, elapsed: float = 0.0,
                most_epochs: Optional[int] = None) -> Recipe:
    """The config keys (and reasons) for training on data with `stats` within `budget` seconds.

    `valid_rows`: rows of a separate validation file (None: rows are held out). `step_seconds`: seconds per
    optimizer step of a candidate, on one thread of a CPU or on the GPU. `elapsed`: seconds already spent.
    `most_epochs` (one model, no base): spare time goes to more epochs, up to this many, instead of members
    (a distilled student: textcls/distill/student.py). Raises ConfigError when the data or the budget cannot
    make a run."""
    check_data(stats)
    r = Recipe()
    fraction, train_rows, valid_rows = _validation(r, stats, valid_rows)
    held_out = fraction is not None  # then the n-gram model is fitted again on all rows after validation
    precision = "bf16" if machine.bf16 else "fp32"
    if base is not None:
        return _with_base(r, stats, budget, machine, step_seconds, train_rows, valid_rows, base, precision, elapsed,
                          held_out=held_out)
    vocab = _tokenizer_choices(r, stats)
    max_length, length_extra = _length_choices(r, stats, machine)
    big = train_rows >= 20_000
    batch = 64 if big else 32
    length = min(max_length, round_up(stats.length_mean * 1.25 + length_extra, 8))  # words to sub-words, little padding
    preferred = "base" if train_rows >= 2000 else "small"
    ladder = list(LADDER)[list(LADDER).index(preferred):]
    extras: dict = {}
    if stats.length_p50 <= 16:  # short texts: hashed word-bigram embeddings instead of positions
        buckets = int(min(100_000, max(4000, round_up(2 * stats.length_mean * stats.rows, 1000))))
        extras = {"position": "none", "embeddings": {"ngram_orders": [2], "ngram_buckets": buckets}}
    timed = {name: step_seconds(Candidate(name, {**LADDER[name], **extras}, batch, length, precision))
             for name in ladder}
    wanted = int(min(8, max(1, round(30_000 / train_rows))))
    plan = _Plan(_Cost(stats, machine, train_rows, valid_rows, batch), timed, budget, elapsed, held_out, wanted)
    chosen, epochs, members, workers, cross_fit = plan.choose(ladder, train_rows, machine, most_epochs,
                                                              may_cross_fit=held_out and fraction >= CROSS_FIT_SHARE)

    _model_choices(r, chosen, preferred, plan.wanted, max_length, stats, extras)
    r.set("train.epochs", epochs, f"30,000 / {train_rows:,} training rows, within 1..8" if epochs == plan.wanted else
          f"what the budget holds, at most {most_epochs} ({plan.wanted} by the rows)" if epochs > plan.wanted else
          f"what the budget allows ({plan.wanted} wanted)")
    r.set("train.batch_size", batch, "20,000 training rows or more" if big else "fewer than 20,000 training rows")
    r.set("train.lr", 1.0e-3, "small encoders trained from scratch")
    r.set("train.warmup", 0.06 if big else 0.1, "share of the steps")
    _machine_choices(r, machine, precision)
    fill_seconds = plan.fits(chosen, epochs, MAX_MEMBERS, workers, cross_fit)[1]
    if members > 1 or (chosen == preferred and epochs == plan.wanted and not most_epochs
                       and _grows(fill_seconds, plan.cost.loop_seconds(timed[chosen], epochs))):
        _ensemble_choices(r, stats, machine, members, workers, vocab, cross_fit, fill_seconds)
    r.set("nblr.weight", 0.5 if plan.use_nblr else 0.0, "bag-of-n-grams model beside the transformer(s)"
          if plan.use_nblr else f"fitting the NB-LR model (about {plan.nblr_fit:.0f}s in all) would take over a "
          "quarter of the budget")
    if plan.use_nblr:
        r.set("nblr.choose_weight", True, f"its share is chosen on the validation rows from {list(NBLR_GRID)}"
              + (", then it is fitted on all rows" if held_out else ""))
        _nblr_features(r)
    _, avail = plan.fits(chosen, epochs, members, workers, cross_fit)
    rounds = math.ceil(members / workers)
    r.set("train.time_budget_seconds", round(max(1.0, avail / rounds - MEMBER_OVERHEAD), 1),
          f"each model's training stops here: the budget less the time spent ({elapsed:.0f}s) and a reserve for "
          f"tokenizing, the NB-LR model and evaluation" + (f", over {rounds} rounds of members" if rounds > 1 else ""))
    r.estimate = {"loop": round(plan.cost.loop_seconds(timed[chosen], epochs, members, workers), 1),
                  "reserve": round(plan.time_left - avail, 1), "step_seconds": round(timed[chosen], 4)}
    return r


def _validation(r: Recipe, stats: DataStats, valid_rows: Optional[int]) -> tuple[Optional[float], int, int]:
    """Without a validation file, the held-out share of the rows (or of the whole texts of a treebank's phrases);
    (that share or None, training rows, validation rows)."""
    if valid_rows is not None:
        return None, stats.rows, valid_rows
    whole = stats.inside_share >= WHOLE_TEXTS_SHARE
    texts = max(stats.num_classes * 2, round(stats.rows * (1 - stats.inside_share))) if whole else stats.rows
    held = min(MAX_HELD_OUT, max(stats.num_classes, math.ceil(0.1 * texts)))
    fraction = round(held / texts, 4)
    if whole:
        r.set("data.valid_whole_texts", True, f"{stats.inside_share:.0%} of the rows lie word for word inside "
              "another row (phrases of longer texts, as in a treebank): rows are held out as whole texts, and "
              "the rows inside a held-out text leave the training part, so validation scores unseen texts")
    r.set("data.valid_fraction", fraction, f"no validation file: {held:,} of {texts:,} "
          f"{'whole texts' if whole else 'rows'} held out (10%, at most 2,000), stratified by label, to "
          "evaluate and choose the n-gram share")
    # a held-out whole text takes its phrases with it: about `fraction` of every row
    return fraction, round(stats.rows * (1 - fraction)) if whole else stats.rows - held, held


def _tokenizer_choices(r: Recipe, stats: DataStats) -> int:
    """The tokenizer's type and vocabulary size (returned)."""
    tokens = stats.length_mean * stats.rows
    if stats.cjk:
        vocab = 8000
        r.set("tokenizer.type", "wordpiece", f"CJK text ({stats.cjk_share:.0%} of characters): every CJK character "
              "is a token, other words wordpieces")
        r.set("tokenizer.split_cjk", True, "each CJK character its own token")
    else:
        vocab = 4000 if tokens < 300_000 else 8000 if tokens < 3_000_000 else 16_000
        r.set("tokenizer.type", "wordpiece", "sub-words learned from the training rows")
    r.set("tokenizer.vocab_size", vocab, "CJK characters and their common words" if stats.cjk else
          f"{tokens:,.0f} training tokens (under 300k: 4,000; under 3M: 8,000; else 16,000)")
    return vocab


def _length_choices(r: Recipe, stats: DataStats, machine: Machine) -> tuple[int, int]:
    """`max_length` and truncation; (max_length, the special tokens a text takes)."""
    cap = 512 if machine.device == "cuda" else 256
    extra = 3 if stats.pairs else 2
    max_length = min(cap, max(32, round_up(stats.length_p95 * 1.1 + extra, 16)))
    r.set("data.max_length", max_length, f"95% of training texts fit in {stats.length_p95:.0f} tokens (+10% for "
          f"sub-words, + special tokens; within 32..{cap})")
    if stats.length_p50 > 64:
        r.set("data.truncation", "head+tail", f"documents (median {stats.length_p50:.0f} tokens): keep the start "
              "and the end")
        r.set("data.head_tokens", max_length // 3, "a third of max_length from the start")
    else:
        r.set("data.truncation", "head", f"sentences (median {stats.length_p50:.0f} tokens): keep the start")
    return max_length, extra


class _Plan:
    """What fits the budget: model size, epochs, members and cross-fitting, from each size's timed step."""

    def __init__(self, cost: _Cost, timed: dict[str, float], budget: float, elapsed: float, held_out: bool,
                 wanted: int):
        self.cost, self.timed, self.held_out, self.wanted = cost, timed, held_out, wanted  # wanted: epochs
        self.budget, self.elapsed = budget, elapsed
        self.nblr_fit = cost.nblr_seconds() * (2 if held_out else 1)
        self.use_nblr = self.nblr_fit <= 0.25 * budget

    @property
    def time_left(self) -> float:
        return self.budget - self.elapsed

    def fits(self, name: str, epochs: float, members: int = 1, workers: int = 1,
             cross: bool = False) -> tuple[bool, float]:
        """Whether the plan fits, and the seconds left for training after the reserve."""
        plan = self.cost.loop_seconds(self.timed[name], epochs, members, workers)
        nblr_fits = 1 + (CROSS_FIT_FOLDS if cross else 1 if self.held_out else 0)  # + the fit on all rows
        reserve = self.cost.reserve_seconds(self.timed[name], members, self.use_nblr, views=min(members, 2),
                                            nblr_fits=nblr_fits)
        return plan <= PLAN_SHARE * (self.time_left - reserve), self.time_left - reserve

    def choose(self, ladder: list[str], train_rows: int, machine: Machine, most_epochs: Optional[int],
               may_cross_fit: bool) -> tuple[str, int, int, int, bool]:
        """One model first: the largest size that trains the wanted epochs, else the smallest with what fits; then
        spare time to epochs (`most_epochs`) or members. (size, epochs, members, workers, cross-fit)."""
        wanted, preferred = self.wanted, ladder[0]
        chosen, epochs = next((name for name in ladder if self.fits(name, wanted)[0]), None), wanted
        if chosen is None:
            chosen = ladder[-1]
            _, avail = self.fits(chosen, 1)
            per_epoch = self.cost.loop_seconds(self.timed[chosen], 1) - MEMBER_OVERHEAD
            epochs = int((PLAN_SHARE * avail - MEMBER_OVERHEAD) // per_epoch) if per_epoch > 0 else 0
            if epochs < 1:
                need = (self.elapsed + (self.cost.loop_seconds(self.timed[chosen], 1) / PLAN_SHARE)
                        + (self.time_left - avail))
                raise ConfigError(f"a budget of {self.budget:.0f}s is too small to train one epoch of the smallest "
                                  f"model on {train_rows:,} rows here (about {need:.0f}s needed); raise --budget to "
                                  f"at least {math.ceil(need * 1.2 / 10) * 10:.0f}s, or train on fewer rows")
        members, workers, cross_fit = 1, 1, False
        if most_epochs and chosen == preferred and epochs == wanted:
            epochs = next((e for e in range(most_epochs, wanted, -1) if self.fits(chosen, e)[0]), wanted)
        elif chosen == preferred and epochs == wanted:
            workers = machine.cores if machine.device == "cpu" else 1

            def most_members(cross: bool) -> int:
                return next((m for m in range(MAX_MEMBERS, 1, -1)
                             if self.fits(chosen, wanted, m, min(workers, m), cross)[0]), 1)

            members = most_members(False)
            # Cross-fitting only when its NB-LR fits cost no member (a bigger budget never plans fewer members).
            cross_fit = may_cross_fit and members >= CROSS_FIT_MEMBERS and most_members(True) == members
            workers = min(workers, members)
        return chosen, epochs, members, workers, cross_fit


def _model_choices(r: Recipe, chosen: str, preferred: str, wanted: int, max_length: int, stats: DataStats,
                   extras: dict) -> None:
    """The encoder's keys: the chosen size, pooling, sharing and, for short texts, word-pair embeddings."""
    model = LADDER[chosen]
    reason_size = {"base": "2,000 rows or more", "small": "fewer than 2,000 rows", "tiny": "the smallest size"}[chosen]
    if chosen != preferred:
        reason_size = f"the larger sizes cannot train {wanted} epoch(s) in the budget"
    for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "embedding_size"):
        r.set(f"model.{key}", model[key], f"{chosen} size: {reason_size}" if key == "hidden_size" else f"{chosen} size")
    r.set("model.max_positions", max_length, "= max_length")
    r.set("model.pooling", "mean", "the mean of the token vectors")
    r.set("model.sharing.strategy", "none", "at 2 layers sharing saves parameters, not time")
    if extras:
        r.set("model.position", "none", f"short texts (median {stats.length_p50:.0f} tokens): order comes from "
              "word-pair embeddings")
        r.set("model.embeddings.ngram_orders", [2], "hashed word-bigram embeddings added to the word vectors")
        r.set("model.embeddings.ngram_buckets", extras["embeddings"]["ngram_buckets"],
              "rows of the hashed table: twice the training tokens, within 4,000..100,000")


def _ensemble_choices(r: Recipe, stats: DataStats, machine: Machine, members: int, workers: int, vocab: int,
                      cross_fit: bool, fill_seconds: float) -> None:
    """Members, their workers, filling, the two tokenizer views and cross-fitting."""
    _members_choices(r, machine, members, workers, "members")
    _fill(r, members, MAX_MEMBERS, fill_seconds)
    view = ({"tokenizer.type": "bpe", "tokenizer.split_cjk": False, "tokenizer.vocab_size": 16_000}
            if stats.cjk else {"tokenizer.vocab_size": vocab * 2})
    r.set("train.ensemble_variants", [{}, view], "members alternate two views of the text, which err apart: "
          + ("BPE words of several characters" if stats.cjk else "a doubled vocabulary"))
    if cross_fit:
        r.set("train.ensemble_folds", CROSS_FIT_FOLDS, "half the members hold out the validation rows and half "
              "as many other rows, so every row is learned by at least half the members; validation is out of "
              f"fold, each row scored by the half that held it out (held-out rows {CROSS_FIT_SHARE:.0%} of the "
              "rows or more)")


def _grows(fill_seconds: float, one_model_seconds: float) -> bool:
    """Whether one planned model should be the first member of an ensemble that grows while time is left."""
    return fill_seconds >= GROW_SHARE * one_model_seconds


def _members_choices(r: Recipe, machine: Machine, members: int, workers: int, what: str) -> None:
    """`train.ensemble` and its workers: the planned members, or one model that more may join."""
    if members > 1:
        r.set("train.ensemble", members, f"the budget holds {members} {what}; their average errs less")
    else:
        r.set("train.ensemble", 1, f"the plan holds one model; the time left may hold more {what}, added while "
              "the first one's measured time says they fit")
    r.set("train.ensemble_workers", workers, "one per core, one thread each" if workers > 1 else
          "one at a time on every core" if machine.device == "cpu" else "one at a time on the GPU")


def _nblr_features(r: Recipe) -> None:
    """The n-gram model's features: unit-length vectors, with the weaker L2 penalty that suits them."""
    r.set("nblr.normalize", True, "each text's n-gram vector scaled to unit length, so short and long texts weigh "
          "alike")
    r.set("nblr.c", NBLR_C, "the L2 penalty for unit-length vectors")
    r.set("nblr.chars", list(NBLR_CHARS), f"also the {NBLR_CHARS[0]}- to {NBLR_CHARS[1]}-character pieces of each "
          "word, so a word seen once or never shares weight with words spelled like it")


def check_data(stats: DataStats) -> None:
    """A single class, or fewer rows than twice the classes, cannot make a classifier."""
    if stats.num_classes < 2:
        only = next(iter(stats.classes), "?")
        raise ConfigError(f"the training data has a single class ({only!r} on all {stats.rows:,} rows); a classifier "
                          "needs rows of at least two classes: check the label column (--label-column) or add rows")
    if stats.rows < 2 * stats.num_classes:
        raise ConfigError(f"the training data has {stats.rows} rows for {stats.num_classes} classes; it needs at "
                          f"least two rows per class ({2 * stats.num_classes}): add rows, or check the label column")


class _Cost:
    """Seconds of the phases of a run, from the measured seconds per step (one thread / the GPU)."""

    def __init__(self, stats: DataStats, machine: Machine, train_rows: int, valid_rows: int, batch: int):
        self.stats, self.machine, self.batch = stats, machine, batch
        self.steps = math.ceil(train_rows / batch)
        self.eval_batches = math.ceil(valid_rows / batch)

    def speedup(self, threads: int) -> float:
        return 1.0 if self.machine.device == "cuda" else 1 + THREAD_GAIN * (max(1, threads) - 1)

    def loop_seconds(self, step: float, epochs: float, members: int = 1, workers: int = 1) -> float:
        """Training (and per-epoch evaluation: a forward pass costs about a third of a step) of all members. On
        the suite's six sets a real run's loop took 0.64-1.11 of this, median 0.83 (bench/plan_timing.py)."""
        threads = max(1, self.machine.cores // workers) if self.machine.device == "cpu" else 1
        step = step * (PARALLEL_FACTOR if workers > 1 else 1.0) / self.speedup(threads)
        per_member = epochs * ((self.steps + self.eval_batches / 3) * step + EPOCH_OVERHEAD) + MEMBER_OVERHEAD
        return math.ceil(members / workers) * per_member

    def nblr_seconds(self) -> float:
        # with the 3- to 5-character pieces of words, on 2 cores: the smallest round figures that cover every suite
        # set's measured fit (SST-2 22 s, MR 5.4 s, MPQA 1.2 s; ChnSentiCorp 9.4 s: CJK characters make many
        # more distinct n-grams)
        per_char = 8e-6 if self.stats.cjk else 6e-6
        return 2.0 + per_char * self.stats.chars

    def reserve_seconds(self, step: float, members: int, nblr: bool, views: int, nblr_fits: int = 1) -> float:
        """Tokenizers and tokenizing, the NB-LR model (`nblr_fits` times), the final evaluation of all members,
        files."""
        tokenize = views * (2.0 + 3e-6 * self.stats.chars)
        final = members * self.eval_batches * step / 3 / self.speedup(self.machine.cores)
        return tokenize + (nblr_fits * self.nblr_seconds() if nblr else 0.0) + final + 3.0


def planned_loop_seconds(stats: DataStats, machine: Machine, step: float, epochs: float, batch: int,
                         members: int = 1, workers: int = 1, valid_rows: Optional[int] = None) -> float:
    """The training loop's seconds the plan expects for `members` models of `epochs` epochs, `workers` at a time,
    from the measured one-thread `step`, the rows held out as the recipe holds them (bench/plan_timing.py sets
    this against a real run)."""
    _, train_rows, valid = _validation(Recipe(), stats, valid_rows)
    return _Cost(stats, machine, train_rows, valid, batch).loop_seconds(step, epochs, members, workers)


def _with_base(r: Recipe, stats: DataStats, budget: float, machine: Machine, step_seconds, train_rows: int,
               valid_rows: int, base: BaseModel, precision: str, elapsed: float, held_out: bool) -> Recipe:
    extra = 3 if stats.pairs else 2
    max_length = min(base.max_positions, 512, max(32, round_up(base.length_p95 + extra, 16)))
    r.set("model.init_from", base.spec, "the pretrained base: its tokenizer and architecture")
    r.set("data.max_length", max_length, f"95% of training texts fit in {base.length_p95:.0f} of the base's tokens "
          f"(+ special tokens; at most the base's {base.max_positions} positions)")
    r.set("data.truncation", "head", "keep the start")
    if base.pooling:
        r.set("model.pooling", base.pooling, "the pooling the base was trained with (its sentence-transformers "
              "Pooling module)")
    lr = 1e-4 if base.hidden_size <= 384 else 5e-5 if base.hidden_size <= 640 else 2e-5
    r.set("train.lr", lr, f"hidden size {base.hidden_size} (up to 384: 1e-4; up to 640: 5e-5; larger: 2e-5)")
    wanted = 3 if train_rows < 20_000 else 2 if train_rows < 100_000 else 1
    batch = 32
    length = min(max_length, round_up(base.length_mean + extra, 8))  # in the base's tokens; buckets pad little
    step = step_seconds(Candidate("base-model", None, batch, length, precision))
    cost = _Cost(stats, machine, train_rows, valid_rows, batch)
    fits = 2 if held_out else 1  # rows held out: the n-gram model is fitted again on all rows
    nblr = fits * cost.nblr_seconds() <= 0.25 * budget

    def reserve(members: int) -> float:  # tokenizing, the NB-LR model, the final evaluation, loading the base
        return cost.reserve_seconds(step, members, nblr, views=0, nblr_fits=fits) + base.num_layers * 0.5

    avail = budget - elapsed - reserve(1)
    per_epoch = cost.loop_seconds(step, 1) - MEMBER_OVERHEAD
    fit = (PLAN_SHARE * avail - MEMBER_OVERHEAD) / per_epoch if per_epoch > 0 else wanted
    epochs = wanted if fit >= wanted else math.floor(fit * 10) / 10
    if epochs < wanted and (epochs < 0.1 or epochs * cost.steps < 20):  # cut by the budget below a useful run
        raise ConfigError(f"a budget of {budget:.0f}s is too small to fine-tune {base.spec} here (one epoch of "
                          f"{train_rows:,} rows takes about {per_epoch:.0f}s); raise --budget, train on fewer rows, or "
                          "train without --base")
    r.set("train.epochs", epochs, "by training rows (under 20,000: 3; under 100,000: 2; else 1)" if epochs == wanted
          else f"what the budget allows ({wanted} wanted)")
    members, workers = 1, 1
    if epochs == wanted:  # time to spare: fine-tune more copies of the base (other seeds), as without a base
        cores = machine.cores if machine.device == "cpu" else 1
        for m in range(BASE_MAX_MEMBERS, 1, -1):
            w = min(cores, m)
            spare = budget - elapsed - reserve(m)
            if cost.loop_seconds(step, wanted, m, w) <= PLAN_SHARE * spare:
                members, workers, avail = m, w, spare
                break
    fill_seconds = budget - elapsed - reserve(BASE_MAX_MEMBERS)
    if members > 1 or (epochs == wanted and _grows(fill_seconds, cost.loop_seconds(step, wanted))):
        _members_choices(r, machine, members, workers, f"fine-tuned copies of the base (at most {BASE_MAX_MEMBERS})")
        _fill(r, members, BASE_MAX_MEMBERS, fill_seconds)
    r.set("train.batch_size", batch, "fine-tuning")
    r.set("train.warmup", 0.06 if train_rows >= 20_000 else 0.1, "share of the steps")
    _machine_choices(r, machine, precision)
    r.set("nblr.weight", 0.5 if nblr else 0.0, "bag-of-n-grams model beside the fine-tuned base" if nblr else
          "fitting the NB-LR model would take over a quarter of the budget")
    if nblr:
        r.set("nblr.choose_weight", True, f"its share is chosen on the validation rows from {list(NBLR_GRID)}"
              + (", then it is fitted on all rows" if held_out else ""))
        _nblr_features(r)
    rounds = math.ceil(members / workers)
    r.set("train.time_budget_seconds", round(max(1.0, avail / rounds - MEMBER_OVERHEAD), 1),
          f"training stops here: the budget less the time spent ({elapsed:.0f}s) and a reserve for the NB-LR model "
          "and evaluation" + (f", over {rounds} rounds of members" if rounds > 1 else ""))
    r.estimate = {"loop": round(cost.loop_seconds(step, epochs, members, workers), 1),
                  "reserve": round(budget - elapsed - avail, 1), "step_seconds": round(step, 4)}
    return r


def _fill(r: Recipe, members: int, most: int, seconds: float) -> None:
    """Members beyond the plan while the budget holds one more: the plan's count comes from step times measured
    before training, the members' real durations correct it (train/ensemble.py `_Filling`)."""
    if members >= most or seconds <= 0:
        return
    planned = f"the plan's {members} come" if members > 1 else "the plan's one model comes"
    r.set("train.ensemble_max", most, f"more members while time is left, at most {most}: {planned} from step times "
          "measured before training")
    r.set("train.ensemble_fill_seconds", round(seconds, 1), "an added member must be expected to end within this "
          "many seconds of the first member's start: the budget less the time spent and the reserve for the "
          "NB-LR model and evaluating every member")


def _machine_choices(r, machine, precision: str) -> None:
    """What every recipe sets the same way: the schedule, AdamW's decay, precision, device and threads."""
    r.set("train.schedule", "linear", "linear decay to zero")
    r.set("train.weight_decay", 0.01, "AdamW")
    r.set("train.precision", "auto", "bf16 where the device has bf16 units (" +
          ("bf16 here" if precision == "bf16" else "fp32 here: none on this device") + ")")
    r.set("train.device", "auto", "a GPU when there is one")
    if machine.device == "cpu":
        r.set("train.num_threads", machine.cores, f"{machine.cores} cores")
