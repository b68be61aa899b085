//! Drift statistics on binned distributions: a reference (baseline shares or a previous window's
//! counts) against an observed window's counts over the same bins.
//!
//! Pure functions, std only, so the figures can be checked against scipy
//! (`tests/readers/drift_reference.py`). Inputs that cannot be compared (mismatched lengths, no
//! bins, a zero total, a negative or non-finite weight) are a caller bug: the statistics come back
//! NaN instead of panicking, because a metrics scrape must not take the gateway down.

use std::f64::consts::{LN_2, PI};

/// Smallest share PSI and the chi-squared expectation use for a bin, so that a bin empty on one
/// side gives a large but finite contribution instead of an infinite one.
pub const PSI_FLOOR: f64 = 1e-4;

/// Branch switch for [`kolmogorov_sf`]: below it the alternating series converges slowly and the
/// theta-function form of the CDF is used instead; both are accurate to ~1e-16 around it.
const KOLMOGOROV_SWITCH: f64 = 1.0;

/// Population stability index: sum (q - p) ln(q / p) over shares floored at [`PSI_FLOOR`]
/// (not renormalised), the usual drift alarm figure (0.1 moderate, 0.25 large).
///
/// NaN when the inputs cannot be compared (see the module doc).
pub fn psi(reference: &[f64], observed: &[f64]) -> f64 {
    let Some(totals) = totals(reference, observed) else {
        return f64::NAN;
    };
    shares(reference, observed, totals)
        .map(|(p, q)| {
            let (p, q) = (p.max(PSI_FLOOR), q.max(PSI_FLOOR));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Jensen-Shannon distance in base 2 (the square root of the JS divergence), in [0, 1]: symmetric
/// and finite even when a bin is empty on one side, unlike PSI without its floor.
///
/// Each bin's contribution is computed from t = (p - q) / (p + q) with a series for small t, so
/// identical distributions give exactly 0 and nearly identical ones do not drown in rounding
/// (`scipy.spatial.distance.jensenshannon` agrees except where its own rounding dominates).
/// NaN when the inputs cannot be compared.
pub fn js_distance(reference: &[f64], observed: &[f64]) -> f64 {
    let Some(totals) = totals(reference, observed) else {
        return f64::NAN;
    };
    // p ln(p/m) + q ln(q/m) = m * mixing_gain(t) with m = (p + q) / 2.
    let nats: f64 = shares(reference, observed, totals)
        .map(|(p, q)| {
            let m = 0.5 * (p + q);
            if m > 0.0 {
                m * mixing_gain((p - q) / (p + q))
            } else {
                0.0
            }
        })
        .sum();
    (0.5 * nats / LN_2).max(0.0).sqrt()
}

/// (1 + t) ln(1 + t) + (1 - t) ln(1 - t) for t in [-1, 1], which is about t^2 for small t.
fn mixing_gain(t: f64) -> f64 {
    let t2 = t * t;
    if t2 < 0.01 {
        // sum_{k>=1} t^(2k) / (k (2k - 1)); each term is at most 1% of the previous one.
        let mut power = t2;
        let mut sum = 0.0;
        for k in 1..=20 {
            let k = f64::from(k);
            let term = power / (k * (2.0 * k - 1.0));
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
            power *= t2;
        }
        sum
    } else {
        let side = |u: f64| {
            if u <= -1.0 {
                0.0
            } else {
                (1.0 + u) * u.ln_1p()
            }
        };
        side(t) + side(-t)
    }
}

/// Two-sample Kolmogorov-Smirnov result on binned CDFs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ks {
    /// Largest gap between the two cumulative distributions.
    pub d: f64,
    /// Asymptotic p-value Q_KS(d * sqrt(n m / (n + m))); conservative for binned data, which can
    /// only hide gaps inside a bin.
    pub p_value: f64,
}

/// Kolmogorov-Smirnov on the binned CDFs: `d` = max |P_i - Q_i| over cumulative shares, and the
/// p-value uses n = sum(observed) and m = `reference_count` (training rows behind a baseline,
/// or the previous window's count). `reference_count` = +inf means an exact reference (en = n).
///
/// Both fields NaN when the inputs cannot be compared; the p-value alone is NaN when
/// `reference_count` is not positive.
pub fn ks(reference: &[f64], reference_count: f64, observed: &[f64]) -> Ks {
    let Some(totals) = totals(reference, observed) else {
        return Ks {
            d: f64::NAN,
            p_value: f64::NAN,
        };
    };
    let (mut cum_p, mut cum_q, mut d) = (0.0, 0.0, 0.0_f64);
    for (p, q) in shares(reference, observed, totals) {
        cum_p += p;
        cum_q += q;
        d = d.max((cum_p - cum_q).abs());
    }
    let n = totals.1;
    let p_value = if reference_count > 0.0 {
        // n m / (n + m), written so that m = +inf gives n.
        let en = n / (1.0 + n / reference_count);
        kolmogorov_sf(d * en.sqrt())
    } else {
        f64::NAN
    };
    Ks { d, p_value }
}

/// Wasserstein-1 (earth mover's) distance between the binned distributions placed at
/// `locations`, divided by `scale` (e.g. the baseline's standard deviation) so one threshold fits
/// features of any unit; `scale` that is not a positive finite number means 1.
///
/// Equals `scipy.stats.wasserstein_distance(x, x, p, q) / scale`. NaN when the inputs cannot be
/// compared or `locations` is not one finite, non-decreasing location per bin.
pub fn wasserstein(reference: &[f64], observed: &[f64], locations: &[f64], scale: f64) -> f64 {
    let Some(totals) = totals(reference, observed) else {
        return f64::NAN;
    };
    let sorted = locations.windows(2).all(|w| w[0] <= w[1]);
    if locations.len() != reference.len() || !sorted || !locations.iter().all(|x| x.is_finite()) {
        return f64::NAN;
    }
    let scale = if scale.is_finite() && scale > 0.0 {
        scale
    } else {
        1.0
    };
    let (mut cum_p, mut cum_q, mut area) = (0.0, 0.0, 0.0);
    // The CDF gap after bin i holds over [x_i, x_{i+1}); the last bin closes both at 1.
    for ((p, q), w) in shares(reference, observed, totals).zip(locations.windows(2)) {
        cum_p += p;
        cum_q += q;
        area += (cum_p - cum_q).abs() * (w[1] - w[0]);
    }
    area / scale
}

/// Pearson chi-squared goodness of fit of observed counts to the reference shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquared {
    /// sum (o - e)^2 / e.
    pub statistic: f64,
    /// Degrees of freedom: bins - 1 (0 when nothing was computed).
    pub dof: usize,
    /// Upper tail of chi-squared with `dof` degrees of freedom at `statistic`.
    pub p_value: f64,
}

/// Chi-squared goodness of fit for categoricals: expected counts n * p'' with p'' the reference
/// shares floored at [`PSI_FLOOR`] and renormalised (a category unseen in training would
/// otherwise expect 0 and make any sighting infinitely significant), n = sum(observed).
///
/// One bin gives statistic 0, dof 0, p-value 1. NaN statistic and p-value (dof 0) when the inputs
/// cannot be compared. Same figures as `scipy.stats.chisquare(observed, n * p'')`.
pub fn chi_squared(reference: &[f64], observed: &[f64]) -> ChiSquared {
    let Some((reference_total, n)) = totals(reference, observed) else {
        return ChiSquared {
            statistic: f64::NAN,
            dof: 0,
            p_value: f64::NAN,
        };
    };
    let floored = |r: f64| (r / reference_total).max(PSI_FLOOR);
    let floored_total: f64 = reference.iter().map(|&r| floored(r)).sum();
    let statistic = reference
        .iter()
        .zip(observed)
        .map(|(&r, &o)| {
            let expected = n * (floored(r) / floored_total);
            (o - expected) * (o - expected) / expected
        })
        .sum();
    let dof = reference.len() - 1;
    let p_value = if dof == 0 {
        1.0
    } else {
        chi2_sf(statistic, dof as f64)
    };
    ChiSquared {
        statistic,
        dof,
        p_value,
    }
}

/// Largest absolute difference between the two share vectors: the plain "how much did one
/// category move" figure for dashboards. NaN when the inputs cannot be compared.
pub fn l_infinity(reference: &[f64], observed: &[f64]) -> f64 {
    let Some(totals) = totals(reference, observed) else {
        return f64::NAN;
    };
    shares(reference, observed, totals).fold(0.0, |max, (p, q)| max.max((p - q).abs()))
}

/// Kolmogorov distribution survival function Q(x) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2),
/// the asymptotic KS p-value (`scipy.special.kolmogorov`). Q(x <= 0) = 1, NaN for NaN.
///
/// Small x uses the theta-function form of the CDF, 1 - sqrt(2 pi)/x sum exp(-(2k-1)^2 pi^2 /
/// (8 x^2)), where the alternating series would need many terms; large x keeps the series so
/// tiny p-values stay accurate relative to themselves.
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x < KOLMOGOROV_SWITCH {
        let w = PI * PI / (8.0 * x * x);
        let mut sum = 0.0;
        for k in 1..=50 {
            let odd = f64::from(2 * k - 1);
            let term = (-odd * odd * w).exp();
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        1.0 - (2.0 * PI).sqrt() / x * sum
    } else {
        let mut sum = 0.0;
        let mut sign = 1.0;
        for k in 1..=50 {
            let k = f64::from(k);
            let term = (-2.0 * k * k * x * x).exp();
            sum += sign * term;
            if term <= sum.abs() * 1e-17 {
                break;
            }
            sign = -sign;
        }
        (2.0 * sum).clamp(0.0, 1.0)
    }
}

/// Chi-squared survival function P(X > x) for `dof` degrees of freedom (`scipy.stats.chi2.sf`):
/// the regularised upper incomplete gamma function Q(dof/2, x/2). 1 for x <= 0; NaN for NaN
/// input or `dof` that is not a positive finite number; underflows to 0 below ~1e-308.
pub fn chi2_sf(x: f64, dof: f64) -> f64 {
    if x.is_nan() || !(dof.is_finite() && dof > 0.0) {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x == f64::INFINITY {
        return 0.0;
    }
    gamma_q(0.5 * dof, 0.5 * x)
}

/// Regularised upper incomplete gamma Q(a, x) for a > 0, x > 0 finite.
fn gamma_q(a: f64, x: f64) -> f64 {
    const EPS: f64 = 1e-17;
    const MAX_ITERATIONS: usize = 100_000;
    if x < a + 1.0 {
        // P(a, x) = x^a e^-x / Gamma(a + 1) * sum_{n>=0} x^n / ((a+1)...(a+n)). Here Q stays
        // above ~0.08 for a >= 1/2, so 1 - P costs at most a digit.
        let mut term = 1.0;
        let mut sum = 1.0;
        let mut ap = a;
        for _ in 0..MAX_ITERATIONS {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term <= sum * EPS {
                break;
            }
        }
        1.0 - gamma_prefix(a, x) * sum / a
    } else {
        // Continued fraction for Q (modified Lentz), fast once x is past the mode.
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..MAX_ITERATIONS {
            let i = i as f64;
            let an = -i * (i - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() <= f64::EPSILON {
                break;
            }
        }
        gamma_prefix(a, x) * h
    }
}

/// x^a e^-x / Gamma(a). For large a the logarithm is formed around x = a with the Stirling
/// series, so the big terms a ln x, x and ln Gamma(a) never cancel in floating point.
fn gamma_prefix(a: f64, x: f64) -> f64 {
    if a < STIRLING_FROM {
        (a * x.ln() - x - ln_gamma(a)).exp()
    } else {
        let d = (x - a) / a;
        (a * (d.ln_1p() - d) + 0.5 * (a / (2.0 * PI)).ln() - stirling_correction(a)).exp()
    }
}

/// Where the Stirling series for ln Gamma is accurate to double precision.
const STIRLING_FROM: f64 = 10.0;

/// ln Gamma(a) - [(a - 1/2) ln a - a + ln(2 pi)/2] for a >= [`STIRLING_FROM`].
fn stirling_correction(a: f64) -> f64 {
    // Bernoulli-number coefficients B_2k / (2k (2k - 1)); the next term is < 1e-16 at a = 10.
    const COEFFICIENTS: [f64; 7] = [
        1.0 / 12.0,
        -1.0 / 360.0,
        1.0 / 1260.0,
        -1.0 / 1680.0,
        1.0 / 1188.0,
        -691.0 / 360_360.0,
        1.0 / 156.0,
    ];
    let inv2 = 1.0 / (a * a);
    COEFFICIENTS.iter().rev().fold(0.0, |acc, c| acc * inv2 + c) / a
}

/// ln Gamma(a) for a > 0: Stirling above [`STIRLING_FROM`], shifted up by the recurrence below.
fn ln_gamma(a: f64) -> f64 {
    let mut shift = 1.0;
    let mut z = a;
    while z < STIRLING_FROM {
        shift *= z;
        z += 1.0;
    }
    (z - 0.5) * z.ln() - z + 0.5 * (2.0 * PI).ln() + stirling_correction(z) - shift.ln()
}

/// Locations of the bins cut by sorted `edges` e_0..e_k: the lower tail at e_0, each inner bin
/// [e_(j-1), e_j) at its midpoint, the upper tail at e_k, so `edges.len() + 1` entries, ready for
/// [`wasserstein`]. Open tails sit on their edge because their spread is unknown. No edges, no
/// locations.
pub fn bin_locations(edges: &[f64]) -> Vec<f64> {
    let (Some(&first), Some(&last)) = (edges.first(), edges.last()) else {
        return Vec::new();
    };
    let mut locations = Vec::with_capacity(edges.len() + 1);
    locations.push(first);
    locations.extend(edges.windows(2).map(|w| 0.5 * (w[0] + w[1])));
    locations.push(last);
    locations
}

/// The two totals, or None when the inputs cannot be compared.
fn totals(reference: &[f64], observed: &[f64]) -> Option<(f64, f64)> {
    let valid = |w: &f64| w.is_finite() && *w >= 0.0;
    if reference.is_empty()
        || reference.len() != observed.len()
        || !reference.iter().all(valid)
        || !observed.iter().all(valid)
    {
        return None;
    }
    let reference_total: f64 = reference.iter().sum();
    let observed_total: f64 = observed.iter().sum();
    let usable = |t: f64| t.is_finite() && t > 0.0;
    (usable(reference_total) && usable(observed_total)).then_some((reference_total, observed_total))
}

/// Per-bin shares (p, q) of the two inputs.
fn shares<'a>(
    reference: &'a [f64],
    observed: &'a [f64],
    (reference_total, observed_total): (f64, f64),
) -> impl Iterator<Item = (f64, f64)> + 'a {
    reference
        .iter()
        .zip(observed)
        .map(move |(r, o)| (r / reference_total, o / observed_total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn identical_distributions_show_no_drift() {
        let shares = [0.1, 0.2, 0.3, 0.4];
        let counts = [10.0, 20.0, 30.0, 40.0];
        assert!(psi(&shares, &counts).abs() < 1e-15);
        assert_eq!(js_distance(&counts, &counts), 0.0);
        let k = ks(&counts, 100.0, &counts);
        assert_eq!(
            k,
            Ks {
                d: 0.0,
                p_value: 1.0
            }
        );
        let locations = bin_locations(&[0.0, 1.0, 2.0]);
        assert_eq!(wasserstein(&counts, &counts, &locations, 2.0), 0.0);
        let c = chi_squared(&shares, &counts);
        assert!(c.statistic < 1e-12 && c.dof == 3 && close(c.p_value, 1.0, 1e-12));
        assert_eq!(l_infinity(&counts, &counts), 0.0);
    }

    #[test]
    fn nearly_identical_distributions_stay_finite_and_tiny() {
        // A naive sum of p ln(p/m) + q ln(q/m) can come out slightly negative (NaN distance) or
        // as sqrt(rounding) ~ 1e-8; the per-bin series keeps these at their true size.
        let below_half = 0.5 - f64::EPSILON / 4.0;
        let d = js_distance(
            &[below_half, 1.0 - below_half],
            &[1.0 - below_half, below_half],
        );
        assert!((0.0..1e-15).contains(&d), "{d}");
        let d = js_distance(
            &[0.05, 0.2, 0.45, 0.2, 0.1],
            &[50.0, 200.0, 450.0, 200.0, 100.0],
        );
        assert!((0.0..1e-15).contains(&d), "{d}");
        let d = js_distance(&[0.0, 1.0], &[f64::from_bits(1), 1.0]);
        assert!((0.0..1e-100).contains(&d), "{d}");
    }

    #[test]
    fn disjoint_distributions_are_maximally_apart() {
        let a = [1.0, 0.0];
        let b = [0.0, 5.0];
        assert!(close(js_distance(&a, &b), 1.0, 1e-15));
        assert_eq!(ks(&a, 1.0, &b).d, 1.0);
        assert_eq!(l_infinity(&a, &b), 1.0);
        // Both floored to 1e-4: 2 * (1 - 1e-4) * ln(1e4).
        assert!(close(psi(&a, &b), 2.0 * (1.0 - 1e-4) * 1e4_f64.ln(), 1e-14));
        assert_eq!(wasserstein(&a, &b, &[0.0, 3.0], 1.5), 2.0);
    }

    #[test]
    fn special_functions_match_known_values() {
        assert!(close(kolmogorov_sf(1.0), 0.26999967167735456, 1e-14));
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert_eq!(kolmogorov_sf(-1.0), 1.0);
        assert_eq!(kolmogorov_sf(f64::INFINITY), 0.0);
        // Both branches agree at the switch.
        let below = kolmogorov_sf(KOLMOGOROV_SWITCH * (1.0 - 1e-15));
        assert!(close(below, kolmogorov_sf(KOLMOGOROV_SWITCH), 1e-14));
        // Far tail keeps relative accuracy: 2 exp(-2 x^2) dominates.
        assert!(close(
            kolmogorov_sf(10.0) / (2.0 * (-200.0_f64).exp()),
            1.0,
            1e-14
        ));
        assert!(close(chi2_sf(3.84145882069412, 1.0), 0.05, 1e-12));
        // Two degrees of freedom: exp(-x/2) exactly.
        assert!(close(chi2_sf(7.0, 2.0), (-3.5_f64).exp(), 1e-14));
        assert!(close(chi2_sf(1000.0, 2.0) / (-500.0_f64).exp(), 1.0, 1e-12));
        assert_eq!(chi2_sf(0.0, 3.0), 1.0);
        assert_eq!(chi2_sf(1e7, 3.0), 0.0);
        assert!(chi2_sf(1.0, 0.0).is_nan());
        // ln Gamma at integers is ln((n-1)!).
        assert!(close(ln_gamma(5.0), 24.0_f64.ln(), 1e-14));
        assert!(close(
            ln_gamma(30.0),
            (1..30).map(|k| f64::from(k).ln()).sum(),
            1e-14
        ));
        assert!(close(ln_gamma(0.5), 0.5 * PI.ln(), 1e-14));
    }

    #[test]
    fn incomparable_inputs_give_nan() {
        let zero = [0.0, 0.0];
        let some = [1.0, 2.0];
        for (r, o) in [
            (&zero[..], &some[..]),
            (&some, &zero),
            (&[], &[]),
            (&some, &[1.0]),
        ] {
            assert!(psi(r, o).is_nan());
            assert!(js_distance(r, o).is_nan());
            let k = ks(r, 10.0, o);
            assert!(k.d.is_nan() && k.p_value.is_nan());
            assert!(wasserstein(r, o, &[0.0, 1.0], 1.0).is_nan());
            let c = chi_squared(r, o);
            assert!(c.statistic.is_nan() && c.p_value.is_nan() && c.dof == 0);
            assert!(l_infinity(r, o).is_nan());
        }
        assert!(psi(&[1.0, -1.0, 1.0], &[1.0, 1.0, 1.0]).is_nan());
        assert!(psi(&[1.0, f64::NAN], &[1.0, 1.0]).is_nan());
        assert!(ks(&some, 0.0, &some).p_value.is_nan());
        assert!(wasserstein(&some, &some, &[1.0, 0.0], 1.0).is_nan());
        assert!(wasserstein(&some, &some, &[0.0], 1.0).is_nan());
    }

    #[test]
    fn tails_and_locations() {
        assert_eq!(bin_locations(&[0.0, 2.0, 6.0]), vec![0.0, 1.0, 4.0, 6.0]);
        assert_eq!(bin_locations(&[3.0]), vec![3.0, 3.0]);
        assert!(bin_locations(&[]).is_empty());
        // Everything moved from the lower tail to the upper tail: transported over e_k - e_0.
        let locations = bin_locations(&[0.0, 2.0, 6.0]);
        let lower = [5.0, 0.0, 0.0, 0.0];
        let upper = [0.0, 0.0, 0.0, 7.0];
        assert_eq!(wasserstein(&lower, &upper, &locations, 0.0), 6.0);
        assert_eq!(wasserstein(&lower, &upper, &locations, 3.0), 2.0);
        assert_eq!(wasserstein(&lower, &upper, &locations, f64::NAN), 6.0);
        // A tail bin seen only now: PSI counts it against the floor, KS sees the whole share.
        let reference = [0.0, 0.5, 0.5, 0.0];
        let observed = [0.0, 40.0, 40.0, 20.0];
        assert!(close(
            psi(&reference, &observed),
            2.0 * (0.4 - 0.5) * 0.8_f64.ln() + (0.2 - 1e-4) * 2000.0_f64.ln(),
            1e-14
        ));
        let k = ks(&reference, f64::INFINITY, &observed);
        assert!(close(k.d, 0.2, 1e-15));
        assert!(close(
            k.p_value,
            kolmogorov_sf(0.2 * 100.0_f64.sqrt()),
            1e-15
        ));
        assert_eq!(
            chi_squared(&[1.0], &[10.0]),
            ChiSquared {
                statistic: 0.0,
                dof: 0,
                p_value: 1.0
            }
        );
    }
}
