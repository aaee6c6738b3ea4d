package cookbook_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/docs/cookbook"
)

// SIGTERM stops the work, the lock passes at once to the process waiting
// for it, and Main returns nil.
func TestMainShutsDownOnSIGTERM(t *testing.T) {
	rdb := newRedis(t)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- cookbook.Main(rdb, t.Name(), func(ctx context.Context, token uint64) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-started
	next := newClient(t)
	waiting := make(chan error, 1)
	var l *renewlock.Lock
	go func() {
		var err error
		l, err = next.Acquire(context.Background(), t.Name())
		waiting <- err
	}()
	for next.Stats().Waiting == 0 {
		time.Sleep(time.Millisecond)
	}

	signalled := time.Now()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil { // caught by Main
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Main: %v", err)
	}
	if err := <-waiting; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(signalled); d > time.Second {
		t.Errorf("the lock passed on %v after the signal", d)
	}
	if err := l.Release(context.Background()); err != nil || errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatal(err)
	}
}
