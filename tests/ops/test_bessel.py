"""Tests of the log-Bessel functions against mpmath (50 digits) and scipy."""

import functools
import math

import mpmath
import numpy as np
import pytest
import scipy.special
import torch

from ldm_pyro.ops import bessel_ratio, log_bessel_iv, vmf_log_normalizer

ORDERS = [0.0, 0.5, 1.0, 1.5, 6.5, 24.5, 25.0, 63.0, 511.0, 2047.0]
ARGUMENTS = [1e-6, 1e-3, 0.1, 1.0, 5.0, 24.0, 30.0, 100.0, 1e3, 1e4, 1e6]


@functools.cache
def mp_log_iv_and_ratio(nu: float, x: float) -> tuple[float, float]:
    """Reference log I_nu(x) and I_{nu+1}(x) / I_nu(x) from mpmath at 50 digits."""
    with mpmath.workdps(50):
        i_nu = mpmath.besseli(nu, x)
        return float(mpmath.log(i_nu)), float(mpmath.besseli(nu + 1, x) / i_nu)


def relative_error(value: float, reference: float) -> float:
    # Relative to max(|reference|, 1): log I crosses zero, where only an absolute
    # error is meaningful.
    return abs(value - reference) / max(abs(reference), 1.0)


@pytest.mark.parametrize("nu", ORDERS)
def test_log_bessel_iv_matches_mpmath_float64(nu):
    x = torch.tensor(ARGUMENTS, dtype=torch.float64)
    values = log_bessel_iv(nu, x)
    for xi, value in zip(ARGUMENTS, values.tolist(), strict=True):
        reference, _ = mp_log_iv_and_ratio(nu, xi)
        assert relative_error(value, reference) < 1e-13, (nu, xi, value, reference)


@pytest.mark.parametrize("nu", ORDERS)
def test_bessel_ratio_matches_mpmath_float64(nu):
    x = torch.tensor(ARGUMENTS, dtype=torch.float64)
    ratios = bessel_ratio(nu, x)
    for xi, ratio in zip(ARGUMENTS, ratios.tolist(), strict=True):
        _, reference = mp_log_iv_and_ratio(nu, xi)
        assert abs(ratio - reference) <= 1e-13 * reference, (nu, xi, ratio)


def test_log_bessel_iv_tiny_argument_keeps_relative_accuracy():
    # log I_0(x) = x^2/4 - x^4/64 + ...: the value itself is tiny near 0.
    x = torch.tensor([1e-6, 1e-4, 1e-2], dtype=torch.float64)
    values = log_bessel_iv(0, x)
    for xi, value in zip(x.tolist(), values.tolist(), strict=True):
        reference, _ = mp_log_iv_and_ratio(0.0, xi)
        assert abs(value - reference) <= 1e-14 * abs(reference)


@pytest.mark.parametrize("nu", [0.0, 1.5, 63.0, 2047.0])
def test_log_bessel_iv_float32_within_1e5(nu):
    # float32 inputs are rounded first; the reference uses the rounded value.
    x = torch.tensor(ARGUMENTS, dtype=torch.float32)
    values = log_bessel_iv(nu, x)
    ratios = bessel_ratio(nu, x)
    assert values.dtype == torch.float32
    for xi, value, ratio in zip(
        x.tolist(), values.tolist(), ratios.tolist(), strict=True
    ):
        reference, reference_ratio = mp_log_iv_and_ratio(nu, xi)
        assert relative_error(value, reference) < 1e-5, (nu, xi)
        assert abs(ratio - reference_ratio) <= 1e-5 * reference_ratio, (nu, xi)


def test_log_bessel_iv_matches_scipy_ive():
    # scipy.special.ive(nu, x) = I_nu(x) exp(-x); its logarithm plus x is log I.
    rng = np.random.default_rng(0)
    nu = rng.uniform(0, 300, size=200)
    x = 10 ** rng.uniform(-3, 4, size=200)
    scaled = scipy.special.ive(nu, x)
    # ive underflows to 0 for large orders and small arguments; skip those.
    finite = scaled > 1e-300
    reference = np.log(np.where(finite, scaled, 1.0)) + x
    values = log_bessel_iv(torch.from_numpy(nu), torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(values[finite], reference[finite], rtol=1e-12)
    assert finite.sum() > 100


def test_log_bessel_iv_at_zero():
    x = torch.zeros(3, dtype=torch.float64)
    values = log_bessel_iv(torch.tensor([0.0, 0.5, 7.0]), x)
    assert values[0].item() == 0.0
    assert values[1].item() == -math.inf
    assert values[2].item() == -math.inf
    assert bessel_ratio(3.0, torch.tensor(0.0)).item() == 0.0


def test_log_bessel_iv_gradient_at_zero_for_order_zero():
    x = torch.tensor(0.0, requires_grad=True)
    log_bessel_iv(0, x).backward()
    assert x.grad.item() == 0.0


@pytest.mark.parametrize("nu", [0.0, 24.5, 300.0])
def test_log_bessel_iv_gradcheck(nu):
    x = torch.tensor([1e-3, 0.7, 9.0, 60.0, 2e3], requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: log_bessel_iv(nu, t), (x,), fast_mode=True
    )
    assert torch.autograd.gradgradcheck(
        lambda t: log_bessel_iv(nu, t), (x,), fast_mode=True
    )
    assert torch.autograd.gradcheck(lambda t: bessel_ratio(nu, t), (x,), fast_mode=True)


@pytest.mark.parametrize("nu", [0.0, 6.5, 511.0])
def test_log_bessel_iv_gradient_matches_mpmath(nu):
    # d/dx log I_nu(x) = I_{nu+1}(x)/I_nu(x) + nu/x, the reference from mpmath.
    points = [1e-6, 0.5, 40.0, 1e5]
    x = torch.tensor(points, requires_grad=True)
    log_bessel_iv(nu, x).sum().backward()
    for xi, grad in zip(points, x.grad.tolist(), strict=True):
        _, ratio = mp_log_iv_and_ratio(nu, xi)
        reference = ratio + nu / xi
        assert abs(grad - reference) <= 1e-12 * abs(reference), (nu, xi)


@pytest.mark.parametrize("nu", [0.0, 1.0, 24.5, 25.0, 63.0])
def test_log_bessel_iv_smooth_in_x(nu):
    # There is no switch point in x: on a dense grid the autograd derivative agrees
    # with central differences of the value everywhere, so neither the value nor
    # the gradient jumps.
    x = torch.logspace(-3, 4, 2000)
    step = 1e-6 * x
    value_plus = log_bessel_iv(nu, x + step)
    value_minus = log_bessel_iv(nu, x - step)
    numeric = (value_plus - value_minus) / (2 * step)
    x_grad = x.clone().requires_grad_(True)
    log_bessel_iv(nu, x_grad).sum().backward()
    analytic = x_grad.grad
    assert torch.allclose(numeric, analytic, rtol=1e-6, atol=1e-9)
    # The gradient itself varies smoothly: neighbouring relative changes stay small.
    change = (analytic[1:] - analytic[:-1]).abs() / analytic[:-1].abs()
    assert change.max() < 0.02


def test_order_switch_is_continuous():
    # Orders below 25 start at order 25 + fraction and recur downwards; orders at
    # or above 25 use the Debye expansion directly.
    # A jump at the switch would show in the second difference across it, which
    # for a smooth function is O(delta^2).
    x = torch.tensor([1e-4, 1.0, 25.0, 300.0, 1e5])
    delta = 1e-7
    for function in (log_bessel_iv, bessel_ratio):
        below = function(25.0 - delta, x)
        at = function(25.0, x)
        above = function(25.0 + delta, x)
        second_difference = (below - 2 * at + above).abs()
        assert torch.all(second_difference <= 1e-12 * at.abs().clamp(min=1.0))
    for nu in (24.0, 26.0):
        for xi, value in zip(x.tolist(), log_bessel_iv(nu, x).tolist(), strict=True):
            reference, _ = mp_log_iv_and_ratio(nu, xi)
            assert relative_error(value, reference) < 1e-13


def test_broadcasting_of_order_and_argument():
    nu = torch.tensor([[0.0], [2.5], [100.0]])
    x = torch.tensor([0.5, 5.0, 50.0, 500.0])
    values = log_bessel_iv(nu, x)
    assert values.shape == (3, 4)
    reference = torch.stack([log_bessel_iv(float(n), x) for n in nu.flatten()])
    assert torch.allclose(values, reference, rtol=1e-14)
    x.requires_grad_(True)
    log_bessel_iv(nu, x).sum().backward()
    assert x.grad.shape == (4,)


def test_bessel_errors():
    with pytest.raises(ValueError, match="x must be >= 0"):
        log_bessel_iv(1.0, torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="nu must be finite and >= 0"):
        bessel_ratio(-0.5, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="nu must not require grad"):
        log_bessel_iv(torch.tensor(1.0, requires_grad=True), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="kappa must be >= 0"):
        vmf_log_normalizer(3, torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="dim must be an integer >= 2"):
        vmf_log_normalizer(1, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="dim must be an integer >= 2"):
        vmf_log_normalizer(2.5, torch.tensor([1.0]))


# (D, kappa, log C_D(kappa), A_D(kappa)) from mpmath at 50 digits.
REFERENCE_TABLE = [
    (2, 1.0, -2.07379142491652, 0.446389965896535),
    (3, 100.0, -97.2327068804213, 0.99),
    (128, 1.7, 127.042168441967, 0.0132789441293533),
    (128, 800.0, -489.751612269103, 0.923724652994512),
    (2048, 100.0, 4895.94535476385, 0.0487123734746823),
    (2048, 1e-6, 4898.3838626541, 4.8828125e-10),
]


@pytest.mark.parametrize(("dim", "kappa", "log_c", "ratio"), REFERENCE_TABLE)
def test_vmf_log_normalizer_reference_table(dim, kappa, log_c, ratio):
    k = torch.tensor(kappa, requires_grad=True)
    value = vmf_log_normalizer(dim, k)
    value.backward()
    # The table has 15 significant digits.
    assert value.item() == pytest.approx(log_c, rel=1e-13)
    assert bessel_ratio(dim / 2 - 1, k.detach()).item() == pytest.approx(
        ratio, rel=1e-13
    )
    # d/dk log C_D(k) = -A_D(k).
    assert k.grad.item() == pytest.approx(-ratio, rel=1e-13)


@pytest.mark.parametrize("dim", [2, 3, 5, 128, 4096])
def test_vmf_log_normalizer_at_zero_is_uniform(dim):
    # -log |S^(D-1)| = log Gamma(D/2) - log 2 - (D/2) log pi, written out.
    uniform = math.lgamma(dim / 2) - math.log(2) - dim / 2 * math.log(math.pi)
    k = torch.tensor(0.0, requires_grad=True)
    value = vmf_log_normalizer(dim, k)
    value.backward()
    assert value.item() == pytest.approx(uniform, rel=1e-15)
    assert k.grad.item() == 0.0
    # Smooth at 0: log C_D(k) = log C_D(0) - k^2 / (2 D) + O(k^4).
    small = vmf_log_normalizer(dim, torch.tensor(1e-4)).item()
    assert small - uniform == pytest.approx(-1e-8 / (2 * dim), rel=1e-6)


def test_vmf_log_normalizer_three_dimensions_closed_form():
    # log C_3(k) = log k - log(2 pi) - k - log1p(-exp(-2k)).
    kappa = torch.tensor([1e-3, 0.1, 1.0, 10.0, 1e3, 1e6])
    closed = (
        torch.log(kappa)
        - math.log(2 * math.pi)
        - kappa
        - torch.log1p(-torch.exp(-2 * kappa))
    )
    assert torch.allclose(vmf_log_normalizer(3, kappa), closed, rtol=1e-14)


def test_vmf_log_normalizer_float32():
    for dim, kappa, log_c, _ in REFERENCE_TABLE:
        value = vmf_log_normalizer(dim, torch.tensor(kappa, dtype=torch.float32))
        assert value.dtype == torch.float32
        assert value.item() == pytest.approx(log_c, rel=1e-6)
