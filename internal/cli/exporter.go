package cli

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// Defaults of `renewlock exporter`.
const (
	DefaultExporterTimeout = 5 * time.Second
	DefaultMetricsPath     = "/metrics"
	// ExporterShutdownTimeout bounds the wait for scrapes in progress on
	// SIGINT or SIGTERM.
	ExporterShutdownTimeout = 5 * time.Second
)

// ExporterConfig is one `renewlock exporter` invocation.
type ExporterConfig struct {
	Redis   RedisTarget
	Prefix  string
	Pattern string        // glob of the keys counted; "" all
	Listen  string        // host:port to serve on
	Path    string        // the metrics' path; "" DefaultMetricsPath
	PerKey  int           // > 0: series per key for at most this many locks (the longest held)
	Timeout time.Duration // bounds the read of Redis at one scrape; 0: DefaultExporterTimeout
	Stderr  io.Writer

	// Ready, if set, gets the address the exporter listens on once it
	// serves (tests).
	Ready func(addr string)
}

// Validate checks the flags.
func (e *ExporterConfig) Validate() error {
	if e.Listen == "" {
		return Usagef("--listen is required: the address to serve /metrics on, e.g. --listen :9721 or --listen 127.0.0.1:9721")
	}
	if _, _, err := net.SplitHostPort(e.Listen); err != nil {
		return Usagef("--listen %s: want HOST:PORT or :PORT (%v)", strquote(e.Listen), err)
	}
	if e.Path == "" {
		e.Path = DefaultMetricsPath
	}
	if !strings.HasPrefix(e.Path, "/") || e.Path == "/" {
		return Usagef("--path %s: want a path such as /metrics", strquote(e.Path))
	}
	if e.PerKey < 0 {
		return Usagef("--per-key %d: want 0 (no per-key series) or the most locks to export series for", e.PerKey)
	}
	if e.Timeout <= 0 {
		e.Timeout = DefaultExporterTimeout
	}
	return nil
}

// Exporter serves the metrics until ctx ends or SIGINT or SIGTERM comes,
// then shuts down gracefully (scrapes in progress finish).
func Exporter(ctx context.Context, cfg *ExporterConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	rdb, client, closeAll, err := openOperator(cfg.Redis, cfg.Prefix)
	if err != nil {
		return err
	}
	defer closeAll()
	// A wrong password or a missing right is fixed by the operator, not by
	// waiting: fail at once. Redis down is what the exporter reports.
	if err := ping(ctx, rdb, cfg.Redis); err != nil {
		if Code(err) != ExitUnavailable {
			return err
		}
		fmt.Fprintf(cfg.Stderr, "renewlock: warning: exporter: %s; serving anyway, renewlock_up is 0 until Redis answers\n", err)
	}

	col := newLockCollector(cfg, client, rdb)
	reg := prometheus.NewRegistry()
	reg.MustRegister(col, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle(cfg.Path, promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<html><head><title>renewlock exporter</title></head><body><h1>renewlock exporter</h1><p><a href=\"%s\">Metrics</a></p></body></html>\n", html.EscapeString(cfg.Path))
	})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return exitf(ExitUnavailable, "exporter: cannot listen on --listen %s: %v", cfg.Listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	addr := ln.Addr().String()
	fmt.Fprintf(cfg.Stderr, "renewlock: exporter: serving http://%s%s (%s, keys %s)\n", addr, cfg.Path, cfg.Redis.describe(), strquote(orAll(cfg.Pattern)))
	if cfg.Ready != nil {
		cfg.Ready(addr)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return exitf(ExitUnavailable, "exporter: serving on %s: %v", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ExporterShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-served
	fmt.Fprintf(cfg.Stderr, "renewlock: exporter: stopped\n")
	return nil
}

func orAll(pattern string) string {
	if pattern == "" {
		return "*"
	}
	return pattern
}

// lockCollector reads the locks from Redis at every scrape.
type lockCollector struct {
	cfg    *ExporterConfig
	client *renewlock.Client
	rdb    redis.UniversalClient

	mu    sync.Mutex // one read of Redis at a time; guards what follows
	errs  map[string]float64
	wasUp bool // the last read succeeded: the next failure is logged

	up, errors, duration, held, waiters, maxWaiters, oldest *prometheus.Desc
	keyAge, keyTTL, keyWaiters, omitted                     *prometheus.Desc
}

// Kinds of failed scrapes, the values of the kind label.
var scrapeErrorKinds = []string{"unavailable", "permission", "rejected"}

func newLockCollector(cfg *ExporterConfig, client *renewlock.Client, rdb redis.UniversalClient) *lockCollector {
	c := &lockCollector{cfg: cfg, client: client, rdb: rdb, errs: map[string]float64{}, wasUp: true}
	for _, k := range scrapeErrorKinds {
		c.errs[k] = 0
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("renewlock_"+name, help, labels, nil)
	}
	c.up = d("up", "1 if the last read of the locks from Redis succeeded, else 0.")
	c.errors = d("scrape_errors_total", "Reads of the locks from Redis that failed, by kind: unavailable (unreachable, timeout, transient error), permission (ACL denial, wrong password), rejected (another error retrying cannot fix).", "kind")
	c.duration = d("scrape_duration_seconds", "How long reading the locks from Redis took.")
	c.held = d("held_locks", "Held locks whose key matches the exporter's pattern.")
	c.waiters = d("waiters", "Places in the queues of those locks, added up.")
	c.maxWaiters = d("max_waiters", "The most places in the queue of one lock (0 when none is held).")
	c.oldest = d("oldest_holder_age_seconds", "How long the longest-held lock has been held, by the Redis server's clock (0 when none is held).")
	c.keyAge = d("lock_age_seconds", "How long the lock has been held (--per-key).", "key")
	c.keyTTL = d("lock_ttl_seconds", "What is left of the holder's lease (--per-key).", "key")
	c.keyWaiters = d("lock_waiters", "Places in the lock's queue (--per-key).", "key")
	c.omitted = d("per_key_omitted_locks", "Held locks left out of the per-key series by the --per-key limit.")
	return c
}

func (c *lockCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.errors, c.duration, c.held, c.waiters, c.maxWaiters, c.oldest} {
		ch <- d
	}
	if c.cfg.PerKey > 0 {
		for _, d := range []*prometheus.Desc{c.keyAge, c.keyTTL, c.keyWaiters, c.omitted} {
			ch <- d
		}
	}
}

func (c *lockCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	locks, now, err := c.read(ctx)
	gauge(c.duration, time.Since(begin).Seconds())
	if err != nil {
		exit := redisFailure("exporter: reading the locks", c.cfg.Redis, err)
		kind := map[int]string{ExitNoPerm: "permission", ExitConfig: "rejected"}[Code(exit)]
		if kind == "" {
			kind = "unavailable"
		}
		c.errs[kind]++
		if c.wasUp {
			fmt.Fprintf(c.cfg.Stderr, "renewlock: warning: %s\n", exit)
		}
		c.wasUp = false
	} else if !c.wasUp {
		fmt.Fprintf(c.cfg.Stderr, "renewlock: exporter: %s answers again\n", c.cfg.Redis.describe())
		c.wasUp = true
	}
	for _, k := range scrapeErrorKinds {
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, c.errs[k], k)
	}
	if err != nil {
		gauge(c.up, 0)
		return
	}
	gauge(c.up, 1)

	age := func(in *renewlock.Info) time.Duration {
		if in.AcquiredAt.IsZero() {
			return 0
		}
		return max(now.Sub(in.AcquiredAt), 0)
	}
	var waiting, most int
	var oldest time.Duration
	for i := range locks {
		waiting += locks[i].Waiters
		most = max(most, locks[i].Waiters)
		oldest = max(oldest, age(&locks[i]))
	}
	gauge(c.held, float64(len(locks)))
	gauge(c.waiters, float64(waiting))
	gauge(c.maxWaiters, float64(most))
	gauge(c.oldest, oldest.Seconds())

	if c.cfg.PerKey <= 0 {
		return
	}
	// The longest-held locks are the ones worth a series of their own.
	slices.SortStableFunc(locks, func(a, b renewlock.Info) int {
		if c := -compareDur(age(&a), age(&b)); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	seen := map[string]bool{}
	shown := 0
	for i := range locks {
		if shown == c.cfg.PerKey {
			break
		}
		in := &locks[i]
		key := strings.ToValidUTF8(in.Key, "\uFFFD") // label values are UTF-8
		if seen[key] {
			continue
		}
		seen[key] = true
		shown++
		gauge(c.keyAge, age(in).Seconds(), key)
		gauge(c.keyTTL, in.TTL.Seconds(), key)
		gauge(c.keyWaiters, float64(in.Waiters), key)
	}
	gauge(c.omitted, float64(len(locks)-shown))
}

// read lists the locks and reads the server's clock (the local one if
// TIME is refused).
func (c *lockCollector) read(ctx context.Context) ([]renewlock.Info, time.Time, error) {
	locks, err := c.client.List(ctx, c.cfg.Pattern)
	if err != nil {
		return nil, time.Time{}, err
	}
	now, err := c.rdb.Time(ctx).Result()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, time.Time{}, err
		}
		now = time.Now()
	}
	return locks, now, nil
}
