"""Calibration: which threshold sends which share of positions to the large model.

RouteLLM calibrates its routers the same way: on held-out data, the score quantile that routes
the wanted share. A router file carries the whole curve, so a request can ask for an upload share.
"""

from __future__ import annotations

import numpy as np

from gateway.policies.router_spec import CalibrationPoint, Matrix, Router

GRID = 100


def curve(scores: Matrix) -> list[CalibrationPoint]:
    """For thresholds at the scores' quantiles, the share of scores above each (measured, not
    assumed: ties make the two differ)."""
    if scores.size == 0:
        raise ValueError("no held-out rows to calibrate on")
    thresholds = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, GRID + 1)))
    points = [CalibrationPoint(float(t), float(np.mean(scores > t))) for t in thresholds]
    # below every score: everything goes up
    points.append(CalibrationPoint(float(np.min(scores)) - 1e-9, 1.0))
    return sorted(points, key=lambda p: p.threshold)


def calibrate(router: Router, scores: Matrix, target_upload: float | None) -> float | None:
    """Store the curve; with a target, set the router's threshold to it. The share the new
    threshold actually gives on these scores."""
    router.calibration = curve(scores)
    if target_upload is None:
        return None
    router.threshold = router.threshold_for(target_upload)
    return float(np.mean(scores > router.threshold))
