"""Data-parallel training under `torchrun`: process group, sharding, rank-0 writes, reductions.

Launched by `torchrun`, every process sees WORLD_SIZE/RANK/LOCAL_RANK in its environment; `setup`
then joins the process group (gloo on CPU, nccl on CUDA with device cuda:LOCAL_RANK). Without those
variables nothing is initialized and every helper here is the identity, so a single-process run
takes exactly the code path it always took.

How the data is split. The sampler is the single-process one (batches of `batch_size`, order a pure
function of (seed, epoch)) and every rank builds the same list. Consecutive groups of `world_size`
batches form one micro-step; rank r takes the r-th batch of each group, so no example is seen twice
in an epoch. Each rank's loss is its batch mean / grad_accum and DDP averages the gradients over the
ranks, so an optimizer step applies exactly the gradient of a single-process run with
`grad_accum * world_size` (global batch = batch_size x world_size x grad_accum). When the last group
of an epoch is short, a rank without a batch runs a one-example stand-in with its loss multiplied by
0: it joins the all-reduce with a zero gradient, as the missing micro-batch contributes nothing in
the single-process run either.

The loop position (epoch, position in sampler batches, step) is therefore independent of the world
size. `last/state.json` also records `batches_per_step` (world_size x grad_accum); a resume with
another world size keeps that global batch by recomputing grad_accum (`grad_accum_on_resume`).

Equality with a single-process run is exact without dropout (the test checks it). With dropout the
ranks draw their own masks, so the runs agree in distribution, not bit for bit; `last/` stores rank
0's RNG state, which every rank restores on resume.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from tokenizers import Tokenizer

from textcls.data.batching import Batch, BucketSampler, collate
from textcls.data.segment import with_segmenter
from textcls.errors import CheckpointError, ConfigError
from textcls.io import recover_dir
from textcls.run.layout import STATE
from textcls.run.store import read_state

if TYPE_CHECKING:
    import datasets

T = TypeVar("T")

# --------------------------------------------------------------------------- process group


def launched() -> bool:
    """True when started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_main() -> bool:
    """Only rank 0 writes files, logs and draws the progress bar."""
    return rank() == 0


def setup(device: torch.device, timeout_minutes: float = 30) -> torch.device:
    """Join the torchrun process group if launched by torchrun; returns the device this rank uses.

    CUDA: nccl on cuda:LOCAL_RANK (the device index in the config is ignored); CPU: gloo.
    Idempotent; without torchrun it returns `device` untouched.
    """
    if not launched():
        return device
    if device.type == "cuda":
        index, visible = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if index >= visible:
            raise ConfigError(f"torchrun started more processes on this node than the {visible} visible GPU(s); "
                              f"use --nproc_per_node {visible} (or fewer), or --set train.device=cpu")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    if not active():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes), **kwargs)
        atexit.register(cleanup)
    return device


def cleanup() -> None:
    if active():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Tensors given to collectives live here: the rank's GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# --------------------------------------------------------------------------- collectives


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the body on rank 0 first, then on each node's local rank 0, then on everyone else.

    For work that fills a cache (tokenization, the Arrow files) or repairs files: rank 0 does it,
    the others find it done. The middle phase covers multi-node runs whose cache is node-local. An
    exception inside the body leaves the other ranks waiting; torchrun then stops them.
    """
    if not active():
        yield
        return
    phase = 0 if rank() == 0 else 1 if local_rank() == 0 else 2
    for current in range(3):
        if current == phase:
            yield
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (picklable objects only: use for small, trusted values)."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list:
    """Every rank's `obj`, in rank order, on every rank (a collective: call it on all ranks)."""
    if not active():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_sum(array: np.ndarray) -> np.ndarray:
    """Element-wise sum over ranks of a numpy array (same shape on every rank)."""
    if not active():
        return array
    t = torch.from_numpy(np.ascontiguousarray(array)).to(_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def any_true(flag: bool) -> bool:
    """True on every rank when `flag` is true on any rank (e.g. a SIGTERM seen by one process)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean(value: float) -> float:
    """The mean of a scalar over ranks (for logging, e.g. the training loss)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / world_size()


# --------------------------------------------------------------------------- model


def wrap_model(model: torch.nn.Module, device: torch.device, **ddp_kwargs) -> torch.nn.Module:
    """DistributedDataParallel around `model` when distributed, else `model` itself.

    Train through the returned module; save, evaluate and clip through the plain one (same
    parameters, no `module.` key prefix). DDP broadcasts rank 0's initial weights at construction.
    """
    if not active():
        return model
    # Buffers are constants (no running statistics), so they are not synced on each forward. The
    # keyword is `forward_sync_buffers` from torch 2.13 (`broadcast_buffers`, deprecated there, before).
    if "forward_sync_buffers" in inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters:
        ddp_kwargs.setdefault("forward_sync_buffers", False)
    else:
        ddp_kwargs.setdefault("broadcast_buffers", False)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, **ddp_kwargs)


def sync_gradients(model: torch.nn.Module, sync: bool):
    """Context for a micro-batch's forward + backward: all-reduce only on the last before a step."""
    if sync or not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


# --------------------------------------------------------------------------- data


@dataclass
class MicroBatch:
    batch: Batch  # this rank's batch, or a one-example stand-in when it has none
    active: bool  # False for the stand-in: multiply its loss by 0
    consumed: int  # sampler batches this micro-step covers, all ranks together
    examples: int  # examples in those batches, all ranks together
    tokens: int = 0  # their tokens (padding excluded), all ranks together


def shard(batches: list[np.ndarray], start: int = 0, at_rank: Optional[int] = None,
          world: Optional[int] = None) -> Iterator[tuple[np.ndarray, bool, int, int]]:
    """This rank's share of `batches[start:]`: (indices, active, consumed, examples) per micro-step.

    Rank r takes batch `start + k * world + r`; see the module docstring for the short last group.
    """
    r = rank() if at_rank is None else at_rank
    w = world_size() if world is None else world
    for first in range(start, len(batches), w):
        group = batches[first:first + w]
        own = r < len(group)
        yield (group[r] if own else group[0][:1]), own, len(group), sum(len(b) for b in group)


def shard_batches(ds: datasets.Dataset, sampler: BucketSampler, num_labels: int, epoch: int = 0,
                  start: int = 0, pad_id: int = 0, multiple_of: Optional[int] = None) -> Iterator[MicroBatch]:
    """Like `iter_batches`, but yields this rank's micro-batches; `start` counts sampler batches."""
    batches, first = sampler.batches(epoch), start
    for indices, own, consumed, examples in shard(batches, start):
        tokens = int(sum(sampler.lengths[b].sum() for b in batches[first:first + consumed]))
        first += consumed
        yield MicroBatch(collate(ds, indices, num_labels, pad_id, multiple_of), own, consumed, examples, tokens)


def eval_shard(batches: list[np.ndarray]) -> list[np.ndarray]:
    """This rank's evaluation batches (round-robin over the length-sorted list); pair with `all_sum`."""
    return batches[rank()::world_size()]


def prepare_once(prepare: Callable[[Optional[Tokenizer]], T], tokenizer: Optional[Tokenizer] = None) -> T:
    """`prepare(tokenizer)` (tokenize, fill the Arrow cache) on rank 0 first, then on the others.

    The others receive rank 0's tokenizer, so a tokenizer trained on rank 0 is the one every rank
    uses even when another node has its own cache; they then find the tokenized splits cached
    (`main_first` order). `prepare` must return an object with a `.tokenizer`.
    """
    if not active():
        return prepare(tokenizer)
    result = prepare(tokenizer) if is_main() else None
    tok_json = broadcast_object(result.tokenizer.to_str() if is_main() else None)
    with main_first():
        if not is_main():
            result = prepare(with_segmenter(Tokenizer.from_str(tok_json)))
    return result


# --------------------------------------------------------------------------- resume


def grad_accum_on_resume(last_dir: Path, grad_accum: int) -> int:
    """grad_accum that keeps the checkpoint's global batch at this run's world size.

    `state.json` records `batches_per_step` = world_size x grad_accum of the run that wrote it
    (absent in single-process checkpoints of older versions: then it is `grad_accum`).
    """
    with main_first():  # rank 0 repairs an interrupted swap before anyone reads
        last_dir = recover_dir(last_dir)
    state_file = last_dir / STATE
    if not state_file.exists():
        return grad_accum  # load_checkpoint reports the missing checkpoint
    saved = read_state(last_dir)  # a damaged state.json is refused here, naming the key
    per_step = int(saved.get("batches_per_step", grad_accum))
    w = world_size()
    if per_step % w:
        fits = [n for n in range(1, per_step + 1) if per_step % n == 0]
        raise CheckpointError(
            f"{last_dir} was trained with a global batch of {per_step} micro-batches per optimizer step "
            f"(world size x train.grad_accum), which {w} processes cannot split evenly; resume with "
            f"--nproc_per_node x --nnodes in {fits}"
        )
    return per_step // w


def layout_state(grad_accum: int) -> dict:
    """Keys stored in the loop state so that a resume can keep the global batch."""
    return {"batches_per_step": grad_accum * world_size(), "world_size": world_size()}

