"""CUDA paths: bf16 autocast, channels_last, torch.compile, NCCL DDP, class maps on the GPU,
and a whole (tiny) training run. Marked ``cuda``; every test skips without a CUDA device.
``pytest -m cuda tests/test_cuda.py`` is part (a) of scripts/gpu_check.py."""
from __future__ import annotations

import pytest
import torch

from facnn import attribution as A
from facnn import preset
from facnn.models import model_from_config

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def small(model: str = "fa-pool", **kw):
    return preset("smoke", "cifar10", model, **kw)      # N=4, K=20, 32x32


def batch(n: int = 8, classes: int = 10, device="cuda"):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g).to(device), (torch.arange(n) % classes).to(device)


def sgd_step(model, x, y, bf16: bool) -> float:
    from facnn.train import _autocast, make_optimizer
    opt = make_optimizer(model, preset("smoke", "cifar10", "fa-pool"))
    with _autocast(x.device, bf16):
        scores = model(x)
    loss = model.loss(scores, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss)


@pytest.mark.parametrize("model", ["fa-pool", "fa-linear", "vanilla", "resnet18"])
def test_bf16_autocast_step(model):
    torch.manual_seed(0)
    net = model_from_config(small(model)).cuda().train()
    before = [p.detach().clone() for p in net.parameters()]
    x, y = batch()
    loss = sgd_step(net, x, y, bf16=True)
    assert torch.isfinite(torch.tensor(loss))
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_channels_last_matches_contiguous():
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    net = model_from_config(small()).cuda().eval()
    x, _ = batch()
    ref = net(x)
    net_cl = net.to(memory_format=torch.channels_last)
    out = net_cl(x.contiguous(memory_format=torch.channels_last))
    convs = [p for p in net_cl.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5), float((out - ref).abs().max())


def test_compiled_step_matches_eager():
    torch.manual_seed(0)
    eager = model_from_config(small()).cuda().train()
    torch.manual_seed(0)
    compiled = model_from_config(small()).cuda().train()
    compiled.compile()
    x, y = batch()
    losses = [(sgd_step(eager, x, y, True), sgd_step(compiled, x, y, True)) for _ in range(2)]
    for a, b in losses:
        assert abs(a - b) <= 0.05 * abs(a) + 1e-3, losses


def test_ddp_nccl_world_size_one(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    if not dist.is_nccl_available():
        pytest.skip("this torch has no NCCL")
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = model_from_config(small()).cuda().train()
        net = DDP(model, device_ids=[0])
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x, y = batch()
        with torch.autocast("cuda", torch.bfloat16):
            scores = net(x)
        loss = model.loss(scores, y)
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        t = torch.ones(1, device="cuda")
        dist.all_reduce(t)
        assert float(t) == 1.0
    finally:
        dist.destroy_process_group()


def test_class_maps_gpu_equal_cpu():
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = model_from_config(small()).eval()
    x, _ = batch(device="cpu")
    cpu = A.class_maps(model, x)
    gpu = A.class_maps(model.cuda(), x.cuda()).cpu()
    scale = float(cpu.abs().max())
    assert gpu.shape == cpu.shape
    assert torch.allclose(gpu, cpu, rtol=1e-4, atol=1e-5 * scale), float((gpu - cpu).abs().max())


def test_train_one_epoch_on_cuda(tmp_path):
    from facnn.checkpoint import load_checkpoint
    from facnn.train import run_dir, train
    cfg = preset("smoke", "shapes", "fa-pool", epochs=1, shapes_train=200, shapes_test=50,
                 out_dir=str(tmp_path), progress=False, device="cuda")
    s = train(cfg)
    assert s["device"].startswith("cuda") and s["precision"] == "bf16" and s["epochs"] == 1
    ckpt = load_checkpoint(run_dir(cfg) / "checkpoint.pt", cfg)
    assert ckpt["rng_cuda"] is not None
