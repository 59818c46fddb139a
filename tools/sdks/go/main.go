// An application using the Go SDK as the OpenTelemetry docs set it up from the environment: autoexport's
// exporters (OTEL_*_EXPORTER, OTEL_EXPORTER_OTLP_*), autoprop's propagators (OTEL_PROPAGATORS), the resource from
// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; then one span, one metric and one log record, flushed at exit.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	ctx := context.Background()
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK())
	check(err)
	spans, err := autoexport.NewSpanExporter(ctx)
	check(err)
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(spans), sdktrace.WithResource(res))
	reader, err := autoexport.NewMetricReader(ctx)
	check(err)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res))
	logs, err := autoexport.NewLogExporter(ctx)
	check(err)
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(logs)), sdklog.WithResource(res))
	otel.SetTextMapPropagator(autoprop.NewTextMapPropagator())

	_, span := tp.Tracer("sdk-test").Start(ctx, "work")
	span.End()
	counter, err := mp.Meter("sdk-test").Int64Counter("work.done")
	check(err)
	counter.Add(ctx, 1)
	var record otellog.Record
	record.SetBody(attribute.StringValue("work done"))
	record.SetSeverityText("WARN")
	lp.Logger("sdk-test").Emit(ctx, record)

	// What the application propagates, for the test to read.
	fields := otel.GetTextMapPropagator().Fields()
	sort.Strings(fields)
	fmt.Println("fields:" + strings.Join(fields, ","))

	check(tp.Shutdown(ctx))
	check(mp.Shutdown(ctx))
	check(lp.Shutdown(ctx))
}
