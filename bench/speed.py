"""Speed benchmark: textcls against HF ALBERT/BERT classifiers of the same size, in one process.

    PYTHONPATH=. python bench/speed.py            # full run (a few minutes on an idle 2-core machine)
    PYTHONPATH=. python bench/speed.py --quick    # reduced sizes, for a busy machine

Both sides get the same token ids (a textcls WordPiece tokenizer trained on each training file) for
the same subset of real examples, so the length distribution is the real one. Measured per dataset
(SST-2, ChnSentiCorp) and architecture (ALBERT-like: shared layers, E=128; BERT-like: unshared, E=H):
  - training examples/s: textcls (bucketed batches) vs HF padded to 128 (`run_glue.py` default) and vs
    HF with dynamic padding + length grouping (Trainer `group_by_length`: mega-batches sorted by
    length, `DataCollatorWithPadding`, fused AdamW as Trainer's default optimizer on torch >= 2.8);
  - inference examples/s: textcls predict path (length-sorted batches) vs HF with dynamic padding;
  - with --padding-free, also textcls with `model.padding_free` (the real tokens packed, attention padded
    around SDPA) next to the padded textcls, training and inference, and their agreement;
  - achieved FLOP/s of a fixed-shape textcls training step next to this machine's fp32 matmul peak;
  - peak RSS of a training run and of `textcls predict` on a small and a large input (subprocesses).
Systems run interleaved in rounds so that load from other processes hits them alike; the ratios
(textcls / HF) are the figures to read, absolute numbers move with the machine's load.

Fine-tuning a pretrained base (all-MiniLM-L6-v2: `textcls train FILE --base DIR` against HF Trainer) is
bench/finetune_speed.py; `python bench/speed.py --base [DIR]` runs it (with --quick and --threads).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from textcls.config import ModelConfig, SharingConfig, TokenizerConfig, TrainConfig, config_from_dict
from textcls.data.batching import BucketSampler, TokenTable, lengths_of
from textcls.data.pipeline import encode_texts
from textcls.data.readers import iter_records
from textcls.data.tokenizer import train_tokenizer
from textcls.device import machine_summary
from textcls.model import TextClassifier
from textcls.predict import predict_ids
from textcls.train.loss import compute_loss
from textcls.train.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASETS = {  # name: (train file, text column, label column)
    "sst2": (DATA / "sst2" / "train.tsv", "sentence", "label"),
    "chnsenticorp": (DATA / "chnsenticorp" / "train.tsv", "text_a", "label"),
}
SIZE = dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024, vocab_size=8000)
MAX_LENGTH, BATCH, EVAL_BATCH, DROPOUT = 128, 32, 64, 0.1


# --------------------------------------------------------------------------- data


@dataclass
class Corpus:
    name: str
    ids: list[list[int]]  # token ids with [CLS] ... [SEP], truncated to MAX_LENGTH
    labels: np.ndarray
    tokenizer: object  # tokenizers.Tokenizer

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


def load_corpus(name: str) -> Corpus:
    path, text_col, label_col = DATASETS[name]
    data_cfg = config_from_dict({"data": {"text_columns": [text_col], "label_column": label_col}}).data
    records = list(iter_records(str(path), data_cfg, labelled=True))
    texts = [r.text for r in records]
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=SIZE["vocab_size"]))
    ids, _ = encode_texts(tok, texts, None, MAX_LENGTH)
    labels = np.array([int(r.labels[0]) for r in records], dtype=np.int64)
    return Corpus(name, ids, labels, tok)


def subset(corpus: Corpus, n: int, seed: int) -> tuple[list[list[int]], np.ndarray]:
    rows = np.random.default_rng(seed).permutation(len(corpus.ids))[:n]
    return [corpus.ids[i] for i in rows], corpus.labels[rows]


def hf_length_grouped(lengths: np.ndarray, batch_size: int, seed: int, mega_batch_mult: int = 50) -> list[list[int]]:
    """HF Trainer's `get_length_grouped_indices`: random mega-batches sorted by length (longest first)."""
    indices = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    size = mega_batch_mult * batch_size
    megas = [sorted(indices[i:i + size], key=lambda j: lengths[j], reverse=True) for i in range(0, len(indices), size)]
    top = int(np.argmax([lengths[m[0]] for m in megas]))
    megas[0][0], megas[top][0] = megas[top][0], megas[0][0]
    flat = [i for m in megas for i in m]
    return [flat[i:i + batch_size] for i in range(0, len(flat), batch_size)]


def hf_tokenizer(corpus: Corpus):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=corpus.tokenizer, pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", unk_token="[UNK]", mask_token="[MASK]")


# --------------------------------------------------------------------------- models


def textcls_model(arch: str, dropout: float = DROPOUT, size: dict | None = None,
                  padding_free: bool = False) -> TextClassifier:
    """ALBERT-like (shared layers, E=128) or BERT-like textcls classifier of `size` (default SIZE)."""
    size = size or SIZE
    cfg = ModelConfig(hidden_size=size["hidden_size"], num_layers=size["num_layers"], num_heads=size["num_heads"],
                      intermediate_size=size["intermediate_size"], embedding_size=128 if arch == "albert" else None,
                      sharing=SharingConfig(strategy="all" if arch == "albert" else "none"), pooling="cls_tanh",
                      dropout=dropout, padding_free=padding_free)
    return TextClassifier(cfg, size["vocab_size"], 2)


def hf_model(arch: str, size: dict | None = None) -> torch.nn.Module:
    """HF Albert/BertForSequenceClassification of the same `size` as textcls_model."""
    from transformers import AlbertConfig, AlbertForSequenceClassification, BertConfig, BertForSequenceClassification

    size = size or SIZE
    common = dict(vocab_size=size["vocab_size"], hidden_size=size["hidden_size"], num_labels=2,
                  num_hidden_layers=size["num_layers"], num_attention_heads=size["num_heads"],
                  intermediate_size=size["intermediate_size"], max_position_embeddings=512, hidden_act="gelu",
                  hidden_dropout_prob=DROPOUT, attention_probs_dropout_prob=DROPOUT)
    if arch == "albert":
        cfg = AlbertConfig(embedding_size=128, classifier_dropout_prob=DROPOUT, **common)
        return AlbertForSequenceClassification(cfg)
    return BertForSequenceClassification(BertConfig(**common))


def hf_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """Trainer's default on torch >= 2.8: fused AdamW, no decay on biases and LayerNorm weights."""
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n or "norm" in n)]
    rest = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n or "norm" in n]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                             lr=5e-5, fused=True)


# --------------------------------------------------------------------------- runners


class Runner:
    """A list of work items (batches) and a step function; `run(k)` does the next k items, timed."""

    def __init__(self, name: str, items: list, step: Callable, examples: Callable[[object], int]):
        self.name, self.items, self.step, self.examples = name, items, step, examples
        self.pos, self.seconds, self.done = 0, 0.0, 0

    def warmup(self, k: int = 2) -> None:
        for item in self.items[:k]:
            self.step(item)

    def run(self, k: int) -> None:
        for item in self.items[self.pos:self.pos + k]:
            t0 = time.perf_counter()
            self.step(item)
            self.seconds += time.perf_counter() - t0
            self.done += self.examples(item)
        self.pos += k

    @property
    def rate(self) -> float:
        return self.done / max(self.seconds, 1e-9)


def interleave(runners: list[Runner], rounds: int = 8) -> None:
    """Run every runner's items in `rounds` slices, alternating, so machine load hits all alike."""
    for r in runners:
        r.warmup()
    for _ in range(rounds):
        for r in runners:
            k = -(-len(r.items) // rounds)
            r.run(k)


def autocast(precision: str):
    """Training precision for both systems: bf16 is CPU autocast (textcls's `train.precision: bf16`, HF Trainer's
    `bf16=True`), fp32 runs as is."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def textcls_train_runner(arch: str, ids: list[list[int]], labels: np.ndarray, compile_model: bool = False,
                         padding_free: bool = False, precision: str = "fp32") -> Runner:
    import datasets

    torch.manual_seed(0)
    model = textcls_model(arch, padding_free=padding_free).train()
    forward = torch.compile(model, dynamic=True) if compile_model else model
    optimizer = build_optimizer(model, TrainConfig(lr=5e-5))
    ds = datasets.Dataset.from_dict({"input_ids": ids, "length": [len(x) for x in ids], "label": labels})
    table = TokenTable(ds)
    batches = BucketSampler(lengths_of(ds), BATCH, seed=0).batches(0)
    stats = {"real": 0, "padded": 0}

    def step(indices: np.ndarray) -> None:
        batch = table.batch(indices, 2)  # collation is part of the measured step
        with autocast(precision):
            logits = forward(batch.input_ids, batch.attention_mask, None)
            loss = compute_loss(logits.float(), batch.labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        stats["real"] += int(batch.attention_mask.sum())
        stats["padded"] += batch.input_ids.numel()

    name = "textcls" + (" compiled" if compile_model else "") + (" padding-free" if padding_free else "")
    runner = Runner(name, batches, step, len)
    runner.stats = stats
    return runner


def hf_train_runner(arch: str, ids: list[list[int]], labels: np.ndarray, tokenizer, padded_128: bool,
                    limit: int | None = None, precision: str = "fp32") -> Runner:
    from transformers import DataCollatorWithPadding, default_data_collator

    torch.manual_seed(0)
    model = hf_model(arch).train()
    optimizer = hf_optimizer(model)
    stats = {"real": 0, "padded": 0}
    if padded_128:  # run_glue.py: padding="max_length" at tokenization, random order, default collator
        features = [{"input_ids": x + [0] * (MAX_LENGTH - len(x)),
                     "attention_mask": [1] * len(x) + [0] * (MAX_LENGTH - len(x)), "labels": int(y)}
                    for x, y in zip(ids, labels)]
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0)).tolist()
        batches = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
        collate = default_data_collator
    else:  # group_by_length + DataCollatorWithPadding
        features = [{"input_ids": x, "attention_mask": [1] * len(x), "labels": int(y)} for x, y in zip(ids, labels)]
        batches = hf_length_grouped(np.array([len(x) for x in ids]), BATCH, seed=0)
        collate = DataCollatorWithPadding(tokenizer)
    batches = batches[:limit] if limit else batches

    def step(rows: list[int]) -> None:
        batch = collate([features[i] for i in rows])
        with autocast(precision):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.detach()
        stats["real"] += int(batch["attention_mask"].sum())
        stats["padded"] += batch["input_ids"].numel()

    runner = Runner("HF padded-128" if padded_128 else "HF group_by_length", batches, step, len)
    runner.stats = stats
    return runner


def textcls_infer_runner(arch: str, ids: list[list[int]], precision: str = "fp32",
                         padding_free: bool = False) -> tuple[Runner, dict]:
    torch.manual_seed(0)
    model = textcls_model(arch, padding_free=padding_free).eval()
    chunks = [ids[i:i + 1024] for i in range(0, len(ids), 1024)]  # predict works chunk by chunk
    out: dict = {}

    def step(chunk: list[list[int]]) -> None:
        out[id(chunk)] = predict_ids(model, chunk, None, 2, EVAL_BATCH, 0, precision=precision)

    return Runner(f"textcls predict {precision}" + (" padding-free" if padding_free else ""), chunks, step, len), out


def hf_infer_runner(arch: str, ids: list[list[int]], tokenizer) -> Runner:
    from transformers import DataCollatorWithPadding

    torch.manual_seed(0)
    model = hf_model(arch).eval()
    collate = DataCollatorWithPadding(tokenizer)
    features = [{"input_ids": x, "attention_mask": [1] * len(x)} for x in ids]
    batches = [list(range(i, min(i + EVAL_BATCH, len(ids)))) for i in range(0, len(ids), EVAL_BATCH)]

    @torch.no_grad()
    def step(rows: list[int]) -> None:
        logits = model(**collate([features[i] for i in rows])).logits
        torch.softmax(logits, -1).numpy()

    return Runner("HF dynamic padding", batches, step, len)


# --------------------------------------------------------------------------- sections


def bench_training(corpus: Corpus, arch: str, n: int, rounds: int, compile_model: bool,
                   padding_free: bool = False, precision: str = "fp32") -> dict:
    ids, labels = subset(corpus, n, seed=1)
    tok = hf_tokenizer(corpus)
    runners = [textcls_train_runner(arch, ids, labels, precision=precision),
               hf_train_runner(arch, ids, labels, tok, padded_128=False, precision=precision),
               hf_train_runner(arch, ids, labels, tok, padded_128=True, limit=max(rounds, n // BATCH // 4),
                               precision=precision)]
    if padding_free:  # the same batches, the same seed: the model packs their real tokens
        runners.append(textcls_train_runner(arch, ids, labels, padding_free=True, precision=precision))
    if compile_model:
        runners.append(textcls_train_runner(arch, ids, labels, compile_model=True, precision=precision))
        runners[-1].warmup(8)  # compile for a few shapes before timing
    interleave(runners, rounds)
    rates = {r.name: r.rate for r in runners}
    for r in runners:
        eff = r.stats["real"] / max(r.stats["padded"], 1)
        print(f"    train {r.name:<22} {r.rate:8.1f} ex/s   real/padded tokens {eff:5.1%}  ({r.done} examples)")
    ours = rates["textcls"]
    print(f"    ratio textcls / HF padded-128:      {ours / rates['HF padded-128']:6.2f}x  (target >= 5)")
    print(f"    ratio textcls / HF group_by_length: {ours / rates['HF group_by_length']:6.2f}x  (target >= 1.5)")
    if padding_free:
        print(f"    ratio padding-free / padded textcls: {rates['textcls padding-free'] / ours:5.2f}x  (target >= 1)")
    if compile_model:
        print(f"    ratio compiled / eager textcls:     {rates['textcls compiled'] / ours:6.2f}x")
    return rates


def bench_inference(corpus: Corpus, arch: str, n: int, rounds: int, padding_free: bool = False) -> dict:
    ids, _ = subset(corpus, n, seed=2)
    fp32, out32 = textcls_infer_runner(arch, ids)
    bf16, out16 = textcls_infer_runner(arch, ids, "bf16")
    hf = hf_infer_runner(arch, ids, hf_tokenizer(corpus))
    packed, out_packed = textcls_infer_runner(arch, ids, padding_free=True) if padding_free else (None, {})
    interleave([fp32, hf, bf16] + ([packed] if packed else []), rounds)
    for r in (fp32, bf16, hf) + ((packed,) if packed else ()):
        print(f"    infer {r.name:<22} {r.rate:8.1f} ex/s")
    p32 = np.concatenate([out32[id(c)] for c in fp32.items])
    p16 = np.concatenate([out16[id(c)] for c in bf16.items])
    agree = float((p32.argmax(1) == p16.argmax(1)).mean())
    print(f"    ratio textcls / HF dynamic padding: {fp32.rate / hf.rate:6.2f}x  (target >= 2)")
    print(f"    bf16 vs fp32: {bf16.rate / fp32.rate:.2f}x speed, argmax agreement {agree:.4f}, "
          f"max |dp| {np.abs(p32 - p16).max():.4f}")
    rates = {"textcls": fp32.rate, "hf": hf.rate, "bf16": bf16.rate, "agree": agree}
    if packed:
        diff = np.abs(p32 - np.concatenate([out_packed[id(c)] for c in packed.items])).max()
        print(f"    padding-free vs padded: {packed.rate / fp32.rate:.2f}x speed, max |dp| {diff:.2e}")
        rates["padding_free"] = packed.rate
    return rates


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = min(_timed(lambda: torch.matmul(a, b)) for _ in range(reps))
    return 2 * n ** 3 / best


def _timed(fn: Callable) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def train_step_flops(model: TextClassifier, b: int, t: int) -> float:
    """Matmul FLOPs of one training step (forward x 3) at batch b, length t."""
    c = model.cfg
    h, i, n = c.hidden_size, c.intermediate_size, b * t
    layer = 2 * n * (3 * h * h + h * h + 2 * h * i) + 2 * 2 * b * t * t * h  # projections + QK^T and PV
    e = c.embedding_size or h
    fwd = c.num_layers * layer + (2 * n * e * h if e != h else 0) + 2 * b * h * h
    return 3.0 * fwd


def bench_flops(steps: int, t: int = 128) -> None:
    peak = matmul_peak()
    print(f"  fp32 matmul peak (2048^3 torch.matmul, {torch.get_num_threads()} threads): {peak / 1e9:.1f} GFLOP/s")
    for dropout in (DROPOUT, 0.0):
        torch.manual_seed(0)
        model = textcls_model("bert", dropout).train()
        optimizer = build_optimizer(model, TrainConfig(lr=5e-5))
        ids = torch.randint(5, SIZE["vocab_size"], (BATCH, t))
        mask = torch.ones(BATCH, t, dtype=torch.bool)
        labels = torch.randint(0, 2, (BATCH,))

        def step() -> None:
            loss = compute_loss(model(ids, mask, None), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()
        best = min(_timed(step) for _ in range(steps))
        achieved = train_step_flops(model, BATCH, t) / best
        print(f"  fixed-shape train step ({BATCH}x{t}, BERT-size, dropout {dropout}): {achieved / 1e9:.1f} GFLOP/s "
              f"= {achieved / peak:.0%} of matmul peak (target >= 60%)")


def _peak_rss_mb(pid: int) -> float:
    """VmHWM of a child once it runs textcls (before its exec, /proc shows the forked copy of this process)."""
    try:
        if b"-m\x00textcls" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return 0.0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _run_rss(args: list[str], env: dict) -> tuple[int, float, float]:
    """(exit code, peak RSS in MB, seconds) of `python -m textcls ARGS`, polling the child's high-water mark.

    Rusage of a child is no use here: Linux carries the parent's peak across fork + exec.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a full pipe would stall the child
        proc = subprocess.Popen([sys.executable, "-m", "textcls", *args], env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _peak_rss_mb(proc.pid))
            time.sleep(0.05)
        if proc.returncode:
            err.seek(0)
            print(err.read().decode()[-2000:])
    return proc.returncode, peak, time.perf_counter() - t0


def bench_memory(small: int, large: int, train_steps: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="textcls-bench-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEXTCLS_CACHE": str(work / "cache"),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    sst2 = DATASETS["sst2"][0]
    config = work / "rss.yaml"
    config.write_text(
        f"data: {{train: {sst2}, valid: {sst2.parent / 'dev.tsv'}, text_columns: [sentence], label_column: label}}\n"
        "model: {hidden_size: 64, num_layers: 2, num_heads: 2, intermediate_size: 128}\n"
        f"train: {{max_steps: {train_steps}, batch_size: 32, num_threads: {torch.get_num_threads()}}}\n")
    rc, rss, secs = _run_rss(["train", str(config), "--output", str(work / "run"), "--quiet"], env)
    print(f"  train (SST-2 67k rows, {train_steps} steps, H=64 model): peak RSS {rss:.0f} MB, {secs:.0f}s, exit {rc}")
    sentences = [line.rsplit("\t", 1)[0] for line in sst2.read_text(encoding="utf-8").splitlines()[1:]]
    results = {}
    for lines in (small, large):
        path = work / f"in{lines}.txt"
        with open(path, "w", encoding="utf-8") as handle:
            for i in range(lines):
                handle.write(sentences[i % len(sentences)] + "\n")
        out = work / f"out{lines}.jsonl"
        rc, rss, secs = _run_rss(["predict", str(work / "run"), str(path), "--output", str(out)], env)
        with open(out, "rb") as handle:
            count = sum(1 for _ in handle) if out.exists() else -1
        results[lines] = rss
        print(f"  predict {lines:>9,} lines: peak RSS {rss:.0f} MB, {secs:.0f}s ({lines / secs:,.0f} lines/s), "
              f"output lines {count:,} ({'==' if count == lines else '!='} input), exit {rc}")
        path.unlink()
        out.unlink(missing_ok=True)
    print(f"  predict RSS growth {small:,} -> {large:,} lines: {results[large] - results[small]:+.0f} MB "
          "(target within 200 MB)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced sizes (about a quarter of the work)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--datasets", default="sst2,chnsenticorp")
    parser.add_argument("--archs", default="albert,bert")
    parser.add_argument("--sections", default="train,infer,flops,memory")
    parser.add_argument("--train-examples", type=int, default=None, help="examples per training measurement")
    parser.add_argument("--infer-examples", type=int, default=None)
    parser.add_argument("--predict-lines", type=int, default=None, help="the large predict input (default 1M)")
    parser.add_argument("--compile", action="store_true", help="also measure textcls training with torch.compile")
    parser.add_argument("--base", nargs="?", const="", default=None, metavar="DIR",
                        help="fine-tuning a pretrained base instead: runs bench/finetune_speed.py")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="training precision, the same for both systems (bf16: CPU autocast on both)")
    parser.add_argument("--padding-free", action="store_true",
                        help="also measure textcls with model.padding_free (training and inference)")
    args = parser.parse_args(argv)
    if args.base is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import finetune_speed

        finetune_speed.main([*(["--base", args.base] if args.base else []), *(["--quick"] if args.quick else []),
                             *(["--threads", str(args.threads)] if args.threads else [])])
        return
    print(machine_summary(), flush=True)  # the figures below belong to this machine
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    train_n = args.train_examples or (640 if q else 2560)
    infer_n = args.infer_examples or (2048 if q else 8192)
    sections = args.sections.split(",")
    print(f"textcls speed benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"training in {args.precision} on both sides, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for name in args.datasets.split(","):
        if not {"train", "infer"} & set(sections):
            break
        corpus = load_corpus(name)
        lengths = corpus.lengths
        print(f"\n{name}: {len(lengths):,} examples, tokens/example mean {lengths.mean():.1f}, "
              f"median {np.median(lengths):.0f}, p95 {np.percentile(lengths, 95):.0f} (max_length {MAX_LENGTH})")
        for arch in args.archs.split(","):
            print(f"  [{arch}-size: H=256 L=4 heads=4 I=1024" + (" E=128, shared layers]" if arch == "albert" else "]"))
            if "train" in sections:
                bench_training(corpus, arch, train_n, 4 if q else 8, args.compile, args.padding_free, args.precision)
            if "infer" in sections:
                bench_inference(corpus, arch, infer_n, 4, args.padding_free)
    if "flops" in sections:
        print("\nfixed-shape training step")
        bench_flops(3 if q else 6)
    if "memory" in sections:
        print("\nmemory (subprocesses, peak RSS = VmHWM)")
        bench_memory(10_000, args.predict_lines or (200_000 if q else 1_000_000), 10 if q else 30)


if __name__ == "__main__":
    main()
