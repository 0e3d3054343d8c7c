import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from ldm_pyro.plotting import plot_eigenspectrum, plot_embedding, plot_loss_terms

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def history(steps=20):
    return [
        dict(
            epoch=step // 5,
            step=step,
            objective=-1.0 + 0.05 * step,
            alignment=-2.0 + 0.02 * step,
            entropy=1.0 + 0.03 * step,
            loss=1.0 - 0.05 * step,
        )
        for step in range(steps)
    ]


def assert_png(path):
    assert path.is_file()
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_loss_terms_png(tmp_path):
    path = tmp_path / "plots" / "loss.png"
    figure = plot_loss_terms(history(), path)
    assert isinstance(figure, Figure)
    assert_png(path)
    terms, loss = figure.axes
    assert [line.get_label() for line in terms.lines] == [
        "objective",
        "alignment",
        "entropy",
    ]
    np.testing.assert_array_equal(loss.lines[0].get_xdata(), np.arange(20))


def test_loss_terms_without_path_writes_nothing(tmp_path):
    figure = plot_loss_terms(history(3))
    assert isinstance(figure, Figure)
    assert list(tmp_path.iterdir()) == []


def test_loss_terms_rejects_bad_history():
    with pytest.raises(ValueError, match="non-empty list"):
        plot_loss_terms([])
    with pytest.raises(ValueError, match=r"history\[1\] has no 'step' key"):
        plot_loss_terms([dict(step=0, loss=1.0), dict(loss=0.5)])
    with pytest.raises(ValueError, match="none of the terms"):
        plot_loss_terms([dict(step=0, accuracy=0.5)])


def test_embedding_png(tmp_path):
    path = tmp_path / "embedding.png"
    features = torch.randn(200, 6)
    labels = torch.randint(0, 10, (200,))
    figure = plot_embedding(features, labels, path)
    assert_png(path)
    assert len(figure.axes[0].collections) == len(torch.unique(labels))


def test_embedding_is_pca(tmp_path):
    # Reference: the top two principal components from numpy's SVD of the
    # centred data, compared up to the sign of each component.
    features = np.random.default_rng(0).normal(size=(50, 4)) * [5.0, 3.0, 1.0, 0.5]
    figure = plot_embedding(features)
    points = figure.axes[0].collections[0].get_offsets()
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    np.testing.assert_allclose(np.abs(points), np.abs(expected), atol=1e-10)


def test_embedding_rejects_bad_inputs():
    with pytest.raises(ValueError, match="2 dimensions"):
        plot_embedding(np.ones(5))
    with pytest.raises(ValueError, match="D >= 2"):
        plot_embedding(np.ones((5, 1)))
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\)"):
        plot_embedding(np.random.default_rng(0).normal(size=(5, 3)), np.zeros(4))


def test_eigenspectrum_png(tmp_path):
    path = tmp_path / "spectrum.png"
    latents = torch.randn(300, 5) @ torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.0, 0.0]))
    figure = plot_eigenspectrum(latents, path)
    assert_png(path)
    axes = figure.axes[0]
    assert axes.get_yscale() == "log"
    # Reference: numpy's covariance and symmetric eigensolver, sorted down, with
    # the zero eigenvalues raised to the floor of 1e-12 times the largest.
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(latents.numpy(), rowvar=False)))
    expected = eigenvalues[::-1].copy()
    expected[3:] = 1e-12 * expected[0]
    np.testing.assert_allclose(axes.lines[0].get_ydata(), expected, rtol=1e-10)


def test_eigenspectrum_rejects_single_sample():
    with pytest.raises(ValueError, match="N >= 2"):
        plot_eigenspectrum(np.ones((1, 3)))


def test_plotting_leaves_pyplot_unloaded(tmp_path):
    script = (
        "import sys, numpy as np\n"
        "from ldm_pyro.plotting import plot_eigenspectrum\n"
        f"plot_eigenspectrum(np.eye(4), {str(tmp_path / 'a.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
