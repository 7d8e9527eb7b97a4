//! The one layer.

use std::sync::Arc;

use tower_layer::Layer;

use crate::service::ObservabilityService;
use crate::shared::Shared;

/// The layer returned by [`Observability::layer`](crate::Observability::layer).
///
/// Cheap to clone: every clone shares the same routes, metric handles and configuration.
#[derive(Clone)]
pub struct ObservabilityLayer {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ObservabilityLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservabilityLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ObservabilityLayer {
    type Service = ObservabilityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObservabilityService::new(inner, self.shared.clone())
    }
}
