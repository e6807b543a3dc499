"""Shuffled train/test splits, stratified or not, index for index those of scikit-learn's
`train_test_split` with an integer `random_state` (scikit-learn 1.9's algorithm).

Why not call scikit-learn: importing it (with the SciPy and pandas modules it pulls in) takes
0.6-1 s, a third of a default `regbench run` on digits and of every job process; the
algorithm is forty lines. tests/test_datasets.py checks these splits against scikit-learn's
for every dataset and many seeds and sizes.
"""

from __future__ import annotations

from math import ceil

import numpy as np


def train_test_split(
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_size: float | None = None,
    train_size: int | None = None,
    random_state: int,
    stratify: np.ndarray | None = None,
) -> list[np.ndarray]:
    """x_train, x_test, y_train, y_test, as `sklearn.model_selection.train_test_split` returns
    them for a fraction `test_size` or a count `train_size` (the other part is the rest).

    Raises:
        ValueError: the sizes are impossible, or a stratified split is (a class with one
            member, or fewer samples in a part than classes); scikit-learn's messages.
    """
    n = len(y)
    n_train, n_test = _sizes(n, test_size, train_size)
    rng = np.random.RandomState(random_state)
    if stratify is None:
        permutation = rng.permutation(n)
        test, train = permutation[:n_test], permutation[n_test : n_test + n_train]
    else:
        train, test = _stratified(np.asarray(stratify), n_train, n_test, rng)
    return [x[train], x[test], y[train], y[test]]


def _sizes(n: int, test_size: float | None, train_size: int | None) -> tuple[int, int]:
    if test_size is not None:
        if not 0 < test_size < 1:
            raise ValueError(f"test_size={test_size} should be either positive and smaller than the number "
                             f"of samples {n} or a float in the (0, 1) range")
        n_test = ceil(test_size * n)
        n_train = n - n_test
    elif train_size is not None:
        if not 0 < train_size < n:
            raise ValueError(f"train_size={train_size} should be either positive and smaller than the number "
                             f"of samples {n} or a float in the (0, 1) range")
        n_train, n_test = train_size, n - train_size
    else:
        raise ValueError("give test_size (a fraction) or train_size (a count)")
    if n_train == 0:
        raise ValueError(f"With n_samples={n}, test_size={test_size} and train_size={train_size}, the resulting "
                         "train set will be empty. Adjust any of the aforementioned parameters.")
    return n_train, n_test


def _stratified(y: np.ndarray, n_train: int, n_test: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """StratifiedShuffleSplit's first split: per class, a share of each part proportional to
    its size (ties broken at random), drawn from a permutation of the class."""
    classes, y_indices, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    if np.min(class_counts) < 2:
        raise ValueError(
            "The least populated classes in y have only 1 member, which is too few. The minimum number of "
            f"groups for any class cannot be less than 2. Classes with too few members are: "
            f"{classes[class_counts < 2].tolist()}"
        )
    if n_train < len(classes):
        raise ValueError(f"The train_size = {n_train} should be greater or equal to the number of classes = {len(classes)}")
    if n_test < len(classes):
        raise ValueError(f"The test_size = {n_test} should be greater or equal to the number of classes = {len(classes)}")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        permuted = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(permuted[: n_i[i]])
        test.extend(permuted[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """The most likely per-class counts of `n_draws` draws without replacement: the floored
    proportional shares, the remainder given to the largest fractional parts (ties at random)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)
