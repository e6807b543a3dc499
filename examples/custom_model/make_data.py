"""Writes churn.csv, the example's table: 800 made-up customers of a subscription service, with an id
column, two categorical columns, missing values and a yes/no target (seeded: the same file every time).

    python make_data.py
"""

from pathlib import Path

import numpy as np
import pandas as pd

rng = np.random.default_rng(7)
n = 800
plan = rng.choice(["basic", "pro", "enterprise"], size=n, p=[0.55, 0.35, 0.10])
region = rng.choice(["north", "south", "east", "west"], size=n)
tenure = rng.gamma(2.0, 12.0, size=n).round()
fee = np.select([plan == "basic", plan == "pro"], [19.0, 49.0], 199.0) * rng.uniform(0.8, 1.2, size=n)
calls = rng.poisson(1.0 + 2.0 * (plan == "basic"), size=n)
age = rng.normal(42, 12, size=n).clip(18, 90).round()
# churn: more support calls and a short tenure raise it, a bigger plan lowers it; the region does nothing
logit = -1.0 + 0.55 * calls - 0.05 * tenure - 0.8 * (plan == "pro") - 1.5 * (plan == "enterprise") + 0.01 * (age - 42)
churned = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
table = pd.DataFrame({"customer_id": [f"C{10000 + i}" for i in range(n)], "age": age, "plan": plan, "region": region,
                      "tenure_months": tenure, "monthly_fee": fee.round(2), "support_calls": calls, "churned": churned})
for column, share in (("monthly_fee", 0.08), ("region", 0.05), ("age", 0.03)):  # missing values, as real tables have
    table.loc[rng.random(n) < share, column] = np.nan
table.to_csv(Path(__file__).with_name("churn.csv"), index=False)
