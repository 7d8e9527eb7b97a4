//! `Vary`: the layer's request headers merged into the application's own `Vary`, so caches
//! key on both and nothing the application said is lost.

use http::header::{HeaderMap, HeaderValue, VARY};

/// Adds `tokens` (lowercase, comma-separated) to the response's `Vary`, keeping the
/// application's. Allocates only when the application set a `Vary` of its own.
pub(crate) fn merge(headers: &mut HeaderMap, tokens: &HeaderValue) {
    let mut existing = headers.get_all(VARY).iter().peekable();
    if existing.peek().is_none() {
        let _ = headers.try_insert(VARY, tokens.clone());
        return;
    }
    let mut merged = String::new();
    for value in existing {
        let Ok(value) = value.to_str() else {
            // A value we cannot read is left exactly as it is, beside ours.
            let _ = headers.try_append(VARY, tokens.clone());
            return;
        };
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token == "*" {
                // `Vary: *` already says the response varies on everything.
                return;
            }
            push(&mut merged, token);
        }
    }
    let missing: Vec<&str> = tokens
        .to_str()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !has(&merged, t))
        .collect();
    if missing.is_empty() {
        return;
    }
    missing.iter().for_each(|t| push(&mut merged, t));
    if let Ok(value) = HeaderValue::from_str(&merged) {
        let _ = headers.try_insert(VARY, value);
    }
}

fn has(list: &str, token: &str) -> bool {
    list.split(", ").any(|t| t.eq_ignore_ascii_case(token))
}

fn push(list: &mut String, token: &str) {
    if has(list, token) {
        return;
    }
    if !list.is_empty() {
        list.push_str(", ");
    }
    list.push_str(token);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vary(app: &[&'static str], ours: &'static str) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for v in app {
            headers.append(VARY, HeaderValue::from_static(v));
        }
        merge(&mut headers, &HeaderValue::from_static(ours));
        headers
            .get_all(VARY)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn merges_with_the_applications_vary() {
        assert_eq!(vary(&[], "origin"), ["origin"]);
        assert_eq!(
            vary(&["Accept-Encoding"], "origin"),
            ["Accept-Encoding, origin"]
        );
        assert_eq!(
            vary(&["accept-encoding", "Accept-Language"], "origin"),
            ["accept-encoding, Accept-Language, origin"]
        );
        assert_eq!(vary(&["Origin"], "origin"), ["Origin"]);
        assert_eq!(
            vary(
                &["Origin, Accept"],
                "origin, access-control-request-method, access-control-request-headers"
            ),
            ["Origin, Accept, access-control-request-method, access-control-request-headers"]
        );
        assert_eq!(vary(&["*"], "origin"), ["*"]);
        assert_eq!(vary(&["accept, , accept"], "origin"), ["accept, origin"]);
    }
}
