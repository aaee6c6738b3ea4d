// Package workload is the client side of the fault-injection suite: the loop
// a lock holder runs (acquire, write to the fenced register inside the
// critical section, release), the fenced register itself, and the event
// record every holder emits. The same code runs in goroutines of the test
// process and in separate worker processes (chaos/cmd/worker), so that both
// kinds of client produce one comparable history.
package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/renewlock/renewlock"
)

// Mono returns the system-wide monotonic clock (CLOCK_MONOTONIC) in
// nanoseconds. Go's own monotonic readings are relative to process start,
// so they cannot be compared between the test and its worker processes;
// this clock can.
func Mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err)) // cannot happen on Linux
	}
	return ts.Nano()
}

// Event kinds.
const (
	KindAcquire    = "acq"    // Acquire/TryAcquire returned a lock: Call, Ret, Token
	KindAcquireErr = "acqerr" // it returned an error: Call, Ret, Err, Class
	KindWork       = "work"   // about to do un-interruptible work, then write: Call
	KindWrite      = "w"      // register write finished: Call, Ret, WID, OK
	KindWriteStart = "ws"     // register write about to be sent: Call, WID
	KindWriteErr   = "werr"   // register write failed: Call, Ret, WID, Err
	KindDone       = "done"   // Lock.Done closed: Ret (observed), Class of Err
	KindRelease    = "rel"    // Release returned: Call, Ret, Err, Class
	KindStall      = "stall"  // the process was not scheduled from Call to Ret
)

// Error classes, so the checker never parses messages.
const (
	ClassLost        = "lost"        // wraps renewlock.ErrLeaseLost
	ClassReleased    = "released"    // renewlock.ErrReleased
	ClassClosed      = "closed"      // renewlock.ErrClientClosed
	ClassNotAcquired = "notacquired" // renewlock.ErrNotAcquired
	ClassTimeout     = "timeout"     // context deadline / cancel
	ClassRedis       = "redis"       // anything else: a Redis or network error
)

// Event is one step of one holder, on the Mono clock.
type Event struct {
	Kind   string `json:"k"`
	Worker string `json:"wk"`
	Key    string `json:"key,omitempty"`
	Token  uint64 `json:"tok,omitempty"`
	Call   int64  `json:"c,omitempty"`
	Ret    int64  `json:"r,omitempty"`
	WID    string `json:"wid,omitempty"`
	OK     bool   `json:"ok,omitempty"`
	Class  string `json:"cl,omitempty"`
	Err    string `json:"err,omitempty"`
	// The lock family (family.go). Mode is a read-write lock's "r" or "w"
	// (acquisitions and their writes); Res names the fenced resource of a
	// write when it is not Key (a semaphore permit's own resource); Op is
	// "r" for a read of a read-write lock's resource (a KindWrite* event
	// that reads); Blk marks an acquisition made with a blocking call.
	Mode string `json:"m,omitempty"`
	Res  string `json:"res,omitempty"`
	Op   string `json:"op,omitempty"`
	Blk  bool   `json:"blk,omitempty"`
}

// Classify maps an error returned by renewlock to a class.
func Classify(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, renewlock.ErrLeaseLost):
		return ClassLost
	case errors.Is(err, renewlock.ErrReleased):
		return ClassReleased
	case errors.Is(err, renewlock.ErrClientClosed):
		return ClassClosed
	case errors.Is(err, renewlock.ErrNotAcquired):
		return ClassNotAcquired
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ClassTimeout
	default:
		return ClassRedis
	}
}

// Config shapes one holder loop.
type Config struct {
	Worker     string        // unique name of this loop, e.g. "c0/k1"
	Key        string        // the lock key
	Hold       time.Duration // mean time a lock is held (uniform in [Hold/2, 3·Hold/2])
	WriteEvery time.Duration // pause between writes inside the critical section
	// Work is un-interruptible work done after the holder last checked its
	// lock and before it writes, like a GC pause or a slow syscall: the
	// window in which a paused holder wakes up and writes with a dead lease.
	Work time.Duration
	// TryRatio is the fraction of acquisitions made with TryAcquire in a
	// loop (short, precise call/return windows for the checker) instead of
	// a blocking Acquire (pub/sub waiting).
	TryRatio float64
	// AcquireTimeout bounds one blocking Acquire.
	AcquireTimeout time.Duration
	// Options are passed to every acquisition.
	Options []renewlock.Option
	// Kind is the kind of lock Key is (family.go): KindMutex (""),
	// KindSemaphore (with Limit), KindRW (with WriteRatio) or KindElection.
	Kind       string
	Limit      int
	WriteRatio float64
}

// Run runs the holder loop until ctx is done, emitting every step. Emit must
// be safe for concurrent use (the Done watcher calls it from a goroutine).
func Run(ctx context.Context, c *renewlock.Client, reg *Register, cfg Config, emit func(Event)) {
	var seq atomic.Int64
	for ctx.Err() == nil {
		if cfg.Kind != KindMutex {
			runFamily(ctx, c, reg, cfg, &seq, emit)
			continue
		}
		l := acquire(ctx, c, cfg, emit)
		if l == nil {
			continue
		}
		hold(ctx, l, reg, cfg, &seq, emit)
	}
}

func acquire(ctx context.Context, c *renewlock.Client, cfg Config, emit func(Event)) *renewlock.Lock {
	call := Mono()
	var l *renewlock.Lock
	var err error
	if rand.Float64() < cfg.TryRatio {
		l, err = c.TryAcquire(ctx, cfg.Key, cfg.Options...)
	} else {
		actx, cancel := context.WithTimeout(ctx, cfg.AcquireTimeout)
		l, err = c.Acquire(actx, cfg.Key, cfg.Options...)
		cancel()
	}
	ret := Mono()
	if err != nil {
		if ctx.Err() != nil {
			return nil // shutting down: not a fault outcome
		}
		emit(Event{Kind: KindAcquireErr, Worker: cfg.Worker, Key: cfg.Key, Call: call, Ret: ret, Class: Classify(err), Err: err.Error()})
		if errors.Is(err, renewlock.ErrNotAcquired) {
			sleep(ctx, jitter(cfg.WriteEvery))
		} else {
			sleep(ctx, jitter(20*time.Millisecond)) // Redis trouble: do not spin
		}
		return nil
	}
	if l == nil {
		emit(Event{Kind: KindAcquireErr, Worker: cfg.Worker, Key: cfg.Key, Call: call, Ret: ret, Class: ClassRedis, Err: "nil lock and nil error"})
		return nil
	}
	emit(Event{Kind: KindAcquire, Worker: cfg.Worker, Key: cfg.Key, Token: l.Token(), Call: call, Ret: ret})
	return l
}

func hold(ctx context.Context, l holding, reg *Register, cfg Config, seq *atomic.Int64, emit func(Event)) {
	base := Event{Worker: cfg.Worker, Key: cfg.Key, Token: l.Token()}
	holdFrom(ctx, l, reg, cfg, seq, emit, base)
}

// holding is what a holder loop needs of a held lock: a *renewlock.Lock
// (a mutex, a permit, a read or write share) or a leadership.
type holding interface {
	Token() uint64
	Done() <-chan struct{}
	Err() error
	Release(ctx context.Context) error
}

func holdFrom(ctx context.Context, l holding, reg *Register, cfg Config, seq *atomic.Int64, emit func(Event), base Event) {
	watcher := watchDone(l, emit, base)
	holdAndWrite(ctx, l, reg, cfg, seq, emit, base)
	e := base
	e.Kind, e.Call = KindRelease, Mono()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	err := l.Release(rctx)
	cancel()
	e.Ret = Mono()
	if err != nil {
		e.Class, e.Err = Classify(err), err.Error()
	}
	emit(e)
	watcher.Wait() // Done is closed once Release has returned
}

// watchDone emits KindDone when l's Done closes.
func watchDone(l holding, emit func(Event), base Event) *sync.WaitGroup {
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		<-l.Done()
		e := base
		e.Kind, e.Ret = KindDone, Mono()
		if err := l.Err(); err != nil {
			e.Class, e.Err = Classify(err), err.Error()
		}
		emit(e)
	}()
	return &watcher
}

// holdAndWrite is the critical section: writes every WriteEvery until the
// hold time is over, the lock is lost or ctx ends.
func holdAndWrite(ctx context.Context, l holding, reg *Register, cfg Config, seq *atomic.Int64, emit func(Event), base Event) {
	until := time.Now().Add(cfg.Hold/2 + rand.N(cfg.Hold+1))
	for ctx.Err() == nil && time.Now().Before(until) {
		select {
		case <-l.Done():
		default:
			write(ctx, l, reg, cfg, seq, base, emit)
		}
		select {
		case <-l.Done():
		case <-ctx.Done():
		case <-time.After(jitter(cfg.WriteEvery)):
			continue
		}
		break
	}
}

// write does the un-interruptible work and then the fenced write. It does
// not look at the lock in between: that is the point.
func write(ctx context.Context, l holding, reg *Register, cfg Config, seq *atomic.Int64, base Event, emit func(Event)) {
	if cfg.Work > 0 {
		e := base
		e.Kind, e.Call = KindWork, Mono()
		emit(e)
		time.Sleep(cfg.Work) // deliberately not interruptible
	}
	e := base
	e.WID = fmt.Sprintf("%s#%d", cfg.Worker, seq.Add(1))
	e.Kind, e.Call = KindWriteStart, Mono()
	emit(e)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	ok, err := writeTo(wctx, reg, &e, l.Token())
	cancel()
	e.Ret = Mono()
	if err != nil {
		e.Kind, e.Err = KindWriteErr, err.Error()
	} else {
		e.Kind, e.OK = KindWrite, ok
	}
	emit(e)
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d+1)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// StallThreshold is the lateness of a short sleep above which Probe reports
// a stall: as long as renewlock.DefaultSafetyMargin, so a stall may explain
// a loss signalled after Redis expiry.
const StallThreshold = 10 * time.Millisecond

// Probe measures how late this process gets scheduled: it sleeps 5 ms in a
// loop and emits a KindStall event for every wake-up later than
// StallThreshold, until ctx is done. A CPU-starved or frozen process is
// a paused holder in the sense of the documented limits; the checker uses
// these events to tell that apart from a library bug.
func Probe(ctx context.Context, process string, emit func(Event)) {
	const step = 5 * time.Millisecond
	t := time.NewTimer(step)
	defer t.Stop()
	for {
		start := Mono()
		t.Reset(step)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := Mono(); now-start > int64(step+StallThreshold) {
			emit(Event{Kind: KindStall, Worker: process, Call: start + int64(step), Ret: now})
		}
	}
}

// WorkerOf returns the process part of a worker name ("p3/k0" → "p3").
func WorkerOf(name string) string {
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return name[:i]
	}
	return name
}
