// Command bench measures renewlock side by side with the Redis lock
// libraries people use today, on a redis-server it starts itself on a free
// loopback port. Every scenario runs for every library in several short
// rounds, round-robin in a rotating order, so that machine noise hits all
// alike. It prints markdown tables and writes the raw numbers as JSON.
//
//	cd bench && go run . -out results.json
//
// With -charts DIR it also draws charts of the results (charts.go); with
// -charts DIR -from results.json it draws them from an earlier run's JSON
// without running anything.
//
// See ../BENCHMARKS.md for what each number means.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/redisserver"
)

var inf = math.Inf(1)

type config struct {
	Rounds      int           `json:"rounds"`
	S1          time.Duration `json:"s1_per_round"`
	S2          time.Duration `json:"s2_per_round"`
	S2Workers   int           `json:"s2_goroutines"`
	S3          time.Duration `json:"s3_per_round"`
	S3Workers   int           `json:"s3_goroutines"`
	S4          int           `json:"s4_samples_per_round"`
	S5          int           `json:"s5_pairs"`
	S6          time.Duration `json:"s6_duration"`
	S6Locks     int           `json:"s6_locks"`
	S6TTL       time.Duration `json:"s6_ttl"`
	S7          time.Duration `json:"s7_window_per_round"`
	S7Clients   string        `json:"s7_clients"`
	S7Holds     string        `json:"s7_holds"`
	S7Warmup    time.Duration `json:"s7_contended_warmup"`
	S7Timeout   time.Duration `json:"s7_acquire_timeout"`
	S1X         time.Duration `json:"s1x_per_variant_per_round"`
	ScriptsDir  string        `json:"scripts_dir"`
	S1XVariants string        `json:"s1x_variants"`
	Libs        string        `json:"libs"`
	Scenarios   string        `json:"scenarios"`
	// The lock family (elect.go, semrw.go).
	S8           time.Duration `json:"s8_idle_window_per_round"`
	S8Clients    string        `json:"s8_candidates"`
	S8TTL        time.Duration `json:"s8_ttl"`
	S8Handoffs   int           `json:"s8_handoffs_per_round"`
	S9           time.Duration `json:"s9_s10_window_per_round"`
	S9Workers    int           `json:"s9_s10_goroutines"`
	S9Limit      int           `json:"s9_limit"`
	S9Hold       time.Duration `json:"s9_s10_hold"`
	S10ReadRatio float64       `json:"s10_read_ratio"`
}

type bench struct {
	cfg   config
	addr  string
	admin *redis.Client
	libs  []*libState
}

// results is the JSON document.
type results struct {
	Meta struct {
		Date       string  `json:"date"`
		GoVersion  string  `json:"go"`
		GOMAXPROCS int     `json:"gomaxprocs"`
		CPU        string  `json:"cpu"`
		Redis      string  `json:"redis"`
		Config     config  `json:"config"`
		Seconds    float64 `json:"total_seconds"`
	} `json:"meta"`
	Libraries map[string]string `json:"libraries"`
	// QuantileLevels are the probabilities of every dist's quantiles_ms.
	QuantileLevels []float64                 `json:"quantile_levels,omitempty"`
	Ping           dist                      `json:"ping"`
	PingS4         dist                      `json:"ping_s4"`
	IdlePing       dist                      `json:"idle_ping_s4"`
	S1             map[string]*pairRes       `json:"s1_serial,omitempty"`
	S2             map[string]*pairRes       `json:"s2_parallel,omitempty"`
	S3Hold0        map[string]*contRes       `json:"s3_contention_hold0,omitempty"`
	S3Hold1        map[string]*contRes       `json:"s3_contention_hold1ms,omitempty"`
	S4             map[string]*handoffRes    `json:"s4_handoff,omitempty"`
	S4Local        map[string]*handoffRes    `json:"s4_handoff_same_client,omitempty"`
	S5             map[string]*costRes       `json:"s5_cost,omitempty"`
	S6             *s6Res                    `json:"s6_renewal_at_scale,omitempty"`
	S7             *s7Out                    `json:"s7_many_clients_one_key,omitempty"`
	RL             *rlRes                    `json:"rl_redlock_3_masters,omitempty"`
	ACK            *ackRes                   `json:"ack_replica_acknowledgement,omitempty"`
	S1X            map[string]*anatomyRes    `json:"s1x_anatomy,omitempty"`
	S1XOrder       []string                  `json:"s1x_variants,omitempty"`
	S1XRedis       map[string]*scriptCostRes `json:"s1x_redis_side_pipelined,omitempty"`
	S1XRedisO      []string                  `json:"-"`
	S8             *s8Out                    `json:"s8_election,omitempty"`
	S9             *familyOut                `json:"s9_semaphore,omitempty"`
	S10            *familyOut                `json:"s10_rwlock,omitempty"`
	Targets        []target                  `json:"targets,omitempty"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "s8-child" {
		electChild(os.Args[2:]) // a leader for S8's failover, killed by its parent
		return
	}
	var cfg config
	out := flag.String("out", "", "write the results as JSON to this file")
	md := flag.String("md", "", "also write the markdown tables to this file")
	bin := flag.String("redis-server", "redis-server", "redis-server binary")
	cpuprof := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	charts := flag.String("charts", "", "also draw charts of the results into this directory (see -chart-format, -from)")
	from := flag.String("from", "", "with -charts: draw the charts of this results JSON (from -out) instead of running")
	chartFormat := flag.String("chart-format", "svg", "chart file formats: svg, png or svg,png")
	flag.IntVar(&cfg.Rounds, "rounds", 4, "rounds per scenario (libraries take turns within each round)")
	flag.DurationVar(&cfg.S1, "s1", 400*time.Millisecond, "S1 time per library per round")
	flag.DurationVar(&cfg.S2, "s2", 400*time.Millisecond, "S2 time per library per round")
	flag.IntVar(&cfg.S2Workers, "s2-goroutines", 64, "S2 goroutines")
	flag.DurationVar(&cfg.S3, "s3", 1200*time.Millisecond, "S3 time per library, hold time and round")
	flag.IntVar(&cfg.S3Workers, "s3-goroutines", 16, "S3 goroutines (split over 2 clients)")
	flag.IntVar(&cfg.S4, "s4", 20, "S4 hand-offs per library per round")
	flag.IntVar(&cfg.S5, "s5", 2000, "S5 acquire+release pairs per library")
	flag.DurationVar(&cfg.S6, "s6", 10*time.Second, "S6 hold time of the many locks (the README table uses 30s)")
	flag.IntVar(&cfg.S6Locks, "s6-locks", 10000, "S6 number of locks held")
	flag.DurationVar(&cfg.S6TTL, "s6-ttl", 10*time.Second, "S6 lock TTL (renewed every TTL/3)")
	flag.DurationVar(&cfg.S7, "s7", 1500*time.Millisecond, "S7 measured window per library, N and hold, per round")
	flag.StringVar(&cfg.S7Clients, "s7-clients", "2,16,64,128", "S7 numbers of clients (one goroutine, one Redis client and one lock instance each)")
	flag.StringVar(&cfg.S7Holds, "s7-holds", "0,1ms", "S7 hold times")
	flag.DurationVar(&cfg.S7Warmup, "s7-warmup", 200*time.Millisecond, "S7 contended warm-up before each window (not measured)")
	flag.DurationVar(&cfg.S7Timeout, "s7-timeout", 10*time.Second, "S7 timeout of one acquire call (a timeout counts as a failed attempt)")
	flag.DurationVar(&cfg.S1X, "s1x", time.Second, "S1X (S1 anatomy, not in the default scenarios) time per variant per round")
	flag.StringVar(&cfg.S1XVariants, "s1x-variants", "", "S1X variants to run (default all; e.g. renewlock,raw-scripts)")
	flag.StringVar(&cfg.ScriptsDir, "scripts-dir", "../scripts", "renewlock's Lua scripts, for S1X's raw variants")
	flag.StringVar(&cfg.Libs, "libs", "", "comma-separated libraries to run (default all)")
	flag.StringVar(&cfg.Scenarios, "scenarios", "s1,s2,s3,s4,s5,s6,s7,s8,s9,s10", "comma-separated scenarios to run (also: s1x; rl, Redlock on 3 masters against redsync, with the -s1, -s3, -s3-goroutines and -s4 settings; ack, WithReplicaAck's cost on a primary with 2 replicas, with the -s1, -s2, -s2-goroutines and -s4 settings)")
	flag.DurationVar(&cfg.S8, "s8", 2*time.Second, "S8 (election) idle window per library, N and round")
	flag.StringVar(&cfg.S8Clients, "s8-clients", "0,1,8,32", "S8 numbers of waiting candidates (0: the leader alone)")
	flag.DurationVar(&cfg.S8TTL, "s8-ttl", 2*time.Second, "S8 lease of every library's election (failover takes about this long)")
	flag.IntVar(&cfg.S8Handoffs, "s8-handoffs", 8, "S8 resignations per library and round (at the largest N)")
	flag.DurationVar(&cfg.S9, "s9", 1200*time.Millisecond, "S9 (semaphore) and S10 (read-write lock) window per library and round")
	flag.IntVar(&cfg.S9Workers, "s9-goroutines", 16, "S9 and S10 goroutines (split over 2 clients)")
	flag.IntVar(&cfg.S9Limit, "s9-limit", 4, "S9 semaphore limit")
	flag.DurationVar(&cfg.S9Hold, "s9-hold", time.Millisecond, "S9 and S10 hold time")
	flag.Float64Var(&cfg.S10ReadRatio, "s10-reads", 0.9, "S10 fraction of reads")
	flag.Parse()

	var formats []string
	if *charts != "" {
		var err error
		if formats, err = chartFormats(*chartFormat); err != nil {
			fatal(err)
		}
	}
	if *from != "" {
		if *charts == "" {
			fatal(fmt.Errorf("-from %s needs -charts DIR", *from))
		}
		files, err := chartsFromFile(*from, *charts, formats)
		if err != nil {
			fatal(err)
		}
		for _, f := range files {
			fmt.Println(f)
		}
		return
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	if err := run(cfg, *bin, *out, *md, *charts, formats); err != nil {
		pprof.StopCPUProfile()
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(cfg config, bin, out, mdPath, chartDir string, chartFormats []string) error {
	began := time.Now()
	// A server of its own on a free loopback port: no persistence, killed
	// at the end (and by the kernel if the bench dies).
	srv, err := redisserver.Start(redisserver.Config{Binary: bin})
	if err != nil {
		return err
	}
	defer srv.Stop()
	ctx := context.Background()
	b := &bench{cfg: cfg, addr: srv.Addr(), admin: redis.NewClient(&redis.Options{Addr: srv.Addr()})}
	defer b.admin.Close()

	if _, err := snapshot(ctx, b.admin); err != nil {
		return err
	}

	var res results
	res.Meta.Date = time.Now().UTC().Format(time.RFC3339)
	res.Meta.GoVersion = runtime.Version()
	res.Meta.GOMAXPROCS = runtime.GOMAXPROCS(0)
	res.Meta.CPU = cpuModel()
	res.Meta.Redis = redisVersion(ctx, b.admin)
	res.Meta.Config = cfg
	res.Libraries = make(map[string]string)
	res.QuantileLevels = quantileLevels

	want := func(s string) bool { return slices.Contains(strings.Split(cfg.Scenarios, ","), s) }
	for _, lib := range libraries {
		if cfg.Libs != "" && !slices.Contains(strings.Split(cfg.Libs, ","), lib.name) {
			continue
		}
		ls := &libState{library: lib, ctr: &counters{}}
		for i := range ls.inst {
			if ls.inst[i], err = lib.open(srv.Addr(), ls.ctr); err != nil {
				return fmt.Errorf("%s: %w", lib.name, err)
			}
		}
		b.libs = append(b.libs, ls)
		res.Libraries[lib.name] = lib.note
	}
	defer func() {
		for _, ls := range b.libs {
			ls.inst[0].close()
			ls.inst[1].close()
		}
	}()

	// Warm up: connections, script caches, code paths.
	for _, ls := range b.libs {
		for i := 0; i < 50; i++ {
			h, err := ls.inst[i%2].acquire(ctx, fmt.Sprintf("warm:%s:%d", ls.name, i))
			if err != nil {
				return fmt.Errorf("%s: warm-up: %w", ls.name, err)
			}
			if err := h.release(ctx); err != nil {
				return fmt.Errorf("%s: warm-up release: %w", ls.name, err)
			}
		}
	}
	pings := b.ping(2000)

	// order returns the libraries in a different order each round.
	order := func(round int) []*libState {
		o := slices.Clone(b.libs)
		k := round % len(o)
		return append(o[k:], o[:k]...)
	}

	if want("s1") || want("s2") {
		res.S1, res.S2 = map[string]*pairRes{}, map[string]*pairRes{}
		for _, ls := range b.libs {
			res.S1[ls.name], res.S2[ls.name] = &pairRes{}, &pairRes{}
		}
		for r := 0; r < cfg.Rounds; r++ {
			pings = append(pings, b.ping(500)...)
			for _, ls := range order(r) {
				if want("s1") {
					logf("S1 round %d %s", r+1, ls.name)
					b.pairs(ls, fmt.Sprintf("s1:%d", r), 1, cfg.S1, res.S1[ls.name])
				}
				if want("s2") {
					logf("S2 round %d %s", r+1, ls.name)
					b.pairs(ls, fmt.Sprintf("s2:%d", r), cfg.S2Workers, cfg.S2, res.S2[ls.name])
				}
			}
		}
		for _, ls := range b.libs {
			res.S1[ls.name].finish()
			res.S2[ls.name].finish()
		}
		if !want("s1") {
			res.S1 = nil
		}
		if !want("s2") {
			res.S2 = nil
		}
	}
	if want("s3") {
		res.S3Hold0, res.S3Hold1 = map[string]*contRes{}, map[string]*contRes{}
		for _, ls := range b.libs {
			res.S3Hold0[ls.name], res.S3Hold1[ls.name] = &contRes{}, &contRes{}
		}
		for r := 0; r < cfg.Rounds; r++ {
			for _, ls := range order(r) {
				logf("S3 round %d %s hold 0", r+1, ls.name)
				b.contention(ls, fmt.Sprintf("s3:0:%d", r), cfg.S3Workers, 0, cfg.S3, res.S3Hold0[ls.name])
				logf("S3 round %d %s hold 1ms", r+1, ls.name)
				b.contention(ls, fmt.Sprintf("s3:1:%d", r), cfg.S3Workers, time.Millisecond, cfg.S3, res.S3Hold1[ls.name])
			}
		}
		for _, ls := range b.libs {
			res.S3Hold0[ls.name].finish()
			res.S3Hold1[ls.name].finish()
		}
	}
	if want("s4") {
		res.S4, res.S4Local = map[string]*handoffRes{}, map[string]*handoffRes{}
		for _, ls := range b.libs {
			res.S4[ls.name], res.S4Local[ls.name] = &handoffRes{}, &handoffRes{}
		}
		var s4pings, idle []time.Duration
		for r := 0; r < cfg.Rounds; r++ {
			for _, ls := range order(r) {
				s4pings = append(s4pings, b.ping(100)...)
				idle = append(idle, b.idlePing(5)...)
				logf("S4 round %d %s", r+1, ls.name)
				b.handoff(ls, fmt.Sprintf("s4:%d", r), cfg.S4, false, res.S4[ls.name])
				logf("S4 round %d %s same client", r+1, ls.name)
				b.handoff(ls, fmt.Sprintf("s4l:%d", r), cfg.S4, true, res.S4Local[ls.name])
			}
		}
		for _, ls := range b.libs {
			res.S4[ls.name].Handoff = summarize(res.S4[ls.name].samples)
			res.S4Local[ls.name].Handoff = summarize(res.S4Local[ls.name].samples)
		}
		res.PingS4 = summarize(s4pings)
		res.IdlePing = summarize(idle)
		pings = append(pings, s4pings...)
	}
	if want("s5") {
		res.S5 = map[string]*costRes{}
		for _, ls := range b.libs {
			logf("S5 %s", ls.name)
			c, err := b.cost(ls, "s5", cfg.S5)
			if err != nil {
				return err
			}
			res.S5[ls.name] = &c
		}
	}
	if want("s1x") {
		if res.S1X, res.S1XOrder, err = b.anatomy(); err != nil {
			return err
		}
		logf("S1X Redis side, pipelined")
		if res.S1XRedis, res.S1XRedisO, err = b.scriptCosts(cfg.S5 * 10); err != nil {
			return err
		}
	}
	if want("s7") {
		if res.S7, err = b.manyClients(order); err != nil {
			return err
		}
	}
	if want("rl") {
		if res.RL, err = b.redlockScenario(bin); err != nil {
			return err
		}
	}
	if want("ack") {
		if res.ACK, err = b.ackScenario(bin); err != nil {
			return err
		}
	}
	if want("s8") {
		if res.S8, err = b.runS8(); err != nil {
			return err
		}
	}
	if want("s9") {
		if res.S9, err = b.runFamilyScenario(false); err != nil {
			return fmt.Errorf("S9: %w", err)
		}
	}
	if want("s10") {
		if res.S10, err = b.runFamilyScenario(true); err != nil {
			return fmt.Errorf("S10: %w", err)
		}
	}
	res.Ping = summarize(pings)
	if want("s6") && (cfg.Libs == "" || slices.Contains(strings.Split(cfg.Libs, ","), "renewlock")) {
		logf("S6 %d locks for %v", cfg.S6Locks, cfg.S6)
		if res.S6, err = b.renewalAtScale(cfg.S6Locks, cfg.S6, cfg.S6TTL); err != nil {
			return err
		}
	}
	allLibs = b.libs
	res.Targets = evaluate(&res)
	res.Meta.Seconds = time.Since(began).Seconds()

	var w io.Writer = os.Stdout
	var mdFile *os.File
	if mdPath != "" {
		if mdFile, err = os.Create(mdPath); err != nil {
			return err
		}
		defer mdFile.Close()
		w = io.MultiWriter(os.Stdout, mdFile)
	}
	writeMarkdown(w, &res, b.libs)
	if out == "" && chartDir == "" {
		return nil
	}
	data, err := json.MarshalIndent(&res, "", "  ")
	if err != nil {
		return err
	}
	data = compactNumberArrays(data)
	if out != "" {
		if err := os.WriteFile(out, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	if chartDir != "" {
		files, err := chartsFromJSON(data, chartDir, chartFormats)
		switch {
		case errors.Is(err, errNoCharts):
			logf("charts: %v", err)
		case err != nil:
			return fmt.Errorf("charts: %w", err)
		default:
			logf("charts: %s", strings.Join(files, ", "))
		}
	}
	return nil
}

// numberArray matches a JSON array of numbers, as MarshalIndent spreads it
// over one line per element.
var numberArray = regexp.MustCompile(`\[\s*-?[0-9][0-9.eE+-]*(?:,\s*-?[0-9][0-9.eE+-]*)*\s*\]`)

// compactNumberArrays puts every array of numbers on one line (quantiles,
// per-client counts), which keeps the indented JSON short.
func compactNumberArrays(data []byte) []byte {
	return numberArray.ReplaceAllFunc(data, func(m []byte) []byte {
		f := bytes.Fields(m[1 : len(m)-1])
		return append(append([]byte{'['}, bytes.Join(f, []byte(" "))...), ']')
	})
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
