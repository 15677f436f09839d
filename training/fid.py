"""Sample-quality statistics on feature vectors: FID, KID and class coverage (numpy only).

FID's `tr(sqrt(S1 S2))` is computed as `sum(sqrt(eig(sqrt(S1) S2 sqrt(S1))))` with symmetric
eigendecompositions only: every matrix involved is symmetric positive semi-definite, so the result
is real and stable, where a general `sqrtm(S1 @ S2)` can return complex noise or fail to converge.
"""

from __future__ import annotations

import numpy as np


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)), never negative."""
    root1 = _psd_sqrt(np.asarray(sigma1, np.float64))
    middle = root1 @ np.asarray(sigma2, np.float64) @ root1
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt, 0.0))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KID's kernel (Binkowski et al., 2018): (a.b / d + 1)^3."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD with the polynomial kernel (diagonal terms left out; may be < 0)."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 50, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the unbiased MMD^2 over random subsets."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError("KID needs at least 2 samples on each side")
    values = [mmd2_unbiased(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


def class_coverage(predicted: np.ndarray, real_labels: np.ndarray, num_classes: int,
                   probabilities: np.ndarray | None = None) -> dict:
    """Histogram of predicted classes for generated images, its KL divergence from the real class
    distribution (mode collapse shows as a large KL), and the mean classifier confidence."""
    eps = 1e-8
    generated = np.bincount(predicted, minlength=num_classes).astype(np.float64)
    real = np.bincount(real_labels, minlength=num_classes).astype(np.float64)
    p, q = generated / generated.sum(), real / real.sum()
    result = {
        "histogram": generated.astype(int).tolist(),
        "kl_from_real": float(np.sum(p * np.log((p + eps) / (q + eps)))),
        "classes_covered": int(np.count_nonzero(generated)),
    }
    if probabilities is not None:
        result["mean_confidence"] = float(np.mean(np.max(probabilities, axis=1)))
    return result
