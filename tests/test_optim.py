import pytest
import torch

from retain.models.device import autocast
from retain.train.optim import Muon, orthogonalize


def _steps(opt_cls, dtype, **kw):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(24, 40))
    opt = opt_cls([w], **kw)
    for i in range(3):
        torch.manual_seed(i + 1)
        w.grad = torch.randn(24, 40)
        opt.step()
    return w.detach().clone()


def test_muon_in_bf16_equals_torch_muon_bit_for_bit():
    ours = _steps(Muon, torch.bfloat16, lr=0.02, weight_decay=0.1)
    theirs = _steps(torch.optim.Muon, torch.bfloat16, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("shape", [(16, 48), (48, 16)])
def test_orthogonalize_in_fp32_flattens_the_spectrum(shape):
    g = torch.randn(*shape) @ torch.diag(torch.logspace(0, 2, shape[1]))  # condition number ~100
    s = torch.linalg.svdvals(orthogonalize(g, dtype=torch.float32))
    assert s.min() > 0.5 and s.max() < 1.3  # Muon's iteration lands singular values in ~[0.7, 1.2], not at 1
    assert orthogonalize(g, dtype=torch.float32).dtype == torch.float32


def test_autocast_is_bf16_only_where_the_hardware_has_it_and_the_run_allows(monkeypatch):
    from retain.models import device as precision

    x = torch.randn(4, 4)
    precision.set_precision("auto")
    monkeypatch.setattr(precision, "bf16_is_native", lambda device: False)
    with autocast("cpu"):
        assert (x @ x).dtype == torch.float32
    monkeypatch.setattr(precision, "bf16_is_native", lambda device: True)
    with autocast("cpu"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast("cpu", enabled=False):
        assert (x @ x).dtype == torch.float32
    precision.set_precision("fp32")
    with precision.autocast("cpu"):
        assert (x @ x).dtype == torch.float32
