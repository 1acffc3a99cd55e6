"""Tests of os2d.inference.calibration: monotone per class, one meaning across classes, the fit, the
background statistics, and the detector's calibrated thresholds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from os2d.inference.calibration import BackgroundBank, Calibrator, background_stats, fit_calibrator


def test_monotone_in_the_raw_score_for_every_class():
    cal = Calibrator(alpha=3.0, beta=-1.0)
    raw = torch.linspace(-1, 1, 201)
    for stats in ([0.2, 0.3], [0.5, 0.52], [0.7, 0.9], [0.4, 0.4]):  # the last: zero spread (clamped)
        p = cal(raw, torch.tensor([stats]).expand(201, 2))
        assert bool((p[1:] >= p[:-1]).all()) and bool((p >= 0).all()) and bool((p <= 1).all())
        assert bool((p[1:] > p[:-1]).any())  # not constant


def test_class_independent_meaning_on_synthetic_score_distributions():
    """Two classes whose background scores are shifted and scaled copies of each other: a score at the
    same place of each class's own distribution gets the same calibrated value, although the raw
    scores differ a lot."""
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.standard_normal(20000)).float()
    plain = 0.6 + 0.05 * base  # a textureless packshot: high, narrow background scores
    detailed = 0.2 + 0.15 * base  # a detailed logo: low, wide background scores
    q = torch.tensor([0.99, 0.999])
    s_plain, s_detail = torch.quantile(plain, q), torch.quantile(detailed, q)
    cal = Calibrator(alpha=2.0, beta=0.5)
    for k in (2.0, 3.5, 5.0):  # k standard deviations above the mean of each class's background
        p1 = cal(torch.tensor([0.6 + 0.05 * k]), s_plain[None])
        p2 = cal(torch.tensor([0.2 + 0.15 * k]), s_detail[None])
        torch.testing.assert_close(p1, p2, rtol=0, atol=2e-3)
    # the same raw score means different things: 0.75 is 3 sd above the plain class's mean, 3.67 above the other's
    assert float(cal(torch.tensor([0.75]), s_plain[None])) < float(cal(torch.tensor([0.75]), s_detail[None]))


def test_partial_offset_and_global_spread_known_answer_and_inverse():
    stats = torch.tensor([[0.40, 0.42], [0.30, 0.40]])
    raw = torch.tensor([0.5, 0.5])
    # w = 0.25, one spread 0.02 for every class: z = (0.5 - 0.25 * q_hi) / 0.02
    cal = Calibrator(alpha=1.0, beta=0.0, min_spread=0.02, offset_weight=0.25, per_class_spread=False)
    torch.testing.assert_close(cal.standardise(raw, stats), torch.tensor([(0.5 - 0.105) / 0.02, (0.5 - 0.1) / 0.02]))
    # w = 0: a global map, so the ranking across classes is the raw ranking
    flat = Calibrator(alpha=2.0, beta=-1.0, min_spread=1.0, offset_weight=0.0, per_class_spread=False)
    p = flat(torch.tensor([0.3, 0.6, 0.45]), stats[[0, 1, 0]])
    assert torch.equal(torch.argsort(p), torch.tensor([0, 2, 1]))
    for c in (cal, flat, Calibrator(alpha=1.5, beta=0.2, min_spread=0.01)):  # raw_for inverts standardise
        back = c.raw_for(3.0, stats)
        torch.testing.assert_close(c.standardise(back, stats), torch.tensor([3.0, 3.0]))


def test_global_raw_threshold_inverts_a_global_map_and_is_none_when_class_wise():
    flat = Calibrator(alpha=2.0, beta=-1.0, min_spread=0.05, offset_weight=0.0, per_class_spread=False)
    raw = flat.global_raw_threshold(0.3)
    # z = (logit(0.3) + 1) / 2, raw = z * 0.05; and the map sends it back to 0.3 for any class statistics
    assert raw == pytest.approx((np.log(0.3 / 0.7) + 1.0) / 2.0 * 0.05)
    stats = torch.tensor([[0.1, 0.2], [0.5, 0.9]])
    torch.testing.assert_close(flat(torch.tensor([raw, raw]), stats), torch.tensor([0.3, 0.3]))
    assert flat.global_raw_threshold(0.0) == -np.inf and flat.global_raw_threshold(1.0) == np.inf
    assert 1 / (1 + np.exp(-(2.0 * flat.z_for(0.3) - 1.0))) == pytest.approx(0.3)  # z_for inverts the map
    assert Calibrator(alpha=1.0, beta=0.0, offset_weight=0.25, per_class_spread=False).global_raw_threshold(0.3) is None
    assert Calibrator(alpha=1.0, beta=0.0, offset_weight=0.0).global_raw_threshold(0.3) is None


def test_calibrator_refuses_an_offset_weight_outside_0_1():
    with pytest.raises(Exception, match="offset_weight"):
        Calibrator(alpha=1.0, beta=0.0, offset_weight=1.5)


def test_fit_recovers_a_known_logistic_law():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, 20000)
    p = 1 / (1 + np.exp(-(1.7 * z - 0.8)))
    y = rng.random(z.size) < p
    cal = fit_calibrator(z, y)
    assert cal.alpha == pytest.approx(1.7, rel=0.05) and cal.beta == pytest.approx(-0.8, abs=0.06)


def test_fit_refuses_data_without_both_outcomes():
    with pytest.raises(ValueError, match="both outcomes"):
        fit_calibrator(np.zeros(50), np.zeros(50))


def test_calibrator_refuses_a_decreasing_map():
    with pytest.raises(ValueError, match="alpha > 0"):
        Calibrator(alpha=-1.0, beta=0.0)


def test_background_stats_are_quantiles_of_the_exact_scores_and_bank_round_trip(tmp_path):
    from os2d.model.head import OS2DHead
    from os2d.ops.features import l2_normalize

    g = torch.Generator().manual_seed(0)
    maps = [l2_normalize(torch.randn(8, 9, 11, generator=g), dim=0), l2_normalize(torch.randn(8, 6, 7, generator=g), dim=0)]
    feats = l2_normalize(torch.randn(3, 8, 15, 15, generator=g), dim=1)
    head = OS2DHead(transform_net=None, variant="v1")
    stats = background_stats(head, feats, BackgroundBank(maps=maps), chunk=2)
    scores = torch.cat([head(m[None], feats).scores[0].reshape(3, -1) for m in maps], 1)
    torch.testing.assert_close(stats, torch.quantile(scores, torch.tensor([0.99, 0.999]), dim=1).T)
    bank = BackgroundBank(maps=maps, calibrator=Calibrator(alpha=2.0, beta=-1.0))
    bank.save(tmp_path, model_identity="os2d-test")
    back = BackgroundBank.load(tmp_path)
    assert back.calibrator == bank.calibrator and len(back.maps) == 2
    torch.testing.assert_close(back.maps[0], maps[0], rtol=0, atol=1e-3)  # stored as float16
    assert BackgroundBank.load(tmp_path / "nothing") is None
