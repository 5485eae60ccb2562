"""Errors a user can fix. The CLI prints them as one paragraph and exits with code 2."""

import contextlib
import re
from typing import Iterator

# Characters that move the cursor, recolour or retitle a terminal, or reorder what it shows (ESC sequences,
# carriage returns, C1 controls, bidi overrides): escaped in anything textcls prints that may come from data.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with control characters shown as escapes (ESC as \\x1b), so that labels, texts and file names
    from a data file cannot drive the terminal; newlines and tabs stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


# torch's advice for a refused pickle ("Re-running `torch.load` with `weights_only` set to `False` will likely
# succeed, but it can result in arbitrary code execution...") must never reach a user as textcls's advice.
_PICKLE_ADVICE = re.compile(r"`weights_only|weights_only`?\s*(=|set to|to)\s*`?False|can still be loaded|if you trust|"
                            r"trusted source|"
                            r"safe_globals|allowlist", re.IGNORECASE)


def scrub(message: str) -> str:
    """`message` without the sentences of torch's advice on loading a pickle (weights_only=False, safe globals)."""
    if not _PICKLE_ADVICE.search(message):
        return message
    sentences = re.split(r"(?<=[.!?])\s+", message)
    kept = [x for x in sentences if not _PICKLE_ADVICE.search(x)]
    return " ".join([*kept, "(textcls loads tensors only and never unpickles)"])


class TextclsError(Exception):
    """Base class: a problem with the user's input, not a bug in textcls."""


class ConfigError(TextclsError):
    """A config file or `--set` override is invalid."""


class DataError(TextclsError):
    """A data file is missing, unreadable or malformed."""


class CheckpointError(TextclsError):
    """A run directory or checkpoint is missing, incompatible or corrupted."""


class DivergedError(TextclsError):
    """Training produced a non-finite loss or weights (a learning rate too high, most often)."""


@contextlib.contextmanager
def data_error_hint(hint: str) -> Iterator[None]:
    """Re-raise a DataError from the body with `hint` appended, e.g. the command's options that change how
    a file is read (the reader's own message names the run's config keys)."""
    try:
        yield
    except DataError as exc:
        raise DataError(f"{exc} ({hint})") from None
