// An application using nothing but the SDK's environment-based setup: `new NodeSDK()` without options, then one
// span, one metric and one log record, flushed by the shutdown.
const { NodeSDK } = require('@opentelemetry/sdk-node');
const api = require('@opentelemetry/api');
const { logs } = require('@opentelemetry/api-logs');

const sdk = new NodeSDK();
sdk.start();
api.trace.getTracer('sdk-test').startSpan('work').end();
api.metrics.getMeter('sdk-test').createCounter('work.done').add(1);
logs.getLogger('sdk-test').emit({ severityText: 'WARN', body: 'work done' });
// What the application propagates, for the test to read (NodeSDK sets the global propagator from OTEL_PROPAGATORS).
console.log('fields:' + [...api.propagation.fields()].sort().join(','));
sdk.shutdown().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
