package renewlock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// Options given to New are the defaults of every call; options given to a
// call override them for that lock only. Bad values are refused at once,
// with a message that names them.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr}) // or redis.NewClusterClient, redis.NewFailoverClient
	defer rdb.Close()
	locks, err := renewlock.New(rdb, renewlock.WithTTL(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()

	ctx := context.Background()
	l, err := locks.Acquire(ctx, "example:new", renewlock.WithTTL(2*time.Second)) // this lock only
	if err != nil {
		log.Fatal(err)
	}
	ttl, _ := rdb.PTTL(ctx, renewlock.DefaultKeyPrefix+"example:new").Result()
	fmt.Println("lease in Redis at most 2s:", ttl > 0 && ttl <= 2*time.Second)
	_ = l.Release(ctx)

	_, err = renewlock.New(rdb, renewlock.WithTTL(time.Second), renewlock.WithRenewInterval(2*time.Second))
	fmt.Println(err)
	fmt.Println(errors.Is(err, renewlock.ErrInvalidArgument))
	// Output:
	// lease in Redis at most 2s: true
	// renewlock: invalid argument: renew interval 2s must be shorter than ttl 1s
	// true
}

// The timing options. Redis keeps a lease for the TTL; the holder renews it
// every renew interval, so a job may run for as long as it likes. The holder
// counts itself the owner until its validity deadline,
//
//	send time of the last successful renewal + TTL·(1 − drift) − safety margin
//
// which comes before Redis can expire the key. When Redis stops answering,
// Done closes at that deadline (here at most 940 ms after the last
// renewal), before another client can take the lock: the job must stop
// touching the resource then. A crashed holder, which renews nothing, blocks
// others for at most one TTL.
//
// Choose the TTL as the longest you accept others to wait after a crash,
// the renew interval so that a few renewals in a row may fail (default
// TTL/3), the drift as the bound on the clocks' rate difference (default
// 1 %), and the safety margin above this process's worst pause (GC, CPU
// starvation; default 10 ms).
func ExampleWithTTL() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	locks, err := renewlock.New(rdb,
		renewlock.WithTTL(time.Second),
		renewlock.WithRenewInterval(200*time.Millisecond), // 4 renewals may fail before the deadline
		renewlock.WithDrift(0.01),
		renewlock.WithSafetyMargin(50*time.Millisecond),
		renewlock.WithLogger(nil), // the loss below would be logged at Warn
	)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	ctx := context.Background()

	l, err := locks.Acquire(ctx, "example:long-job")
	if err != nil {
		log.Fatal(err)
	}
	// A job 1.5 TTLs long, checking between steps that it still holds the lock.
	for range 6 {
		select {
		case <-l.Done():
			log.Fatal(l.Err())
		case <-time.After(250 * time.Millisecond): // a step of the work
		}
	}
	fmt.Println("after 1.5 s of work, still held:", l.Err() == nil)

	// Redis stops answering the holder's writes (CLIENT PAUSE, as a
	// partition or a stalled server would).
	silent := time.Now()
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", "5000", "WRITE").Err(); err != nil {
		log.Fatal(err)
	}
	<-l.Done()
	told := time.Since(silent)
	_ = rdb.Do(ctx, "CLIENT", "UNPAUSE").Err()
	fmt.Println("lost:", errors.Is(l.Err(), renewlock.ErrLeaseLost))
	fmt.Println("told before one TTL of silence:", told < time.Second)
	fmt.Println("Release reports the loss:", errors.Is(l.Release(ctx), renewlock.ErrLeaseLost))
	// Output:
	// after 1.5 s of work, still held: true
	// lost: true
	// told before one TTL of silence: true
	// Release reports the loss: true
}

// The naming options. WithKeyPrefix keeps applications that share a Redis
// apart (and matches ACL key patterns such as ~billing:lock:*); every client
// that contends for a lock must use the same prefix. WithHolder describes
// the holder to operators (Inspect, List, renewlock status); ownership
// itself is a random id.
func ExampleWithKeyPrefix() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	billing, err := renewlock.New(rdb, renewlock.WithKeyPrefix("billing:lock:"), renewlock.WithHolder("invoice-worker-1"))
	if err != nil {
		log.Fatal(err)
	}
	defer billing.Close()
	reports, err := renewlock.New(rdb, renewlock.WithKeyPrefix("reports:lock:"))
	if err != nil {
		log.Fatal(err)
	}
	defer reports.Close()
	ctx := context.Background()

	a, err := billing.Acquire(ctx, "example:nightly")
	if err != nil {
		log.Fatal(err)
	}
	defer a.Release(ctx)
	b, err := reports.TryAcquire(ctx, "example:nightly") // another prefix: another lock
	if err != nil {
		log.Fatal(err)
	}
	defer b.Release(ctx)

	n, _ := rdb.Exists(ctx, "billing:lock:example:nightly", "reports:lock:example:nightly").Result()
	fmt.Println("Redis keys:", n)
	info, err := billing.Inspect(ctx, "example:nightly")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("holder:", info.Holder)
	// Output:
	// Redis keys: 2
	// holder: invoice-worker-1
}

// lines is an io.Writer that hands each write (one log record) to a channel.
type lines chan string

func (l lines) Write(p []byte) (int, error) {
	l <- string(p)
	return len(p), nil
}

// WithLogger sets where renewal failures and losses are logged, at Warn
// level (default: slog.Default(); nil: nowhere). The holder learns of a
// loss through Done and Err either way.
func ExampleWithLogger() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	logged := make(lines, 8)
	logger := slog.New(slog.NewTextHandler(logged, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "token" {
				return slog.Attr{} // left out to keep the output stable
			}
			return a
		},
	}))
	locks, err := renewlock.New(rdb, renewlock.WithLogger(logger), renewlock.WithTTL(time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	ctx := context.Background()

	l, err := locks.Acquire(ctx, "example:logged")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := locks.ForceRelease(ctx, "example:logged"); err != nil { // an operator's doing
		log.Fatal(err)
	}
	<-l.Done() // at the next renewal
	fmt.Print(<-logged)
	_ = l.Release(ctx)
	// Output:
	// level=WARN msg="renewlock: lease lost" key=example:logged cause="renewal found another owner or no key"
}

// Inspect shows an operator who holds a lock: the holder's description,
// the fencing token, what is left of the lease and how many wait.
func ExampleClient_Inspect() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	locks, err := renewlock.New(rdb, renewlock.WithHolder("report-job@host-7"))
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	ctx := context.Background()

	l, err := locks.Acquire(ctx, "example:inspected")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Release(ctx)
	info, err := locks.Inspect(ctx, "example:inspected")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("holder:", info.Holder)
	fmt.Println("token is the holder's:", info.Token == l.Token())
	fmt.Println("lease left:", info.TTL > 0 && info.TTL <= renewlock.DefaultTTL, "waiters:", info.Waiters)

	_, err = locks.Inspect(ctx, "example:free")
	fmt.Println("free key:", errors.Is(err, renewlock.ErrNotHeld))
	// Output:
	// holder: report-job@host-7
	// token is the holder's: true
	// lease left: true waiters: 0
	// free key: true
}

// List shows every held lock whose name matches a glob pattern, with its
// queue.
func ExampleClient_List() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	locks, err := renewlock.New(rdb, renewlock.WithHolder("worker-a"))
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	ctx := context.Background()

	for _, key := range []string{"example:list:orders", "example:list:invoices"} {
		l, err := locks.Acquire(ctx, key)
		if err != nil {
			log.Fatal(err)
		}
		defer l.Release(ctx)
	}
	waitCtx, stopWaiting := context.WithCancel(ctx)
	defer stopWaiting()
	// Another caller waits for one of them; it has joined the lock's queue
	// in Redis once Inspect counts it.
	go func() { _, _ = locks.Acquire(waitCtx, "example:list:orders") }()
	for {
		if info, err := locks.Inspect(ctx, "example:list:orders"); err == nil && info.Waiters == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}

	infos, err := locks.List(ctx, "example:list:*")
	if err != nil {
		log.Fatal(err)
	}
	for _, info := range infos {
		fmt.Printf("%s held by %s, %d waiting\n", info.Key, info.Holder, info.Waiters)
	}
	// Output:
	// example:list:invoices held by worker-a, 0 waiting
	// example:list:orders held by worker-a, 1 waiting
}

// ForceRelease is the operator's escape hatch for a holder known to be
// dead: it removes the lock whatever its owner, and the lock passes to the
// next waiter. A holder that is in fact alive learns of it at its next
// renewal; until then only fencing tokens protect the resource, and the
// next holder's token is larger.
func ExampleClient_ForceRelease() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	app, err := renewlock.New(rdb, renewlock.WithTTL(time.Second), renewlock.WithLogger(nil))
	if err != nil {
		log.Fatal(err)
	}
	defer app.Close()
	operator, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer operator.Close()
	ctx := context.Background()

	stuck, err := app.Acquire(ctx, "example:stuck")
	if err != nil {
		log.Fatal(err)
	}
	removed, err := operator.ForceRelease(ctx, "example:stuck")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("removed the holder's token:", removed.Token == stuck.Token())

	next, err := app.Acquire(ctx, "example:stuck")
	if err != nil {
		log.Fatal(err)
	}
	defer next.Release(ctx)
	fmt.Println("the next token is larger:", next.Token() > stuck.Token())
	<-stuck.Done() // the old holder hears at its next renewal
	fmt.Println("old holder:", errors.Is(stuck.Err(), renewlock.ErrLeaseLost))

	_, err = operator.ForceRelease(ctx, "example:free")
	fmt.Println("free key:", errors.Is(err, renewlock.ErrNotHeld))
	// Output:
	// removed the holder's token: true
	// the next token is larger: true
	// old holder: true
	// free key: true
}

// Errors are told apart with errors.Is. ErrNotAcquired is TryAcquire's
// "held by another"; a context that ends is reported as itself, never as
// ErrNotAcquired. ErrRejected is a Redis error that retrying cannot fix
// (here, a key of another type where the lock should be), returned at once;
// ErrPermission, which wraps ErrRejected too, is a missing right of the
// Redis user (see the README's "Least privilege"). Bad input wraps
// ErrInvalidArgument.
func Example_errors() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	locks, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	ctx := context.Background()

	held, err := locks.Acquire(ctx, "example:errors")
	if err != nil {
		log.Fatal(err)
	}
	defer held.Release(ctx)
	_, err = locks.TryAcquire(ctx, "example:errors")
	fmt.Println("held by another:", errors.Is(err, renewlock.ErrNotAcquired))

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = locks.Acquire(short, "example:errors")
	fmt.Println("waited in vain:", errors.Is(err, context.DeadlineExceeded), errors.Is(err, renewlock.ErrNotAcquired))

	_ = rdb.Set(ctx, renewlock.DefaultKeyPrefix+"example:a-string", "not a lock", 0).Err()
	_, err = locks.TryAcquire(ctx, "example:a-string")
	fmt.Println("wrong type:", errors.Is(err, renewlock.ErrRejected), errors.Is(err, renewlock.ErrPermission))

	// A Redis user without the rights a lock needs.
	_ = rdb.Do(ctx, "ACL", "SETUSER", "example-nobody", "on", ">pw", "~*", "&*", "-@all").Err()
	defer rdb.Do(ctx, "ACL", "DELUSER", "example-nobody")
	weak := redis.NewClient(&redis.Options{Addr: redisAddr, Username: "example-nobody", Password: "pw"})
	defer weak.Close()
	weakLocks, err := renewlock.New(weak)
	if err != nil {
		log.Fatal(err)
	}
	defer weakLocks.Close()
	_, err = weakLocks.TryAcquire(ctx, "example:errors:acl")
	fmt.Println("no rights:", errors.Is(err, renewlock.ErrPermission), errors.Is(err, renewlock.ErrRejected))

	_, err = locks.TryAcquire(ctx, "example:errors", renewlock.WithTTL(time.Millisecond))
	fmt.Println("bad option:", errors.Is(err, renewlock.ErrInvalidArgument))
	// Output:
	// held by another: true
	// waited in vain: true false
	// wrong type: true false
	// no rights: true true
	// bad option: true
}

// Close ends a Client: every lock it holds is done at once (Err is
// ErrClientClosed), then released in Redis in one round trip, so others
// take it without waiting for the TTL; waiting calls return, and every
// later call fails with ErrClientClosed. Close returns within a few seconds
// even if Redis does not answer (a lock it could not release expires after
// its TTL), stops every goroutine of the Client, and may be called again.
// It does not close the go-redis client.
func ExampleClient_Close() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	locks, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	other, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()

	l, err := locks.Acquire(ctx, "example:closing")
	if err != nil {
		log.Fatal(err)
	}
	if err := locks.Close(); err != nil {
		log.Fatal(err) // a release Redis did not confirm: the lock expires after its TTL
	}
	<-l.Done()
	fmt.Println("lock done:", errors.Is(l.Err(), renewlock.ErrClientClosed))

	next, err := other.TryAcquire(ctx, "example:closing") // free at once
	fmt.Println("taken by another client:", err == nil)
	_ = next.Release(ctx)

	_, err = locks.Acquire(ctx, "example:closing")
	fmt.Println("after Close:", errors.Is(err, renewlock.ErrClientClosed))
	fmt.Println("Close again:", locks.Close())
	// Output:
	// lock done: true
	// taken by another client: true
	// after Close: true
	// Close again: <nil>
}
