"""Reference figures for the drift statistics of src/drift/stats.rs, computed with numpy and scipy.

Usage (Python 3.11, numpy and scipy at the versions pinned in models/requirements.txt):

    python3 -m venv ~/.cache/modelgate-drift-ref
    ~/.cache/modelgate-drift-ref/bin/pip install numpy==2.4.6 scipy==1.17.1
    ~/.cache/modelgate-drift-ref/bin/python tests/readers/drift_reference.py

Running it regenerates tests/fixtures/drift_statistics.json (the seed is fixed, so the same
versions write the same file), which tests/drift_statistics.rs compares the Rust figures to.

Each case holds the inputs (kind numeric|categorical; for numeric the bin edges, their locations
and the scale; reference weights, reference_count, observed counts) and the expected figures:
scipy where scipy has the function (jensenshannon, kolmogorov, wasserstein_distance, chisquare),
numpy for PSI, KS D and L-infinity. Numeric bins for edges e_0..e_k: the lower tail (< e_0), the
inner bins [e_(j-1), e_j) (the last one closed) and the upper tail (> e_k). The file also lists
kolmogorov_sf and chi2_sf points straight from scipy, to check those functions over their range.
"""

import json
import os

import numpy as np
import scipy
from scipy.spatial.distance import jensenshannon
from scipy.special import kolmogorov
from scipy.stats import chi2, chisquare, wasserstein_distance

SEED = 20240611
PSI_FLOOR = 1e-4
OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "drift_statistics.json"
)

rng = np.random.default_rng(SEED)


def shares(w):
    w = np.asarray(w, dtype=float)
    return w / w.sum()


def psi(reference, observed):
    p = np.maximum(shares(reference), PSI_FLOOR)
    q = np.maximum(shares(observed), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_d(reference, observed):
    return float(np.max(np.abs(np.cumsum(shares(reference)) - np.cumsum(shares(observed)))))


def bin_locations(edges):
    e = np.asarray(edges, dtype=float)
    return np.concatenate([e[:1], (e[:-1] + e[1:]) / 2.0, e[-1:]])


def bin_counts(edges, values):
    """Counts over the len(edges) + 1 bins: lower tail, [e_(j-1), e_j) (last closed), upper tail."""
    edges = np.asarray(edges, dtype=float)
    index = np.searchsorted(edges, values, side="right")
    index[values == edges[-1]] = len(edges) - 1
    return np.bincount(index, minlength=len(edges) + 1).astype(float)


def numeric_expected(reference, reference_count, observed, locations, scale):
    n = float(np.sum(observed))
    m = float(reference_count)
    en = n * m / (n + m)
    d = ks_d(reference, observed)
    effective_scale = scale if np.isfinite(scale) and scale > 0 else 1.0
    return {
        "psi": psi(reference, observed),
        "js": float(jensenshannon(reference, observed, base=2)),
        "ks_d": d,
        "ks_p_value": float(kolmogorov(d * np.sqrt(en))),
        "wasserstein": float(
            wasserstein_distance(locations, locations, reference, observed) / effective_scale
        ),
    }


def categorical_expected(reference, observed):
    observed = np.asarray(observed, dtype=float)
    n = observed.sum()
    p = np.maximum(shares(reference), PSI_FLOOR)
    p = p / p.sum()
    if len(observed) == 1:
        statistic, dof, p_value = 0.0, 0, 1.0
    else:
        result = chisquare(observed, n * p)
        statistic, dof, p_value = float(result.statistic), len(observed) - 1, float(result.pvalue)
    return {
        "psi": psi(reference, observed),
        "js": float(jensenshannon(reference, observed, base=2)),
        "chi2": statistic,
        "chi2_dof": dof,
        "chi2_p_value": p_value,
        "linf": float(np.max(np.abs(shares(reference) - shares(observed)))),
    }


cases = []


def floats(a):
    return [float(v) for v in a]


def add_numeric(name, edges, reference, reference_count, observed, scale):
    edges = np.asarray(edges, dtype=float)
    locations = bin_locations(edges)
    assert len(reference) == len(observed) == len(locations)
    cases.append(
        {
            "name": name,
            "kind": "numeric",
            "edges": floats(edges),
            "locations": floats(locations),
            "reference": floats(reference),
            "reference_count": float(reference_count),
            "observed": floats(observed),
            "scale": float(scale),
            "expected": numeric_expected(reference, reference_count, observed, locations, scale),
        }
    )


def add_categorical(name, reference, reference_count, observed):
    assert len(reference) == len(observed)
    cases.append(
        {
            "name": name,
            "kind": "categorical",
            "reference": floats(reference),
            "reference_count": float(reference_count),
            "observed": floats(observed),
            "expected": categorical_expected(reference, observed),
        }
    )


def baseline_case(name, training, levels, observed_values, scale=None):
    """A baseline from training values: quantile edges, shares per bin, count = training rows."""
    edges = np.quantile(training, levels)
    reference = bin_counts(edges, training) / len(training)
    observed = bin_counts(edges, observed_values)
    add_numeric(
        name,
        edges,
        reference,
        len(training),
        observed,
        float(np.std(training)) if scale is None else scale,
    )


deciles = np.linspace(0.1, 0.9, 9)
twentieths = np.linspace(0.05, 0.95, 19)
with_extremes = np.linspace(0.0, 1.0, 21)

# Numeric: baselines from a normal training sample.
normal_train = rng.normal(0.0, 1.0, 10_000)
baseline_case("normal_deciles_same_n50", normal_train, deciles, rng.normal(0.0, 1.0, 50))
baseline_case("normal_deciles_same_n100000", normal_train, deciles, rng.normal(0.0, 1.0, 100_000))
baseline_case("normal_deciles_shift0.1_n50", normal_train, deciles, rng.normal(0.1, 1.0, 50))
baseline_case(
    "normal_deciles_shift0.1_n100000", normal_train, deciles, rng.normal(0.1, 1.0, 100_000)
)
baseline_case(
    "normal_twentieths_shift0.5_n1000", normal_train, twentieths, rng.normal(0.5, 1.0, 1000)
)
baseline_case("normal_deciles_scale2_n5000", normal_train, deciles, rng.normal(0.0, 2.0, 5000))
baseline_case(
    "normal_minmax_edges_empty_tails_shift1_n100000",
    normal_train,
    with_extremes,
    rng.normal(1.0, 1.0, 100_000),
)
baseline_case(
    "normal_minmax_edges_same_n50_tails_unseen",
    normal_train,
    with_extremes,
    rng.normal(0.0, 0.5, 50),
)
baseline_case(
    "normal_extreme_shift10_n100000_p_underflows",
    normal_train,
    deciles,
    rng.normal(10.0, 1.0, 100_000),
)
baseline_case("normal_extreme_shift3_n50_tiny_p", normal_train, deciles, rng.normal(3.0, 1.0, 50))
baseline_case(
    "normal_quartiles_shift0.3_n200_scale_zero_means_1",
    normal_train,
    [0.25, 0.5, 0.75],
    rng.normal(0.3, 1.0, 200),
    scale=0.0,
)
baseline_case(
    "normal_two_edges_three_bins_n50_negative_scale",
    normal_train,
    [0.3, 0.7],
    rng.normal(-0.2, 1.0, 50),
    scale=-1.0,
)

# Beta and lognormal baselines.
beta_train = rng.beta(2.0, 5.0, 20_000)
baseline_case("beta_twentieths_same_n500", beta_train, twentieths, rng.beta(2.0, 5.0, 500))
baseline_case("beta_twentieths_shift_n100000", beta_train, twentieths, rng.beta(2.5, 5.0, 100_000))
baseline_case("beta_deciles_mirrored_n50", beta_train, deciles, rng.beta(5.0, 2.0, 50))
lognormal_train = rng.lognormal(0.0, 1.0, 5_000)
baseline_case(
    "lognormal_deciles_shift_n2000", lognormal_train, deciles, rng.lognormal(0.2, 1.0, 2000)
)
baseline_case(
    "lognormal_deciles_wider_n100000", lognormal_train, deciles, rng.lognormal(0.0, 1.5, 100_000)
)
baseline_case(
    "lognormal_quartiles_minmax_n50",
    lognormal_train,
    [0.0, 0.25, 0.5, 0.75, 1.0],
    rng.lognormal(0.0, 1.0, 50),
)

# Repeated quantiles give zero-width, always empty bins.
poisson_train = rng.poisson(1.5, 10_000).astype(float)
baseline_case(
    "poisson_duplicate_edges_empty_bins_n1000",
    poisson_train,
    deciles,
    rng.poisson(2.5, 1000).astype(float),
)
zero_inflated = np.where(rng.random(10_000) < 0.6, 0.0, rng.exponential(2.0, 10_000))
baseline_case(
    "zero_inflated_duplicate_edges_n100000",
    zero_inflated,
    twentieths,
    np.where(rng.random(100_000) < 0.4, 0.0, rng.exponential(2.0, 100_000)),
)

# Previous-window references: counts, reference_count = their sum.
window_edges = np.quantile(normal_train, twentieths)
scale = float(np.std(normal_train))
previous = bin_counts(window_edges, rng.normal(0.0, 1.0, 800))
add_numeric(
    "window_counts_shift0.2_n1200",
    window_edges,
    previous,
    previous.sum(),
    bin_counts(window_edges, rng.normal(0.2, 1.0, 1200)),
    scale,
)
previous = bin_counts(window_edges, rng.normal(0.0, 1.0, 100_000))
add_numeric(
    "window_counts_same_n100000",
    window_edges,
    previous,
    previous.sum(),
    bin_counts(window_edges, rng.normal(0.0, 1.0, 100_000)),
    scale,
)
add_numeric(
    "window_counts_identical", window_edges, previous, previous.sum(), previous.copy(), scale
)
previous = bin_counts(window_edges, rng.normal(0.0, 1.0, 30))
add_numeric(
    "window_counts_sparse_many_empty_bins",
    window_edges,
    previous,
    previous.sum(),
    bin_counts(window_edges, rng.normal(0.5, 1.5, 40)),
    scale,
)

# Shares that the observed counts match exactly (proportional, not bit-identical after scaling).
# The true JS distance is ~1e-17, but scipy's is sqrt(rounding) ~ 4e-9 here (scipy issue 20083);
# tests/drift_statistics.rs compares squared JS distances for such near-zero cases.
exact_edges = [-1.0, 0.0, 1.0, 2.0]
exact_shares = np.array([0.05, 0.2, 0.45, 0.2, 0.1])
add_numeric(
    "proportional_counts_identical_shares",
    exact_edges,
    exact_shares,
    1000,
    exact_shares * 1000,
    1.0,
)
# Large counts, small shift: large statistics, still finite p-values.
big_shares = bin_counts(window_edges, normal_train) / len(normal_train)
big_observed = np.round(big_shares * 1e7 * (1.0 + 0.01 * np.sin(np.arange(len(big_shares)))))
add_numeric("large_counts_small_wiggle_n1e7", window_edges, big_shares, 1e6, big_observed, scale)
# Everything piled in one tail.
add_numeric(
    "all_observed_in_upper_tail",
    window_edges,
    big_shares,
    len(normal_train),
    np.eye(len(big_shares))[-1] * 500,
    scale,
)


# Categorical.
def categorical(name, reference_shares, observed_shares, n, reference_count=10_000):
    observed = rng.multinomial(n, shares(observed_shares)).astype(float)
    add_categorical(name, reference_shares, reference_count, observed)


categorical("cat2_shift_n50", [0.7, 0.3], [0.6, 0.4], 50)
categorical("cat2_same_n100000", [0.7, 0.3], [0.7, 0.3], 100_000)
categorical("cat3_zero_share_seen_n500", [0.6, 0.4, 0.0], [0.58, 0.4, 0.02], 500)
categorical("cat5_same_n50", [0.3, 0.25, 0.2, 0.15, 0.1], [0.3, 0.25, 0.2, 0.15, 0.1], 50)
p8 = rng.dirichlet(np.ones(8))
categorical("cat8_dirichlet_shift_n1000", p8, p8 * rng.uniform(0.7, 1.3, 8), 1000)
p12 = rng.dirichlet(np.ones(12))
p12[[3, 9]] = 0.0
p12 /= p12.sum()
categorical(
    "cat12_two_zero_shares_shift_n100000",
    p12,
    np.maximum(p12, 0.01) * rng.uniform(0.9, 1.1, 12),
    100_000,
)
p25 = rng.dirichlet(np.full(25, 0.5))
categorical("cat25_sparse_dirichlet_same_n100000", p25, p25, 100_000)
categorical("cat25_sparse_dirichlet_same_n50", p25, p25, 50)
categorical("cat25_shift_n5000", p25, p25 * rng.uniform(0.5, 1.5, 25), 5000)
add_categorical(
    "cat4_all_observed_in_zero_share_category_p_underflows",
    [0.5, 0.3, 0.2, 0.0],
    10_000,
    [0.0, 0.0, 0.0, 100_000.0],
)
categorical(
    "cat6_strong_shift_tiny_p_n400",
    [0.3, 0.3, 0.2, 0.1, 0.05, 0.05],
    [0.05, 0.05, 0.1, 0.2, 0.3, 0.3],
    400,
)
categorical(
    "cat15_small_shift_n1000000", np.ones(15), np.ones(15) + 0.03 * np.arange(15), 1_000_000
)
tiny = np.array([0.5, 0.3, 0.19985, 0.00005, 0.0001])
categorical("cat5_shares_below_floor_n20000", tiny, [0.5, 0.3, 0.1985, 0.001, 0.0005], 20_000)
previous = rng.multinomial(3000, shares(np.arange(1, 11))).astype(float)
add_categorical(
    "cat10_window_counts_shift_n2500",
    previous,
    previous.sum(),
    rng.multinomial(2500, shares(np.arange(10, 0, -1) + 5.0)).astype(float),
)
add_categorical("cat10_window_counts_identical", previous, previous.sum(), previous.copy())
add_categorical("cat1_single_category", [1.0], 10_000, [37.0])
add_categorical("cat2_counts_as_reference_shares", [3.0, 1.0], 4, [300.0, 100.0])

# Special functions straight from scipy, over their range (tiny tails included).
kolmogorov_points = np.concatenate(
    [
        [0.0, 0.01, 0.04, 0.1],
        np.linspace(0.2, 3.0, 29),
        [0.8199, 0.82, 0.8201, 0.999, 1.0, 1.001, 5.0, 10.0, 18.0, 26.0],
    ]
)
chi2_points = []
for dof in [1, 2, 3, 4, 7, 10, 24, 50, 99, 300]:
    for x in [
        1e-8,
        0.01,
        0.5 * dof,
        dof - 1.0,
        float(dof),
        dof + 1.0,
        2.0 * dof + 3.0,
        5.0 * dof + 40.0,
        1000.0,
        1e4,
        1e6,
    ]:
        if x > 0:
            chi2_points.append((float(x), dof))

doc = {
    "generator": "tests/readers/drift_reference.py",
    "numpy": np.__version__,
    "scipy": scipy.__version__,
    "seed": SEED,
    "psi_floor": PSI_FLOOR,
    "cases": cases,
    "kolmogorov_sf": [{"x": float(x), "expected": float(kolmogorov(x))} for x in kolmogorov_points],
    "chi2_sf": [{"x": x, "dof": dof, "expected": float(chi2.sf(x, dof))} for x, dof in chi2_points],
}


def check_finite(value, where):
    if isinstance(value, float):
        assert np.isfinite(value), where
    elif isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_finite(v, f"{where}[{i}]")


check_finite(doc, "doc")
names = [c["name"] for c in cases]
assert len(names) == len(set(names)), "case names must be unique"
with open(OUT, "w") as f:
    json.dump(doc, f, indent=1, allow_nan=False)
    f.write("\n")
print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")
