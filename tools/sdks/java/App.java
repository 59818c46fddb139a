// An application using the Java SDK's autoconfigure module, the SDK set up from OTEL_* alone: one span, one
// metric and one log record, flushed by close().
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.autoconfigure.AutoConfiguredOpenTelemetrySdk;

public class App {
  public static void main(String[] args) {
    OpenTelemetrySdk sdk = AutoConfiguredOpenTelemetrySdk.initialize().getOpenTelemetrySdk();
    sdk.getTracer("sdk-test").spanBuilder("work").startSpan().end();
    sdk.getMeter("sdk-test").counterBuilder("work.done").build().add(1);
    sdk.getLogsBridge().get("sdk-test").logRecordBuilder().setBody("work done").setSeverityText("WARN").emit();
    // What the application propagates, for the test to read.
    java.util.List<String> fields =
        new java.util.ArrayList<>(sdk.getPropagators().getTextMapPropagator().fields());
    java.util.Collections.sort(fields);
    System.out.println("fields:" + String.join(",", fields));
    sdk.close();
  }
}
