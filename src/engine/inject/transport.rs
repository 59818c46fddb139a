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

/// The transport of one container's exported signals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Transport {
    /// The protocol variables to set, generic or per signal, with their values.
    pub protocol: Vec<(Scope, String)>,
    /// The header variables to set, generic or per signal, with their values.
    pub headers: Vec<(Scope, String)>,
}

impl Transport {
    /// The protocol variable's value for `scope`, if it is to be set.
    pub(crate) fn protocol_for(&self, scope: Scope) -> Option<&str> {
        self.protocol.iter().find(|(s, _)| *s == scope).map(|(_, v)| v.as_str())
    }

    /// The header variable's value for `scope`, if it is to be set.
    pub(crate) fn headers_for(&self, scope: Scope) -> Option<&str> {
        self.headers.iter().find(|(s, _)| *s == scope).map(|(_, v)| v.as_str())
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
    ours: (&str, Option<&str>),
    users_protocol: bool,
    users_headers: bool,
) -> Transport {
    let (our_protocol, our_headers) = ours;
    let wanted = |signal: Signal| -> (Option<String>, Option<String>) {
        match endpoint(signal) {
            Endpoint::Ours => (Some(our_protocol.to_owned()), our_headers.map(str::to_owned)),
            Endpoint::Users(url) => (syntax::transport_of(url).map(|p| p.as_str().to_owned()), None),
            Endpoint::UsersUnknown => (None, None),
        }
    };
    let per_signal: Vec<(Signal, Option<String>, Option<String>)> = Signal::ALL
        .into_iter()
        .map(|s| {
            let (p, h) = wanted(s);
            (s, p, h)
        })
        .collect();
    // One signal routed elsewhere splits the generic variables; so does a mix of the user's ports.
    let all_ours = Signal::ALL.into_iter().all(|s| endpoint(s).is_ours());
    let pick = |values: Vec<(Signal, Option<String>)>| -> Vec<(Scope, String)> {
        let first = values.first().map(|(_, v)| v.clone()).unwrap_or_default();
        if all_ours || values.iter().all(|(_, v)| *v == first) {
            return first.map(|v| vec![(Scope::All, v)]).unwrap_or_default();
        }
        values.into_iter().filter_map(|(s, v)| Some((Scope::One(s), v?))).collect()
    };
    let protocol =
        if users_protocol { Vec::new() } else { pick(per_signal.iter().map(|(s, p, _)| (*s, p.clone())).collect()) };
    let headers =
        if users_headers { Vec::new() } else { pick(per_signal.iter().map(|(s, _, h)| (*s, h.clone())).collect()) };
    Transport { protocol, headers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Signal::{Logs, Metrics, Traces};

    fn run(traces: Endpoint<'static>, users_protocol: bool, users_headers: bool) -> Transport {
        let endpoint = move |s: Signal| if s == Traces { traces } else { Endpoint::Ours };
        plan(endpoint, ("grpc", Some("X-Scope-OrgID=prod")), users_protocol, users_headers)
    }

    fn vars(list: &[(Scope, String)]) -> Vec<(Scope, &str)> {
        list.iter().map(|(s, v)| (*s, v.as_str())).collect()
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
