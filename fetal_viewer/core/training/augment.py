"""Ultrasound-appropriate augmentation, applied between the FOV crop/resize and normalisation.

It works on the ``(S, S, 3)`` uint8 square produced by :func:`preprocess.resize_pad`, so
the field-of-view crop before it and :func:`preprocess.to_tensor_array` after it are the
exact inference-time steps. What it does, and why:

* left-right flip only: the probe is at the top of the image, so vertical flips would
  show anatomy upside down;
* small rotation (+-10 deg), scale (0.9-1.1), translation (+-6 %) and stretch (width to
  height x0.9-1.1): probe angle, depth, and the fan shape of probes with another radius;
* a narrower dynamic range (grey values pushed away from white by x1-1.3, black clipped):
  log-compression settings;
* gain (brightness x0.7-1.35) and contrast (gamma 0.7-1.45): gain and grey-map settings;
* a depth-dependent gain ramp (x(1-t) at the top to x(1+t) at the bottom, t up to 0.45):
  time-gain compensation and attenuation (transmit frequency) differ between probes;
* a colour tint (each RGB channel x0.8-1.0): scanners show B-mode through tinted grey maps;
* blur (Gaussian sigma up to 1.3 input pixels): point-spread function;
* on request (``train --noise-floor G``), a thermal noise floor that rises with depth, inside
  the fan only (noise added to the echo intensity under a nominal 50 dB log compression,
  reaching a grey level drawn up to G at the bottom, 40 dB weaker at the top): the TGC lifts
  the receiver's noise with the echoes it gives back, most for probes with a high transmit
  frequency;
* multiplicative speckle noise (sigma up to 0.15) whose grain is blurred by up to 1.5 input
  pixels: ultrasound texture, coarser for wider point-spread functions.

:func:`augment_pair` moves a lesion mask with the image (for `--cam-guidance`).

The ranges are generic machine variation; they are what lets a model meet a scanner it has
not seen (leave-one-center-out). The stretch, dynamic range, wider ramp, blur and grain were
added after re-rendering held-out center D's patients with one scanner setting at a time taken
from a training center showed that each of its probe shape, point-spread function, transmit
frequency and dynamic range lay outside the narrower ranges and cost accuracy. The noise floor
was added when the same test on held-out center B (a 5 MHz probe) showed that its transmit
frequency, mostly through the noise the TGC lifts in the far field, hid late encephaloceles.

Every draw comes from a generator seeded by ``(seed, epoch, index)``, so a run is
reproducible and a resumed run sees the same augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class AugmentSpec:
    flip: bool = True
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.06
    stretch: float = 0.1
    dynamic_range: tuple[float, float] = (1.0, 1.3)
    gain: tuple[float, float] = (0.7, 1.35)
    gamma: tuple[float, float] = (0.7, 1.45)
    depth_ramp: float = 0.45
    tint: float = 0.2
    blur: float = 1.3
    noise_floor: float = 0.0  # 0: off
    speckle: float = 0.15
    speckle_grain: float = 1.5


def augment(
    image: NDArray[np.uint8], rng: np.random.Generator, spec: AugmentSpec = AugmentSpec()
) -> NDArray[np.uint8]:
    """One random ultrasound-style variation of a ``(S, S, 3)`` uint8 square."""
    return augment_pair(image, None, rng, spec)[0]


def augment_pair(
    image: NDArray[np.uint8],
    mask: NDArray[np.uint8] | None,
    rng: np.random.Generator,
    spec: AugmentSpec = AugmentSpec(),
) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
    """:func:`augment` of ``image``, with ``mask`` (``(S, S)`` uint8) moved by the same flip,
    rotation, scale, stretch and translation. The random draws do not depend on ``mask``."""
    import cv2

    img: np.ndarray = np.asarray(image)
    size_h, size_w = img.shape[:2]
    if spec.flip and rng.random() < 0.5:
        img = img[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    angle = rng.uniform(-spec.rotate_deg, spec.rotate_deg)
    scale = rng.uniform(*spec.scale)
    tx, ty = rng.uniform(-spec.translate, spec.translate, size=2) * (size_w, size_h)
    aspect = np.exp(rng.uniform(-spec.stretch, spec.stretch))
    centre = np.array([size_w / 2.0, size_h / 2.0])
    linear = cv2.getRotationMatrix2D((centre[0], centre[1]), angle, scale)[:, :2]
    linear = linear @ np.diag([np.sqrt(aspect), 1.0 / np.sqrt(aspect)])
    matrix = np.hstack([linear, (centre - linear @ centre + (tx, ty))[:, None]])
    img = _warp(img, matrix)
    if mask is not None:
        mask = _warp(mask, matrix)
    if spec.blur > 0:
        sigma = rng.uniform(0.0, spec.blur)
        if sigma > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
    x = img.astype(np.float32) * np.float32(1.0 / 255.0)
    if spec.noise_floor > 0:
        x = _noise_floor(x, img, rng.uniform(0.0, spec.noise_floor), rng)
    # a narrower dynamic range: the white level stays, the rest moves down, black clips
    k = np.float32(rng.uniform(*spec.dynamic_range))
    x = np.maximum(1.0 - (1.0 - x) * k, 0.0)
    x = np.power(x, np.float32(rng.uniform(*spec.gamma)))
    x *= np.float32(rng.uniform(*spec.gain))
    if spec.depth_ramp > 0:
        t = rng.uniform(-spec.depth_ramp, spec.depth_ramp)
        ramp = np.linspace(1.0 - t, 1.0 + t, size_h, dtype=np.float32)
        x *= ramp[:, None, None]
    if spec.tint > 0:
        x *= rng.uniform(1.0 - spec.tint, 1.0, size=3).astype(np.float32)
    if spec.speckle > 0:
        sigma = rng.uniform(0.0, spec.speckle)
        noise = rng.standard_normal(x.shape[:2]).astype(np.float32)
        grain = rng.uniform(0.0, spec.speckle_grain)
        if grain > 0.3:
            noise = cv2.GaussianBlur(noise, (0, 0), grain)
            noise /= max(float(noise.std()), 1e-6)
        noise *= np.float32(sigma)
        x *= np.clip(1.0 + noise, 0.0, None)[:, :, None]  # same speckle on every channel
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8), mask


_NOISE_DR_DB = 50.0  # nominal displayed dynamic range the noise floor is added under
_NOISE_RISE_DB = 40.0  # the floor's rise from the top of the image to the bottom


def _noise_floor(
    x: np.ndarray, img: np.ndarray, bottom: float, rng: np.random.Generator
) -> np.ndarray:
    """``x`` (grey 0-1) with exponential (fully developed) noise, blurred as resizing to the
    input averages it, added to its intensity under a nominal log compression: at grey
    ``bottom`` on the last row and ``_NOISE_RISE_DB`` weaker on the first, inside the fan
    (non-black pixels, closed over small holes) only."""
    import cv2

    h, w = x.shape[:2]
    fan = cv2.morphologyEx(
        (img.max(axis=2) > 0).astype(np.uint8),
        cv2.MORPH_CLOSE,
        cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)),
    ).astype(bool)
    dr = np.float32(_NOISE_DR_DB)
    depth = np.linspace(-1.0, 0.0, h, dtype=np.float32)[:, None]
    level_db = (np.float32(bottom) - 1.0) * dr + np.float32(_NOISE_RISE_DB) * depth
    # the receiver's noise is finer than an input pixel: several samples average into each
    noise = rng.standard_exponential((h, w), dtype=np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), rng.uniform(0.5, 1.5)) * np.power(10.0, level_db / 10.0)
    signal = np.power(np.float32(10.0), (x - 1.0) * (dr / 10.0))
    mixed = 1.0 + np.float32(10.0) / dr * np.log10(signal + noise[:, :, None])
    return np.where(fan[:, :, None], np.clip(mixed, 0.0, 1.0), x).astype(np.float32)


def _warp(a: NDArray[np.uint8], matrix: np.ndarray) -> NDArray[np.uint8]:
    import cv2

    h, w = a.shape[:2]
    return np.asarray(
        cv2.warpAffine(
            np.ascontiguousarray(a),
            matrix,
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
    )
