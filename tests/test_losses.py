"""The losses of eqs. 5–8 against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pan360.errors import Pan360Error
from pan360.nn.losses import attention_ce_loss, semi_supervised_loss, triplet_ratio_loss

E = math.e


def _triplets() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    f_v = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])  # d+ = 1, 0, 5
    neg = torch.tensor([[0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])  # d- = 2, 0, 0
    return f_v, pos, neg


# L_U = (D+ - 0)^2 + (D- - 1)^2 with D+ = e^{d+} / (e^{d+} + e^{d-}); since D- - 1 = -D+, L_U = 2 D+^2.
# sample 0: D+ = e / (e + e^2) = 1 / (1 + e) = 0.2689414;  L = 2 * 0.0723295 = 0.1446590
# sample 1: d+ = d- = 0, D+ = 0.5;                           L = 0.5
# sample 2: D+ = e^5 / (e^5 + 1) = 0.9933071;                L = 2 * 0.9866590 = 1.9733180
U = [2 / (1 + E) ** 2, 0.5, 2 * (E**5 / (E**5 + 1)) ** 2]


def test_triplet_ratio_loss_by_hand() -> None:
    f_v, pos, neg = _triplets()
    per = triplet_ratio_loss(f_v, pos, neg, reduction="none")
    torch.testing.assert_close(per, torch.tensor(U), atol=1e-6, rtol=1e-6)
    assert per[0].item() == pytest.approx(0.1446590, abs=1e-6)
    assert triplet_ratio_loss(f_v, pos, neg).item() == pytest.approx(sum(U) / 3, abs=1e-6)


def test_triplet_gradient_pulls_the_frame_towards_its_own_sound() -> None:
    f_v, pos, neg = _triplets()
    f_v.requires_grad_(True)
    triplet_ratio_loss(f_v, pos, neg).backward()
    assert torch.isfinite(f_v.grad).all()  # also at d+ = d- = 0 (sample 1)
    step = f_v.detach() - 0.1 * f_v.grad
    before = triplet_ratio_loss(f_v.detach(), pos, neg, reduction="none")
    after = triplet_ratio_loss(step, pos, neg, reduction="none")
    assert after[0] < before[0] and after[2] < before[2]


def test_attention_ce_loss_by_hand() -> None:
    att = torch.tensor([[[0.1, 0.2], [0.3, 0.4]], [[0.25, 0.25], [0.25, 0.25]], [[0.7, 0.1], [0.1, 0.1]]])
    gt = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    # sample 0: -(ln 0.2 + ln 0.3) = 1.6094379 + 1.2039728 = 2.8134107
    # sample 1: no annotation (empty map) → masked, contributes 0
    # sample 2: -ln 0.7 = 0.3566749
    s0, s2 = -(math.log(0.2) + math.log(0.3)), -math.log(0.7)
    per = attention_ce_loss(att, gt, reduction="none")
    torch.testing.assert_close(per, torch.tensor([s0, 0.0, s2]), atol=1e-6, rtol=1e-6)
    # The mean runs over the two annotated samples: (2.8134107 + 0.3566749) / 2 = 1.5850428
    assert attention_ce_loss(att, gt).item() == pytest.approx((s0 + s2) / 2, abs=1e-6)
    # An explicit mask overrides: sample 2 unannotated → only sample 0 counts.
    mask = torch.tensor([True, False, False])
    assert attention_ce_loss(att, gt, mask).item() == pytest.approx(s0, abs=1e-6)
    # No annotation at all: 0, not NaN.
    assert attention_ce_loss(att, torch.zeros_like(gt)).item() == 0.0
    with pytest.raises(Pan360Error):
        attention_ce_loss(att, gt[:, :1])


def test_attention_ce_is_finite_where_attention_underflows() -> None:
    att = torch.tensor([[[1.0, 0.0]]])
    gt = torch.tensor([[[0.0, 1.0]]])
    loss = attention_ce_loss(att, gt)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(-math.log(1e-12), rel=1e-6)


def test_semi_supervised_loss_eq7_by_hand() -> None:
    f_v, pos, neg = _triplets()
    att = torch.tensor([[[0.1, 0.2], [0.3, 0.4]], [[0.25, 0.25], [0.25, 0.25]], [[0.7, 0.1], [0.1, 0.1]]])
    gt = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    s = [-(math.log(0.2) + math.log(0.3)), 0.0, -math.log(0.7)]  # λ = 0 for sample 1
    # Table V default weights 0.5 / 0.5: per sample 0.5 U + 0.5 λ S, then the mean over all 3.
    expect = sum(0.5 * u + 0.5 * si for u, si in zip(U, s)) / 3
    assert semi_supervised_loss(f_v, pos, neg, att, gt).item() == pytest.approx(expect, abs=1e-6)
    # Other weights (Table V's 0.75 / 0.25).
    expect = sum(0.75 * u + 0.25 * si for u, si in zip(U, s)) / 3
    got = semi_supervised_loss(f_v, pos, neg, att, gt, w_unsup=0.75, w_sup=0.25)
    assert got.item() == pytest.approx(expect, abs=1e-6)
    # No ground truth at all: the unsupervised term only.
    got = semi_supervised_loss(f_v, pos, neg, att, None)
    assert got.item() == pytest.approx(0.5 * sum(U) / 3, abs=1e-6)
    # Parts for logging: mean U over all samples, mean S over annotated samples.
    parts = semi_supervised_loss(f_v, pos, neg, att, gt, return_parts=True)
    assert parts.total.item() == pytest.approx(sum(0.5 * u + 0.5 * si for u, si in zip(U, s)) / 3, abs=1e-6)
    assert parts.unsup.item() == pytest.approx(sum(U) / 3, abs=1e-6)
    assert parts.sup.item() == pytest.approx((s[0] + s[2]) / 2, abs=1e-6)
    assert (int(parts.n_unsup), int(parts.n_sup), int(parts.n_teacher)) == (3, 2, 0)
    # The same maps marked as soft teacher maps weigh w_teacher instead of w_sup; a sample without a
    # triplet (no negative from another video) drops its L_U.
    per = semi_supervised_loss(f_v, pos, neg, att, gt, reduction="none", teacher=torch.tensor([True, False, False]),
                               w_teacher=2.0, triplet_mask=torch.tensor([True, True, False]))
    torch.testing.assert_close(per, torch.tensor([0.5 * U[0] + 2.0 * s[0], 0.5 * U[1], 0.5 * s[2]]),
                               atol=1e-6, rtol=1e-6)
    per = semi_supervised_loss(f_v, pos, neg, att, gt, mask=torch.tensor([1, 0, 0]), reduction="none")
    torch.testing.assert_close(per, 0.5 * torch.tensor([U[0] + s[0], U[1], U[2]]), atol=1e-6, rtol=1e-6)


def test_shape_checks() -> None:
    with pytest.raises(Pan360Error):
        triplet_ratio_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(Pan360Error):
        triplet_ratio_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), reduction="sum")
