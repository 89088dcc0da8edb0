"""Genotype PCs as token features: out-of-fold scores look like new people's."""

import numpy as np

from seq2king.genetics.pca import out_of_fold_scores


def _kernels(seed=0, n_fit=240, n_new=120, m=3000, groups=4, f=0.01):
    """Linear kernels of standardised genotypes for people from ``groups`` drifted populations."""
    rng = np.random.default_rng(seed)
    p0 = rng.uniform(0.1, 0.9, m)
    pk = rng.beta(p0 * (1 - f) / f, (1 - p0) * (1 - f) / f, size=(groups, m))
    lab = np.arange(n_fit + n_new) % groups
    g = rng.binomial(2, pk[lab]).astype(float)
    p = g[:n_fit].mean(0) / 2
    keep = (p > 0) & (p < 1)
    z = (g[:, keep] - 2 * p[keep]) / np.sqrt(2 * p[keep] * (1 - p[keep]))
    k = z @ z[:n_fit].T / keep.sum()
    return k[:n_fit], k, lab


def test_out_of_fold_scores_match_new_people_not_the_inflated_fit():
    from sklearn.decomposition import KernelPCA

    k_ff, k_pf, lab = _kernels()
    n_fit = len(k_ff)
    held = np.arange(n_fit)
    projected, oof = out_of_fold_scores(k_ff, k_pf, held, n_components=10, folds=5)
    new = projected[n_fit:]
    in_sample = KernelPCA(10, kernel="precomputed", eigen_solver="dense").fit_transform(k_ff)
    # noise axes: in-sample scores carry each person's own noise, new people's do not;
    # out-of-fold scores have the new people's spread
    noise = slice(4, 10)
    ratio_in = in_sample[:, noise].std(0) / new[:, noise].std(0)
    ratio_oof = oof[:, noise].std(0) / new[:, noise].std(0)
    assert (ratio_in > 1.3).all() and (np.abs(ratio_oof - 1) < 0.25).all(), (ratio_in, ratio_oof)
    # structure axes: the out-of-fold scores are in the full fit's frame (Procrustes) ...
    for a in range(3):
        assert np.corrcoef(oof[:, a], in_sample[:, a])[0, 1] > 0.95
    # ... and place held people with their own group as new people are placed
    centres = np.stack([new[lab[n_fit:] == g, :3].mean(0) for g in range(4)])
    nearest = np.argmin(((oof[:, None, :3] - centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest == lab[:n_fit]).mean() > 0.95
