"""What the domain classifier says about samples: which classes they fall in, and how many it can read.

Mode collapse shows as a large KL divergence between the generated and the real class histograms;
blurry or broken samples show as a low readable rate (the share the classifier labels with at least
`READABLE_CONFIDENCE`), which tracks what a person counts as "clearly readable digits".
"""

from __future__ import annotations

import numpy as np

READABLE_CONFIDENCE = 0.9


def readable_rate(probabilities: np.ndarray, threshold: float = READABLE_CONFIDENCE) -> float:
    return float(np.mean(np.max(probabilities, axis=1) >= threshold))


def class_coverage(predicted: np.ndarray, real_labels: np.ndarray, num_classes: int,
                   probabilities: np.ndarray | None = None) -> dict:
    """Histogram of predicted classes, its KL divergence from the real class distribution, and (with
    `probabilities`) the mean confidence and the readable rate."""
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
        result["readable_rate"] = readable_rate(probabilities)
    return result
