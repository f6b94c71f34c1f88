"""Devices and torchrun: one process per GPU (or CPU process with gloo).

Under ``torchrun`` the environment carries RANK / WORLD_SIZE / LOCAL_RANK; the
runner then joins the process group (nccl on CUDA, gloo on CPU), wraps the model
in DistributedDataParallel and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class DistInfo:
    """Where this process runs and who it is among the job's processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``cpu`` / ``cuda`` / ``auto`` -> a torch device; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU")
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    if name != "cpu":
        raise ValueError(f"unknown device {name!r}; expected cpu, cuda or auto")
    return torch.device("cpu")


def setup(device: str) -> DistInfo:
    """Read the torchrun environment, pick the device and join the process group."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    info = DistInfo(rank, world, local_rank, dev)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        info.initialised_here = True
    return info


def any_flag(flag: bool, info: DistInfo) -> bool:
    """True when any rank raised ``flag`` (so every rank stops at the same step)."""
    if not info.distributed:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.initialised_here:
        import torch.distributed as dist

        dist.destroy_process_group()


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` when distributed (unused parameters
    allowed: stages freeze parts of a model and some heads skip some batches)."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
