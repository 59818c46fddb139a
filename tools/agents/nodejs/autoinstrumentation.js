// Loaded by `NODE_OPTIONS=--require <mount>/autoinstrumentation/autoinstrumentation.js`, as the OpenTelemetry
// Operator's Node.js image does: starts the SDK with every auto-instrumentation, configured from OTEL_* alone.
require('@opentelemetry/auto-instrumentations-node/register');
