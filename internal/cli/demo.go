package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DemoTTL is the lease length of the demo: short, so that expiry and
// renewal happen several times in a few seconds.
const DemoTTL = time.Second

// demoStepTimeout bounds every wait of the demo for a worker's event.
const demoStepTimeout = 15 * time.Second

// DemoConfig configures `renewlock demo`.
type DemoConfig struct {
	Redis  *RedisTarget // nil: start a local server
	Prefix string
	TTL    time.Duration
	Self   string // this executable, started as the workers
	Stdout io.Writer
	Stderr io.Writer
}

// demo is one run of the tour.
type demo struct {
	cfg      *DemoConfig
	ttl      time.Duration
	target   RedisTarget
	rdb      redis.UniversalClient
	key      string // the lock's key
	register string // the fenced register's Redis key
	start    time.Time
	workers  []*demoWorker
}

// demoWorker is one worker process and its event stream.
type demoWorker struct {
	name   string
	cmd    *exec.Cmd
	pid    int
	stdin  io.WriteCloser
	events chan demoEvent
	exited chan struct{}
}

type demoEvent struct {
	at   time.Time
	kind string
	arg  string
}

// Demo runs the tour and prints its timeline on cfg.Stdout.
func Demo(ctx context.Context, cfg *DemoConfig) (err error) {
	ttl := cfg.TTL
	if ttl <= 0 {
		ttl = DemoTTL
	}
	if ttl < 200*time.Millisecond || ttl > time.Minute {
		return Usagef("demo: --ttl %v is outside [200ms, 1m]", ttl)
	}
	d := &demo{cfg: cfg, ttl: ttl}
	backend := ""
	if cfg.Redis != nil {
		d.target = *cfg.Redis
		backend = fmt.Sprintf("%s (from %s)", cfg.Redis.Redacted(), cfg.Redis.Source)
	} else {
		srv, err := startDemoServer(ctx, cfg.Stderr)
		if err != nil {
			return exitf(ExitSoftware, "demo: %v", err)
		}
		defer srv.stop()
		d.target, backend = RedisTarget{URL: srv.URL, Source: "demo"}, srv.Desc
	}
	target := d.target
	rdb, err := NewRedisClient(target)
	if err != nil {
		return err
	}
	defer rdb.Close()
	d.rdb = rdb
	if err := ping(ctx, rdb, target); err != nil {
		return err
	}

	var b [3]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	d.key = "demo-" + id + "/report"
	d.register = "renewlock-demo:" + id + ":register"
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		rdb.Del(cctx, cfg.Prefix+d.key, d.register)
	}()
	defer d.stopWorkers()

	out := cfg.Stdout
	fmt.Fprintf(out, "renewlock demo\n")
	fmt.Fprintf(out, "  Redis:   %s\n", backend)
	fmt.Fprintf(out, "  lock:    %q, lease (TTL) %v, renewed every %v by each holder's watchdog\n", d.key, ttl, (ttl / 3).Round(time.Millisecond))
	fmt.Fprintf(out, "  workers: separate processes (this binary), each with its own Redis connection\n")
	fmt.Fprintf(out, "  the protected resource is a register that keeps the largest fencing token it has seen\n\n")
	fmt.Fprintf(out, "%9s  %-9s %s\n", "elapsed", "actor", "event")
	d.start = time.Now()

	for _, act := range []func(context.Context) error{d.contend, d.watchdog, d.crash, d.fencing} {
		if err := act(ctx); err != nil {
			return exitf(ExitSoftware, "demo: %v", err)
		}
	}
	d.stopWorkers()
	fmt.Fprintf(out, "\nDone in %v. Every hand-off raised the fencing token; the crashed and the paused holder\n", time.Since(d.start).Round(100*time.Millisecond))
	fmt.Fprintf(out, "could not harm the register. Try it yourself:\n")
	fmt.Fprintf(out, "  renewlock run --key my-job --ttl 10s -- sh -c 'echo token $RENEWLOCK_TOKEN; sleep 30'\n")
	fmt.Fprintf(out, "  renewlock status my-job\n")
	return nil
}

// log prints one timeline line.
func (d *demo) log(at time.Time, actor, format string, args ...any) {
	ms := at.Sub(d.start).Milliseconds()
	fmt.Fprintf(d.cfg.Stdout, "%7dms  %-9s %s\n", ms, actor, fmt.Sprintf(format, args...))
}

func (d *demo) now(actor, format string, args ...any) { d.log(time.Now(), actor, format, args...) }

func (d *demo) section(title string) {
	fmt.Fprintf(d.cfg.Stdout, "\n── %s ──\n", title)
}

// spawn starts a worker process.
func (d *demo) spawn(name string) (*demoWorker, error) {
	cmd := exec.Command(d.cfg.Self, DemoWorkerCommand,
		"--prefix", d.cfg.Prefix, "--name", name,
		"--key", d.key, "--register", d.register, "--ttl", d.ttl.String())
	// The URL, user, password and TLS settings go in the environment, so
	// that no password shows on a command line (ps).
	cmd.Env = append(os.Environ(), d.target.Environ()...)
	cmd.Stderr = d.cfg.Stderr
	configureChild(cmd, true) // a worker dies with the demo
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting worker %s: %v", name, err)
	}
	w := &demoWorker{name: name, cmd: cmd, pid: cmd.Process.Pid, stdin: stdin,
		events: make(chan demoEvent, 64), exited: make(chan struct{})}
	d.workers = append(d.workers, w)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			kind, arg, _ := strings.Cut(sc.Text(), " ")
			w.events <- demoEvent{at: time.Now(), kind: kind, arg: arg}
		}
		close(w.events)
		_ = cmd.Wait()
		close(w.exited)
	}()
	if _, err := d.expect(w, "ready"); err != nil {
		return nil, err
	}
	return w, nil
}

// send gives a worker a command.
func (w *demoWorker) send(line string) error {
	_, err := fmt.Fprintln(w.stdin, line)
	if err != nil {
		return fmt.Errorf("worker %s: %v", w.name, err)
	}
	return nil
}

// expect waits for the worker's next event of one of kinds. "waiting" and
// "lost" events met on the way are printed; anything else is an error.
func (d *demo) expect(w *demoWorker, kinds ...string) (demoEvent, error) {
	timeout := time.NewTimer(demoStepTimeout)
	defer timeout.Stop()
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				return demoEvent{}, fmt.Errorf("worker %s exited unexpectedly", w.name)
			}
			for _, k := range kinds {
				if ev.kind == k {
					return ev, nil
				}
			}
			switch ev.kind {
			case "waiting":
				d.log(ev.at, w.name, "waiting: the lock is held by %s", ev.arg)
			case "lost":
				d.log(ev.at, w.name, "is told its lease is lost (Lock.Done closed)")
			default:
				return demoEvent{}, fmt.Errorf("worker %s: unexpected %q %s while waiting for %v", w.name, ev.kind, ev.arg, kinds)
			}
		case <-timeout.C:
			return demoEvent{}, fmt.Errorf("worker %s: no %v within %v", w.name, kinds, demoStepTimeout)
		}
	}
}

// holdWithWaiter has holder take the lock, then waiter queue for it.
func (d *demo) holdWithWaiter(holder, waiter *demoWorker) error {
	if err := holder.send("acquire"); err != nil {
		return err
	}
	if _, err := d.acquired(holder, ""); err != nil {
		return err
	}
	return d.wait(waiter, holder)
}

// wait has waiter queue for the lock holder has, and logs it.
func (d *demo) wait(waiter, holder *demoWorker) error {
	if err := waiter.send("acquire"); err != nil {
		return err
	}
	if _, err := d.expect(waiter, "waiting"); err != nil {
		return err
	}
	d.now(waiter.name, "waiting: the lock is held by %s", holder.name)
	return nil
}

// acquired waits for w to get the lock and logs it.
func (d *demo) acquired(w *demoWorker, note string) (demoEvent, error) {
	ev, err := d.expect(w, "acquired", "error")
	if err != nil {
		return ev, err
	}
	if ev.kind == "error" {
		return ev, fmt.Errorf("worker %s: %s", w.name, ev.arg)
	}
	d.log(ev.at, w.name, "acquired the lock, fencing token %s%s", ev.arg, note)
	return ev, nil
}

// write makes w write to the register and logs the outcome.
func (d *demo) write(w *demoWorker, value string) (demoEvent, error) {
	if err := w.send("write " + value); err != nil {
		return demoEvent{}, err
	}
	ev, err := d.expect(w, "write-ok", "write-rejected", "error")
	if err != nil {
		return ev, err
	}
	switch ev.kind {
	case "write-ok":
		d.log(ev.at, w.name, "wrote %q to the register with token %s: accepted", value, ev.arg)
	case "write-rejected":
		tok, highest, _ := strings.Cut(ev.arg, " ")
		d.log(ev.at, "register", "REJECTED %s's write %q: token %s < %s, the largest it has seen", w.name, value, tok, highest)
	default:
		return ev, fmt.Errorf("worker %s: %s", w.name, ev.arg)
	}
	return ev, nil
}

// release makes w release the lock and logs it.
func (d *demo) release(w *demoWorker) (demoEvent, error) {
	if err := w.send("release"); err != nil {
		return demoEvent{}, err
	}
	ev, err := d.expect(w, "released", "release-error")
	if err != nil {
		return ev, err
	}
	if ev.kind == "release-error" {
		d.log(ev.at, w.name, "release reports: %s", ev.arg)
	} else {
		d.log(ev.at, w.name, "released the lock (the next waiter in the queue gets it at once)")
	}
	return ev, nil
}

func (d *demo) stopWorkers() {
	for _, w := range d.workers {
		_ = w.stdin.Close()
	}
	for _, w := range d.workers {
		select {
		case <-w.exited:
		case <-time.After(5 * time.Second):
			_ = w.cmd.Process.Kill()
			<-w.exited
		}
	}
	d.workers = nil
}

// contend: three workers want the lock at once; each gets it in turn, and
// each hand-off is immediate: the release grants the lock to the next
// waiter in the queue and tells it at once.
func (d *demo) contend(context.Context) error {
	d.section("1. Three workers contend for the lock")
	var ws []*demoWorker
	for _, name := range []string{"worker-1", "worker-2", "worker-3"} {
		w, err := d.spawn(name)
		if err != nil {
			return err
		}
		d.now(name, "started (pid %d)", w.pid)
		ws = append(ws, w)
	}
	holder := ws[0]
	if err := holder.send("acquire"); err != nil {
		return err
	}
	if _, err := d.acquired(holder, ""); err != nil {
		return err
	}
	for _, w := range ws[1:] {
		if err := w.send("acquire"); err != nil {
			return err
		}
		if _, err := d.expect(w, "waiting"); err != nil {
			return err
		}
		d.now(w.name, "waiting: the lock is held by %s", holder.name)
	}
	pending := remove(ws, holder)
	for {
		if _, err := d.write(holder, "report by "+holder.name); err != nil {
			return err
		}
		time.Sleep(d.ttl / 4) // the work
		rel, err := d.release(holder)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		next, ev, err := d.firstAcquired(pending)
		if err != nil {
			return err
		}
		d.log(ev.at, next.name, "acquired the lock, fencing token %s (%s after the release)", ev.arg, ms(ev.at.Sub(rel.at)))
		holder, pending = next, remove(pending, next)
	}
}

// firstAcquired waits until one of ws reports "acquired", printing the
// others' waiting notes meanwhile.
func (d *demo) firstAcquired(ws []*demoWorker) (*demoWorker, demoEvent, error) {
	type got struct {
		w  *demoWorker
		ev demoEvent
	}
	timeout := time.NewTimer(demoStepTimeout)
	defer timeout.Stop()
	for {
		// Poll each worker's queue in turn: events are few, and the
		// timestamps taken on arrival keep the order right.
		var winners []got
		for _, w := range ws {
		drain:
			for {
				select {
				case ev, ok := <-w.events:
					if !ok {
						return nil, demoEvent{}, fmt.Errorf("worker %s exited unexpectedly", w.name)
					}
					switch ev.kind {
					case "acquired":
						winners = append(winners, got{w, ev})
						break drain
					case "waiting":
						d.log(ev.at, w.name, "waiting: the lock is held by %s", ev.arg)
					default:
						return nil, demoEvent{}, fmt.Errorf("worker %s: unexpected %q %s", w.name, ev.kind, ev.arg)
					}
				default:
					break drain
				}
			}
		}
		switch len(winners) {
		case 0:
		case 1:
			return winners[0].w, winners[0].ev, nil
		default:
			return nil, demoEvent{}, fmt.Errorf("two workers hold the lock at once: %s and %s", winners[0].w.name, winners[1].w.name)
		}
		select {
		case <-timeout.C:
			return nil, demoEvent{}, fmt.Errorf("no worker acquired the lock within %v", demoStepTimeout)
		case <-time.After(time.Millisecond):
		}
	}
}

// ms formats a short duration as milliseconds with one decimal.
func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func remove(ws []*demoWorker, x *demoWorker) []*demoWorker {
	var out []*demoWorker
	for _, w := range ws {
		if w != x {
			out = append(out, w)
		}
	}
	return out
}

// watchdog: a job that runs for several TTLs keeps its lease, because the
// holder's watchdog renews it; a waiter gets in only when it is released.
func (d *demo) watchdog(ctx context.Context) error {
	d.section(fmt.Sprintf("2. A long job holds the lock for %v, %.1f× the lease", d.ttl*7/2, 3.5))
	w1, w2 := d.workers[0], d.workers[1]
	if err := d.holdWithWaiter(w1, w2); err != nil {
		return err
	}
	began := time.Now()
	for held := d.ttl / 2; held <= d.ttl*7/2; held += d.ttl / 2 {
		time.Sleep(time.Until(began.Add(held)))
		ttl, err := d.rdb.PTTL(ctx, d.cfg.Prefix+d.key).Result()
		if err != nil {
			return err
		}
		d.now("redis", "lease of %s has %v left after %v of work (renewed by its watchdog)", w1.name, ttl.Round(time.Millisecond), time.Since(began).Round(10*time.Millisecond))
	}
	rel, err := d.release(w1)
	if err != nil {
		return err
	}
	ev, err := d.expect(w2, "acquired")
	if err != nil {
		return err
	}
	d.log(ev.at, w2.name, "acquired the lock, fencing token %s (%s after the release)", ev.arg, ms(ev.at.Sub(rel.at)))
	_, err = d.release(w2)
	return err
}

// crash: the holder is killed without releasing; the next worker gets the
// lock when the lease runs out, and not before.
func (d *demo) crash(ctx context.Context) error {
	d.section("3. The holder crashes (kill -9): the next worker takes over when its lease expires")
	w3, w2 := d.workers[2], d.workers[1]
	if err := d.holdWithWaiter(w3, w2); err != nil {
		return err
	}
	time.Sleep(d.ttl / 2) // a renewal or two happen
	left, err := d.rdb.PTTL(ctx, d.cfg.Prefix+d.key).Result()
	if err != nil {
		return err
	}
	killed := time.Now()
	_ = w3.cmd.Process.Kill()
	<-w3.exited
	d.log(killed, w3.name, "killed with SIGKILL while holding the lock (lease had %v left): no release, no more renewals", left.Round(time.Millisecond))
	ev, err := d.expect(w2, "acquired")
	if err != nil {
		return err
	}
	d.log(ev.at, w2.name, "acquired the lock, fencing token %s, %v after the crash (the lease had expired)", ev.arg, ev.at.Sub(killed).Round(time.Millisecond))
	if _, err := d.write(w2, "report by "+w2.name); err != nil {
		return err
	}
	_, err = d.release(w2)
	return err
}

// fencing: a holder is paused (SIGSTOP, like a long GC pause) past its
// lease; another takes over and writes; the paused one wakes up and writes
// with its old token, and the register rejects it.
func (d *demo) fencing(context.Context) error {
	d.section("4. A paused holder wakes up after its lease expired: the fencing token stops its write")
	if !canPause {
		d.now("demo", "skipped: this platform cannot pause a process")
		return nil
	}
	w1, w2 := d.workers[0], d.workers[1]
	if err := w1.send("acquire"); err != nil {
		return err
	}
	if _, err := d.acquired(w1, ""); err != nil {
		return err
	}
	if _, err := d.write(w1, "report by "+w1.name); err != nil {
		return err
	}
	if err := d.wait(w2, w1); err != nil {
		return err
	}
	paused := time.Now()
	if err := pauseProcess(w1.cmd.Process); err != nil {
		return err
	}
	d.log(paused, w1.name, "frozen with SIGSTOP (a stop-the-world pause) right before its next write")
	ev, err := d.expect(w2, "acquired")
	if err != nil {
		_ = resumeProcess(w1.cmd.Process)
		return err
	}
	d.log(ev.at, w2.name, "acquired the lock, fencing token %s, %v after the pause began", ev.arg, ev.at.Sub(paused).Round(time.Millisecond))
	if _, err := d.write(w2, "report by "+w2.name); err != nil {
		_ = resumeProcess(w1.cmd.Process)
		return err
	}
	if err := resumeProcess(w1.cmd.Process); err != nil {
		return err
	}
	d.now(w1.name, "resumes (SIGCONT) and, unaware, writes with its old token")
	if _, err := d.write(w1, "stale report by "+w1.name); err != nil {
		return err
	}
	// Its lease is gone: releasing reports the loss and touches nothing.
	if _, err := d.release(w1); err != nil {
		return err
	}
	if _, err := d.release(w2); err != nil {
		return err
	}
	final, err := d.rdb.HGet(context.Background(), d.register, "value").Result()
	if err != nil {
		return err
	}
	d.now("register", "holds %q", final)
	return nil
}
