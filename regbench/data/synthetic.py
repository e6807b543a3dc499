"""`dataset=synthetic` and `synthetic_regression`: scikit-learn's make_classification and
make_regression, generated from `dataset.generator_seed` (the same ground truth across runs)."""

from __future__ import annotations

from typing import Any

TASKS = {"synthetic": "classification", "synthetic_regression": "regression"}


def read(ds: Any) -> dict[str, Any]:
    """The generated samples, as regbench.data.datasets.Source's fields (no official test split)."""
    from sklearn import datasets as skd

    if ds.name == "synthetic":
        x, y = skd.make_classification(
            n_samples=ds.n_samples,
            n_features=ds.n_features,
            n_informative=ds.n_informative,
            n_redundant=0,
            n_repeated=0,
            flip_y=0.0,  # label noise is dataset.label_noise's job, applied to training labels only
            random_state=ds.generator_seed,
        )
    else:
        x, y = skd.make_regression(
            n_samples=ds.n_samples,
            n_features=ds.n_features,
            n_informative=ds.n_informative,
            noise=ds.noise,
            random_state=ds.generator_seed,
        )
    return {"x": x, "y": y, "task": TASKS[ds.name]}
