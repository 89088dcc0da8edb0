"""The transformer on its own: attention paths agree, heads behave, loss is right."""

import pytest
import torch

from seq2king.errors import InputError
from seq2king.model.transformer import Seq2King, Seq2KingConfig, masked_pair_mse


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
])
def test_bad_config_messages(kw, msg):
    with pytest.raises(InputError, match=msg):
        Seq2King(Seq2KingConfig(**kw))
