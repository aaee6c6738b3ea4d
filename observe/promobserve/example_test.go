package promobserve_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/observe/promobserve"
)

// Serve a Client's metrics on /metrics. The example scrapes itself once, as
// Prometheus would, and prints some of the series.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()

	metrics := promobserve.New()
	reg := prometheus.NewRegistry() // or prometheus.MustRegister(metrics)
	reg.MustRegister(metrics)
	locks, err := renewlock.New(rdb, renewlock.WithObserver(metrics.Observer()))
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	metrics.Track(locks) // the gauges of held and waiting locks

	// A service would run http.ListenAndServe(":9100", mux).
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()

	ctx := context.Background()
	for range 2 {
		err := locks.Do(ctx, "example:report", func(ctx context.Context, l *renewlock.Lock) error { return nil })
		if err != nil {
			log.Fatal(err)
		}
	}

	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for _, p := range []string{`renewlock_acquisitions_total{outcome="ok"`, `renewlock_releases_total{handed_off="false",outcome="ok"}`, "renewlock_held_locks", "renewlock_lease_losses_total"} {
			if strings.HasPrefix(line, p) {
				fmt.Println(line)
			}
		}
	}
	// Output:
	// renewlock_acquisitions_total{outcome="ok",queued="false"} 2
	// renewlock_acquisitions_total{outcome="ok",queued="true"} 0
	// renewlock_held_locks 0
	// renewlock_lease_losses_total{cause="deadline"} 0
	// renewlock_lease_losses_total{cause="not_owner"} 0
	// renewlock_lease_losses_total{cause="rejected"} 0
	// renewlock_releases_total{handed_off="false",outcome="ok"} 2
}

// Label a few well-known locks by name; every other key counts as "other".
// Never list unbounded names (per user, per order): each is a time series.
func ExampleWithKeyLabel() {
	metrics := promobserve.New(promobserve.WithKeyLabel("nightly-report", "billing-run"))
	prometheus.MustRegister(metrics)
	_ = renewlock.WithObserver(metrics.Observer()) // give it to renewlock.New
}
