//! An observability configured as a deployment configures it, from its variables, given
//! here as a list: a test never touches the process's own environment.

use std::collections::HashMap;

use tower_observability::{MetricsBackend, Observability, ObservabilityBuilder};

/// A builder configured from these variables only, with a private registry (as
/// [`isolated`](super::isolated)).
pub fn from_vars(name: &str, vars: &[(&str, &str)]) -> ObservabilityBuilder {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Observability::from_env_with(name, move |k| vars.get(k).cloned())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .metrics_backend(MetricsBackend::IsolatedPrometheus)
}
