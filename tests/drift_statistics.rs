//! The drift statistics equal numpy's and scipy's on the cases that
//! tests/readers/drift_reference.py wrote to tests/fixtures/drift_statistics.json: statistics
//! within 1e-9 (relative above 1), p-values within 1e-6, and the special functions behind the
//! p-values within 1e-11 relative over their range. Every mismatch is listed before failing.

use std::collections::BTreeMap;

use modelgate::drift::stats;
use serde::Deserialize;

mod checkout;

const STATISTIC_TOLERANCE: f64 = 1e-9;
const P_VALUE_TOLERANCE: f64 = 1e-6;
const SPECIAL_FUNCTION_TOLERANCE: f64 = 1e-11;
/// scipy's Jensen-Shannon distance is the square root of a divergence it sums naively, so for
/// nearly identical distributions it is sqrt(rounding noise), up to ~1e-8 (scipy issue 20083).
/// There the divergences (squared distances) are compared instead, to rounding.
const JS_DIVERGENCE_TOLERANCE: f64 = 1e-15;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
    kolmogorov_sf: Vec<KolmogorovPoint>,
    chi2_sf: Vec<Chi2Point>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Case {
    Numeric {
        name: String,
        edges: Vec<f64>,
        locations: Vec<f64>,
        reference: Vec<f64>,
        reference_count: f64,
        observed: Vec<f64>,
        scale: f64,
        expected: NumericExpected,
    },
    Categorical {
        name: String,
        reference: Vec<f64>,
        observed: Vec<f64>,
        expected: CategoricalExpected,
    },
}

#[derive(Deserialize)]
struct NumericExpected {
    psi: f64,
    js: f64,
    ks_d: f64,
    ks_p_value: f64,
    wasserstein: f64,
}

#[derive(Deserialize)]
struct CategoricalExpected {
    psi: f64,
    js: f64,
    chi2: f64,
    chi2_dof: usize,
    chi2_p_value: f64,
    linf: f64,
}

#[derive(Deserialize)]
struct KolmogorovPoint {
    x: f64,
    expected: f64,
}

#[derive(Deserialize)]
struct Chi2Point {
    x: f64,
    dof: f64,
    expected: f64,
}

/// Mismatches so far, and the largest deviation per figure (printed, to show the margins).
#[derive(Default)]
struct Checks {
    mismatches: Vec<String>,
    largest: BTreeMap<&'static str, (f64, String)>,
}

impl Checks {
    /// `deviation` is absolute for the statistics, relative for the special functions.
    fn record(&mut self, case: &str, figure: &'static str, got: f64, want: f64, ok: bool) {
        let mut deviation = (got - want).abs();
        if figure.ends_with("_sf") && want != 0.0 {
            deviation /= want.abs();
        }
        if !ok {
            self.mismatches.push(format!(
                "{case}: {figure} = {got:e}, expected {want:e} (off by {deviation:e})"
            ));
        }
        let largest = self.largest.entry(figure).or_insert((0.0, String::new()));
        if largest.1.is_empty() || deviation > largest.0 || deviation.is_nan() {
            *largest = (deviation, case.to_string());
        }
    }

    fn statistic(&mut self, case: &str, figure: &'static str, got: f64, want: f64) {
        let ok = (got - want).abs() <= STATISTIC_TOLERANCE * want.abs().max(1.0);
        self.record(case, figure, got, want, ok);
    }

    fn p_value(&mut self, case: &str, figure: &'static str, got: f64, want: f64) {
        let ok = (got - want).abs() <= P_VALUE_TOLERANCE;
        self.record(case, figure, got, want, ok);
    }

    fn js(&mut self, case: &str, got: f64, want: f64) {
        let ok = (got - want).abs() <= STATISTIC_TOLERANCE
            || (got * got - want * want).abs() <= JS_DIVERGENCE_TOLERANCE;
        self.record(case, "js", got, want, ok);
    }

    fn special(&mut self, point: &str, figure: &'static str, got: f64, want: f64) {
        // Values scipy underflows to (sub)normal crumbs may come back as 0.
        let ok = (got - want).abs() <= SPECIAL_FUNCTION_TOLERANCE * want.abs() + 1e-300;
        self.record(point, figure, got, want, ok);
    }
}

fn fixture() -> Fixture {
    let path = checkout::checkout().join("tests/fixtures/drift_statistics.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run tests/readers/drift_reference.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn drift_statistics_match_scipy_on_every_fixture_case() {
    let fixture = fixture();
    let numeric = fixture
        .cases
        .iter()
        .filter(|c| matches!(c, Case::Numeric { .. }))
        .count();
    let categorical = fixture.cases.len() - numeric;
    assert!(
        fixture.cases.len() >= 30 && numeric >= 10 && categorical >= 10,
        "too few fixture cases: {numeric} numeric, {categorical} categorical"
    );

    let mut checks = Checks::default();
    for case in &fixture.cases {
        match case {
            Case::Numeric {
                name,
                edges,
                locations,
                reference,
                reference_count,
                observed,
                scale,
                expected,
            } => {
                let built = stats::bin_locations(edges);
                if built.len() != locations.len() {
                    checks.mismatches.push(format!(
                        "{name}: bin_locations gave {} locations, expected {}",
                        built.len(),
                        locations.len()
                    ));
                    continue;
                }
                for (got, want) in built.iter().zip(locations) {
                    checks.statistic(name, "bin_locations", *got, *want);
                }
                checks.statistic(name, "psi", stats::psi(reference, observed), expected.psi);
                checks.js(name, stats::js_distance(reference, observed), expected.js);
                let ks = stats::ks(reference, *reference_count, observed);
                checks.statistic(name, "ks_d", ks.d, expected.ks_d);
                checks.p_value(name, "ks_p_value", ks.p_value, expected.ks_p_value);
                let w1 = stats::wasserstein(reference, observed, &built, *scale);
                checks.statistic(name, "wasserstein", w1, expected.wasserstein);
            }
            Case::Categorical {
                name,
                reference,
                observed,
                expected,
            } => {
                checks.statistic(name, "psi", stats::psi(reference, observed), expected.psi);
                checks.js(name, stats::js_distance(reference, observed), expected.js);
                let chi = stats::chi_squared(reference, observed);
                checks.statistic(name, "chi2", chi.statistic, expected.chi2);
                if chi.dof != expected.chi2_dof {
                    checks.mismatches.push(format!(
                        "{name}: chi2 dof = {}, expected {}",
                        chi.dof, expected.chi2_dof
                    ));
                }
                checks.p_value(name, "chi2_p_value", chi.p_value, expected.chi2_p_value);
                let linf = stats::l_infinity(reference, observed);
                checks.statistic(name, "linf", linf, expected.linf);
            }
        }
    }

    assert!(!fixture.kolmogorov_sf.is_empty() && !fixture.chi2_sf.is_empty());
    for p in &fixture.kolmogorov_sf {
        let got = stats::kolmogorov_sf(p.x);
        checks.special(&format!("x = {}", p.x), "kolmogorov_sf", got, p.expected);
    }
    for p in &fixture.chi2_sf {
        let got = stats::chi2_sf(p.x, p.dof);
        let point = format!("x = {}, dof = {}", p.x, p.dof);
        checks.special(&point, "chi2_sf", got, p.expected);
    }

    for (figure, (deviation, case)) in &checks.largest {
        println!("largest {figure} deviation: {deviation:e} ({case})");
    }
    assert!(
        checks.mismatches.is_empty(),
        "{} mismatches:\n{}",
        checks.mismatches.len(),
        checks.mismatches.join("\n")
    );
}
