"""Work spread over processes under ``torchrun``: one code path for one CPU, one GPU or many.

Under ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK...) the process group is
started here, at the beginning of a run and never at import: NCCL on GPUs, gloo on CPUs.
Without it the run is a world of one and nothing distributed happens. Training (data
parallel), sharded embedding and bulk enrolment all join the group through :func:`start`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from faceverify.device import resolve_device


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's value, on every rank."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's value, in rank order, on every rank (``[value]`` in a world of one)."""
        if not self.active:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def share(self, count: int) -> range:
        """The positions of ``count`` items this rank works on: every ``world_size``-th one
        from ``rank`` on, so ranks get equal shares of work sorted by name or size."""
        return range(self.rank, count, self.world_size)

    def mean(self, value: float) -> float:
        if not self.active:
            return value
        tensor = torch.tensor(
            [value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu"
        )
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def start(device: str) -> Distributed:
    """Join the process group when launched by torchrun; otherwise a world of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(rank=0, world_size=1, device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return Distributed(rank=rank, world_size=world_size, device=chosen)
