"""The D-CAT loss (pipelines.learn.losses, and the single-source reference in _reference_losses): known values
and the properties the method relies on."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _reference_losses import alignment_loss, dcat_loss
from pipelines.learn.losses import NORMS, alignment_distance, kv_scores


def _kv(b, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, d, generator=g), torch.randn(b, n, d, generator=g)


def test_kv_scores_known_value():
    # one window, L = 2 tokens, d = 2: K^T V = k1 v1^T + k2 v2^T
    k = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    v = torch.tensor([[[3.0, 4.0], [5.0, 6.0]]])
    raw = torch.tensor([[[3.0, 4.0], [10.0, 12.0]]])
    assert torch.allclose(kv_scores(k, v, "none"), raw)
    assert torch.allclose(kv_scores(k, v, "seqlen"), raw / 2)
    assert torch.allclose(kv_scores(k, v, "fro"), raw / raw.norm())
    assert kv_scores(k, v, "seqlen").shape == (1, 2, 2)


def test_zero_for_identical_inputs():
    k, v = _kv(4, 7, 8, 0)
    for norm in NORMS:
        s = kv_scores(k, v, norm)
        assert float(alignment_loss(s, s.clone())) == 0.0


def test_seqlen_and_fro_are_independent_of_sequence_length():
    # a 25-token target whose tokens are a 5x repetition of a 5-token source: same mean outer product
    k, v = _kv(3, 5, 8, 1)
    k_long, v_long = k.repeat(1, 5, 1), v.repeat(1, 5, 1)
    for norm in ("seqlen", "fro"):
        s_short, s_long = kv_scores(k, v, norm), kv_scores(k_long, v_long, norm)
        assert torch.allclose(s_short, s_long, atol=1e-5)
        assert float(alignment_loss(s_long, s_short)) == pytest.approx(0.0, abs=1e-4)
    # without normalisation the scores grow with the length (why "none" is not the default)
    assert torch.allclose(kv_scores(k_long, v_long, "none"), 5 * kv_scores(k, v, "none"), atol=1e-4)


def test_scores_have_shape_d_by_d_for_different_lengths():
    kt, vt = _kv(2, 25, 16, 2)
    ks, vs = _kv(2, 8, 16, 3)
    st, ss = kv_scores(kt, vt), kv_scores(ks, vs)
    assert st.shape == ss.shape == (2, 16, 16)
    d = alignment_distance(st, ss)
    assert torch.allclose(d, (st - ss).flatten(1).norm(dim=1))


def test_fro_is_scale_invariant():
    k, v = _kv(2, 6, 4, 4)
    assert torch.allclose(kv_scores(3 * k, 2 * v, "fro"), kv_scores(k, v, "fro"), atol=1e-6)


def test_gradient_reaches_only_the_target():
    kt, vt = (t.requires_grad_() for t in _kv(3, 10, 8, 5))
    ks, vs = (t.requires_grad_() for t in _kv(3, 4, 8, 6))
    loss = alignment_loss(kv_scores(kt, vt), kv_scores(ks, vs))
    loss.backward()
    assert kt.grad is not None and kt.grad.abs().sum() > 0 and vt.grad.abs().sum() > 0
    assert ks.grad is None and vs.grad is None


def test_mcma_all_wrong_source_gives_zero_alignment_and_no_gradient():
    kt, vt = (t.requires_grad_() for t in _kv(4, 10, 8, 7))
    ks, vs = _kv(4, 4, 8, 8)
    logits = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    all_wrong = torch.zeros(4, dtype=torch.bool)
    loss, terms = dcat_loss(logits, y, kv_scores(kt, vt), kv_scores(ks, vs), all_wrong, lam=1.0, mcma=True)
    assert float(terms["ca"]) == 0.0
    assert float(terms["keep_rate"]) == 0.0
    assert float(loss.detach()) == pytest.approx(float(F.cross_entropy(logits.detach(), y)), abs=1e-6)
    loss.backward()
    assert kt.grad is None or float(kt.grad.abs().sum()) == 0.0
    # without MCMA the same windows do pull the target
    loss2, terms2 = dcat_loss(logits, y, kv_scores(kt, vt), kv_scores(ks, vs), all_wrong, lam=1.0, mcma=False)
    assert float(terms2["ca"]) > 0


def test_mcma_counts_correct_windows_and_averages_over_the_batch():
    st = torch.zeros(4, 2, 2)
    ss = torch.zeros(4, 2, 2)
    ss[:, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # distances 1, 2, 3, 4
    keep = torch.tensor([True, False, True, False])
    assert float(alignment_loss(st, ss, keep)) == pytest.approx((1 + 3) / 4)
    assert float(alignment_loss(st, ss)) == pytest.approx((1 + 2 + 3 + 4) / 4)


def test_dcat_loss_is_ce_plus_lambda_times_alignment():
    kt, vt = _kv(5, 9, 8, 9)
    ks, vs = _kv(5, 3, 8, 10)
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 0])
    ok = torch.tensor([True, True, False, True, False])
    st, ss = kv_scores(kt, vt), kv_scores(ks, vs)
    loss, terms = dcat_loss(logits, y, st, ss, ok, lam=0.3, mcma=True)
    ce = F.cross_entropy(logits, y)
    ca = alignment_loss(st, ss, ok)
    assert float(loss) == pytest.approx(float(ce + 0.3 * ca), rel=1e-6)
    assert float(terms["ce"]) == pytest.approx(float(ce))
    assert float(terms["ca"]) == pytest.approx(float(ca))
    assert float(terms["keep_rate"]) == pytest.approx(3 / 5)


def test_unknown_norm_is_refused():
    k, v = _kv(1, 2, 2, 0)
    with pytest.raises(ValueError, match="seqlen"):
        kv_scores(k, v, "softmax")
