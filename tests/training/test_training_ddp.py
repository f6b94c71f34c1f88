"""DistributedDataParallel on CPU: 2 processes, gloo. Ranks see different data and
end with identical weights; only rank 0 writes progress and checkpoints."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from wsseg_toymethod import TOY

from napari_wsseg.training.progress import read_progress

HERE = str(Path(__file__).resolve().parent)


def _worker(rank: int, world: int, port: int, spec: dict, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    from napari_wsseg.training.runner import train
    from napari_wsseg.training.spec import JobSpec

    seen: list = []
    result = train(JobSpec(**spec), on_batch=lambda si, idx: seen.append([si, list(idx)]))
    torch.save(result.model.state_dict(), Path(out) / f"weights{rank}.pt")
    (Path(out) / f"seen{rank}.json").write_text(json.dumps(seen))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_training_ddp_gloo_two_ranks(toy_snapshot, tmp_path):
    spec = dict(
        method=TOY,
        out=str(tmp_path / "run"),
        snapshot=str(toy_snapshot),
        study=str(tmp_path / "study"),
        config={"steps": [6, 3]},
        checkpoint_every=2,
    )
    mp.start_processes(
        _worker,
        args=(2, _free_port(), spec, str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="spawn",
    )
    seen = [json.loads((tmp_path / f"seen{r}.json").read_text()) for r in range(2)]
    # stage 0, epoch 0: 16 items -> 8 per rank, batch 4 -> 2 steps; disjoint halves
    first_epoch = [{i for si, idx in s[:2] for i in idx} for s in seen]
    assert first_epoch[0].isdisjoint(first_epoch[1])
    assert first_epoch[0] | first_epoch[1] == set(range(16))
    w0 = torch.load(tmp_path / "weights0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "weights1.pt", weights_only=True)
    for key in w0:
        torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=1e-6)
    events = read_progress(tmp_path / "run")
    assert sum(e["event"] == "start" for e in events) == 1
    assert [e for e in events if e["event"] == "start"][0]["world_size"] == 2
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 10))
    done = [e for e in events if e["event"] == "done"]
    assert len(done) == 1 and Path(done[0]["version_dir"]).is_dir()
