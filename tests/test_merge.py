"""retain.merge against closed forms, mergekit's SLERP formula, a hand-made TIES example, and `retain merge`
end to end on PEFT adapters and checkpoints of a tiny model."""

import json
import math

import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from retain.cli.main import main
from retain.merge import lora as L
from retain.merge import ops
from retain.merge.io import read_model_dir
from retain.merge.warp import EMAAnchor, anchored_reward, warp_merge


def mergekit_slerp(t, v0, v1, dot_threshold=0.9995, eps=1e-8):
    """mergekit's SLERP as its merge method writes it (normalised copies for the angle, unnormalised
    endpoints in the result), in numpy: the reference, written out here from the formula."""
    c0, c1 = v0.copy(), v1.copy()
    n0, n1 = v0 / max(np.linalg.norm(v0), eps), v1 / max(np.linalg.norm(v1), eps)
    dot = np.sum(n0 * n1)
    if np.abs(dot) > dot_threshold:
        return (1 - t) * c0 + t * c1
    theta_0 = np.arccos(dot)
    theta_t = theta_0 * t
    s0 = np.sin(theta_0 - theta_t) / np.sin(theta_0)
    s1 = np.sin(theta_t) / np.sin(theta_0)
    return s0 * c0 + s1 * c1


def test_slerp_endpoints_norm_and_fallback():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert torch.allclose(ops.slerp(a, b, 0.0), a, atol=1e-6)
    assert torch.allclose(ops.slerp(a, b, 1.0), b, atol=1e-6)
    # equal norms stay on the sphere for every t; lerp cuts inside it
    b = b / b.norm() * a.norm()
    for t in (0.1, 0.3, 0.5, 0.9):
        assert ops.slerp(a, b, t).norm() == pytest.approx(float(a.norm()), rel=1e-5)
    assert ops.lerp(a, b, 0.5).norm() < 0.95 * a.norm()
    # orthogonal unit vectors: the midpoint is (a + b) / sqrt(2)
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(ops.slerp(e1, e2, 0.5), (e1 + e2) / math.sqrt(2))
    # nearly colinear (and zero) tensors fall back to lerp instead of dividing by sin(omega) ~ 0
    c = 2 * a + 1e-6 * torch.randn(5, 7, generator=g)
    assert torch.equal(ops.slerp(a, c, 0.3), ops.lerp(a, c, 0.3))
    assert torch.equal(ops.slerp(a, torch.zeros_like(a), 0.3), ops.lerp(a, torch.zeros_like(a), 0.3))


@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_slerp_matches_mergekit_formula(t):
    rng = np.random.default_rng(1)
    for shape in [(16,), (8, 12), (3, 4, 5)]:
        v0, v1 = rng.normal(size=shape), rng.normal(size=shape) * 3
        ours = ops.slerp(torch.tensor(v0), torch.tensor(v1), t).numpy()
        np.testing.assert_allclose(ours, mergekit_slerp(t, v0, v1), rtol=1e-10, atol=1e-12)


def test_slerp_many_iterates_with_weight_one_over_m():
    g = torch.Generator().manual_seed(2)
    d = [torch.randn(10, generator=g) for _ in range(3)]
    assert torch.allclose(ops.slerp_many(d[:2]), ops.slerp(d[0], d[1], 0.5))
    expected = ops.slerp(ops.slerp(d[0], d[1], 0.5), d[2], 1 / 3)
    assert torch.allclose(ops.slerp_many(d), expected)
    # small angles: the SLERP of M vectors is their mean
    base = torch.randn(10, generator=g)
    near = [base + 1e-4 * torch.randn(10, generator=g) for _ in range(4)]
    assert torch.allclose(ops.slerp_many(near), torch.stack(near).mean(0), atol=1e-6)


def test_ties_hand_example():
    d1 = torch.tensor([3.0, -1.0, 0.5, 0.0, -2.0])
    d2 = torch.tensor([1.0, 2.0, -0.4, 0.0, -4.0])
    d3 = torch.tensor([-0.5, 3.0, 0.2, 0.0, 1.0])
    # no trimming: elected signs +, +, +, 0, - ; disjoint means over agreeing non-zeros
    got = ops.ties([d1, d2, d3], density=1.0)
    assert torch.allclose(got, torch.tensor([2.0, 2.5, 0.35, 0.0, -3.0]))
    # density 0.4 keeps 2 of 5 per vector: d1 -> [3,0,0,0,-2], d2 -> [0,2,0,0,-4], d3 -> [0,3,0,0,1]
    got = ops.ties([d1, d2, d3], density=0.4)
    assert torch.allclose(got, torch.tensor([3.0, 2.5, 0.0, 0.0, -3.0]))
    # weights enter the election and the mean: w=(1, 1, 10) makes the last entry's sign +
    got = ops.ties([d1, d2, d3], density=0.4, weights=[1.0, 1.0, 10.0])
    assert torch.allclose(got[4], torch.tensor(1.0))
    assert torch.allclose(ops.trim(d1, 0.4), torch.tensor([3.0, 0.0, 0.0, 0.0, -2.0]))


def test_ema_after_k_steps_is_the_closed_form():
    g = torch.Generator().manual_seed(3)
    mu0, beta, k = torch.randn(6, generator=g), 0.2, 7
    thetas = [torch.randn(6, generator=g) for _ in range(k)]
    mu = mu0
    for th in thetas:
        mu = ops.ema(mu, th, beta)
    closed = (1 - beta) ** k * mu0 + sum(beta * (1 - beta) ** (k - i) * th for i, th in enumerate(thetas, 1))
    assert torch.allclose(mu, closed, atol=1e-6)
    # the anchor does the same to a module's parameters
    lin = torch.nn.Linear(3, 2)
    start = {n: p.detach().clone() for n, p in lin.named_parameters()}
    anchor = EMAAnchor(lin.named_parameters(), rate=beta)
    with torch.no_grad():
        lin.weight.add_(1.0)
    for _ in range(k):
        anchor.update(lin.named_parameters())
    target = start["weight"] + 1.0
    assert torch.allclose(anchor.state["weight"], target + (1 - beta) ** k * (start["weight"] - target), atol=1e-6)


def test_liti_task_arithmetic_and_warp_merge():
    g = torch.Generator().manual_seed(4)
    init = {"w": torch.randn(4, 4, generator=g), "b": torch.randn(4, generator=g)}
    p1 = {k: v + torch.randn(v.shape, generator=g) for k, v in init.items()}
    p2 = {k: v + torch.randn(v.shape, generator=g) for k, v in init.items()}
    d1, d2 = ops.task_vectors([p1, p2], init)
    assert torch.allclose(ops.liti(init["w"], p1["w"], 0.3), init["w"] + 0.3 * d1["w"])
    assert torch.allclose(ops.task_arithmetic([d1["w"], d2["w"]], [0.5, 2.0]), 0.5 * d1["w"] + 2 * d2["w"])
    nxt = warp_merge(init, [p1, p2], eta=0.3)
    for k in init:
        assert torch.allclose(nxt[k], init[k] + 0.3 * ops.slerp(d1[k], d2[k], 0.5), atol=1e-6)
    assert all(torch.allclose(v, init[k]) for k, v in warp_merge(init, [p1, p2], eta=0.0).items())
    r = anchored_reward(torch.tensor([1.0]), torch.tensor([-2.0]), torch.tensor([-3.0]), beta=0.1)
    assert torch.allclose(r, torch.tensor([0.9]))


def test_lora_products_and_truncated_svd():
    g = torch.Generator().manual_seed(5)
    cfg = {"lora_alpha": 16, "r": 4}
    state = {"m.lora_A.weight": torch.randn(4, 12, generator=g), "m.lora_B.weight": torch.randn(10, 4, generator=g)}
    delta = L.products(state, cfg)["m"]
    assert torch.allclose(delta, 4.0 * state["m.lora_B.weight"] @ state["m.lora_A.weight"])
    same, err = L.factor({"m": delta}, 4, cfg)  # rank 4 holds a rank-4 product exactly
    assert err["m"] < 1e-5 and torch.allclose(L.products(same, cfg)["m"], delta, atol=1e-4)
    low, err = L.factor({"m": delta}, 2, cfg)
    approx = L.products(low, cfg)["m"]
    assert low["m.lora_A.weight"].shape == (2, 12) and low["m.lora_B.weight"].shape == (10, 2)
    assert err["m"] == pytest.approx(float((delta - approx).norm() / delta.norm()), rel=1e-4)
    assert 0 < err["m"] < 1


# --- retain merge end to end --------------------------------------------------------------------------------


def tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64,
                      architectures=["LlamaForCausalLM"])  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def save_adapter(base, path, seed, targets=("q_proj", "v_proj")):
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=list(targets)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    model.save_pretrained(path)
    return model.unload()


def test_merge_cli_adapters_load_with_peft(tmp_path, capsys):
    base = tiny_model()
    base.save_pretrained(tmp_path / "base")
    base = save_adapter(base, tmp_path / "a", 1)
    base = save_adapter(base, tmp_path / "b", 2)
    code = main(["merge", "--method", "task_arithmetic", "--inputs", f"{tmp_path / 'a'},{tmp_path / 'b'}",
                 "--rank", "4", "--out", str(tmp_path / "sum")])  # fmt: skip
    assert code == 0 and "truncated-SVD error" in capsys.readouterr().out
    # the merged adapter is the sum of the products: compare with the weights W + d_a + d_b directly
    deltas = [L.products(*reversed(L.read_adapter(tmp_path / p))) for p in ("a", "b")]
    ref = tiny_model()
    with torch.no_grad():
        for n, mod in ref.named_modules():
            key = f"base_model.model.{n}"
            if key in deltas[0]:
                mod.weight += deltas[0][key] + deltas[1][key]
    x = torch.randint(0, 48, (2, 9))
    merged = PeftModel.from_pretrained(tiny_model(), tmp_path / "sum").eval()
    with torch.no_grad():
        assert torch.allclose(merged(x).logits, ref(x).logits, atol=1e-4)
    record = json.loads((tmp_path / "sum" / "merge.json").read_text())
    assert record["rank"] == 4 and record["svd_error_max"] < 1e-4
    # at the inputs' rank the sum no longer fits: the error is reported, and the adapter still loads
    assert main(["merge", "--method", "slerp", "--inputs", f"{tmp_path / 'a'},{tmp_path / 'b'}",
                 "--out", str(tmp_path / "slerp")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "slerp" / "merge.json").read_text())["svd_error_max"] > 1e-3
    PeftModel.from_pretrained(tiny_model(), tmp_path / "slerp")


def test_merge_cli_checkpoints(tmp_path):
    init = tiny_model(0)
    init.save_pretrained(tmp_path / "init")
    for i in (1, 2):
        m = tiny_model(0)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.01 * i * torch.randn_like(p))
        m.save_pretrained(tmp_path / f"m{i}")
    inputs = f"{tmp_path / 'm1'},{tmp_path / 'm2'}"
    assert main(["merge", "--method", "ties", "--inputs", inputs, "--base", str(tmp_path / "init"),
                 "--density", "0.5", "--out", str(tmp_path / "ties")]) == 0  # fmt: skip
    th = [read_model_dir(tmp_path / p) for p in ("init", "m1", "m2", "ties")]
    k = "model.layers.0.mlp.up_proj.weight"
    expected = th[0][k] + ops.ties([th[1][k] - th[0][k], th[2][k] - th[0][k]], 0.5)
    assert torch.allclose(th[3][k], expected, atol=1e-6)
    assert main(["merge", "--method", "liti", "--inputs", str(tmp_path / "ties"), "--base", str(tmp_path / "init"),
                 "--eta", "0.25", "--out", str(tmp_path / "liti")]) == 0  # fmt: skip
    liti = LlamaForCausalLM.from_pretrained(tmp_path / "liti").state_dict()
    assert torch.allclose(liti[k], th[0][k] + 0.25 * (th[3][k] - th[0][k]), atol=1e-6)


def test_merge_cli_bad_input_is_one_line(tmp_path, capsys):
    base = tiny_model()
    base.save_pretrained(tmp_path / "model")
    base = save_adapter(base, tmp_path / "qv", 1)
    save_adapter(base, tmp_path / "mlp", 2, targets=("up_proj",))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text((tmp_path / "qv" / "adapter_config.json").read_text())
    (bad / "adapter_model.safetensors").write_bytes(b"not safetensors")
    cases = {
        "input not found": ["--method", "linear", "--inputs", f"{tmp_path / 'qv'},{tmp_path / 'nope'}"],
        "mix PEFT adapters": ["--method", "linear", "--inputs", f"{tmp_path / 'qv'},{tmp_path / 'model'}"],
        "lacks": ["--method", "linear", "--inputs", f"{tmp_path / 'qv'},{tmp_path / 'mlp'}"],
        "corrupt": ["--method", "linear", "--inputs", f"{tmp_path / 'qv'},{bad}"],
        "give --base": ["--method", "ties", "--inputs", f"{tmp_path / 'model'},{tmp_path / 'model'}"],
        "not empty": [
            "--method",
            "linear",
            "--inputs",
            f"{tmp_path / 'qv'},{tmp_path / 'qv'}",
            "--out",
            str(tmp_path / "full"),
        ],  # fmt: skip
        "liti moves one input": ["--method", "liti", "--inputs", f"{tmp_path / 'qv'},{tmp_path / 'qv'}"],
    }
    capsys.readouterr()  # the setup's save progress bars
    for needle, args in cases.items():
        out = args if "--out" in args else [*args, "--out", str(tmp_path / "out")]
        assert main(["merge", *out]) == 2, needle
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    assert not (tmp_path / "out").exists()
