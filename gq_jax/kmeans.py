"""One-dimensional k-means (Lloyd's algorithm) on sorted data, for centroid initialisation and PTQ."""

from __future__ import annotations

import numpy as np


def kmeans_1d(values: np.ndarray, num_centroids: int, iters: int = 20) -> np.ndarray:
    """Sorted k-means centroids of the 1-D sample `values`.

    Starts from the quantiles (j + ½) / K and runs `iters` Lloyd steps. Because the data are sorted,
    each step is a `searchsorted` of the K − 1 midpoints and a cumulative sum: O(K log N) after one
    O(N log N) sort. An empty cluster keeps its previous centre.

    Args:
      values: any shape, finite.
      num_centroids: K >= 1.
      iters: Lloyd iterations.
    Returns:
      [K] float32 centroids, sorted ascending.
    """
    data = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if data.size == 0:
        raise ValueError("kmeans_1d: no values to cluster")
    centres = np.quantile(data, (np.arange(num_centroids) + 0.5) / num_centroids)
    prefix = np.concatenate([[0.0], np.cumsum(data)])
    for _ in range(iters):
        edges = np.searchsorted(data, (centres[1:] + centres[:-1]) / 2.0)
        bounds = np.concatenate([[0], edges, [data.size]])
        counts = np.diff(bounds)
        sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        if np.allclose(updated, centres, rtol=0.0, atol=1e-12):
            break
        centres = np.sort(updated)
    return centres.astype(np.float32)
