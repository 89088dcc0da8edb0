"""The transformer on its own: attention paths agree, heads behave, loss is right."""

import numpy as np
import pytest
import torch

from seq2king.errors import InputError
from seq2king.model.losses import masked_pair_mse
from seq2king.model.transformer import Seq2King, Seq2KingConfig


def batch(b=3, n=10, panel=16, n_people=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, 7:] = False  # a padded sequence
    return {"features": torch.randn(b, n, panel, generator=g),
            "index": torch.randint(0, n_people, (b, n), generator=g), "mask": mask,
            "target": torch.randn(b, n, n, generator=g)}


@pytest.mark.parametrize("cfg", [
    Seq2KingConfig(panel_size=16, d_model=32, depth=3, heads=4, ffn_dim=64),
    Seq2KingConfig(tokenizer="index", num_individuals=50, d_model=24, depth=2, heads=1, decoder_depth=2,
                   positional=True, head="positional", max_len=12, activation="tanh"),
])
def test_sdpa_and_explicit_attention_agree(cfg):
    torch.manual_seed(0)
    net = Seq2King(cfg).eval()
    x = batch()
    with torch.no_grad():
        fast = net(x)
        slow, extra = net(x, need_weights=True)
    assert torch.allclose(fast, slow, atol=1e-5, rtol=1e-5)
    n_layers = cfg.depth + cfg.decoder_depth
    assert len(extra["weights"]) == n_layers
    w = extra["weights"][0]
    assert w.shape == (3, cfg.heads, 10, 10)
    assert torch.allclose(w.sum(-1), torch.ones(3, cfg.heads, 10), atol=1e-6)
    assert (w[1, :, :, 7:] == 0).all()  # nobody attends to padding
    assert torch.allclose(extra["scores"][0].softmax(-1), w)
    assert extra["embeddings"].shape == (3, 10, cfg.d_model)


def test_pairwise_head_is_symmetric_and_order_invariant():
    torch.manual_seed(0)
    net = Seq2King(Seq2KingConfig(panel_size=16, d_model=32, depth=2, heads=2, ffn_dim=64)).eval()
    x = batch()
    x["mask"][:] = True
    with torch.no_grad():
        pred = net(x)
        perm = torch.randperm(10)
        y = dict(x, features=x["features"][:, perm], index=x["index"][:, perm])
        pred_p = net(y)
    assert torch.allclose(pred, pred.transpose(1, 2), atol=1e-6)
    assert torch.allclose(pred_p, pred[:, perm][:, :, perm], atol=1e-5)


def test_loss_counts_off_diagonal_real_pairs_per_sequence():
    mask = torch.tensor([[True, True, True], [True, True, False]])
    target = torch.zeros(2, 3, 3)
    pred = torch.zeros(2, 3, 3)
    pred[0] = 1.0          # every off-diagonal pair off by 1 -> per-sequence MSE 1
    pred[1, 0, 1] = 2.0    # one of 2 real pairs off by 2 -> (4 + 0) / 2 = 2
    pred[1, 2, 2] = 100.0  # padding and diagonal ignored
    assert masked_pair_mse(pred, target, mask).item() == pytest.approx((1 + 2) / 2)


@pytest.mark.parametrize("kw,msg", [
    ({"heads": 3}, "heads=3 does not divide"),
    ({"tokenizer": "pixels"}, "tokenizer='pixels'"),
    ({"head": "cls"}, "head='cls'"),
    ({"tokenizer": "index"}, "needs num_individuals"),
    ({"input_bias": "genes"}, "input_bias='genes': choose false or pcs"),
    ({"denoise_entropy": 0}, "denoise_entropy=0: must be positive"),
])
def test_bad_config_messages(kw, msg):
    with pytest.raises(InputError, match=msg):
        Seq2King(Seq2KingConfig(**kw))


def test_symmetric_readout_has_symmetric_logits_and_predictions():
    cfg = Seq2KingConfig(panel_size=16, d_model=32, depth=2, heads=2, ffn_dim=64, symmetric_readout=True)
    net = Seq2King(cfg).eval()
    batch = {"features": torch.randn(3, 7, 16), "index": torch.zeros(3, 7, dtype=torch.long),
             "mask": torch.ones(3, 7, dtype=torch.bool)}
    pred, extra = net(batch, need_weights=True)
    s = extra["scores"][-1]
    assert torch.allclose(s, s.transpose(-1, -2), atol=1e-6)  # no antisymmetric part to make hubs of
    assert torch.allclose(pred, pred.transpose(1, 2), atol=1e-6)
    assert not hasattr(net.encoder[-1].attn, "kv") and hasattr(net.encoder[0].attn, "kv")


def test_genotype_features_use_training_frequencies_only(tmp_path):
    """The token's genomic-relationship part equals the formula with training-people frequencies."""
    from conftest import FIXTURE

    from seq2king.data.datamodule import Seq2KingDataModule
    from seq2king.genetics.genotypes import BedSource

    dm = Seq2KingDataModule(source="plink", bfile=str(FIXTURE), cache_dir=str(tmp_path), panel_size=16,
                            min_len=4, max_len=16, genotype_pcs=8)
    dm.setup()
    src = BedSource(FIXTURE)
    row = {iid: i for i, iid in enumerate(src.samples.iid)}
    rows = np.array([row[i] for i in dm.cohort.ids])
    train, panel = dm.splits["train"], dm.splits["panel"]
    g = src.read_all(king_only=True).astype(float)[rows]
    x = np.where(g == -127, np.nan, g)
    fit = np.concatenate([train, panel])
    p = np.nanmean(x[fit], 0) / 2  # frequencies from training people only (tokens and panel)
    keep = (p > 0) & (p < 1)
    z = np.nan_to_num((x[:, keep] - 2 * p[keep]) / np.sqrt(2 * p[keep] * (1 - p[keep])))
    grm = z @ z[panel].T / keep.sum()
    ref = grm[train]
    expect = (grm - ref.mean()) / ref.std()
    got = dm.features[:, 16:32].numpy()
    assert np.allclose(got, expect, atol=1e-4)
    assert dm.features.shape[1] == 16 + 16 + 8
    pcs = dm.features[:, 32:].numpy()
    assert np.allclose(pcs[train].std(0), 1.0, atol=1e-6)  # each PC at unit variance over the training tokens


def test_distance_kernel_is_a_gaussian_kernel_of_the_queries():
    torch.manual_seed(0)
    cfg = Seq2KingConfig(panel_size=16, d_model=32, depth=2, heads=4, ffn_dim=64, symmetric_readout=True,
                         readout_range=8, per_head_readout=True)
    assert cfg.temperatures() == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    net = Seq2King(cfg).eval()
    x = batch(panel=16)
    with torch.no_grad():
        fast = net(x)
        pred, extra = net(x, need_weights=True)
        per_head = net(x, per_head=True)
    assert torch.allclose(fast, pred, atol=1e-5)  # SDPA (augmented vectors) and the explicit path agree
    emb = extra["embeddings"]
    # the embedding is the last layer's queries, each head's times sqrt(T_h)
    q = emb.view(3, 10, 4, 8).transpose(1, 2) / torch.tensor(cfg.temperatures()).sqrt()[:, None, None]
    d2 = (q[..., :, None, :] - q[..., None, :, :]).square().sum(-1)
    s = extra["scores"][-1]
    real = (x["mask"][:, None, None, :] & x["mask"][:, None, :, None]).expand(3, 4, 10, 10)
    assert torch.allclose(s[real], (-d2 / (2 * 8 ** 0.5))[real], atol=1e-4)
    # each head predicts kinship at its own temperature: pred_h = T_h * logits + bias
    t = torch.tensor(cfg.temperatures())[None, :, None, None]
    assert torch.allclose(per_head[real], (t * s + net.pair_bias)[real], atol=1e-5)
    assert torch.allclose(per_head.mean(1), pred, atol=1e-6)
    # so that squared embedding distances are the heads' mean predicted kinship gap
    gap = net.pair_bias - pred
    e2 = (emb[:, :, None] - emb[:, None]).square().sum(-1) / (2 * 8 ** 0.5 * 4)
    pairs = real[:, 0]
    assert torch.allclose(gap[pairs], e2[pairs], atol=1e-4)
    # no column effect can make a hub: each row's most-attended other person is its nearest in query space
    w = extra["weights"][-1][0].clone()
    w[:, torch.arange(10), torch.arange(10)] = 0
    assert torch.equal(w.argmax(-1), d2[0].masked_fill(torch.eye(10, dtype=torch.bool), float("inf")).argmin(-1))


def test_distance_readout_starts_at_the_targets_scale():
    torch.manual_seed(0)
    cfg = Seq2KingConfig(panel_size=16, d_model=64, depth=1, heads=4, ffn_dim=64, symmetric_readout=True,
                         readout_range=8, dropout=0.0)
    net = Seq2King(cfg).eval()
    net.init_distance_readout(top=1.5, spread=1.0)
    x = {"features": torch.randn(1, 200, 16), "index": torch.zeros(1, 200, dtype=torch.long),
         "mask": torch.ones(1, 200, dtype=torch.bool)}
    with torch.no_grad():
        per_head = net(x, per_head=True)[0]
    off = ~torch.eye(200, dtype=torch.bool)
    assert float(net.pair_bias) == 1.5
    for h in range(4):  # every head, whatever its temperature, starts with gaps of about the spread
        gap = float((1.5 - per_head[h][off]).mean())
        assert 0.5 < gap < 2.0, (h, gap)


def test_attention_kl_equals_scipy_per_row():
    from scipy.special import softmax
    from scipy.stats import entropy

    from seq2king.model.losses import attention_kl

    g = torch.Generator().manual_seed(1)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    target = torch.randn(2, 5, 5, generator=g, dtype=torch.float64)
    pred = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    temps = torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64)
    got = attention_kl(pred, target, mask, temps)
    seqs = []
    for b in range(2):
        n = int(mask[b].sum())
        heads = []
        for h in range(3):
            rows = []
            for i in range(n):
                others = [j for j in range(n) if j != i]
                p = softmax(target[b, i, others].numpy() / temps[h].item())
                q = softmax(pred[b, h, i, others].numpy() / temps[h].item())
                rows.append(entropy(p, q))
            heads.append(np.mean(rows))
        seqs.append(heads)
    assert float(got) == pytest.approx(np.mean(seqs), rel=1e-9)
    same = target[:, None].expand(2, 3, 5, 5) + 3.0  # a constant shift per row changes no softmax
    assert float(attention_kl(same, target, mask, temps)) == pytest.approx(0.0, abs=1e-12)


def test_per_head_loss_is_the_mean_of_each_heads_loss():
    torch.manual_seed(0)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    target = torch.randn(2, 5, 5)
    heads = torch.randn(2, 3, 5, 5)
    per_head = masked_pair_mse(heads, target, mask)
    each = torch.stack([masked_pair_mse(heads[:, h], target, mask) for h in range(3)])
    assert torch.allclose(per_head, each.mean())
    cfg = Seq2KingConfig(panel_size=16, d_model=32, depth=2, heads=4, ffn_dim=64, symmetric_readout=True,
                         per_head_readout=True)
    net = Seq2King(cfg).eval()
    batch = {"features": torch.randn(2, 5, 16), "index": torch.zeros(2, 5, dtype=torch.long), "mask": mask}
    ph = net(batch, per_head=True)
    assert ph.shape == (2, 4, 5, 5)
    assert torch.allclose(ph.mean(1), net(batch), atol=1e-6)  # the reported prediction is the heads' mean
    s = net(batch, need_weights=True)[1]["scores"][-1]
    # the symmetric readout's logits are minus distances: symmetric, zero on the diagonal, never above it
    assert torch.allclose(s[0], s[0].transpose(-1, -2), atol=1e-5)
    assert s[0].diagonal(dim1=-2, dim2=-1).abs().max() < 1e-5 and s[0].max() < 1e-5


def test_cpu_dropout_keeps_1_minus_p_and_scales():
    from seq2king.model.kernels import Dropout

    d = Dropout(0.1).train()
    x = torch.ones(400, 500, requires_grad=True)
    torch.manual_seed(0)
    y = d(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.005  # binomial sd 0.0007
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d y / d x is the scaled mask
    torch.manual_seed(0)
    again = d(x)
    assert torch.equal(again, y)  # seeded like torch's own dropout
    torch.manual_seed(0)
    base = torch.randn(400, 500)
    torch.manual_seed(1)
    r = d.add(base, x.detach())
    torch.manual_seed(1)
    assert torch.equal(r, base + d(x.detach()))
    d.eval()
    assert torch.equal(d(x), x)
    # rows of a sequence are not masked alike: the 16-bit lanes are independent
    rows = (y != 0).float()
    assert abs(torch.corrcoef(rows[:2])[0, 1].item()) < 0.1


def test_cpu_tanh_is_tanh_and_so_is_its_gradient():
    from seq2king.model.kernels import Tanh
    from seq2king.model.transformer import ACTIVATIONS

    assert ACTIVATIONS["tanh"] is Tanh
    x = torch.cat([torch.linspace(-20, 20, 200_001), torch.tensor([0.0, 1e-30, -1e-8, 5e-4])]).requires_grad_()
    y = Tanh()(x)
    exact = torch.tanh(x.detach().double())
    assert (y.detach().double() - exact).abs().max() <= 2.4e-7  # 2 ulp of 1
    assert y[-4].item() == 0.0 and y.abs().max().item() <= 1.0
    g = torch.linspace(-3, 3, x.numel())
    y.backward(g)
    assert torch.allclose(x.grad.double(), g.double() * (1 - exact**2), atol=2e-6)
    assert torch.autograd.gradcheck(Tanh(), (torch.randn(30, dtype=torch.float64, requires_grad=True),))


def test_matmul_precision_probe_tells_float32_from_bfloat16():
    from seq2king import runtime

    a, b = runtime.probe_matrices()
    exact = a.double() @ b.double()
    f32 = (a @ b).double()
    bf16 = (a.bfloat16().float() @ b.bfloat16().float()).double()
    assert runtime.float32_accurate(f32, f32, exact)
    assert not runtime.float32_accurate(bf16, f32, exact)  # off by 0.19 in the corner
    with pytest.raises(InputError, match="matmul_precision='fast'"):
        runtime.set_matmul_precision("fast")
    assert runtime.set_matmul_precision("auto", device="cuda") == "high"


def test_auto_matmul_precision_trains_like_float32():
    """Whatever ``auto`` picks on this CPU, a step's predictions and gradients match float32 products."""
    from seq2king import runtime

    torch.manual_seed(0)
    cfg = Seq2KingConfig(tokenizer="index", num_individuals=50, d_model=120, depth=2, decoder_depth=1, heads=1,
                         ffn_dim=256, activation="tanh", dropout=0.0, positional=True, head="positional", max_len=40)
    net = Seq2King(cfg)
    batch = {"index": torch.randint(0, 50, (16, 40)), "mask": torch.ones(16, 40, dtype=torch.bool)}
    target = torch.rand(16, 40, 40)
    out = {}
    before = torch.get_float32_matmul_precision()
    try:
        for name in ("highest", "auto"):
            runtime.set_matmul_precision(name)
            net.zero_grad()
            pred = net(batch)
            masked_pair_mse(pred, target, batch["mask"]).backward()
            out[name] = (pred.detach(), torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    finally:
        torch.set_float32_matmul_precision(before)
    (p1, g1), (p2, g2) = out["highest"], out["auto"]
    assert (p1 - p2).abs().max() < 1e-5  # bfloat16 products are 4e-3 off here
    assert (g1 - g2).norm() / g1.norm() < 1e-4


def test_input_bias_is_minus_gamma_times_the_feature_distance():
    """With model.input_bias the logits of the layers below the readout are the learned ones minus
    gamma_h |z_i - z_j|^2 (z: the bias columns over sqrt(scale)); the readout's logits and embedding are the
    plain ones; both attention paths agree; the same people in another order give the same predictions."""
    torch.manual_seed(0)
    cfg = Seq2KingConfig(panel_size=16, num_features=16, d_model=32, depth=2, heads=2, ffn_dim=64,
                         symmetric_readout=True, per_head_readout=True, readout_range=4,
                         input_bias="pcs", bias_columns=(4, 12), feature_scale=9.0, bias_slope=0.5)
    net = Seq2King(cfg).eval()
    assert torch.allclose(net.bias_log_gamma.exp(), 0.5 / torch.tensor(cfg.temperatures()).repeat(2, 1))
    x = batch(panel=16)
    z = x["features"][..., 4:12] / 3.0
    d2 = torch.cdist(z, z).square()
    m = x["mask"][:, None, None, :]
    with torch.no_grad():
        fast = net(x)
        pred, ex = net(x, need_weights=True)
        h = net.encoder[0].ln1(net.embed(x))
        plain0 = net.encoder[0].attn.logits(h, x["mask"])
        bias0 = -net.bias_log_gamma[0].exp()[None, :, None, None] * d2[:, None]
        x1, _, _ = net.encoder[0](net.embed(x), x["mask"], bias=bias0)
        plain1 = net.encoder[1].attn.logits(net.encoder[1].ln1(x1), x["mask"])
    assert torch.allclose(fast, pred, atol=1e-5)
    want0 = (plain0 + bias0).masked_fill(~m, float("-inf"))
    assert torch.allclose(ex["scores"][0][m.expand_as(want0)], want0[m.expand_as(want0)], atol=1e-4)
    assert torch.allclose(ex["scores"][1][m.expand_as(plain1)], plain1[m.expand_as(plain1)], atol=1e-4)
    assert ex["embeddings"].shape[-1] == 32
    perm = torch.randperm(10)
    xp = {k: (v[:, perm][:, :, perm] if k == "target" else v[:, perm]) for k, v in x.items()}
    xp["mask"] = torch.ones_like(xp["mask"])
    xf = dict(x, mask=torch.ones_like(x["mask"]))
    with torch.no_grad():
        assert torch.allclose(net(xp), net(xf)[:, perm][:, :, perm], atol=1e-5)


def test_removed_options_load_at_their_kept_value_and_say_so_otherwise():
    """model.kernel, signed_readout, bias_readout, bias_scale and input_bias=inputs were taken out (the
    regimes showed they do not help): a config or checkpoint holding the value they now always have loads;
    another value is one line naming the option."""
    from seq2king.model.module import Seq2KingModule

    kept = Seq2KingModule(panel_size=16, d_model=32, depth=2, heads=2, ffn_dim=64, num_features=16,
                          kernel="distance", signed_readout=True, bias_readout=False, bias_scale=1.0)
    assert kept.cfg.symmetric_readout is False and not hasattr(kept.cfg, "kernel")
    for key, value, needle in (("kernel", "dot", "model.kernel='dot': this option was removed"),
                               ("bias_readout", True, "model.bias_readout=True: this option was removed"),
                               ("bias_scale", 0.2, "model.bias_scale=0.2"),
                               ("input_bias", "inputs", "bias on all token features was removed")):
        with pytest.raises(InputError, match=needle):
            Seq2KingModule.check_config(panel_size=16, d_model=32, **{key: value})


def test_calibrated_pool_hits_the_entropy_over_the_other_real_people():
    """Each row: a softmax of -beta_i d2 over the other real people with entropy ``entropy`` nats; no weight
    on oneself or on padding; a lone person gets none."""
    from seq2king.model.transformer import calibrated_pool

    torch.manual_seed(0)
    z = torch.randn(3, 10, 4)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, 1:] = False
    d2 = torch.cdist(z, z).square()
    p = calibrated_pool(d2, mask, 1.5)
    h = -(p * p.clamp_min(1e-30).log()).sum(-1)
    assert torch.allclose(h[0], torch.full((10,), 1.5), atol=1e-3)
    assert torch.allclose(h[1, :6], torch.full((6,), 1.5), atol=1e-3)
    assert p.diagonal(dim1=1, dim2=2).abs().max() == 0 and p[1, :, 6:].abs().max() == 0
    assert torch.allclose(p[:2].sum(-1), torch.ones(2, 10)) and p[2, 0].abs().max() == 0
    # each row is a softmax of -beta d2: log-weight ratios are proportional to distance gaps
    i, (j, k) = 0, (3, 7)
    beta = (p[0, i, j] / p[0, i, k]).log() / (d2[0, i, k] - d2[0, i, j])
    assert beta > 0
    assert torch.allclose((p[0, i, 5] / p[0, i, k]).log(), beta * (d2[0, i, k] - d2[0, i, 5]), rtol=1e-3)
    # at most log(5) nats among 5 others: asked for more, the row is as flat as the smallest beta makes it
    u = calibrated_pool(d2, mask, 3.0)
    assert torch.allclose(u[1, 0, 1:6], torch.full((5,), 0.2), atol=0.01)


def test_input_denoise_pools_the_bias_features_between_layers():
    """input_denoise: layer 2's bias is -gamma times the distance between features pooled with each person's
    calibrated neighbours (z + P z - z) / 2; layer 1's is the raw distance."""
    from seq2king.model.transformer import calibrated_pool

    torch.manual_seed(0)
    cfg = Seq2KingConfig(panel_size=16, num_features=16, d_model=32, depth=3, heads=2, ffn_dim=64,
                         symmetric_readout=True, readout_range=4, input_bias="pcs",
                         bias_columns=(4, 12), feature_scale=9.0, bias_slope=0.5,
                         input_denoise=True, denoise_entropy=1.2)
    net = Seq2King(cfg).eval()
    x = batch(panel=16)
    mask = x["mask"]
    z = x["features"][..., 4:12] / 3.0
    d2 = torch.cdist(z, z).square()
    p = calibrated_pool(d2, mask, 1.2)
    z1 = z + (p @ z - p.sum(-1, keepdim=True) * z) / 2
    d21 = torch.cdist(z1, z1).square()
    assert not torch.allclose(d21, d2, atol=1e-3)
    with torch.no_grad():
        _, ex = net(x, need_weights=True)
        x0, _, _ = net.encoder[0](net.embed(x), mask, bias=-net.bias_log_gamma[0].exp()[None, :, None, None] * d2[:, None])
        plain1 = net.encoder[1].attn.logits(net.encoder[1].ln1(x0), mask)
    m = mask[:, None, None, :]
    want = (plain1 - net.bias_log_gamma[1].exp()[None, :, None, None] * d21[:, None]).masked_fill(~m, float("-inf"))
    assert torch.allclose(ex["scores"][1][m.expand_as(want)], want[m.expand_as(want)], atol=1e-3)


def test_input_lines_are_fitted_on_training_people_only(tmp_path):
    """The input bias's start: KING's least-squares line on the feature distance, from training pairs only."""
    from conftest import FIXTURE

    from seq2king.data.datamodule import Seq2KingDataModule

    dm = Seq2KingDataModule(source="plink", bfile=str(FIXTURE), cache_dir=str(tmp_path), panel_size=16,
                            min_len=4, max_len=16, genotype_pcs=8)
    dm.setup()
    lines = dm.model_kwargs()["input_lines"]
    assert lines["inputs"]["columns"] == [0, 40] and lines["pcs"]["columns"] == [32, 40]
    assert all(v["slope"] >= 0 and v["scale"] > 0 for v in lines.values())
    # the same numbers again from the same pairs, computed here with numpy on training people alone
    train = dm.splits["train"]
    rng = np.random.default_rng([dm.split_seed, 2])
    a, b = rng.choice(train, 20000), rng.choice(train, 20000)
    a, b = a[a != b], b[a != b]
    f = dm.features.double().numpy()
    d2 = ((f[a] - f[b]) ** 2).sum(1)
    x, t = d2 / d2.mean(), dm.scaler(dm.cohort.king[a, b])
    slope, _ = np.polyfit(x, t, 1)
    assert lines["inputs"]["scale"] == pytest.approx(d2.mean())
    assert lines["inputs"]["slope"] == pytest.approx(max(-slope, 0.0), rel=1e-6)
    assert set(a) | set(b) <= set(train) and not (set(a) & set(dm.splits["test"]))


def _reconstruction_module(**kw):
    from seq2king.model.module import Seq2KingModule

    lines = {"pcs": {"columns": [8, 16], "scale": 16.0, "slope": 0.5, "intercept": 0.0}}
    return Seq2KingModule(panel_size=16, num_features=16, d_model=32, depth=2, heads=2, ffn_dim=64,
                          symmetric_readout=True, per_head_readout=True, readout_range=4, input_bias="pcs",
                          input_denoise=True, input_lines=lines, attention_loss=1.0, **kw)


def test_masked_token_reconstruction_hides_the_pcs_from_token_and_bias():
    """model.reconstruction: a share of the people have their PC columns zeroed (the rest of the token as it
    was) and the values kept as the truth; a hidden person takes no part in the input bias (their pairs'
    logits are the plain ones, the others' carry -gamma d2 over the seen people's features); off, no
    parameters are added."""
    assert not hasattr(_reconstruction_module().net, "reconstruct")
    module = _reconstruction_module(reconstruction=1.0, mask_ratio=0.4, dropout=0.0).eval()
    assert module.cfg.reconstruct_columns == (8, 16) and module.net.reconstruct.out_features == 8
    x = batch(panel=16)
    torch.manual_seed(3)
    seen_batch, truth = module._hide(x)
    hidden = seen_batch["hidden"]
    assert 0 < hidden.sum() < x["mask"].sum() and not (hidden & ~x["mask"]).any()
    assert torch.equal(truth, x["features"][..., 8:16])
    f = seen_batch["features"]
    assert f[..., 8:16][hidden].abs().max() == 0 and torch.equal(f[..., 8:16][~hidden], x["features"][..., 8:16][~hidden])
    assert torch.equal(f[..., :8], x["features"][..., :8])
    net = module.net
    with torch.no_grad():
        pred, recon = net(seen_batch, reconstruct=True)
        _, ex = net(seen_batch, need_weights=True)
        h = net.encoder[0].ln1(net.embed(seen_batch))
        plain = net.encoder[0].attn.logits(h, x["mask"])
    assert recon.shape == (3, 10, 8) and pred.shape == (3, 10, 10)
    z = f[..., 8:16] / 4.0
    seen = x["mask"] & ~hidden
    pair_seen = seen[:, :, None] & seen[:, None, :]
    bias = -net.bias_log_gamma[0].exp()[None, :, None, None] * (torch.cdist(z, z).square() * pair_seen)[:, None]
    m = x["mask"][:, None, None, :].expand_as(plain)
    assert torch.allclose(ex["scores"][0][m], (plain + bias)[m], atol=1e-4)
    one_hidden = (hidden[:, :, None] | hidden[:, None, :])[:, None].expand_as(plain) & m
    assert torch.allclose(ex["scores"][0][one_hidden], plain[one_hidden], atol=1e-5)
    # a hidden person's true PCs do not reach the network: changing them changes nothing it computes
    y = dict(x, features=x["features"].clone())
    y["features"][..., 8:16][hidden] += 5.0
    torch.manual_seed(3)
    seen_y, truth_y = module._hide(y)
    assert torch.equal(seen_y["hidden"], hidden) and not torch.equal(truth_y, truth)
    with torch.no_grad():
        assert torch.equal(net(seen_y, reconstruct=True)[1], recon)


def test_masked_token_reconstruction_learns_the_hidden_pcs_from_the_set():
    """Clusters whose PCs are only known through the others: a person's first 8 columns say which cluster
    (weakly), the PCs are the cluster's centre; trained with the reconstruction loss, the hidden PCs are
    predicted far better than by their mean (0 for centred PCs: a mean squared error of about 1)."""
    torch.manual_seed(0)
    module = _reconstruction_module(reconstruction=1.0, mask_ratio=0.3, dropout=0.0)
    centres = torch.randn(4, 8)
    keys = torch.randn(4, 8)

    def draw(b=16, n=24):
        c = torch.randint(0, 4, (b, n))
        features = torch.cat([keys[c] + 0.5 * torch.randn(b, n, 8), centres[c] + 0.1 * torch.randn(b, n, 8)], -1)
        return {"features": features, "mask": torch.ones(b, n, dtype=torch.bool),
                "index": torch.zeros(b, n, dtype=torch.long), "target": (c[:, :, None] == c[:, None, :]).float()}

    opt = torch.optim.AdamW(module.net.parameters(), lr=3e-3)
    module.log = lambda *a, **k: None
    for _ in range(150):
        opt.zero_grad()
        module._step(draw(), "train").backward()
        opt.step()
    module.eval()
    x = draw(b=64)
    torch.manual_seed(1)
    hid, truth = module._hide(x)
    with torch.no_grad():
        _, recon = module.net(hid, reconstruct=True)
    err = (recon - truth).square().mean(-1)[hid["hidden"]].mean()
    base = truth[hid["hidden"]].square().mean()
    assert err < 0.2 * base, (float(err), float(base))


@pytest.mark.parametrize("kw, msg", [
    ({"reconstruction": -1.0}, "model.reconstruction=-1.0: must be 0"),
    ({"reconstruction": 1.0, "mask_ratio": 1.0}, "model.mask_ratio=1.0: must be in"),
])
def test_masked_token_reconstruction_bad_values(kw, msg):
    from seq2king.model.module import Seq2KingModule

    with pytest.raises(InputError, match=msg):
        Seq2KingModule.check_config(panel_size=16, d_model=32, **kw)
    with pytest.raises(InputError, match="model.reconstruction needs genotype PCs"):
        Seq2KingModule(panel_size=16, d_model=32, num_features=16, reconstruction=1.0, input_lines={})
