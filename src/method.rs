//! `http.request.method`: the nine standard methods, everything else `_OTHER`.

use http::Method;

/// The method label of a request: a closed set, so a flood of invented methods adds no series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum MethodLabel {
    Get,
    Post,
    Put,
    Delete,
    Patch,
    Head,
    Options,
    Connect,
    Trace,
    Other,
}

impl MethodLabel {
    pub(crate) const ALL: [MethodLabel; 10] = [
        MethodLabel::Get,
        MethodLabel::Post,
        MethodLabel::Put,
        MethodLabel::Delete,
        MethodLabel::Patch,
        MethodLabel::Head,
        MethodLabel::Options,
        MethodLabel::Connect,
        MethodLabel::Trace,
        MethodLabel::Other,
    ];

    pub(crate) fn of(method: &Method) -> Self {
        // Most traffic is GET or POST: test those first.
        if method == Method::GET {
            MethodLabel::Get
        } else if method == Method::POST {
            MethodLabel::Post
        } else if method == Method::PUT {
            MethodLabel::Put
        } else if method == Method::DELETE {
            MethodLabel::Delete
        } else if method == Method::PATCH {
            MethodLabel::Patch
        } else if method == Method::HEAD {
            MethodLabel::Head
        } else if method == Method::OPTIONS {
            MethodLabel::Options
        } else if method == Method::CONNECT {
            MethodLabel::Connect
        } else if method == Method::TRACE {
            MethodLabel::Trace
        } else {
            MethodLabel::Other
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MethodLabel::Get => "GET",
            MethodLabel::Post => "POST",
            MethodLabel::Put => "PUT",
            MethodLabel::Delete => "DELETE",
            MethodLabel::Patch => "PATCH",
            MethodLabel::Head => "HEAD",
            MethodLabel::Options => "OPTIONS",
            MethodLabel::Connect => "CONNECT",
            MethodLabel::Trace => "TRACE",
            MethodLabel::Other => "_OTHER",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_name() {
        for m in MethodLabel::ALL {
            if m == MethodLabel::Other {
                continue;
            }
            let method = Method::from_bytes(m.as_str().as_bytes()).unwrap();
            assert_eq!(MethodLabel::of(&method), m);
            assert_eq!(MethodLabel::ALL[m.index()], m);
        }
    }

    #[test]
    fn invented_and_lowercase_methods_are_other() {
        for raw in ["get", "PURGE", "FOO-BAR", "PROPFIND", "QUERYX"] {
            let method = Method::from_bytes(raw.as_bytes()).unwrap();
            assert_eq!(MethodLabel::of(&method), MethodLabel::Other, "{raw}");
        }
        assert_eq!(MethodLabel::Other.as_str(), "_OTHER");
    }
}
