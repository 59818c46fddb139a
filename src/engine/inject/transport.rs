//! Who carries each signal out of a container, and the protocol and header variables that follow (SPEC §4).
//!
//! SDKs apply `OTEL_EXPORTER_OTLP_PROTOCOL` and `OTEL_EXPORTER_OTLP_HEADERS` to every signal without a protocol or
//! headers of its own. An endpoint the user set owns its signals' transport, as the webhook's endpoint owns the
//! rest: the gateway's headers and protocol must reach only the signals the webhook routes. When every signal wants
//! the same, the generic variables say it; otherwise each signal gets its own. Every signal counts, exported by the
//! webhook's settings or not: a user may export one the webhook does not.

use crate::engine::syntax::{self, Signal};

/// `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`.
pub(crate) fn endpoint_var(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        Signal::Metrics => "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        Signal::Logs => "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    }
}

/// Where a signal's endpoint comes from, as the container's `env` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint<'a> {
    /// The webhook's (the gateway's, or the sidecar's on localhost).
    Ours,
    /// The user's literal value.
    Users(&'a str),
    /// The user's, through `valueFrom`: its port is unknown here.
    UsersUnknown,
}

impl Endpoint<'_> {
    fn is_ours(self) -> bool {
        self == Self::Ours
    }
}

/// The transport of one container's signals: the protocol and header variables to set, generic or per signal,
/// with their values (borrowed from the webhook's values or the container's own endpoints).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Transport<'a> {
    /// The protocol variables to set.
    pub protocol: Vec<(Scope, &'a str)>,
    /// The header variables to set.
    pub headers: Vec<(Scope, &'a str)>,
}

impl<'a> Transport<'a> {
    /// The protocol variable's value for `scope`, if it is to be set.
    pub(crate) fn protocol_for(&self, scope: Scope) -> Option<&'a str> {
        self.protocol.iter().find(|(s, _)| *s == scope).map(|(_, v)| *v)
    }

    /// The header variable's value for `scope`, if it is to be set.
    pub(crate) fn headers_for(&self, scope: Scope) -> Option<&'a str> {
        self.headers.iter().find(|(s, _)| *s == scope).map(|(_, v)| *v)
    }
}

/// What a variable covers: every signal without its own (the generic variable), or one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every signal without its own variable.
    All,
    /// One signal.
    One(Signal),
}

/// Works out the protocol and header variables for the three signals, each carried to `endpoint(signal)`.
/// `ours` are the webhook's protocol and headers (headers only when configured); `users_protocol` and
/// `users_headers` say whether the user set the generic variable (then the webhook sets none of that kind: theirs
/// reaches every signal without its own, as they meant).
pub(crate) fn plan<'a>(
    endpoint: impl Fn(Signal) -> Endpoint<'a>,
    ours: (&'a str, Option<&'a str>),
    users_protocol: bool,
    users_headers: bool,
) -> Transport<'a> {
    let (our_protocol, our_headers) = ours;
    let endpoints = Signal::ALL.map(|s| (s, endpoint(s)));
    // Each signal's (protocol, headers), as its endpoint wants them.
    let wanted = endpoints.map(|(s, e)| match e {
        Endpoint::Ours => (s, Some(our_protocol), our_headers),
        Endpoint::Users(url) => (s, syntax::transport_of(url).map(|p| p.as_str()), None),
        Endpoint::UsersUnknown => (s, None, None),
    });
    // One signal routed elsewhere splits the generic variables; so does a mix of the user's ports.
    let all_ours = endpoints.iter().all(|(_, e)| e.is_ours());
    let pick = |values: [(Signal, Option<&'a str>); 3]| -> Vec<(Scope, &'a str)> {
        let first = values[0].1;
        if all_ours || values.iter().all(|(_, v)| *v == first) {
            return first.map(|v| vec![(Scope::All, v)]).unwrap_or_default();
        }
        values.into_iter().filter_map(|(s, v)| Some((Scope::One(s), v?))).collect()
    };
    let protocol = if users_protocol { Vec::new() } else { pick(wanted.map(|(s, p, _)| (s, p))) };
    let headers = if users_headers { Vec::new() } else { pick(wanted.map(|(s, _, h)| (s, h))) };
    Transport { protocol, headers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Signal::{Logs, Metrics, Traces};

    fn run(traces: Endpoint<'static>, users_protocol: bool, users_headers: bool) -> Transport<'static> {
        let endpoint = move |s: Signal| if s == Traces { traces } else { Endpoint::Ours };
        plan(endpoint, ("grpc", Some("X-Scope-OrgID=prod")), users_protocol, users_headers)
    }

    fn vars<'a>(list: &[(Scope, &'a str)]) -> Vec<(Scope, &'a str)> {
        list.to_vec()
    }

    #[test]
    fn the_webhooks_endpoint_for_every_signal_gives_the_generic_variables() {
        let t = run(Endpoint::Ours, false, false);
        assert_eq!(vars(&t.protocol), [(Scope::All, "grpc")]);
        assert_eq!(vars(&t.headers), [(Scope::All, "X-Scope-OrgID=prod")]);
    }

    #[test]
    fn a_users_traces_endpoint_keeps_the_gateways_headers_and_protocol_off_traces() {
        let t = run(Endpoint::Users("https://vendor.example:4318/v1/traces"), false, false);
        assert_eq!(
            vars(&t.protocol),
            [(Scope::One(Traces), "http/protobuf"), (Scope::One(Metrics), "grpc"), (Scope::One(Logs), "grpc")]
        );
        assert_eq!(
            vars(&t.headers),
            [(Scope::One(Metrics), "X-Scope-OrgID=prod"), (Scope::One(Logs), "X-Scope-OrgID=prod")]
        );
    }

    #[test]
    fn a_users_endpoint_on_an_unknown_port_gets_no_protocol_of_ours() {
        for traces in [Endpoint::Users("https://vendor.example/v1/traces"), Endpoint::UsersUnknown] {
            let t = run(traces, false, false);
            assert_eq!(vars(&t.protocol), [(Scope::One(Metrics), "grpc"), (Scope::One(Logs), "grpc")]);
        }
    }

    #[test]
    fn the_users_generic_variables_are_left_to_reach_every_signal() {
        let t = run(Endpoint::Users("https://vendor.example:4318"), true, true);
        assert_eq!(t, Transport::default());
    }

    #[test]
    fn a_users_endpoint_for_every_signal_on_one_port_gives_the_generic_protocol_and_no_headers() {
        let endpoint = |_| Endpoint::Users("http://mine:4318");
        let t = plan(endpoint, ("grpc", Some("X-Scope-OrgID=prod")), false, false);
        assert_eq!(vars(&t.protocol), [(Scope::All, "http/protobuf")]);
        assert!(t.headers.is_empty());
    }

    #[test]
    fn without_configured_headers_none_are_set() {
        let endpoint = |s| if s == Logs { Endpoint::Users("http://loki:4318") } else { Endpoint::Ours };
        let t = plan(endpoint, ("grpc", None), false, false);
        assert!(t.headers.is_empty());
        assert_eq!(t.protocol.len(), 3);
    }
}
