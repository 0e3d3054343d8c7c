import math

import numpy as np
import pytest
import torch
from scipy import spatial, special
from torch.nn import functional

from ldm_pyro.entropy import ESTIMATORS, KNNEntropy
from ldm_pyro.entropy.knn import log_unit_ball_volume


def brute_force_kl(points, k, p, dim, log_volume):
    # Reference: k-th neighbour distances from scipy.spatial.cKDTree (the first
    # neighbour returned is the point itself) and scipy's digamma.
    tree = spatial.cKDTree(points)
    distances, _ = tree.query(points, k=k + 1, p=p)
    samples = len(points)
    return (
        special.digamma(samples)
        - special.digamma(k)
        + log_volume
        + dim * np.mean(np.log(distances[:, k]))
    )


def log_euclidean_ball_volume(dim):
    # pi^(d/2) / Gamma(d/2 + 1)
    return 0.5 * dim * math.log(math.pi) - special.gammaln(0.5 * dim + 1)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_ckdtree_euclidean(k):
    points = np.random.default_rng(7).normal(size=(40, 3))
    estimator = KNNEntropy(k=k, clip_quantile=1.0)
    reference = brute_force_kl(points, k, 2, 3, log_euclidean_ball_volume(3))
    assert estimator(torch.from_numpy(points)).item() == pytest.approx(
        reference, abs=1e-10
    )


@pytest.mark.parametrize(
    ("p", "log_volume"),
    [
        # Cross-polytope volume 2^d / d! and cube volume 2^d.
        (1.0, 4 * math.log(2.0) - math.lgamma(5)),
        (math.inf, 4 * math.log(2.0)),
    ],
)
def test_matches_ckdtree_other_norms(p, log_volume):
    points = np.random.default_rng(8).normal(size=(30, 4))
    estimator = KNNEntropy(k=2, p=p, clip_quantile=1.0)
    reference = brute_force_kl(points, 2, p, 4, log_volume)
    assert estimator(torch.from_numpy(points)).item() == pytest.approx(
        reference, abs=1e-10
    )


def test_unit_ball_volume_general_p():
    # p = 2 against the Euclidean formula, and p = 3 in d = 1 (the interval [-1, 1]).
    for dim in [1, 2, 5, 64]:
        assert log_unit_ball_volume(dim, 2.0) == pytest.approx(
            log_euclidean_ball_volume(dim), abs=1e-12
        )
    assert log_unit_ball_volume(1, 3.0) == pytest.approx(math.log(2.0), abs=1e-14)


def test_gaussian_large_sample():
    # Reference: closed-form entropy of N(0, Sigma) in d = 3. Over 20 seeds with
    # N = 4000 the error had mean -0.025 and standard deviation 0.024 (largest
    # 0.080); the tolerance 0.1 is about the bias plus three standard deviations.
    covariance = torch.tensor([[2.0, 0.6, 0.0], [0.6, 1.0, 0.2], [0.0, 0.2, 0.5]])
    truth = 1.5 * (1 + math.log(2 * math.pi)) + 0.5 * torch.logdet(covariance).item()
    samples = torch.distributions.MultivariateNormal(torch.zeros(3), covariance).sample(
        (4000,)
    )
    value = KNNEntropy(clip_quantile=1.0)(samples).item()
    assert value == pytest.approx(truth, abs=0.1)


def test_uniform_box_large_sample():
    # Reference: log of the box area. Over 20 seeds with N = 4000 the error had
    # mean 0.025 (the boundary bias) and standard deviation 0.014 (largest 0.067);
    # the tolerance 0.08 is about the bias plus four standard deviations.
    sides = torch.tensor([2.0, 0.5])
    samples = torch.rand(4000, 2) * sides
    value = KNNEntropy(clip_quantile=1.0)(samples).item()
    assert value == pytest.approx(torch.log(sides).sum().item(), abs=0.08)


def test_clipping_at_detached_quantile():
    # Reference: the formula with the k-th distances clipped at numpy's quantile.
    points = np.random.default_rng(9).normal(size=(50, 2))
    tree = spatial.cKDTree(points)
    distances = tree.query(points, k=4)[0][:, 3]
    clipped = np.minimum(distances, np.quantile(distances, 0.9))
    reference = (
        special.digamma(50)
        - special.digamma(3)
        + log_euclidean_ball_volume(2)
        + 2 * np.mean(np.log(clipped))
    )
    z = torch.from_numpy(points).requires_grad_(True)
    value = KNNEntropy()(z)
    assert value.item() == pytest.approx(reference, abs=1e-10)
    value.backward()
    far = distances > np.quantile(distances, 0.9)
    # Clipped points get no gradient from their own distance; they can still get
    # gradient as the neighbour of another point.
    assert far.sum() == 5
    assert torch.isfinite(z.grad).all()


def test_clip_keeps_gradient_of_points_below_quantile():
    # Reference: the gradient of the unclipped distances masked to those at or
    # below the detached bound.
    z = torch.randn(30, 2, requires_grad=True)
    estimator = KNNEntropy()
    distances = estimator.neighbour_distances(z)
    bound = torch.quantile(distances.detach(), 0.9)
    weights = torch.randn(30)
    clipped = (estimator._clip(distances) * weights).sum()
    (gradient,) = torch.autograd.grad(clipped, z, retain_graph=True)
    masked = (distances * weights * (distances <= bound)).sum()
    (expected,) = torch.autograd.grad(masked, z)
    assert torch.allclose(gradient, expected, atol=1e-12)


def test_published_form():
    # Reference: the public implementation's expression written out with
    # torch.cdist and topk: mean log(clip(eps, max=q) + 1e-8).
    z = torch.randn(40, 5)
    distances = torch.cdist(z, z)
    kth = torch.topk(distances, 4, largest=False).values[:, -1]
    kth = kth.clamp(min=0.0, max=1e6)
    kth = torch.clamp(kth, max=torch.quantile(kth, 0.9))
    reference = torch.log(kth + 1e-8).mean().item()
    value = KNNEntropy(published=True)(z).item()
    assert value == pytest.approx(reference, abs=1e-10)


def test_include_constant_false_drops_constants():
    z = torch.randn(20, 3)
    full = KNNEntropy(clip_quantile=1.0)(z).item()
    bare = KNNEntropy(clip_quantile=1.0, include_constant=False)(z).item()
    constant = special.digamma(20) - special.digamma(3) + log_euclidean_ball_volume(3)
    assert full - bare == pytest.approx(constant, abs=1e-12)


def test_sphere_dimension():
    z = functional.normalize(torch.randn(25, 4), dim=1)
    z_prime = functional.normalize(torch.randn(25, 4), dim=1)
    sphere = KNNEntropy(dim="sphere", clip_quantile=1.0, include_constant=False)
    ambient = KNNEntropy(clip_quantile=1.0, include_constant=False)
    assert sphere.intrinsic_dim(4) == 3
    assert sphere.intrinsic_dim(4, views=2) == 6
    assert sphere(z).item() == pytest.approx(ambient(z).item() * 3 / 4, abs=1e-12)
    assert sphere(z, z_prime).item() == pytest.approx(
        ambient(z, z_prime).item() * 6 / 8, abs=1e-12
    )


def test_integer_dimension():
    estimator = KNNEntropy(dim=2)
    assert estimator.intrinsic_dim(10) == 2
    assert estimator.intrinsic_dim(10, views=2) == 4


def test_sphere_rejects_one_dimensional_latents():
    with pytest.raises(ValueError, match="D >= 2, got D = 1"):
        KNNEntropy(dim="sphere")(torch.randn(10, 1))


def test_joint_uses_concatenation():
    z = torch.randn(20, 2)
    z_prime = torch.randn(20, 2)
    estimator = KNNEntropy()
    assert estimator(z, z_prime).item() == pytest.approx(
        estimator(torch.cat([z, z_prime], dim=1)).item(), abs=1e-14
    )


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("published", [False, True])
def test_coinciding_points_finite(p, published):
    base = torch.randn(5, 3)
    z = torch.cat([base, base, base, base]).requires_grad_(True)
    value = KNNEntropy(p=p, published=published)(z)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(z.grad).all()


# Clipping is off here: the detached quantile makes the gradient of a clipped
# estimate differ from finite differences on purpose.
@pytest.mark.parametrize(
    "estimator",
    [
        KNNEntropy(clip_quantile=1.0),
        KNNEntropy(clip_quantile=1.0, dim="sphere"),
        KNNEntropy(p=1.5, k=2, clip_quantile=1.0),
        KNNEntropy(published=True, clip_quantile=1.0),
    ],
    ids=["euclidean", "sphere", "p-1.5", "published"],
)
def test_gradcheck(estimator):
    z = torch.randn(12, 3, requires_grad=True)
    assert torch.autograd.gradcheck(estimator, (z,))


def test_float32_matches_float64():
    # The neighbour distance is recomputed from the two rows, so float32 keeps
    # about seven digits; 1e-4 covers the logarithms of a 64-point batch.
    z = torch.randn(64, 6)
    reference = KNNEntropy()(z).item()
    value = KNNEntropy()(z.float())
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(reference, abs=1e-4)


def test_batch_too_small():
    with pytest.raises(ValueError, match="at least 4 samples, got z with 3"):
        KNNEntropy(k=3)(torch.randn(3, 2))
    with pytest.raises(ValueError, match="at least 6 samples, got z_prime with 5"):
        KNNEntropy(k=5).marginal_sum(torch.randn(6, 2), torch.randn(5, 2))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"k": 0}, r"k must be an integer >= 1, got 0"),
        ({"k": 2.5}, r"k must be an integer >= 1, got 2.5"),
        ({"p": 0.5}, r"p must be a number with 1 <= p <= inf, got 0.5"),
        ({"clip_quantile": 0.0}, r"clip_quantile must be in \(0, 1\], got 0.0"),
        ({"clip_quantile": 1.5}, r"clip_quantile must be in \(0, 1\], got 1.5"),
        ({"dim": "torus"}, r"dim must be one of \('ambient', 'sphere'\) or an integer"),
        ({"dim": 0}, r"dim must be one of .* or an integer >= 1, got 0"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        KNNEntropy(**kwargs)


def test_registry_builds_knn():
    assert isinstance(ESTIMATORS["knn"](k=5, dim="sphere"), KNNEntropy)
