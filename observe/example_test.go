package observe_test

import (
	"log"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/observe"
	"github.com/renewlock/renewlock/observe/otelobserve"
	"github.com/renewlock/renewlock/observe/promobserve"
)

// Count with Prometheus and trace with OpenTelemetry: one Client, two
// observers.
func ExampleJoin() {
	metrics := promobserve.New()
	prometheus.MustRegister(metrics)
	traces, err := otelobserve.New(otelobserve.WithMeterProvider(metricnoop.NewMeterProvider())) // spans only
	if err != nil {
		log.Fatal(err)
	}

	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	locks, err := renewlock.New(rdb, renewlock.WithObserver(observe.Join(metrics.Observer(), traces.Observer())))
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	metrics.Track(locks)
}
