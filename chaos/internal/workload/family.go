package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/renewlock/renewlock"
)

// The lock family: the same holder loop for a semaphore's permits, a
// read-write lock's shares and an election's terms. What each writes, and
// so what its fencing token protects:
//
//   - an election: the leader writes its term to the election's fenced
//     register (the mutex's register: a write is accepted iff its term is ≥
//     every term accepted before), like a mutex;
//   - a read-write lock: a writer writes to the lock's resource, fenced by
//     its token against every token the resource has seen, readers'
//     included; a reader reads it with its own token, refused if a write
//     with a larger token came first (RW in register.go);
//   - a semaphore: permits are concurrent, so no single register can order
//     them; each permit holder writes to a resource of its own (the key
//     plus the holder loop, Event.Res), fenced by the token, and the
//     checker checks that tokens rise strictly across acquisitions.

// Kinds of lock (Config.Kind).
const (
	KindMutex     = ""
	KindSemaphore = "sem"
	KindRW        = "rw"
	KindElection  = "elect"
)

// ParseKind reads a kind as the worker's -kinds flag spells it: "mutex"
// (or ""), "sem:LIMIT", "rw", "elect".
func ParseKind(s string) (kind string, limit int, err error) {
	switch {
	case s == "" || s == "mutex":
		return KindMutex, 0, nil
	case s == KindRW, s == KindElection:
		return s, 0, nil
	case strings.HasPrefix(s, KindSemaphore+":"):
		n, err := strconv.Atoi(strings.TrimPrefix(s, KindSemaphore+":"))
		if err != nil || n < 1 {
			return "", 0, fmt.Errorf("bad semaphore limit in %q", s)
		}
		return KindSemaphore, n, nil
	}
	return "", 0, fmt.Errorf("unknown kind %q (mutex, sem:N, rw, elect)", s)
}

// FormatKind is the inverse of ParseKind.
func FormatKind(kind string, limit int) string {
	switch kind {
	case KindMutex:
		return "mutex"
	case KindSemaphore:
		return fmt.Sprintf("%s:%d", KindSemaphore, limit)
	}
	return kind
}

// PermitResource names the resource of a semaphore permit held by worker.
func PermitResource(key, worker string) string { return key + "|" + worker }

// leadership adapts a *renewlock.Leadership to holding.
type leadership struct{ *renewlock.Leadership }

func (l leadership) Token() uint64                     { return l.Term() }
func (l leadership) Release(ctx context.Context) error { return l.Resign(ctx) }

// runFamily is one round of a family holder loop: acquire, hold and write,
// release.
func runFamily(ctx context.Context, c *renewlock.Client, reg *Register, cfg Config, seq *atomic.Int64, emit func(Event)) {
	if cfg.Kind == KindElection && rand.Float64() < 0.5 {
		lead(ctx, c, reg, cfg, seq, emit)
		return
	}
	base := Event{Worker: cfg.Worker, Key: cfg.Key}
	try := cfg.Kind != KindElection && rand.Float64() < cfg.TryRatio
	if cfg.Kind == KindRW {
		base.Mode = "r"
		if rand.Float64() < cfg.WriteRatio {
			base.Mode = "w"
		}
	}
	call := Mono()
	l, err := takeFamily(ctx, c, cfg, base.Mode, try)
	ret := Mono()
	if err != nil {
		b := base
		b.Blk = !try
		acquireFailed(ctx, cfg, b, call, ret, err, emit)
		return
	}
	base.Token = l.Token()
	a := base
	a.Kind, a.Call, a.Ret, a.Blk = KindAcquire, call, ret, !try
	emit(a)
	prepare(cfg, &base)
	holdFrom(ctx, l, reg, cfg, seq, emit, base)
}

func takeFamily(ctx context.Context, c *renewlock.Client, cfg Config, mode string, try bool) (holding, error) {
	if !try {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.AcquireTimeout)
		defer cancel()
	}
	var l *renewlock.Lock
	var err error
	switch {
	case cfg.Kind == KindSemaphore && try:
		l, err = c.TryAcquirePermit(ctx, cfg.Key, cfg.Limit, cfg.Options...)
	case cfg.Kind == KindSemaphore:
		l, err = c.AcquirePermit(ctx, cfg.Key, cfg.Limit, cfg.Options...)
	case cfg.Kind == KindRW && mode == "w" && try:
		l, err = c.TryAcquireWrite(ctx, cfg.Key, cfg.Options...)
	case cfg.Kind == KindRW && mode == "w":
		l, err = c.AcquireWrite(ctx, cfg.Key, cfg.Options...)
	case cfg.Kind == KindRW && try:
		l, err = c.TryAcquireRead(ctx, cfg.Key, cfg.Options...)
	case cfg.Kind == KindRW:
		l, err = c.AcquireRead(ctx, cfg.Key, cfg.Options...)
	case cfg.Kind == KindElection:
		ld, err := c.Campaign(ctx, cfg.Key, cfg.Worker, cfg.Options...)
		if err != nil {
			return nil, err
		}
		if ld == nil {
			return nil, errors.New("nil leadership and nil error")
		}
		return leadership{ld}, nil
	default:
		return nil, fmt.Errorf("workload: unknown kind %q", cfg.Kind)
	}
	if err == nil && l == nil {
		err = errors.New("nil lock and nil error")
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}

func acquireFailed(ctx context.Context, cfg Config, base Event, call, ret int64, err error, emit func(Event)) {
	if ctx.Err() != nil {
		return // shutting down: not a fault outcome
	}
	e := base
	e.Kind, e.Call, e.Ret, e.Class, e.Err = KindAcquireErr, call, ret, Classify(err), err.Error()
	emit(e)
	if errors.Is(err, renewlock.ErrNotAcquired) {
		sleep(ctx, jitter(cfg.WriteEvery))
	} else {
		sleep(ctx, jitter(20*time.Millisecond)) // Redis trouble: do not spin
	}
}

// prepare sets what a holder's writes carry besides its token: a permit's
// own resource, a reader's read operation.
func prepare(cfg Config, base *Event) {
	switch {
	case cfg.Kind == KindSemaphore:
		base.Res = PermitResource(cfg.Key, cfg.Worker)
	case cfg.Kind == KindRW && base.Mode == "r":
		base.Op = "r"
	}
}

// lead is the callback form of an election: Lead runs the critical section
// as its function and resigns when it returns. The campaign (not the
// leadership) gives up after AcquireTimeout.
func lead(ctx context.Context, c *renewlock.Client, reg *Register, cfg Config, seq *atomic.Int64, emit func(Event)) {
	base := Event{Worker: cfg.Worker, Key: cfg.Key}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var elected atomic.Bool
	giveUp := time.AfterFunc(cfg.AcquireTimeout, func() {
		if !elected.Load() {
			cancel()
		}
	})
	defer giveUp.Stop()
	call := Mono()
	var held *Event
	var watcher interface{ Wait() }
	err := c.Lead(lctx, cfg.Key, cfg.Worker, func(fctx context.Context, l *renewlock.Leadership) error {
		ret := Mono()
		elected.Store(true)
		b := base
		b.Token = l.Term()
		a := b
		a.Kind, a.Call, a.Ret, a.Blk = KindAcquire, call, ret, true
		emit(a)
		watcher = watchDone(leadership{l}, emit, b)
		holdAndWrite(fctx, leadership{l}, reg, cfg, seq, emit, b)
		r := b
		r.Kind, r.Call = KindRelease, Mono()
		held = &r
		return nil
	}, cfg.Options...)
	if held == nil {
		if err == nil {
			err = errors.New("renewlock: Lead returned nil without leading")
		}
		b := base
		b.Blk = true
		acquireFailed(ctx, cfg, b, call, Mono(), err, emit)
		return
	}
	r := *held
	r.Ret = Mono()
	if err != nil {
		r.Class, r.Err = Classify(err), err.Error()
	}
	emit(r)
	watcher.Wait() // Done is closed once Lead has resigned
}

// writeTo sends e's write (or read) with token to its resource.
func writeTo(ctx context.Context, reg *Register, e *Event, token uint64) (bool, error) {
	switch {
	case e.Mode != "":
		op := "w"
		if e.Op == "r" {
			op = "r"
		}
		return reg.RW(ctx, e.Key, op, token, e.WID)
	case e.Res != "":
		return reg.Write(ctx, e.Res, token, e.WID)
	}
	return reg.Write(ctx, e.Key, token, e.WID)
}
