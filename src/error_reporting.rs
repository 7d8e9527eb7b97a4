//! Error reporting, the signal: Sentry with the `sentry` feature ([`crate::sentry`]), and
//! without it a zero-sized signal that does nothing, so the pass is the same either way.

#[cfg(feature = "sentry")]
pub(crate) use crate::sentry::ErrorReporting;

#[cfg(not(feature = "sentry"))]
pub(crate) use off::ErrorReporting;

#[cfg(not(feature = "sentry"))]
mod off {
    use std::time::Instant;

    use http::Request;

    use crate::config::Setup;
    use crate::error::BuildError;
    use crate::signal::{Arrival, Ending, Signal};

    /// No error reporting: the `sentry` feature is off.
    pub(crate) struct ErrorReporting;

    impl ErrorReporting {
        pub(crate) fn begin_close(&self, _deadline: Instant) {}

        pub(crate) fn close(&self, _deadline: Instant) -> bool {
            true
        }

        pub(crate) fn pending(&self) -> usize {
            0
        }

        pub(crate) fn dropped(&self) -> u64 {
            0
        }
    }

    impl Signal for ErrorReporting {
        type Exchange = ();
        type Entered<'a> = ();

        fn build(_setup: &mut Setup<'_>) -> Result<Self, BuildError> {
            Ok(ErrorReporting)
        }

        fn arrive<B>(&self, _: &Request<B>, _: &mut Arrival<'_>) {}

        fn enter<'a>(&'a self, _: &'a ()) {}

        fn end(&self, _: &mut (), _: &mut Ending<'_>) {}
    }
}
