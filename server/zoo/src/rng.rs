//! A seeded normal-variate generator whose output is the same on every platform.
//!
//! SplitMix64 for the bits and Marsaglia's polar method for the normals. The polar method needs
//! a logarithm, and `f64::ln` comes from the platform's libm, whose last bit may differ between
//! systems; [`ln`] below uses only IEEE-exact operations (add, multiply, divide, sqrt), so the
//! same seed gives byte-identical weights everywhere.

/// SplitMix64 with a cached second normal from the polar method.
#[derive(Clone, Debug)]
pub struct NormalRng {
    state: u64,
    spare: Option<f64>,
}

impl NormalRng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> NormalRng {
        NormalRng {
            state: seed,
            spare: None,
        }
    }

    /// The next 64 random bits (SplitMix64).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), a multiple of 2^-52.
    fn next_signed_unit(&mut self) -> f64 {
        // 53 random bits scaled to [0, 2), then shifted: every operation is exact.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 52) as f64) - 1.0
    }

    /// A standard normal variate (mean 0, variance 1).
    pub fn next_normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        loop {
            let u = self.next_signed_unit();
            let v = self.next_signed_unit();
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let factor = (-2.0 * ln(s) / s).sqrt();
                self.spare = Some(v * factor);
                return u * factor;
            }
        }
    }
}

/// Natural logarithm of a positive, normal, finite `x`, from basic IEEE operations only.
pub fn ln(x: f64) -> f64 {
    debug_assert!(x.is_normal() && x > 0.0, "ln({x})");
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    // The mantissa as a number in [1, 2), then moved to [sqrt(1/2), sqrt(2)] so the series
    // argument stays small.
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        exponent += 1;
    }
    // ln(m) = 2 atanh(t) = 2 (t + t^3/3 + t^5/5 + ...), with |t| <= 0.172, so t^2 <= 0.0295 and
    // 14 terms reach well below f64 precision.
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let mut sum = 0.0;
    for k in (0..14).rev() {
        sum = sum * t2 + 1.0 / (2 * k + 1) as f64;
    }
    exponent as f64 * std::f64::consts::LN_2 + 2.0 * t * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_matches_the_platform_to_rounding() {
        for &x in &[
            1e-30_f64, 1e-5, 0.1, 0.5, 0.7, 0.99999, 1.0, 1.4, 1.5, 2.0, 3.0, 1e10,
        ] {
            let want = x.ln();
            let got = ln(x);
            assert!(
                (got - want).abs() <= 1e-15 * want.abs().max(1.0),
                "ln({x}) = {got}, not {want}"
            );
        }
    }

    #[test]
    fn normals_have_unit_variance_and_repeat_per_seed() {
        let mut rng = NormalRng::new(7);
        let n = 200_000;
        let samples: Vec<f64> = (0..n).map(|_| rng.next_normal()).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|z| (z - mean) * (z - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");

        let mut again = NormalRng::new(7);
        assert!(samples[..100].iter().all(|&z| z == again.next_normal()));
        let mut other = NormalRng::new(8);
        assert_ne!(samples[0], other.next_normal());
    }
}
