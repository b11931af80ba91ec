//! Log loss (cross-entropy, in nats) and ROC AUC: how the trainer and scorer judge predictions.

/// Probabilities are clipped this far from 0 and 1 so one confident miss cannot be infinite.
const EPSILON: f64 = 1e-15;

/// Running mean log loss.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogLoss {
    sum: f64,
    rows: u64,
}

impl LogLoss {
    /// Adds one prediction `p` of a click for a row whose label is `clicked`.
    #[inline]
    pub fn add(&mut self, p: f64, clicked: bool) {
        let p = p.clamp(EPSILON, 1.0 - EPSILON);
        self.sum -= if clicked { p.ln() } else { (1.0 - p).ln() };
        self.rows += 1;
    }

    /// Adds the loss a row with true click probability `p` has on average: its binary entropy.
    /// Summed over rows, that is the Bayes (best achievable) log loss.
    #[inline]
    pub fn add_expected(&mut self, p: f64) {
        self.sum += entropy(p);
        self.rows += 1;
    }

    /// Adds another running loss.
    pub fn merge(&mut self, other: LogLoss) {
        self.sum += other.sum;
        self.rows += other.rows;
    }

    /// Rows added.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Mean loss, or `None` before any row.
    pub fn mean(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.sum / self.rows as f64)
    }
}

/// Binary entropy of a click rate, in nats: the log loss of always predicting that rate.
pub fn entropy(rate: f64) -> f64 {
    let r = rate.clamp(EPSILON, 1.0 - EPSILON);
    -(r * r.ln() + (1.0 - r) * (1.0 - r).ln())
}

/// ROC AUC of `(prediction, label)` pairs (ties count half), or `None` when either class is
/// absent. Sorts `pairs` in place.
pub fn auc(pairs: &mut [(f32, bool)]) -> Option<f64> {
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let positives = pairs.iter().filter(|p| p.1).count() as f64;
    let negatives = pairs.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Mann-Whitney: sum of the positives' ranks, with tied predictions sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < pairs.len() {
        let mut end = start;
        while end < pairs.len() && pairs[end].0 == pairs[start].0 {
            end += 1;
        }
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        let tied_positives = pairs[start..end].iter().filter(|p| p.1).count() as f64;
        rank_sum += mean_rank * tied_positives;
        start = end;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_orderings() {
        let mut perfect = [(0.1, false), (0.9, true), (0.2, false), (0.8, true)];
        assert_eq!(auc(&mut perfect), Some(1.0));
        let mut reversed = [(0.9, false), (0.1, true)];
        assert_eq!(auc(&mut reversed), Some(0.0));
        let mut tied = [(0.5, false), (0.5, true)];
        assert_eq!(auc(&mut tied), Some(0.5));
        // One of the two positive-negative pairs is ordered right.
        let mut half = [(0.1, true), (0.5, false), (0.9, true)];
        assert_eq!(auc(&mut half), Some(0.5));
        assert_eq!(auc(&mut [(0.3, true)]), None);
    }

    #[test]
    fn log_loss_and_entropy() {
        let mut loss = LogLoss::default();
        loss.add(0.5, true);
        loss.add(0.5, false);
        assert!((loss.mean().unwrap() - std::f64::consts::LN_2).abs() < 1e-12);
        assert!((entropy(0.5) - std::f64::consts::LN_2).abs() < 1e-12);
        // The seed's click rate: about 0.145 nats.
        assert!(
            (entropy(0.033) - 0.14497).abs() < 1e-4,
            "{}",
            entropy(0.033)
        );
        assert_eq!(LogLoss::default().mean(), None);
    }
}
