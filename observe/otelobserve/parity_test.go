package otelobserve_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/otlptranslator"
	"github.com/redis/go-redis/v9"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/observe/otelobserve"
	"github.com/renewlock/renewlock/observe/promobserve"
)

// promSeries flattens gathered families to "name{label="value",…}" →
// value, histogram buckets included, and "TYPE name" → type.
func promSeries(t *testing.T, reg *prometheus.Registry) map[string]string {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "renewlock_") {
			continue
		}
		out["TYPE "+f.GetName()] = f.GetType().String()
		for _, m := range f.GetMetric() {
			var lv []string
			for _, l := range m.GetLabel() {
				lv = append(lv, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(lv)
			name := func(suffix string, extra ...string) string {
				return f.GetName() + suffix + "{" + strings.Join(append(lv[:len(lv):len(lv)], extra...), ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[name("")] = fmt.Sprint(m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				out[name("")] = fmt.Sprint(m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[name("_count")] = fmt.Sprint(h.GetSampleCount())
				out[name("_sum")] = fmt.Sprint(h.GetSampleSum())
				for _, b := range h.GetBucket() {
					out[name("_bucket", fmt.Sprintf("le=%q", fmt.Sprint(b.GetUpperBound())))] = fmt.Sprint(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

// Through OTel's Prometheus exporter, otelobserve's metrics come out under
// promobserve's names, types, labels and buckets, with the same values for
// the same events: dashboards and alerts work with either package.
func TestSameMetricsAsPromobserve(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	c := newClient(t, rdb)
	l, err := c.Acquire(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(context.Background())

	for _, keys := range [][]string{nil, {"orders:42"}} {
		t.Run(fmt.Sprintf("%d keys", len(keys)), func(t *testing.T) {
			promReg := prometheus.NewPedanticRegistry()
			metrics := promobserve.New(promobserve.WithKeyLabel(keys...))
			promReg.MustRegister(metrics)
			defer metrics.Track(c)()

			otelReg := prometheus.NewRegistry()
			exp, err := otelprom.New(otelprom.WithRegisterer(otelReg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo(),
				otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes))
			if err != nil {
				t.Fatal(err)
			}
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
			defer mp.Shutdown(context.Background())
			tel, err := otelobserve.New(otelobserve.WithMeterProvider(mp), otelobserve.WithTracerProvider(tracenoop.NewTracerProvider()),
				otelobserve.WithMetricKeys(keys...))
			if err != nil {
				t.Fatal(err)
			}
			defer tel.Track(c)()

			for _, o := range []*renewlock.Observer{metrics.Observer(), tel.Observer()} {
				o.Acquired(evAcquired)
				o.Acquired(evFailed)
				other := evAcquired
				other.Key = "orders:43"
				o.Acquired(other)
				o.Renewed(evRenewed)
				o.Renewed(evRenewed)
				o.Lost(evLost)
				o.Released(evReleased)
				handed := evReleased
				handed.HandedOff, handed.Key = true, "orders:43"
				o.Released(handed)
			}

			want, got := promSeries(t, promReg), promSeries(t, otelReg)
			for k, v := range got {
				if w, ok := want[k]; !ok {
					t.Errorf("otelobserve exports %s %s, promobserve has no such series", k, v)
				} else if w != v {
					t.Errorf("%s: otelobserve %s, promobserve %s", k, v, w)
				}
			}
			for k, v := range want {
				if _, ok := got[k]; !ok && v != "0" {
					// Only promobserve's unlabelled hold-time histogram
					// exists before its first observation.
					t.Errorf("promobserve exports %s %s, otelobserve does not", k, v)
				}
			}
			if len(got) < 50 {
				t.Errorf("only %d series through the exporter", len(got))
			}
		})
	}
}
