//! Which traces are recorded: the OpenTelemetry samplers `OTEL_TRACES_SAMPLER` names.

use super::{TraceFlags, TraceId};

/// A head sampler: decided once when the span starts, propagated in the sampled flag.
///
/// The default is `parentbased_always_on`: follow the caller's decision, record new traces.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Sampler {
    /// Record every trace (`always_on`).
    AlwaysOn,
    /// Record no trace (`always_off`); context is still propagated.
    AlwaysOff,
    /// Record this fraction of traces, chosen by trace id so every service agrees
    /// (`traceidratio`, the OpenTelemetry SDK's algorithm).
    TraceIdRatio(f64),
    /// Follow the caller's sampled flag when there is one, else ask the root sampler
    /// (`parentbased_*`).
    ParentBased(Box<Sampler>),
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
    }
}

impl Sampler {
    /// The sampler for `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, or an error
    /// message.
    pub(crate) fn from_env(name: &str, arg: Option<&str>) -> Result<Self, String> {
        let ratio = || -> Result<f64, String> {
            match arg.map(str::trim) {
                None | Some("") => Ok(1.0),
                Some(a) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        format!("OTEL_TRACES_SAMPLER_ARG={a:?} is not a ratio from 0 to 1")
                    }),
            }
        };
        let parent = |root| Sampler::ParentBased(Box::new(root));
        Ok(match name.trim() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatio(ratio()?),
            "parentbased_always_on" => parent(Sampler::AlwaysOn),
            "parentbased_always_off" => parent(Sampler::AlwaysOff),
            "parentbased_traceidratio" => parent(Sampler::TraceIdRatio(ratio()?)),
            other => {
                return Err(format!(
                    "{other:?} is not a supported sampler (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"
                ))
            }
        })
    }

    /// Whether a span of `trace_id` is recorded, given its parent's flags if it has one.
    pub(crate) fn sample(&self, parent: Option<TraceFlags>, trace_id: TraceId) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::TraceIdRatio(ratio) => {
                let bound = (ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64;
                let low = u64::from_be_bytes(trace_id.0[8..].try_into().expect("8 bytes"));
                (low >> 1) < bound
            }
            Sampler::ParentBased(root) => match parent {
                Some(flags) => flags.is_sampled(),
                None => root.sample(None, trace_id),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        let s = |n: &str, a: Option<&str>| Sampler::from_env(n, a);
        assert_eq!(s("always_on", None), Ok(Sampler::AlwaysOn));
        assert_eq!(
            s("traceidratio", Some("0.25")),
            Ok(Sampler::TraceIdRatio(0.25))
        );
        assert_eq!(s("traceidratio", None), Ok(Sampler::TraceIdRatio(1.0)));
        assert_eq!(
            s("parentbased_always_off", None),
            Ok(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
        );
        assert!(s("traceidratio", Some("1.5")).is_err());
        assert!(s("traceidratio", Some("half")).is_err());
        assert!(s("jaeger_remote", None).is_err());
    }

    #[test]
    fn decisions() {
        let id = TraceId::random();
        let sampled = Some(TraceFlags(TraceFlags::SAMPLED));
        let unsampled = Some(TraceFlags(0));
        assert!(Sampler::default().sample(None, id));
        assert!(Sampler::default().sample(sampled, id));
        assert!(!Sampler::default().sample(unsampled, id));
        assert!(!Sampler::AlwaysOff.sample(sampled, id));
        let pb_off = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        assert!(pb_off.sample(sampled, id) && !pb_off.sample(None, id));
        let half = Sampler::TraceIdRatio(0.5);
        let kept = (0..10_000)
            .filter(|_| half.sample(None, TraceId::random()))
            .count();
        assert!((4_000..6_000).contains(&kept), "{kept} of 10000 at 0.5");
        assert!(!Sampler::TraceIdRatio(0.0).sample(None, id));
        assert!(Sampler::TraceIdRatio(1.0).sample(None, id));
    }
}
