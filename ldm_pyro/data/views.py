r"""Random view augmentations that make the paired views ``x, x'`` of two-view SSL.

Each augmentation is an ``nn.Module`` called as ``augment(x, generator=None)`` that
transforms a whole batch at once, drawing every random number from ``generator``
(or from the global torch random state when it is ``None``). The same generator
state therefore gives the same views. Augmentations apply in both training and
evaluation mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional

from .._validation import check_tensor

PADDING_MODES = ("zeros", "border", "reflection")


def _check_nonnegative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number >= 0, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(
            f"{name} must be a finite number >= 0, got {value!r}; pass 0 to disable it"
        )
    return number


def _check_probability(name: str, value: float) -> float:
    number = _check_nonnegative(name, value)
    if number > 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return number


def _check_scale_range(scale: Sequence[float]) -> tuple[float, float]:
    if isinstance(scale, str) or not isinstance(scale, Sequence) or len(scale) != 2:
        raise ValueError(
            f"scale must be a pair (min, max) of zoom factors, got {scale!r}; pass "
            "for example scale=(0.9, 1.1), or (1.0, 1.0) to disable zooming"
        )
    low = _check_nonnegative("scale[0]", scale[0])
    high = _check_nonnegative("scale[1]", scale[1])
    if low <= 0 or low > high:
        raise ValueError(
            f"scale must satisfy 0 < min <= max, got {tuple(scale)!r}; pass for "
            "example scale=(0.9, 1.1)"
        )
    return low, high


def _check_floating_batch(name: str, x: torch.Tensor, ndim: int | None) -> torch.Tensor:
    check_tensor(name, x, ndim=ndim)
    if x.dim() == 0:
        raise ValueError(f"{name} must have shape (N, ...), got a scalar tensor")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it "
            "with x.float()"
        )
    return x


def _uniform(
    low: float,
    high: float,
    size: int,
    generator: torch.Generator | None,
    like: torch.Tensor,
) -> torch.Tensor:
    """Draw ``size`` numbers from ``U(low, high)`` on the device of ``generator``."""
    # NOTE: the test suite runs on CPU only, so the copy of draws from a CPU
    # generator to a CUDA batch is untested.
    device = like.device if generator is None else generator.device
    draw = torch.rand(size, generator=generator, device=device, dtype=like.dtype)
    return (low + (high - low) * draw).to(like.device)


def affine_theta(
    angle: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    r"""Build ``F.affine_grid`` matrices for rotations, zooms and shifts in pixels.

    The content of image ``n`` moves by the map :math:`p \mapsto s_n R(a_n) p +
    t_n` in pixel coordinates about the image centre, where :math:`R(a)` rotates
    by ``a`` degrees (counter-clockwise as displayed, with the row index pointing
    down). ``F.grid_sample`` needs the inverse map in normalized coordinates
    (``align_corners=False``), where pixel coordinates are
    :math:`p = D u` with :math:`D = \mathrm{diag}(W/2, H/2)`:

    .. math::

        u_{in} = D^{-1} M D\, u_{out} - D^{-1} M t, \qquad M = R(-a) / s .

    Writing the rotation in pixel units keeps it a rotation on non-square images.

    Args:
        angle: rotation angles in degrees.
        scale: zoom factors (> 1 enlarges the content).
        shift: translations ``(t_x, t_y)`` in pixels (right and down are
            positive).
        height: image height ``H`` in pixels.
        width: image width ``W`` in pixels.

    Returns:
        The matrices ``theta`` for ``F.affine_grid(theta, size,
        align_corners=False)``.

    Shapes:
        ``angle``, ``scale``: ``(N,)``; ``shift``: ``(N, 2)``; returns
        ``(N, 2, 3)``.
    """
    radians = torch.deg2rad(angle)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # M = R(-a) / s in the displayed frame. With the row index pointing down, a
    # counter-clockwise rotation of the content by a is the matrix
    # [[cos, sin], [-sin, cos]] in (x, y) pixel coordinates; M is its inverse
    # divided by s.
    m00, m01 = cos / scale, -sin / scale
    m10, m11 = sin / scale, cos / scale
    half_w, half_h = width / 2.0, height / 2.0
    # D^{-1} M D scales the off-diagonal terms by the aspect ratio.
    a00 = m00
    a01 = m01 * half_h / half_w
    a10 = m10 * half_w / half_h
    a11 = m11
    tx, ty = shift[:, 0], shift[:, 1]
    b0 = -(m00 * tx + m01 * ty) / half_w
    b1 = -(m10 * tx + m11 * ty) / half_h
    row0 = torch.stack([a00, a01, b0], dim=-1)
    row1 = torch.stack([a10, a11, b1], dim=-1)
    return torch.stack([row0, row1], dim=-2)


class ViewAugmentation(nn.Module):
    r"""Random rotation, zoom, shift, pixel noise and cutout of a batch of images.

    Each image gets an independent affine map with angle
    :math:`a \sim U(-\mathrm{rotation}, \mathrm{rotation})` degrees, zoom
    :math:`s \sim U(\mathrm{scale}_0, \mathrm{scale}_1)` and shift
    :math:`t_x, t_y \sim U(-\mathrm{translate}, \mathrm{translate})` pixels,
    applied with one batched ``F.affine_grid`` and bilinear ``F.grid_sample``
    (see :func:`affine_theta`). Then i.i.d. Gaussian noise with standard deviation
    ``noise_std`` is added to every pixel. Last, with probability ``cutout_p``, a
    ``cutout x cutout`` square centred at a uniformly drawn pixel is set to 0 in
    all channels. A square near the border is clipped to the image. Pixels that
    the warp moves in from outside the image are filled according to
    ``padding_mode``. Values are not clipped, so noise can leave ``[0, 1]``.

    Args:
        rotation: maximum absolute rotation in degrees.
        translate: maximum absolute shift along each axis, in pixels.
        scale: range ``(min, max)`` of the zoom factor, ``0 < min <= max``.
        noise_std: standard deviation of the additive pixel noise.
        cutout: side of the erased square in pixels; 0 disables cutout.
        cutout_p: probability that an image gets a cutout square.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``, as in
            ``F.grid_sample``.

    Shapes:
        Input and output: ``(N, C, H, W)``, floating point.
    """

    def __init__(
        self,
        rotation: float = 10.0,
        translate: float = 1.0,
        scale: Sequence[float] = (0.9, 1.1),
        noise_std: float = 0.05,
        cutout: int = 2,
        cutout_p: float = 0.5,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        self.rotation = _check_nonnegative("rotation", rotation)
        self.translate = _check_nonnegative("translate", translate)
        self.scale = _check_scale_range(scale)
        self.noise_std = _check_nonnegative("noise_std", noise_std)
        if isinstance(cutout, bool) or not isinstance(cutout, int) or cutout < 0:
            raise ValueError(
                f"cutout must be an integer square side >= 0 in pixels, got "
                f"{cutout!r}; pass 0 to disable cutout"
            )
        self.cutout = cutout
        self.cutout_p = _check_probability("cutout_p", cutout_p)
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}"
            )
        self.padding_mode = padding_mode

    def extra_repr(self) -> str:
        """Return the settings shown by ``repr``."""
        return (
            f"rotation={self.rotation}, translate={self.translate}, "
            f"scale={self.scale}, noise_std={self.noise_std}, cutout={self.cutout}, "
            f"cutout_p={self.cutout_p}, padding_mode={self.padding_mode!r}"
        )

    @property
    def warps(self) -> bool:
        """Whether the settings move pixels (rotation, shift or zoom)."""
        return self.rotation > 0 or self.translate > 0 or self.scale != (1.0, 1.0)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Return an augmented copy of the batch ``x``."""
        _check_floating_batch("x", x, 4)
        num, _, height, width = x.shape
        out = x
        if self.warps and num > 0:
            angle = _uniform(-self.rotation, self.rotation, num, generator, x)
            zoom = _uniform(self.scale[0], self.scale[1], num, generator, x)
            shift = _uniform(-self.translate, self.translate, 2 * num, generator, x)
            theta = affine_theta(angle, zoom, shift.view(num, 2), height, width)
            grid = functional.affine_grid(theta, list(x.shape), align_corners=False)
            out = functional.grid_sample(
                x,
                grid,
                mode="bilinear",
                padding_mode=self.padding_mode,
                align_corners=False,
            )
        if self.noise_std > 0:
            device = x.device if generator is None else generator.device
            noise = torch.randn(
                x.shape, generator=generator, device=device, dtype=x.dtype
            )
            out = out + self.noise_std * noise.to(x.device)
        if self.cutout > 0 and self.cutout_p > 0:
            out = self._cutout(out, generator)
        return out

    def _cutout(
        self, x: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        num, _, height, width = x.shape
        device = x.device if generator is None else generator.device
        apply = torch.rand(num, generator=generator, device=device) < self.cutout_p
        row = torch.randint(0, height, (num,), generator=generator, device=device)
        col = torch.randint(0, width, (num,), generator=generator, device=device)
        apply, row, col = apply.to(x.device), row.to(x.device), col.to(x.device)
        top = (row - self.cutout // 2)[:, None]
        left = (col - self.cutout // 2)[:, None]
        rows = torch.arange(height, device=x.device)[None, :]
        cols = torch.arange(width, device=x.device)[None, :]
        in_rows = (rows >= top) & (rows < top + self.cutout)
        in_cols = (cols >= left) & (cols < left + self.cutout)
        box = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
        return x.masked_fill(box[:, None], 0.0)


class NoiseAugmentation(nn.Module):
    r"""Additive Gaussian noise and random feature masking for feature vectors.

    .. math::

        x' = m \odot (x + \sigma \epsilon), \qquad
        \epsilon \sim N(0, I), \quad m_i \sim \mathrm{Bernoulli}(1 - p)

    Masked features are set to 0 without rescaling the others, unlike
    ``nn.Dropout``.

    Args:
        noise_std: the standard deviation ``sigma`` of the noise.
        dropout_p: the probability ``p`` that a feature is masked.

    Shapes:
        Input and output: ``(N, ...)``, floating point.
    """

    def __init__(self, noise_std: float = 0.05, dropout_p: float = 0.0):
        super().__init__()
        self.noise_std = _check_nonnegative("noise_std", noise_std)
        self.dropout_p = _check_probability("dropout_p", dropout_p)
        if self.dropout_p == 1:
            raise ValueError(
                "dropout_p must be < 1, got 1.0, which masks every feature; pass for "
                "example dropout_p=0.1"
            )

    def extra_repr(self) -> str:
        """Return the settings shown by ``repr``."""
        return f"noise_std={self.noise_std}, dropout_p={self.dropout_p}"

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Return a noisy, masked copy of the batch ``x``."""
        _check_floating_batch("x", x, None)
        device = x.device if generator is None else generator.device
        out = x
        if self.noise_std > 0:
            noise = torch.randn(
                x.shape, generator=generator, device=device, dtype=x.dtype
            )
            out = out + self.noise_std * noise.to(x.device)
        if self.dropout_p > 0:
            draw = torch.rand(x.shape, generator=generator, device=device)
            out = out * (draw.to(x.device) >= self.dropout_p).to(x.dtype)
        return out


def make_views(
    x: torch.Tensor,
    augment: Callable[..., torch.Tensor],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw two independently augmented views of the batch ``x``.

    Args:
        x: the batch.
        augment: an augmentation called as ``augment(x, generator=generator)``,
            for example :class:`ViewAugmentation` or :class:`NoiseAugmentation`.
        generator: source of the random numbers of both views, advanced by each
            call.

    Returns:
        ``(x_view, x_view_prime)``, each with the shape of ``x``.
    """
    first = augment(x, generator=generator)
    second = augment(x, generator=generator)
    return first, second
