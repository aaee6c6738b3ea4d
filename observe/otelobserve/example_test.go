package otelobserve_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/observe/otelobserve"
)

// Trace a job's lock: renewlock.acquire and renewlock.hold become children
// of the job's span. A service would set up the SDK with an OTLP exporter
// (or rely on otel.SetTracerProvider and otel.SetMeterProvider); here the
// spans are kept in memory and printed.
func Example() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(context.Background())

	tel, err := otelobserve.New(otelobserve.WithTracerProvider(tp), otelobserve.WithMeterProvider(mp))
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	locks, err := renewlock.New(rdb, renewlock.WithObserver(tel.Observer()))
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	tel.Track(locks) // renewlock.held_locks, renewlock.waiting_acquires

	ctx, job := tp.Tracer("example").Start(context.Background(), "nightly-report")
	err = locks.Do(ctx, "example:report", func(ctx context.Context, l *renewlock.Lock) error {
		return nil // the work, under l.Token()
	})
	if err != nil {
		log.Fatal(err)
	}
	job.End()

	for _, s := range spans.Ended() {
		line := s.Name()
		for _, a := range s.Attributes() {
			if a.Key == "renewlock.key" || a.Key == "renewlock.outcome" {
				line += fmt.Sprintf(" %s=%s", a.Key, a.Value.String())
			}
		}
		if s.Parent().SpanID() == job.SpanContext().SpanID() {
			line += " (in nightly-report)"
		}
		fmt.Println(line)
	}
	// Output:
	// renewlock.acquire renewlock.key=example:report renewlock.outcome=ok (in nightly-report)
	// renewlock.hold renewlock.key=example:report renewlock.outcome=ok (in nightly-report)
	// nightly-report
}
