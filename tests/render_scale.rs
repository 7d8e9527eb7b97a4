//! `/metrics` with issue 7's population (1,000 routes x 5 status codes x 3 methods, every
//! label set reached by a real request): every label set is exposed, none folds into
//! `overflow`, and Prometheus's own linter accepts the exposition. The time it takes is
//! measured by `benches/render.rs`, never here.

mod support;

#[path = "../benches/support/scale.rs"]
mod scale;

use support::{promtool_check_metrics, sample};

#[tokio::test]
async fn every_label_set_of_the_population_is_exposed_and_valid() {
    let obs = scale::observability();
    let sent = scale::populate(&obs).await;
    assert_eq!(sent, scale::LABEL_SETS);
    let text = obs.render_metrics();

    // One `_count` line per label set and family: nothing merged, nothing lost.
    for family in scale::FAMILIES {
        let counts = text
            .lines()
            .filter(|l| l.starts_with(&format!("{family}_count{{")))
            .count();
        assert_eq!(counts, scale::LABEL_SETS, "{family}_count series");
    }
    // Spot checks across the population, each one request.
    for (route, status, method) in [
        ("/r0", "200", "GET"),
        ("/r999", "500", "DELETE"),
        ("/r512", "429", "POST"),
    ] {
        let count = sample(
            &text,
            "http_server_request_duration_seconds_count",
            &[
                ("http_route", route),
                ("http_response_status_code", status),
                ("http_request_method", method),
            ],
        );
        assert_eq!(count, Some(1.0), "{method} {route} {status}");
    }
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_count",
            &[("http_route", "overflow")]
        ),
        None,
        "the population is exactly the route cap: nothing may overflow"
    );
    assert!(scale::population_series(&text) > 3 * scale::LABEL_SETS);

    let lint = promtool_check_metrics(&text);
    assert!(lint.is_empty(), "promtool check metrics: {lint}");
}
