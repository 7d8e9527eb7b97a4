//! Reading an observability's metrics beyond one sample (`support::sample` and
//! `exact_sample`): waiting for them, totals, a histogram's buckets, every label set of a
//! metric. Labels are parsed ([`parse_sample`]) and compared whole, never as substrings.

use std::time::Duration;

use tower_observability::Observability;

use super::{eventually, parse_sample, Labels};

/// Renders `obs`'s metrics until `ready` holds for the text (5 s at most) and returns that
/// text; fails saying `what` was never recorded.
pub async fn metrics_when(obs: &Observability, what: &str, ready: impl Fn(&str) -> bool) -> String {
    eventually(Duration::from_secs(5), || {
        let text = obs.render_metrics();
        ready(&text).then_some(text)
    })
    .await
    .unwrap_or_else(|| panic!("{what}: never recorded\n{}", obs.render_metrics()))
}

/// The sum of every series of `name` (a counter over all its labels); fails when `obs`
/// exports none.
pub fn total(obs: &Observability, name: &str) -> f64 {
    super::sample(&obs.render_metrics(), name, &[]).unwrap_or_else(|| panic!("{name} not exported"))
}

/// The label sets of every sample of `name`, in the order the text has them.
pub fn label_sets(text: &str, name: &str) -> Vec<Labels> {
    text.lines()
        .filter_map(parse_sample)
        .filter(|(metric, _, _)| *metric == name)
        .map(|(_, labels, _)| labels)
        .collect()
}

/// A label set from pairs, to compare with what [`label_sets`] returns.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `le` bounds of the buckets of histogram `metric`, in order, for the series whose
/// labels include every pair given.
pub fn bucket_bounds(text: &str, metric: &str, wanted: &[(&str, &str)]) -> Vec<f64> {
    let bucket = format!("{metric}_bucket");
    label_sets(text, &bucket)
        .into_iter()
        .filter(|labels| {
            wanted
                .iter()
                .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|labels| {
            let (_, le) = labels
                .iter()
                .find(|(k, _)| k == "le")
                .expect("a bucket's le");
            match le.as_str() {
                "+Inf" => f64::INFINITY,
                le => le.parse().unwrap(),
            }
        })
        .collect()
}
