//! The random variates the generator needs, drawn from a seeded [`fastrand::Rng`] so a stream
//! is reproducible (fastrand has uniforms only).

use fastrand::Rng;

/// A uniform draw in (0, 1]: safe to take the logarithm of.
fn open_unit(rng: &mut Rng) -> f64 {
    1.0 - rng.f64()
}

/// Uniform in [lo, hi).
pub fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.f64()
}

/// Exponential with the given mean (inverse transform).
pub fn exponential(rng: &mut Rng, mean: f64) -> f64 {
    -mean * open_unit(rng).ln()
}

/// Standard normal (Box–Muller; the second variate of the pair is dropped to keep no state).
pub fn standard_normal(rng: &mut Rng) -> f64 {
    let radius = (-2.0 * open_unit(rng).ln()).sqrt();
    radius * (std::f64::consts::TAU * rng.f64()).cos()
}

/// Normal with the given mean and standard deviation.
pub fn normal(rng: &mut Rng, mean: f64, sd: f64) -> f64 {
    mean + sd * standard_normal(rng)
}

/// Gamma(shape, 1) by Marsaglia and Tsang; a shape below 1 is boosted by one and scaled back
/// by `U^(1/shape)`. A non-positive or non-finite shape gives NaN.
pub fn gamma(rng: &mut Rng, shape: f64) -> f64 {
    if !(shape > 0.0 && shape.is_finite()) {
        return f64::NAN;
    }
    if shape < 1.0 {
        let boost = open_unit(rng).powf(1.0 / shape);
        return gamma(rng, shape + 1.0) * boost;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = open_unit(rng);
        let x2 = x * x;
        // The cheap squeeze accepts almost every draw; the log test decides the rest.
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
pub fn beta(rng: &mut Rng, a: f64, b: f64) -> f64 {
    let x = gamma(rng, a);
    let y = gamma(rng, b);
    x / (x + y)
}

/// An index drawn with probability proportional to `weights` (which need not sum to 1).
pub fn weighted_index(rng: &mut Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut left = rng.f64() * total;
    for (i, w) in weights.iter().enumerate() {
        if left < *w {
            return i;
        }
        left -= w;
    }
    // Rounding can leave a sliver past the last bucket.
    weights.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(n: usize, mut draw: impl FnMut() -> f64) -> (f64, f64) {
        let xs: Vec<f64> = (0..n).map(|_| draw()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (mean, var)
    }

    #[test]
    fn normal_has_its_mean_and_sd() {
        let mut rng = Rng::with_seed(1);
        let (m, v) = moments(20_000, || normal(&mut rng, 5.0, 2.0));
        assert!((m - 5.0).abs() < 0.05, "{m}");
        assert!((v.sqrt() - 2.0).abs() < 0.05, "{v}");
    }

    #[test]
    fn exponential_has_its_mean() {
        let mut rng = Rng::with_seed(2);
        let (m, v) = moments(20_000, || exponential(&mut rng, 3.0));
        assert!((m - 3.0).abs() < 0.1, "{m}");
        assert!((v.sqrt() - 3.0).abs() < 0.15, "{v}");
    }

    #[test]
    fn gamma_has_mean_and_variance_equal_to_its_shape() {
        let mut rng = Rng::with_seed(3);
        for shape in [0.5, 1.0, 3.0, 10.0] {
            let (m, v) = moments(20_000, || gamma(&mut rng, shape));
            assert!(
                (m - shape).abs() < 0.05 * shape.max(1.0),
                "shape {shape}: mean {m}"
            );
            assert!(
                (v - shape).abs() < 0.1 * shape.max(1.0),
                "shape {shape}: var {v}"
            );
        }
        assert!(gamma(&mut rng, 0.0).is_nan());
        assert!(gamma(&mut rng, f64::NAN).is_nan());
    }

    #[test]
    fn beta_has_its_mean_and_variance() {
        let mut rng = Rng::with_seed(4);
        for (a, b) in [(4.0, 10.0), (10.0, 4.0), (3.0, 8.0)] {
            let (m, v) = moments(20_000, || beta(&mut rng, a, b));
            let want_m = a / (a + b);
            let want_v = a * b / ((a + b) * (a + b) * (a + b + 1.0));
            assert!((m - want_m).abs() < 0.005, "Beta({a},{b}) mean {m}");
            assert!((v - want_v).abs() < 0.1 * want_v, "Beta({a},{b}) var {v}");
        }
    }

    #[test]
    fn weighted_index_follows_the_weights() {
        let mut rng = Rng::with_seed(5);
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[weighted_index(&mut rng, &[0.4, 0.3, 0.3])] += 1;
        }
        assert!(
            (counts[0] as f64 / 30_000.0 - 0.4).abs() < 0.015,
            "{counts:?}"
        );
        assert!(
            (counts[1] as f64 / 30_000.0 - 0.3).abs() < 0.015,
            "{counts:?}"
        );
        assert_eq!(weighted_index(&mut rng, &[]), 0);
    }
}
