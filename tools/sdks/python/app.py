"""An application using nothing but the SDK's environment-based setup (run under `opentelemetry-instrument`):
one span, one metric and one log record, flushed at exit."""

import logging

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggingHandler

trace.get_tracer("sdk-test").start_span("work").end()
metrics.get_meter("sdk-test").create_counter("work.done").add(1)
# The distro sets the logger provider from OTEL_LOGS_EXPORTER; the standard logging module reaches it through a
# handler (what OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED would add).
logging.getLogger().addHandler(LoggingHandler(logger_provider=_logs.get_logger_provider()))
logging.getLogger("sdk-test").warning("work done")

# What the application propagates, for the test to read (the SDKs set the global propagator from OTEL_PROPAGATORS).
from opentelemetry import propagate  # noqa: E402

print("fields:" + ",".join(sorted(propagate.get_global_textmap().fields)))
