package cookbook_test

import (
	"context"
	"database/sql"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/docs/cookbook"
)

// The recipes' uses, as a program's main would write them. They compile
// but do not run (no Output): they need the Redis and the database of a
// real deployment.

func ExampleRunOnce() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer rdb.Close()
	locks, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()

	ran, err := cookbook.RunOnce(context.Background(), locks, "nightly-report", time.Minute,
		func(ctx context.Context, token uint64) error {
			return buildReport(ctx, token) // pass the token to what the report writes
		})
	if err != nil {
		log.Fatal(err)
	}
	if !ran {
		log.Print("another host runs the nightly report")
	}
}

func ExampleWriteReport() {
	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL")) // import _ "github.com/jackc/pgx/v5/stdlib"
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer rdb.Close()
	locks, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()

	err = locks.Do(context.Background(), "daily-report", func(ctx context.Context, l *renewlock.Lock) error {
		body, err := render(ctx)
		if err != nil {
			return err
		}
		return cookbook.WriteReport(ctx, db, l.Token(), "daily", body)
	})
	if errors.Is(err, cookbook.ErrFenced) {
		log.Print("a newer holder took over: this run's report was not written")
	} else if err != nil {
		log.Fatal(err)
	}
}

func ExampleLead() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer rdb.Close()
	locks, err := renewlock.New(rdb,
		renewlock.WithHolder(os.Getenv("POD_NAME")), // shown by `renewlock status`
		renewlock.WithTTL(15*time.Second),           // a crashed leader's successor starts within 15 s
	)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := cookbook.Lead(ctx, locks, "billing-scheduler", scheduleInvoices); err != nil {
		log.Fatal(err)
	}
}

func ExampleMain() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer rdb.Close() // last: after Main closed the renewlock Client
	if err := cookbook.Main(rdb, "ingest", ingest); err != nil {
		log.Fatal(err)
	}
}

func ExampleInstrumented() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer rdb.Close()
	locks, metricsHandler, err := cookbook.Instrumented(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	go func() { log.Fatal(http.ListenAndServe(":9100", metricsHandler)) }()
	// ... use locks
}

// Stand-ins for the application's work.

func buildReport(ctx context.Context, token uint64) error      { return nil }
func render(ctx context.Context) (string, error)               { return "", nil }
func scheduleInvoices(ctx context.Context, token uint64) error { <-ctx.Done(); return nil }
func ingest(ctx context.Context, token uint64) error           { <-ctx.Done(); return ctx.Err() }
