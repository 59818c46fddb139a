//! The `agents` section (SPEC §10) and the one table of the languages whose agents the webhook delivers.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Resources, invalid};
use crate::engine::syntax::Protocol;

/// How an agent activates: the variable the runtime reads at start-up and how the webhook's part joins a user's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Appended after the user's value, separated by a space (`JAVA_TOOL_OPTIONS`, `NODE_OPTIONS`).
    Append,
    /// Put before the user's value, separated by a colon (`PYTHONPATH`: the agent's `sitecustomize` must come first).
    Prepend,
}

/// One language agent: everything the engine needs to deliver and activate it.
#[derive(Debug, PartialEq, Eq)]
pub struct Language {
    /// `java`, `nodejs`, `python`: the annotation's suffix, the config key and the name in the status.
    pub name: &'static str,
    /// `otel-injector.io/inject-<name>`.
    pub key: &'static str,
    /// The OpenTelemetry Operator's `instrumentation.opentelemetry.io/inject-<name>`.
    pub operator_key: &'static str,
    /// The variable that activates it.
    pub var: &'static str,
    /// How the webhook's part joins the user's value of [`Language::var`].
    pub activation: Activation,
    /// The webhook's part of [`Language::var`] (its paths are under [`Language::mount_path`]).
    pub token: &'static str,
    /// Where the agent is mounted in the application container: the image's root with an image volume, the
    /// `emptyDir` the init container copied [`Language::copy_from`] into otherwise (same paths below it).
    pub mount_path: &'static str,
    /// What the init container copies from the image (the OpenTelemetry Operator's images' layout).
    pub copy_from: &'static str,
    /// The volume, and the init container, the webhook adds (`otel-agent-<name>`).
    pub volume: &'static str,
    /// The image unless the config names another (the OpenTelemetry Operator's published image, pinned).
    pub default_image: &'static str,
    /// The only OTLP protocol the image's exporters speak, when it is not every one (the Python image ships the
    /// pure-Python HTTP exporter only, so it works whatever the application's Python version).
    pub only_protocol: Option<Protocol>,
    /// Words in a user's value of [`Language::var`] that mean an agent is already activated there.
    pub already: &'static [&'static str],
    /// Words of a container's `command` or `args` that load an agent (a word matches as itself, with `:` or `=`
    /// and a value after it, or as a path's last part).
    pub launchers: &'static [&'static str],
}

/// Every language, in the order they are reported.
pub static LANGUAGES: [Language; 3] = [
    Language {
        name: "java",
        key: "otel-injector.io/inject-java",
        operator_key: "instrumentation.opentelemetry.io/inject-java",
        var: "JAVA_TOOL_OPTIONS",
        activation: Activation::Append,
        token: "-javaagent:/otel-auto-instrumentation-java/javaagent.jar",
        mount_path: "/otel-auto-instrumentation-java",
        copy_from: "/javaagent.jar",
        volume: "otel-agent-java",
        default_image: "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-java:2.31.1",
        only_protocol: None,
        already: &["-javaagent"],
        launchers: &["-javaagent"],
    },
    Language {
        name: "nodejs",
        key: "otel-injector.io/inject-nodejs",
        operator_key: "instrumentation.opentelemetry.io/inject-nodejs",
        var: "NODE_OPTIONS",
        activation: Activation::Append,
        token: "--require /otel-auto-instrumentation-nodejs/autoinstrumentation/autoinstrumentation.js",
        mount_path: "/otel-auto-instrumentation-nodejs",
        copy_from: "/autoinstrumentation",
        volume: "otel-agent-nodejs",
        default_image: "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-nodejs:0.81.2",
        only_protocol: None,
        already: &["--require", "-r "],
        launchers: &["--require", "-r", "--import"],
    },
    Language {
        name: "python",
        key: "otel-injector.io/inject-python",
        operator_key: "instrumentation.opentelemetry.io/inject-python",
        var: "PYTHONPATH",
        activation: Activation::Prepend,
        token: "/otel-auto-instrumentation-python/autoinstrumentation/opentelemetry/instrumentation/\
                auto_instrumentation:/otel-auto-instrumentation-python/autoinstrumentation",
        mount_path: "/otel-auto-instrumentation-python",
        copy_from: "/autoinstrumentation",
        volume: "otel-agent-python",
        default_image: "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.66b2",
        only_protocol: Some(Protocol::HttpProtobuf),
        already: &["opentelemetry", "instrumentation", "ddtrace", "newrelic"],
        launchers: &["opentelemetry-instrument", "ddtrace-run", "newrelic-admin"],
    },
];

impl Language {
    /// The language named `name`.
    pub fn named(name: &str) -> Option<&'static Language> {
        LANGUAGES.iter().find(|l| l.name == name)
    }

    /// Whether one word of a container's command line loads this language's agent.
    pub fn launched_by(&self, word: &str) -> bool {
        self.launchers.iter().any(|w| {
            word.strip_prefix(w).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '=']))
                || word.strip_suffix(w).is_some_and(|head| head.ends_with('/'))
        })
    }

    /// Whether a user's value of [`Language::var`] already activates an agent (the webhook's own part aside).
    pub fn activated_in(&self, value: &str) -> bool {
        let others = value.replace(self.token, "");
        self.already.iter().any(|word| others.contains(word))
    }
}

/// How the agent's files reach the application container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// An image volume where the API server has them on (by version: Kubernetes 1.35 on), an init
    /// container elsewhere or when the version is unknown.
    Auto,
    /// `volumes[].image`: the agent's image mounted read-only, nothing copied.
    ImageVolume,
    /// An init container copying the agent into an `emptyDir`.
    InitContainer,
}

impl Delivery {
    /// `image-volume` or `init-container` (`auto` once decided is one of them).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::ImageVolume => "image-volume",
            Self::InitContainer => "init-container",
        }
    }
}

/// One language's agent settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentConfig {
    /// The agent's image (pinned; the OpenTelemetry Operator's auto-instrumentation images' layout).
    pub image: String,
}

/// The init container that copies an agent, where that is the delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct InitContainerConfig {
    /// Requests and limits of the init container.
    pub resources: Resources,
    /// The `emptyDir`'s `sizeLimit`, a quantity.
    pub volume_size_limit: String,
}

impl Default for InitContainerConfig {
    fn default() -> Self {
        let list = |cpu: &str, memory: &str| {
            [("cpu".to_owned(), cpu.to_owned()), ("memory".to_owned(), memory.to_owned())].into_iter().collect()
        };
        Self {
            resources: Resources { requests: list("50m", "32Mi"), limits: list("500m", "128Mi") },
            volume_size_limit: "200Mi".to_owned(),
        }
    }
}

/// The `agents` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AgentsConfig {
    /// `auto`, `image-volume` or `init-container`.
    pub delivery: Delivery,
    /// Honour the OpenTelemetry Operator's `instrumentation.opentelemetry.io/inject-<language>` too.
    pub operator_annotations: bool,
    /// The Java agent.
    pub java: AgentConfig,
    /// The Node.js agent.
    pub nodejs: AgentConfig,
    /// The Python agent.
    pub python: AgentConfig,
    /// The init container, where that is the delivery.
    pub init_container: InitContainerConfig,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        let image = |name: &str| AgentConfig {
            image: Language::named(name).map(|l| l.default_image.to_owned()).unwrap_or_default(),
        };
        Self {
            delivery: Delivery::Auto,
            operator_annotations: false,
            java: image("java"),
            nodejs: image("nodejs"),
            python: image("python"),
            init_container: InitContainerConfig::default(),
        }
    }
}

impl AgentsConfig {
    /// The settings of `language`.
    pub fn of(&self, language: &Language) -> &AgentConfig {
        match language.name {
            "java" => &self.java,
            "nodejs" => &self.nodejs,
            _ => &self.python,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for language in &LANGUAGES {
            let image = &self.of(language).image;
            if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
                return Err(invalid(format!("agents.{}.image", language.name), "must be an image reference"));
            }
        }
        let size = &self.init_container.volume_size_limit;
        if crate::engine::syntax::quantity(size).is_none_or(|q| q <= 0.0) {
            return Err(invalid(
                "agents.initContainer.volumeSizeLimit",
                format!("{size:?} is not a positive quantity"),
            ));
        }
        self.init_container.resources.validate("agents.initContainer.resources", "8Mi")
    }
}
