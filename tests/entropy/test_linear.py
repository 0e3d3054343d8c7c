import numpy as np
import pytest
import torch
from torch import nn

from ldm_pyro.entropy import LinearJacobianEntropy, RotationLinear, UnmixingLinear


def _with_weight(weight):
    linear = UnmixingLinear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(weight)
    return linear


def _half_logdet_gram(weight):
    # Reference: numpy slogdet of the smaller Gram matrix, 1/2 log|W W^T|.
    w = weight.detach().numpy()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return 0.5 * np.linalg.slogdet(gram)[1]


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (5, 3)])
def test_value_matches_numpy(shape):
    weight = torch.randn(*shape)
    entropy = LinearJacobianEntropy(_with_weight(weight))
    value = entropy(torch.zeros(7, shape[0]))
    assert float(value.detach()) == pytest.approx(_half_logdet_gram(weight), rel=1e-12)


def test_square_value_is_log_abs_det():
    weight = torch.randn(3, 3)
    value = LinearJacobianEntropy(_with_weight(weight)).log_volume(weight)
    expected = np.log(abs(np.linalg.det(weight.numpy())))
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_ridge_goes_on_diagonal():
    weight = torch.randn(2, 4)
    eps = 0.3
    value = LinearJacobianEntropy(_with_weight(weight), eps=eps)(torch.zeros(3, 2))
    w = weight.numpy()
    expected = 0.5 * np.linalg.slogdet(w @ w.T + eps * np.eye(2))[1]
    assert float(value.detach()) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("shape", [(3, 3), (2, 4), (4, 2)])
def test_gradient_matches_finite_differences(shape):
    # Reference: central differences of numpy's 1/2 log|W W^T|, step 1e-6.
    weight = torch.randn(*shape)
    linear = _with_weight(weight)
    entropy = LinearJacobianEntropy(linear)
    entropy(torch.zeros(2, shape[0])).backward()
    step = 1e-6
    numeric = np.zeros(shape)
    for i in range(shape[0]):
        for j in range(shape[1]):
            plus = weight.clone()
            minus = weight.clone()
            plus[i, j] += step
            minus[i, j] -= step
            numeric[i, j] = (_half_logdet_gram(plus) - _half_logdet_gram(minus)) / (
                2 * step
            )
    np.testing.assert_allclose(
        linear.weight.grad.numpy(), numeric, rtol=1e-6, atol=1e-8
    )


def test_square_gradient_is_inverse_transpose():
    # Standard formula: d log|det W| / dW = W^{-T}.
    weight = torch.randn(4, 4)
    linear = _with_weight(weight)
    LinearJacobianEntropy(linear)(torch.zeros(1, 4)).backward()
    torch.testing.assert_close(linear.weight.grad, torch.linalg.inv(weight).T)


@pytest.mark.parametrize("shape", [(3, 3), (2, 4), (4, 2)])
def test_gradcheck(shape):
    weight = torch.randn(*shape, requires_grad=True)
    entropy = LinearJacobianEntropy(_with_weight(weight.detach()))
    assert torch.autograd.gradcheck(entropy.log_volume, (weight,))


def test_accepts_torch_linear():
    linear = nn.Linear(3, 3)
    value = LinearJacobianEntropy(linear)(torch.zeros(2, 3))
    expected = np.linalg.slogdet(linear.weight.detach().numpy())[1]
    assert float(value.detach()) == pytest.approx(expected, rel=1e-12)


def test_singular_square_weight_rejected():
    entropy = LinearJacobianEntropy(
        _with_weight(torch.tensor([[1.0, 2.0], [2.0, 4.0]]))
    )
    with pytest.raises(ValueError, match="singular"):
        entropy(torch.zeros(3, 2))


def test_rank_deficient_nonsquare_weight_rejected():
    weight = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    entropy = LinearJacobianEntropy(_with_weight(weight))
    with pytest.raises(ValueError, match="not positive definite"):
        entropy(torch.zeros(3, 2))


def test_ridge_makes_singular_weight_finite():
    weight = torch.tensor([[1.0, 2.0], [2.0, 4.0]])
    value = LinearJacobianEntropy(_with_weight(weight), eps=1e-3)(torch.zeros(3, 2))
    assert torch.isfinite(value)


def test_nonfinite_weight_rejected():
    entropy = LinearJacobianEntropy(
        _with_weight(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    )
    with pytest.raises(ValueError, match="NaN or Inf"):
        entropy(torch.zeros(3, 2))


def test_latent_dimension_checked():
    entropy = LinearJacobianEntropy(UnmixingLinear(3))
    with pytest.raises(ValueError, match="last dimension 3"):
        entropy(torch.zeros(5, 2))


def test_module_without_weight_rejected():
    with pytest.raises(TypeError, match="2-D weight"):
        LinearJacobianEntropy(nn.ReLU())


def test_negative_eps_rejected():
    with pytest.raises(ValueError, match="eps must be"):
        LinearJacobianEntropy(UnmixingLinear(2), eps=-1.0)


def test_unmixing_starts_at_identity():
    linear = UnmixingLinear(3, 2)
    torch.testing.assert_close(linear.weight.detach(), torch.eye(2, 3))
    x = torch.randn(4, 3)
    torch.testing.assert_close(linear(x), x[:, :2])


def test_rotation_is_orthogonal_with_unit_determinant():
    linear = RotationLinear(4, init_scale=1.0)
    weight = linear.weight.detach()
    assert linear.skew_entries.shape == (6,)
    torch.testing.assert_close(weight @ weight.T, torch.eye(4))
    assert float(torch.linalg.det(weight)) == pytest.approx(1.0, rel=1e-12)


def test_rotation_entropy_is_zero():
    linear = RotationLinear(3, init_scale=0.5)
    value = LinearJacobianEntropy(linear)(torch.zeros(2, 3))
    assert float(value) == 0.0


def test_rotation_two_dimensional_angle():
    # exp([[0, a], [-a, 0]]) = [[cos a, sin a], [-sin a, cos a]].
    linear = RotationLinear(2, init_scale=0.0)
    with torch.no_grad():
        linear.skew_entries.fill_(0.35)
    expected = torch.tensor(
        [[np.cos(0.35), np.sin(0.35)], [-np.sin(0.35), np.cos(0.35)]]
    )
    torch.testing.assert_close(linear.weight.detach(), expected)


def test_rotation_invalid_arguments_rejected():
    with pytest.raises(ValueError, match="features must be a positive integer"):
        RotationLinear(0)
    with pytest.raises(ValueError, match="init_scale must be finite"):
        RotationLinear(2, init_scale=-1.0)
