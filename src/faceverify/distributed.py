"""Work spread over processes under ``torchrun``: one code path for one CPU, one GPU or many.

Under ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK...) the process group is
started here, at the beginning of a run and never at import: NCCL on GPUs, gloo on CPUs.
Without it the run is a world of one and nothing distributed happens. Training (data
parallel), sharded embedding and bulk enrolment all join the group through :func:`start`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run; a world of one needs no PyTorch
    (the base install embeds and enrols that way)."""

    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's value, on every rank."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's value, in rank order, on every rank (``[value]`` in a world of one)."""
        if not self.active:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def share(self, count: int) -> range:
        """The positions of ``count`` items this rank works on: every ``world_size``-th one
        from ``rank`` on, so ranks get equal shares of work sorted by name or size."""
        return range(self.rank, count, self.world_size)

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


@dataclass(frozen=True)
class Distributed(World):
    """A :class:`World` that computes with PyTorch on ``device`` (training)."""

    device: torch.device | None = None

    @property
    def torch_device(self) -> torch.device:
        assert self.device is not None, "start() sets the device"
        return self.device

    def mean(self, value: float) -> float:
        if not self.active:
            return value
        import torch
        import torch.distributed as dist

        device = self.torch_device if self.torch_device.type == "cuda" else "cpu"
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size


def world(device: str) -> World:
    """The processes of a job that needs no device of its own (embedding and enrolment
    shards): a world of one without torchrun, else :func:`start`'s."""
    return start(device) if launched_by_torchrun() else World()


def start(device: str) -> Distributed:
    """Join the process group when launched by torchrun; otherwise a world of one."""
    import torch
    import torch.distributed as dist

    from faceverify.device import resolve_device

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
