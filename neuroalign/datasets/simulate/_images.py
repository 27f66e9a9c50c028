"""Procedural RGB stimuli in three families: gratings, shapes on backgrounds, textured scenes.

Everything is a pure function of the seed, so the same call gives the same pixels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FAMILIES", "make_images"]

FAMILIES = ("grating", "shape", "texture")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size) + 0.5) / size - 0.5
    return np.meshgrid(c, c, indexing="xy")  # x to the right, y downward


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.05, 0.95, 3)


def _grating(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    theta = rng.uniform(0, np.pi)
    freq = rng.uniform(2.0, 12.0)
    phase = rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (x * np.cos(theta) + y * np.sin(theta)) + phase)
    if rng.random() < 0.5:  # square-wave variant
        wave = (wave > 0.5).astype(float)
    sigma = rng.uniform(0.2, 0.6)
    env = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    c1, c2, bg = _colour(rng), _colour(rng), _colour(rng) * 0.5 + 0.25
    img = wave[..., None] * c1 + (1 - wave[..., None]) * c2
    return env[..., None] * img + (1 - env[..., None]) * bg


def _shape_mask(kind: str, x, y, cx, cy, r, angle) -> np.ndarray:
    xr_ = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
    yr_ = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
    if kind == "disc":
        return (xr_**2 + yr_**2) <= r**2
    if kind == "square":
        return (np.abs(xr_) <= r) & (np.abs(yr_) <= r)
    if kind == "triangle":
        return (yr_ <= r / 2) & (yr_ >= -r + 2 * np.abs(xr_) * 1.2)
    if kind == "cross":
        return ((np.abs(xr_) <= r / 3) & (np.abs(yr_) <= r)) | (
            (np.abs(yr_) <= r / 3) & (np.abs(xr_) <= r)
        )
    raise ValueError(kind)


SHAPES = ("disc", "square", "triangle", "cross")


def _shape(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    top, bottom = _colour(rng), _colour(rng)
    t = (y + 0.5)[..., None]
    img = (1 - t) * top + t * bottom
    for _ in range(rng.integers(1, 4)):
        kind = SHAPES[rng.integers(len(SHAPES))]
        r = rng.uniform(0.08, 0.25)
        cx, cy = rng.uniform(-0.5 + r, 0.5 - r, 2)
        m = _shape_mask(kind, x, y, cx, cy, r, rng.uniform(0, np.pi))
        img[m] = _colour(rng)
    return img


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    f = np.fft.fftfreq(size)
    fx, fy = np.meshgrid(f, f)
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / size) ** scale
    spec = amp * np.exp(2j * np.pi * rng.random((size, size)))
    field = np.real(np.fft.ifft2(spec))
    return (field - field.min()) / (np.ptp(field) + 1e-12)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    horizon = rng.uniform(-0.3, 0.3)
    sky = _colour(rng)
    ground = _colour(rng)
    tex = _smooth_noise(rng, size, rng.uniform(1.0, 2.2))
    ground_img = ground * (0.5 + tex[..., None])
    sky_img = sky * (0.8 + 0.3 * _smooth_noise(rng, size, 2.5)[..., None])
    below = (y > horizon + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * x))[..., None]
    return np.where(below, ground_img, sky_img)


_MAKERS = {"grating": _grating, "shape": _shape, "texture": _texture}


def make_images(
    n_images: int, size: int = 96, *, seed: int = 0, families=FAMILIES
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n_images`` RGB images, cycling through ``families``.

    Returns
    -------
    images : ndarray, uint8, shape (n_images, size, size, 3)
    family : ndarray of str, shape (n_images,)
    """
    unknown = [f for f in families if f not in _MAKERS]
    if unknown:
        raise ValueError(
            f"Invalid value for 'families' in make_images(): {unknown!r}. "
            f"Expected any of {list(_MAKERS)!r}."
        )
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**32 - 1, size=n_images)
    fam = np.array([families[i % len(families)] for i in range(n_images)])
    out = np.empty((n_images, size, size, 3), dtype=np.uint8)
    for i in range(n_images):
        img = _MAKERS[fam[i]](np.random.default_rng(int(seeds[i])), size)
        out[i] = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    return out, fam
