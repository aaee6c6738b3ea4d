// Command worker is a lock client in its own OS process, for the fault
// suite: it runs the holder loop of package workload on several keys and
// prints every event as one JSON line on stdout, on the system-wide
// monotonic clock. Each key is a mutex unless -kinds says otherwise
// (sem:LIMIT, rw, elect: the lock family; -write-ratio for read-write
// locks). The suite SIGSTOPs and SIGKILLs it to model a paused or
// crashed holder. SIGTERM or SIGINT stops it cleanly: loops finish, locks
// are released, the client is closed, and it exits 0.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/chaos/internal/workload"
)

func main() {
	var (
		addr       = flag.String("redis", "", "address of the lock Redis (host:port)")
		resource   = flag.String("resource", "", "address of the Redis holding the fenced register")
		regPrefix  = flag.String("register-prefix", "", "key prefix of the fenced register")
		name       = flag.String("name", "", "worker name, prefixed to every loop's name")
		keys       = flag.String("keys", "", "comma-separated lock keys, one loop each")
		ttl        = flag.Duration("ttl", time.Second, "lock TTL")
		hold       = flag.Duration("hold", 200*time.Millisecond, "mean hold time")
		writeEvery = flag.Duration("write-every", 20*time.Millisecond, "pause between writes")
		work       = flag.Duration("work", 0, "un-interruptible work before each write")
		tryRatio   = flag.Float64("try-ratio", 0.5, "fraction of TryAcquire loops")
		clientName = flag.String("client-name", "", "CLIENT SETNAME for the lock connections")
		kinds      = flag.String("kinds", "", "comma-separated kind of each key, in -keys order: mutex, sem:LIMIT, rw, elect (default all mutex)")
		writeRatio = flag.Float64("write-ratio", 0.5, "read-write locks: fraction of acquisitions that write")
	)
	flag.Parse()
	if *addr == "" || *resource == "" || *name == "" || *keys == "" {
		fmt.Fprintln(os.Stderr, "worker: -redis, -resource, -name and -keys are required")
		os.Exit(2)
	}
	keyList := strings.Split(*keys, ",")
	var kindList []string
	if *kinds != "" {
		kindList = strings.Split(*kinds, ",")
		if len(kindList) != len(keyList) {
			fmt.Fprintf(os.Stderr, "worker: -kinds has %d entries for %d keys\n", len(kindList), len(keyList))
			os.Exit(2)
		}
		for _, k := range kindList {
			if _, _, err := workload.ParseKind(k); err != nil {
				fmt.Fprintln(os.Stderr, "worker: -kinds:", err)
				os.Exit(2)
			}
		}
	}
	if err := run(*addr, *resource, *regPrefix, *name, keyList, kindList, *clientName, workload.Config{
		Hold: *hold, WriteEvery: *writeEvery, Work: *work, TryRatio: *tryRatio, WriteRatio: *writeRatio,
		AcquireTimeout: 3 * *ttl, Options: []renewlock.Option{renewlock.WithTTL(*ttl)},
	}); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(addr, resource, regPrefix, name string, keys, kinds []string, clientName string, base workload.Config) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	rdb := redis.NewClient(&redis.Options{Addr: addr, ClientName: clientName})
	defer rdb.Close()
	res := redis.NewClient(&redis.Options{Addr: resource})
	defer res.Close()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := renewlock.New(rdb, renewlock.WithLogger(logger), renewlock.WithHolder(name))
	if err != nil {
		return err
	}
	reg := workload.NewRegister(res, regPrefix)

	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout) // unbuffered: each line is one write
	emit := func(e workload.Event) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(e) // stdout closed means the suite is gone
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		workload.Probe(ctx, name, emit)
	}()
	for i, k := range keys {
		cfg := base
		cfg.Worker, cfg.Key = name+"/"+k, k
		if kinds != nil {
			cfg.Kind, cfg.Limit, _ = workload.ParseKind(kinds[i]) // checked in main
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			workload.Run(ctx, c, reg, cfg, emit)
		}()
	}
	wg.Wait()
	return c.Close()
}
