package cookbook

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/observe"
	"github.com/renewlock/renewlock/observe/otelobserve"
	"github.com/renewlock/renewlock/observe/promobserve"
)

// Instrumented returns a renewlock Client whose locks are counted in
// Prometheus metrics, served by the returned handler on /metrics, and
// traced with OpenTelemetry (the global TracerProvider).
func Instrumented(rdb redis.UniversalClient) (*renewlock.Client, http.Handler, error) {
	metrics := promobserve.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics, collectors.NewGoCollector())
	traces, err := otelobserve.New(otelobserve.WithMeterProvider(metricnoop.NewMeterProvider())) // spans only
	if err != nil {
		return nil, nil, err
	}
	locks, err := renewlock.New(rdb, renewlock.WithObserver(observe.Join(metrics.Observer(), traces.Observer())))
	if err != nil {
		return nil, nil, err
	}
	metrics.Track(locks) // renewlock_held_locks, renewlock_waiting_acquires
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return locks, mux, nil
}
