"""SpRAy (Lapuschkin et al. 2019, "Unmasking Clever Hans predictors"): cluster a class's
explanation heatmaps to find groups of images the model decides on in the same, possibly
wrong, way (a cluster of ring images whose relevance sits on the ring).

Heatmaps are reduced to their positive relevance, downsized to GRID x GRID and normalised to
sum 1; scikit-learn's SpectralClustering groups them on a nearest-neighbour graph, with the
number of clusters chosen by the largest eigengap of the graph Laplacian (as in the paper)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GRID = 16
MAX_CLUSTERS = 6


@dataclass
class Clustering:
    labels: np.ndarray  # (n,) cluster per heatmap
    eigenvalues: np.ndarray  # the Laplacian's smallest eigenvalues (the eigengap's evidence)


def features(maps: np.ndarray) -> np.ndarray:
    positive = np.clip(maps, 0, None).astype(np.float32)
    small = np.stack([cv2.resize(m, (GRID, GRID), interpolation=cv2.INTER_AREA) for m in positive])
    flat = small.reshape(len(small), -1)
    return flat / np.maximum(flat.sum(1, keepdims=True), 1e-12)


def cluster(maps: np.ndarray, seed: int = 0) -> Clustering:
    """Spectral clusters of (n, H, W) heatmaps; n < 8 gives a single cluster."""
    from scipy.sparse.csgraph import laplacian
    from sklearn.cluster import SpectralClustering
    from sklearn.neighbors import kneighbors_graph

    x = features(maps)
    n = len(x)
    if n < 8:
        return Clustering(np.zeros(n, int), np.zeros(0))
    neighbours = min(10, n - 1)
    graph = kneighbors_graph(x, neighbours, include_self=False)
    affinity = 0.5 * (graph + graph.T)
    eigenvalues = np.sort(np.linalg.eigvalsh(laplacian(affinity.toarray(), normed=True)))[:MAX_CLUSTERS + 1]
    gaps = np.diff(eigenvalues)
    k = int(np.argmax(gaps[1:MAX_CLUSTERS]) + 2) if len(gaps) > 1 else 2  # at least 2 clusters
    labels = SpectralClustering(k, affinity="precomputed", random_state=seed,
                                assign_labels="cluster_qr").fit_predict(affinity.toarray())
    return Clustering(labels, eigenvalues)
