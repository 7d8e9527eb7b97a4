//! Reading the events a [`SentryEndpoint`] received: waiting for them, and the fields the
//! tests check, each failing with the whole event when it is missing.

use std::time::Duration;

use serde_json::Value;

use super::sentry_endpoint::SentryEndpoint;

/// Waits until `n` events arrived (10 s at most) and returns every event received.
pub async fn events(endpoint: &SentryEndpoint, n: usize) -> Vec<Value> {
    super::eventually(Duration::from_secs(10), || {
        let events = endpoint.events();
        (events.len() >= n).then_some(events)
    })
    .await
    .unwrap_or_else(|| panic!("expected {n} events, got {:#?}", endpoint.events()))
}

/// The event for `transaction` (`METHOD route`) among `events`.
pub fn for_transaction<'a>(events: &'a [Value], transaction: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["transaction"] == transaction)
        .unwrap_or_else(|| panic!("no event for {transaction}: {events:#?}"))
}

/// The tag `name` of an event.
pub fn tag<'a>(event: &'a Value, name: &str) -> &'a str {
    event["tags"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no tag {name} in {event:#}"))
}

/// An event's level: Sentry reads an absent level as `error`, and the SDK leaves the
/// default out.
pub fn level(event: &Value) -> &str {
    event["level"].as_str().unwrap_or("error")
}

/// An event's message, formatted or plain.
pub fn message(event: &Value) -> &str {
    event["message"]["formatted"]
        .as_str()
        .or(event["message"].as_str())
        .unwrap_or_else(|| panic!("no message in {event:#}"))
}

/// The messages of an event's breadcrumbs, in order (none: empty).
pub fn breadcrumbs(event: &Value) -> Vec<String> {
    event["breadcrumbs"]["values"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|b| b["message"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
