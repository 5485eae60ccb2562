"""The `textcls` command line: parse, load the config, call the library, map errors to exit codes.

Exit codes: 0 ok, 2 user error (one paragraph, no traceback), 130 interrupted, 1 internal error.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape

from textcls import __version__
from textcls.errors import TextclsError, printable, scrub

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Train a text classifier on your own labelled file (or a YAML config), evaluate it, predict "
                       "with it.")
# In a log (stderr not a terminal) a message stays on one line, however long: rich would wrap it at 80 columns.
err = Console(stderr=True, soft_wrap=not sys.stderr.isatty())
out = Console() if sys.stdout.isatty() else Console(width=160)  # no wrapping mid-table in pipes and logs


def handle_errors(fn: Callable) -> Callable:
    """Turn TextclsError into a red paragraph + exit 2, and an interrupt into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from textcls.train.loop import Interrupted

        try:
            return fn(*args, **kwargs)
        except TextclsError as exc:
            err.print(f"[bold red]error:[/] {escape(printable(scrub(str(exc))))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except Interrupted as exc:
            err.print(f"[yellow]{escape(printable(str(exc)))}[/]", highlight=False)
            raise typer.Exit(130) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP outside the training loop (see main)
            how = f" ({exc.args[0]})" if exc.args and str(exc.args[0]).startswith("SIG") else ""
            err.print(f"[yellow]interrupted{how}[/]: temp files removed; files already written are complete",
                      highlight=False)
            raise typer.Exit(130) from None
        except BrokenPipeError:  # e.g. `textcls predict ... | head`: the reader has gone, stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(141) from None
        except OSError as exc:
            if exc.errno not in USER_ERRNOS or exc.filename is None:
                return _unexpected(exc)  # not about a file the user named or a full disk: a bug
            err.print(f"[bold red]error:[/] {escape(printable(f'cannot use {exc.filename}: {exc.strerror}'))}; "
                      f"{USER_ERRNOS[exc.errno]}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, click.ClickException):
            raise
        except Exception as exc:  # the last line of defence: a bug, said in one paragraph
            return _unexpected(exc)
    return wrapper


def _unexpected(exc: BaseException):
    """An error textcls did not foresee: one paragraph and exit 1; the traceback with --debug or TEXTCLS_DEBUG=1."""
    if os.environ.get("TEXTCLS_DEBUG", "").lower() in ("1", "true", "yes"):
        raise exc
    what = printable(f"{type(exc).__name__}: {scrub(str(exc)).splitlines()[0][:300] if str(exc).strip() else ''}")
    err.print(f"[bold red]internal error[/] (a bug in textcls {__version__}, not in your input): {escape(what)}. "
              "Run the command again with --debug (or TEXTCLS_DEBUG=1) to see the traceback, and report it with "
              "that traceback and the command.", highlight=False, soft_wrap=True)
    raise typer.Exit(1) from None


# OS errors about files and disks that the user can fix, with what to do.
USER_ERRNOS = {
    errno.ENOENT: "check the path", errno.ENOTDIR: "check the path", errno.EISDIR: "pass a file, not a folder",
    errno.EEXIST: "a file is in the way of a folder; check the path",
    errno.EACCES: "check its permissions", errno.EPERM: "check its permissions",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.ENOSPC: "the disk is full; free some space and try again",
    errno.EDQUOT: "the disk quota is used up; free some space and try again",
    errno.ENAMETOOLONG: "use a shorter name",
}


class _PrintableFormatter(logging.Formatter):
    """Log lines with control characters escaped (warnings quote labels and texts from data files)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(scrub(super().format(record)))


def _logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_PrintableFormatter("%(levelname)s: %(message)s"))
    logging.getLogger("textcls").setLevel(logging.INFO if sys.stderr.isatty() else logging.WARNING)


def _done(summary: str, quiet: bool = False) -> None:
    """The closing line of a training run; under torchrun only rank 0 prints it, and --quiet silences it."""
    from textcls.train.distributed import is_main

    if is_main() and not quiet:
        err.print(f"[green]done[/]: {escape(printable(summary))}", highlight=False)


SetOption = typer.Option(None, "--set", "-s", help="Override a config key, e.g. --set train.lr=3e-4 (repeatable).")
PrecisionOption = typer.Option("fp32", "--precision", help="fp32, bf16 (autocast: faster on GPUs and on CPUs "
                               "with bf16 units), or auto (bf16 where the device has bf16 units).")
DeviceOption = typer.Option("auto", "--device", help="auto (a CUDA GPU when there is one), cpu, cuda or cuda:N.")
RuntimeOption = typer.Option("torch", "--runtime", help="torch, or onnx: the transformers run in onnxruntime (CPU, "
                             "fp32; exported once into the run's onnx_cache/; the export extra).")


def _inference_device(device: str, precision: str):
    """The torch device for eval/predict, after checking --precision."""
    from textcls.errors import ConfigError
    from textcls.train.checks import warn_slow_bf16
    from textcls.train.loop import select_device

    if precision not in ("fp32", "bf16", "auto"):
        raise ConfigError(f"--precision must be fp32, bf16 or auto, got {precision!r}")
    target = select_device(device, "--device")
    warn_slow_bf16(target, precision, "--precision")
    return target
OutputOption = typer.Option(None, "--output", "-o", help="Run directory (overrides output.dir).")
ResumeOption = typer.Option(False, "--resume", help="Continue the run in the output directory from last/.")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress output, and no closing summary line.")


TextColumnOption = typer.Option(None, "--text-column", help="The text column: a header name or JSON key, or a "
                                "0-based index (twice for a text pair); default: detected.")
LabelColumnOption = typer.Option(None, "--label-column", help="The label column (name or index); default: detected.")
ValidOption = typer.Option(None, "--valid", help="A validation file in the training file's format (default: a "
                           "stratified, seeded share of the training rows is held out).")
BudgetOption = typer.Option(None, "--budget", help="Time budget for a data file's whole run: 90s, 10m, 1h (default "
                            "10m); with a CONFIG, the seconds of each model's training loop.")
BaseOption = typer.Option(None, "--base", help="Fine-tune a pretrained base: a HuggingFace model folder, a textcls run "
                          "directory or hf:ORG/NAME.")


@app.command()
@handle_errors
def train(
    config: Optional[Path] = typer.Argument(None, help="A data file (CSV, TSV, JSONL, fastText: trains with the "
                                            "automatic recipe) or a YAML config; none = the demo config."),
    overrides: Optional[list[str]] = SetOption,
    output: Optional[Path] = OutputOption,
    resume: bool = ResumeOption,
    quiet: bool = QuietOption,
    text_columns: Optional[list[str]] = TextColumnOption,
    label_column: Optional[str] = LabelColumnOption,
    valid: Optional[Path] = ValidOption,
    budget: Optional[str] = BudgetOption,
    base: Optional[str] = BaseOption,
) -> None:
    """Train a tokenizer and classifier; writes a run directory (with curves.png when matplotlib is installed)."""
    from textcls.plot import plot_training_curves
    from textcls.train.distributed import launched
    from textcls.train.loop import train as run_training

    started = time.perf_counter()
    _logging()
    data_file = _data_file(config, overrides)
    if data_file is not None:
        cfg = _data_run_config(data_file, overrides, output, resume, text_columns, label_column, valid, budget, base,
                               quiet, started)
    else:
        flags = _data_flags(config, text_columns, label_column, valid, budget, base)
        cfg = _run_config(config, [*flags, *(overrides or [])], output, resume)
    result = run_training(cfg, output, resume=resume, quiet=quiet)
    # Not under torchrun (a rank drawing while the others exit raced the process group's teardown), nor in an
    # ensemble member (the ensemble draws its members' once they are all done); `textcls plot` draws it there.
    if not launched() and not os.environ.get(MEMBER_ENV):
        plot_training_curves(result.run_dir)
    best = f", best {cfg.train.metric} {result.best_metric:.4f}" if result.best_metric is not None else ""
    tokens = f"{result.tokens_per_second:,.0f} tokens/s, " if result.tokens_per_second else ""
    rate = f"{tokens}{result.examples_per_second:,.0f} examples/s"
    total = f"; {time.perf_counter() - started:.0f}s in all" if data_file is not None else ""
    _done(f"{result.steps} steps in {result.seconds:.1f}s ({rate}){best}; run directory {result.run_dir}{total}", quiet)


def _data_file(config: Optional[Path], overrides: Optional[list[str]]) -> Optional[str]:
    """The data file of `textcls train DATA_FILE` (an argument with a data suffix), or of `textcls train --set
    data.train=FILE` without a CONFIG, which must not inherit the demo's data settings; None: a config run."""
    from textcls.data.readers import SUFFIXES

    if config is not None:
        return str(config) if config.suffix.lower() in SUFFIXES else None
    given = [o.split("=", 1)[1].strip() for o in overrides or [] if o.split("=", 1)[0].strip() == "data.train"]
    return given[-1] if given and given[-1] else None


def _data_flags(config: Optional[Path], text_columns, label_column, valid, budget, base) -> list[str]:
    """`--set` assignments for the data flags given with a CONFIG (they set `data.*`, `train.*`, `model.*` keys)."""
    from textcls.errors import ConfigError
    from textcls.recipe import parse_budget

    if config is None and (text_columns or label_column is not None or valid or base):
        raise ConfigError("--text-column, --label-column, --valid and --base describe your data and model, and the "
                          "demo config has its own; pass the data file (`textcls train reviews.csv --label-column "
                          "stars`) or a CONFIG")
    column = lambda c: int(c) if c.isdigit() else c  # noqa: E731
    flags = []
    if text_columns:
        flags.append(f"data.text_columns={json.dumps([column(c) for c in text_columns])}")
    if label_column is not None:
        flags.append(f"data.label_column={json.dumps(column(label_column))}")
    if valid:
        flags.append(f"data.valid={json.dumps(str(valid))}")
    if budget:
        flags.append(f"train.time_budget_seconds={parse_budget(budget)}")
    if base:
        flags.append(f"model.init_from={json.dumps(base)}")
    return flags


def _data_run_config(data_file: str, overrides, output, resume: bool, text_columns, label_column, valid, budget, base,
                     quiet: bool, started: float):
    """`textcls train DATA_FILE`: the automatic recipe's config (printed, one choice a line), or on --resume
    the run's own config.yaml."""
    from textcls.recipe import DEFAULT_BUDGET, parse_budget, plan_data_run

    seconds = parse_budget(budget) if budget else DEFAULT_BUDGET
    if resume and output is not None:
        return _run_config(None, overrides, output, resume)
    plan = plan_data_run(data_file, str(valid) if valid else None, text_columns, label_column, seconds, base,
                         str(output) if output else None, tuple(overrides or []), started)
    if not quiet:
        for line in plan.lines():
            err.print(escape(printable(line)), highlight=False, soft_wrap=True)
    return plan.cfg


@app.command()
@handle_errors
def init(
    data_file: Path = typer.Argument(..., help="A labelled data file: CSV, TSV, JSONL or fastText."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The YAML file to write (default: the data "
                                          "file's name with .yaml, in the current folder)."),
    text_columns: Optional[list[str]] = TextColumnOption,
    label_column: Optional[str] = LabelColumnOption,
    valid: Optional[Path] = ValidOption,
    budget: Optional[str] = BudgetOption,
    base: Optional[str] = BaseOption,
) -> None:
    """Write a complete, commented config for a data file: the automatic recipe's choices and their reasons."""
    from textcls.errors import ConfigError
    from textcls.io import atomic_write_text
    from textcls.recipe import DEFAULT_BUDGET, parse_budget, plan_data_run, render_yaml

    started = time.perf_counter()
    path = output or Path(f"{data_file.stem}.yaml")
    if path.exists():
        raise ConfigError(f"{path} exists; pass another --output, or remove it first")
    seconds = parse_budget(budget) if budget else DEFAULT_BUDGET
    folder = path.resolve().parent  # paths in the YAML are relative to its folder, as load_config reads them
    relative = lambda p: os.path.relpath(Path(p).resolve(), folder) if p else None  # noqa: E731
    plan = plan_data_run(str(data_file), str(valid) if valid else None, text_columns, label_column, seconds, base,
                         None, (), started)
    plan.cfg.data.train, plan.cfg.data.valid = relative(plan.cfg.data.train), relative(plan.cfg.data.valid)
    atomic_write_text(path, render_yaml(plan))
    err.print(f"wrote {path}: train with `textcls train {path}`", highlight=False, markup=False)


def _run_config(config: Optional[Path], overrides: Optional[list[str]], output: Optional[Path], resume: bool,
                command: str = "train"):
    """The config of `train`/`pretrain`: CONFIG (the demo without one) with `--set` applied. With --resume,
    no CONFIG and an --output, the run's own config.yaml; on resume, a change to its plan is refused."""
    from textcls.config import load_config
    from textcls.errors import ConfigError
    from textcls.run.layout import CONFIG, TOKENIZER, is_run_dir
    from textcls.run.prepare import check_resume_config

    if resume and config is None and output is not None:
        if not is_run_dir(output):
            raise ConfigError(f"{output} holds no run to resume (no {CONFIG} and {TOKENIZER}); check --output, "
                              "or pass the CONFIG to start the run")
        config = output / CONFIG
    cfg = load_config(config, overrides or [])
    if resume:
        check_resume_config(cfg, Path(output or cfg.output.dir), command)
    return cfg


@app.command()
@handle_errors
def pretrain(
    config: Optional[Path] = typer.Argument(None, help="YAML config with a `pretrain` section (files, masking, "
                                            "SOP); with --resume and --output it may be left out."),
    overrides: Optional[list[str]] = SetOption,
    output: Optional[Path] = OutputOption,
    resume: bool = ResumeOption,
    quiet: bool = QuietOption,
) -> None:
    """Masked-LM (+ sentence-order) pretraining on unlabelled text; `model.init_from` starts from the result."""
    from textcls.errors import ConfigError
    from textcls.pretrain.loop import pretrain as run_pretraining

    _logging()
    if config is None and not (resume and output):
        raise ConfigError("pass the pretraining CONFIG (or --output RUN --resume to continue a run)")
    cfg = _run_config(config, overrides, output, resume, "pretrain")
    result = run_pretraining(cfg, output, resume=resume, quiet=quiet)
    held_out = " ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    _done(f"{result.steps} steps in {result.seconds:.1f}s ({result.tokens_per_second:,.0f} tokens/s)"
          f"{'; held out: ' + held_out if held_out else ''}; run directory {result.run_dir}", quiet)


@app.command()
@handle_errors
def distill(
    teacher: Path = typer.Argument(..., help="The teacher: a run directory (one model, an ensemble, a fine-tuned "
                                   "pretrained base)."),
    config: Optional[Path] = typer.Argument(None, help="The student's YAML config (default: a small shared encoder "
                                            "chosen from the data by the automatic recipe)."),
    unlabelled: Optional[list[str]] = typer.Option(None, "--unlabelled", help="A file of unlabelled texts the "
                                                   "student learns from the teacher alone (repeatable)."),
    budget: Optional[str] = typer.Option(None, "--budget", help="Time budget: 90s, 10m, 1h (default 10m without a "
                                         "CONFIG); with a CONFIG, the seconds of the training loop."),
    overrides: Optional[list[str]] = SetOption,
    output: Optional[Path] = OutputOption,
    resume: bool = ResumeOption,
    quiet: bool = QuietOption,
) -> None:
    """Distil a trained run into a small student trained on its probabilities; writes an ordinary run directory."""
    from textcls.distill import distill as run_distillation
    from textcls.recipe import parse_budget

    _logging()
    result = run_distillation(teacher, config, overrides or [], output, parse_budget(budget) if budget else None,
                              unlabelled or [], resume=resume, quiet=quiet)
    best = f", best {result.best_metric:.4f}" if result.best_metric is not None else ""
    rows = ", ".join(f"{v:,} {k}" for k, v in result.rows.items())
    _done(f"{result.steps} steps in {result.seconds:.1f}s ({result.examples_per_second:,.0f} examples/s) on {rows} "
          f"rows{best}; run directory {result.run_dir}")


@app.command("eval")
@handle_errors
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by `textcls train`."),
    data_file: str = typer.Argument(..., help="A labelled file (read as the run's training data unless the "
                                    "options below say otherwise)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the metrics as JSON to this file (- for "
                                          "stdout, instead of the tables)."),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    input_format: Optional[str] = typer.Option(None, "--input-format", help="csv|tsv|jsonl|fasttext (default: "
                                               "the run's data.format)."),
    text_columns: Optional[list[str]] = typer.Option(None, "--text-column", help="Text column name or 0-based "
                                                     "index (twice for a pair; default: the run's)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column name or index."),
    header: Optional[bool] = typer.Option(None, "--header/--no-header", help="Whether a CSV/TSV file has a header."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="The file's text encoding (default: the run's)."),
    errors: Optional[Path] = typer.Option(None, "--errors", help="Write every misclassified row (text, gold, "
                                          "predicted, probability), most confident first: .jsonl, .csv or .tsv."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Save the confusion matrix (normalized per true label) "
                                        "as a picture (PNG)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    runtime: str = RuntimeOption,
) -> None:
    """Accuracy, F1, per-class metrics and the confusion matrix on a labelled file."""
    from textcls.errors import ConfigError
    from textcls.evaluation import evaluate_file, print_report, reading_options
    from textcls.export.runtime import check_runtime
    from textcls.plot import check_picture_path, plot_confusion
    from textcls.run.load import load_run

    _logging()
    if plot:
        check_picture_path(plot)
    target = _inference_device(device, precision)
    check_runtime(runtime, target, precision)
    run = load_run(run_dir, device=target)
    if plot and run.cfg.data.task == "multilabel":
        raise ConfigError("--plot draws a confusion matrix, which a multi-label run does not have")
    reading = reading_options(run.cfg.data, input_format, text_columns, label_column, header, encoding)
    result = evaluate_file(run, data_file, str(report) if report else None, batch_size, target, precision, reading,
                           str(errors) if errors else None, quiet=quiet, runtime=runtime)
    if str(report) != "-":
        print_report(result, out)
    if errors:
        err.print(f"wrote the misclassified rows to {errors}", highlight=False, markup=False)
    if plot:
        plot_confusion(result, plot, Path(data_file).name)
        err.print(f"wrote {plot}", highlight=False, markup=False)


@app.command()
@handle_errors
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `textcls train`."),
    input: str = typer.Argument(..., help="Text file (one document per line), CSV/TSV/JSONL, or - for stdin."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Output file (default stdout; .tsv = TSV)."),
    top_k: int = typer.Option(1, "--top-k", "-k", min=1, help="Also list the K most probable labels."),
    output_format: Optional[str] = typer.Option(None, "--format", help="jsonl or tsv (default from --output)."),
    input_format: Optional[str] = typer.Option(None, "--input-format", help="csv|tsv|jsonl|fasttext|txt (default: "
                                               "from the suffix; none = txt)."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="The input's text encoding (default: the run's "
                                           "data.encoding)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    chunk_long: bool = typer.Option(False, "--chunk-long",
                                    help="Average over windows of documents longer than max_length."),
    stride: Optional[int] = typer.Option(None, "--stride", min=1, help="--chunk-long: tokens between window starts "
                                         "(default half a window)."),
    echo: Optional[str] = typer.Option(None, "--echo", help="Start each output row with the input's text, its line "
                                       "number (line), or a column of a CSV/TSV/JSONL input (e.g. id)."),
    stream: bool = typer.Option(False, "--stream", help="Answer each input line as soon as it is read (stdin from a "
                                "pipe that stays open; on by default for a terminal)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output, and no closing `wrote N predictions` "
                               "line."),
    runtime: str = RuntimeOption,
) -> None:
    """Labels and probabilities for each input line or row, in input order."""
    from textcls.errors import ConfigError
    from textcls.export.runtime import check_runtime
    from textcls.predict import predict_file, window_stride
    from textcls.run.load import load_run

    if output_format not in (None, "jsonl", "tsv"):
        raise ConfigError(f"--format must be jsonl or tsv, got {output_format!r}")
    if input_format not in (None, "csv", "tsv", "jsonl", "fasttext", "txt"):
        raise ConfigError(f"--input-format must be one of csv, tsv, jsonl, fasttext, txt; got {input_format!r}")
    if echo is not None and not echo.strip():
        raise ConfigError("--echo needs text, line or a column name")
    stream = stream or (input == "-" and sys.stdin.isatty())
    if stream and output not in (None, "-"):
        raise ConfigError("--stream answers on stdout as the lines come; leave out --output (or redirect stdout)")
    _logging()
    target = _inference_device(device, precision)
    check_runtime(runtime, target, precision)
    run = load_run(run_dir, device=target)
    n = predict_file(run, input, output, top_k, output_format, input_format, batch_size, device=target,
                     precision=precision, window_stride=window_stride(run.cfg.data, chunk_long, stride),
                     encoding=encoding, echo=echo, stream=stream, quiet=quiet, runtime=runtime)
    if output not in (None, "-") and not quiet:
        err.print(f"wrote {n} predictions to {output}", highlight=False, markup=False)


@app.command()
@handle_errors
def serve(
    run_dir: Path = typer.Argument(..., help="A run directory written by `textcls train`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    max_batch: int = typer.Option(64, "--max-batch", help="Texts of concurrent requests predicted together."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="How long a request waits for others to batch with."),
    max_texts: int = typer.Option(1000, "--max-texts", help="Most texts one request may send."),
    max_body: int = typer.Option(1 << 20, "--max-body", help="Largest request body in bytes."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="TEXTCLS_API_KEY", show_envvar=True,
                                          help="Require `Authorization: Bearer KEY` on /predict and /info."),
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    runtime: str = RuntimeOption,
) -> None:
    """An HTTP JSON API (POST /predict, GET /health, /info, /docs) and a page at / for a trained run."""
    from textcls.export.runtime import check_runtime
    from textcls.serve import ServeOptions
    from textcls.serve import serve as serve_run

    _logging()
    options = ServeOptions(max_batch, max_wait_ms, max_texts, max_body, api_key)
    target = _inference_device(device, precision)
    check_runtime(runtime, target, precision)
    serve_run(run_dir, host, port, options, target, precision, runtime=runtime,
              announce=lambda line: err.print(line, highlight=False, markup=False, soft_wrap=True))


@app.command()
@handle_errors
def tune(
    config: Path = typer.Argument(..., help="YAML config, with a `tune:` search space (without one: a default space "
                                  "for the model kind, printed first)."),
    budget: str = typer.Option("30m", "--budget", help="Time budget: 90s, 30m, 2h, 1h30m."),
    metric: str = typer.Option("accuracy", "--metric", help="accuracy | macro_f1 | weighted_f1 | micro_f1 | loss."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="At most this many trials."),
    output: Path = typer.Option(Path("runs/tune"), "--output", "-o",
                                help="Folder for trials, trials.jsonl, best.yaml."),
    overrides: Optional[list[str]] = SetOption,
) -> None:
    """Search the `tune:` space (or a default one) with Optuna (TPE, median pruning) within a time budget."""
    from textcls.config import load_config
    from textcls.tune import Tuner, describe_space, parse_budget, print_trials

    _logging()
    seconds = parse_budget(budget)
    cfg = load_config(config, overrides or [])
    tuner = Tuner(cfg, output, seconds, metric, trials)
    if tuner.default_kind:
        err.print(f"{config} has no `tune:` section: searching the default space for {tuner.default_kind}:",
                  highlight=False, markup=False, soft_wrap=True)
        for line in describe_space(tuner.params):
            err.print(f"  {line}", highlight=False, markup=False)
    tuner.run()
    print_trials(tuner, out)
    best = tuner.write_best()
    err.print(f"trials in {output / 'trials.jsonl'}" + (f"; best config {best} (train it with `textcls train "
              f"{best}`)" if best else "; no trial finished, so no best.yaml"), highlight=False, markup=False)
    if tuner.interrupted:  # a search does not resume: what finished is kept above
        err.print("[yellow]interrupted[/]: the search stopped; start another with a new --output to search on",
                  highlight=False)
        raise typer.Exit(130)


@app.command()
@handle_errors
def info(
    path: Path = typer.Argument(..., help="A YAML config or a run directory."),
    num_labels: Optional[int] = typer.Option(None, "--num-labels", min=2, help="Labels for a config (default: the "
                                             "count in data.label_names, else 2; a run has its own)."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", min=1, help="Length for FLOPs (default data.max_length)."),
) -> None:
    """Unique vs effective parameters, the depth -> unique-layer map, trainable count, FLOPs per token."""
    from textcls.info import model_info, print_info

    print_info(model_info(path, num_labels, seq_len), out)


@app.command("import-hf")
@handle_errors
def import_hf(
    hf_dir: Path = typer.Argument(..., help="Local HF ALBERT/BERT folder: config.json, weights, tokenizer.json."),
    output: Path = typer.Option(..., "--output", "-o", help="The run directory to write."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Read pytorch_model.bin (tensors only)."),
) -> None:
    """Convert a local HuggingFace ALBERT or BERT checkpoint into a textcls run directory."""
    from textcls.run.bases import import_hf as convert

    conv = convert(hf_dir, output, allow_pickle)
    head = "with its classifier" if conv.has_head else "with a fresh head (fine-tune it with model.init_from)"
    err.print(f"[green]imported[/] {escape(f'{hf_dir} into {output} {head}; labels {conv.labels}')}", highlight=False)


@app.command()
@handle_errors
def export(
    run_dir: Path = typer.Argument(..., help="A run directory written by `textcls train`."),
    output: Path = typer.Option(..., "--output", "-o", help="hf: the folder to write; onnx: the .onnx file (the "
                                "tokenizer, labels and textcls_onnx.json go beside it)."),
    fmt: str = typer.Option("hf", "--format", "-f", help="hf (a folder transformers loads) or onnx."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> None:
    """Write a run for other tools: a folder transformers loads (BERT-family classifiers), or ONNX checked with
    onnxruntime."""
    from textcls.errors import ConfigError
    from textcls.run.load import load_run

    _logging()
    if fmt not in ("hf", "onnx"):
        raise ConfigError(f"--format must be hf or onnx, got {fmt!r}")
    run = load_run(run_dir)
    if fmt == "hf":
        from textcls.export.hf import export_hf

        done = export_hf(run, output, overwrite)
        err.print(f"[green]exported[/] {escape(f'{run_dir} to {output} as {done.architecture}')}", highlight=False)
        return
    from textcls.export.onnx import TOLERANCE, export_onnx

    done = export_onnx(run, output, overwrite)
    check = (f"{run_dir} to {output} (inputs {', '.join(done.inputs)}); onnxruntime matches PyTorch on {done.samples} "
             f"{done.source}: largest probability difference {done.max_difference:.1e} (allowed {TOLERANCE:g})")
    err.print(f"[green]exported[/] {escape(check)}", highlight=False)


@app.command()
@handle_errors
def quantize(
    run_dir: Path = typer.Argument(..., help="A run directory written by `textcls train`."),
    output: Path = typer.Option(..., "--output", "-o", help="The int8 run directory to write."),
    data: Optional[str] = typer.Option(None, "--data", help="A labelled file to compare on (default: the run's "
                                       "validation rows)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory at --output."),
) -> None:
    """Int8 weights for CPU inference (dynamic quantization of the Linear layers), as a run directory."""
    from textcls.export.quantize import describe, quantize_run

    _logging()
    report = quantize_run(run_dir, output, data, overwrite)
    for line in describe(report):
        out.print(escape(line), highlight=False)


@app.command()
@handle_errors
def schedule(
    config: Optional[Path] = typer.Argument(None, help="YAML config; none = the demo config."),
    overrides: Optional[list[str]] = SetOption,
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also save the curve as a picture (PNG)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Total steps (skips preparing the data)."),
) -> None:
    """The learning-rate curve the config will produce: a table, optionally a PNG."""
    from textcls.config import load_config
    from textcls.plot import plot_schedule, schedule_summary, schedule_table
    from textcls.train.steps import plan_for_config

    _logging()
    cfg = load_config(config, overrides or [])
    total = steps or plan_for_config(cfg).total_steps
    out.print(schedule_summary(cfg, total), highlight=False)
    out.print(schedule_table(cfg, total))
    if plot:
        plot_schedule(cfg, total, plot)
        err.print(f"wrote {plot}", highlight=False, markup=False)


@app.command("plot")
@handle_errors
def plot_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by `textcls train`."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Picture file (default RUN_DIR/curves.png)."),
) -> None:
    """Training curves of a run (loss, learning rate, the validation metric against the step), and its validation
    confusion matrix and per-class F1."""
    from textcls.plot import plot_run_pictures
    from textcls.run.info import load_run_config
    from textcls.run.layout import CURVES
    from textcls.run.outputs import check_output

    path = output or run_dir / CURVES
    check_output(path, "--output", allowed=(CURVES,))  # a run's own picture, never its weights or config
    written, note = plot_run_pictures(run_dir, path, load_run_config(run_dir))
    err.print(f"wrote {', '.join(map(str, written))}" + (f"; {note}" if note else ""), highlight=False, markup=False)


@app.command()
@handle_errors
def explain(
    run_dir: Path = typer.Argument(..., help="A run directory written by `textcls train`."),
    text_or_file: str = typer.Argument(..., help="A text, or a file of texts (one a line, or a data file's text "
                                       "column), or - for stdin."),
    method: str = typer.Option("ig", "--method", help="ig (integrated gradients) or attention (attention rollout)."),
    label: Optional[str] = typer.Option(None, "--label", help="Explain this label (default: the predicted one)."),
    steps: int = typer.Option(32, "--steps", min=1, help="Integrated gradients: points on the path."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write the explanations as an HTML page."),
    attention: Optional[Path] = typer.Option(None, "--attention", help="Also write the per-layer, per-head "
                                             "attention matrices (.npz or .json)."),
    device: str = DeviceOption,
) -> None:
    """A score per word for how much it pushed the run toward its predicted label."""
    from textcls.explain import (
        attention_records,
        explain_note,
        explain_texts,
        print_explanations,
        read_texts,
        write_attention,
        write_html,
    )
    from textcls.run.load import load_run

    _logging()
    run = load_run(run_dir, device=_inference_device(device, "fp32"))
    texts = read_texts(text_or_file, run.cfg.data)
    explanations = explain_texts(run, texts, method, label, steps, quiet=False)
    note = explain_note(run)
    print_explanations(explanations, method, out, note)
    if html:
        write_html(html, explanations, method, note)
        err.print(f"wrote {html}", highlight=False, markup=False)
    if attention:
        write_attention(attention, attention_records(run, texts))
        err.print(f"wrote {attention}", highlight=False, markup=False)


@app.command()
def version() -> None:
    """Print the textcls version."""
    out.print(__version__)


@app.callback(invoke_without_command=True)
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an internal error.",
                               envvar="TEXTCLS_DEBUG"),
    show_version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    """Train, evaluate and use text classifiers."""
    if show_version:
        out.print(__version__)
        raise typer.Exit(0)
    if debug:
        os.environ["TEXTCLS_DEBUG"] = "1"


MEMBER_ENV = "TEXTCLS_ENSEMBLE_MEMBER"  # set by textcls.train.ensemble in its member processes


def _interrupt_on_signals() -> None:
    """From process start, SIGTERM and SIGHUP stop textcls as Ctrl-C does: a KeyboardInterrupt, so every
    `finally` and temp-file cleanup runs (atomic writes, the tokenized cache's temp folder) and the command
    exits 130. The training loop replaces these with its flag, which saves `last/` first. A signal that was
    ignored when textcls started (`nohup`) stays ignored. An ensemble's member process (MEMBER_ENV set) keeps
    the default until its training loop takes over: the ensemble stops it with SIGTERM, and a member stopped
    before its loop has saved nothing to clean up, while an exception raised in the middle of its imports
    could surface as some other error."""
    if os.environ.get(MEMBER_ENV):
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None or signal.getsignal(sig) == signal.SIG_IGN:
            continue
        try:
            signal.signal(sig, interrupt)
        except (ValueError, OSError):  # not the main thread
            pass


def main() -> None:
    _interrupt_on_signals()
    try:
        app()
    except KeyboardInterrupt:  # a signal before a command's own handling started: nothing was written yet
        sys.exit(130)


if __name__ == "__main__":
    main()
