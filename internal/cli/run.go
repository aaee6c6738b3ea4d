package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// Timing of `renewlock run`.
const (
	// DefaultTTL is the lease length when --ttl is not given.
	DefaultTTL = renewlock.DefaultTTL
	// MaxDefaultGrace caps the default --grace (TTL/10).
	MaxDefaultGrace = 5 * time.Second
	// KillSlack is reserved, on top of --grace, between the SIGKILL and the
	// moment Redis can expire the lease: it absorbs timer lateness and the
	// time the kernel takes to end the command on a loaded machine.
	KillSlack = 100 * time.Millisecond
	// ConnectTimeout bounds the initial check that Redis answers.
	ConnectTimeout = 5 * time.Second
	// MaxReleaseTime bounds the release after the command exits.
	MaxReleaseTime = 5 * time.Second
)

// Environment variables set for the command.
const (
	EnvKey   = "RENEWLOCK_KEY"
	EnvToken = "RENEWLOCK_TOKEN"
	EnvLimit = "RENEWLOCK_LIMIT" // run --limit: the semaphore's limit
)

// DefaultGrace is the --grace used for a TTL: a tenth of it, at most
// MaxDefaultGrace.
func DefaultGrace(ttl time.Duration) time.Duration { return min(ttl/10, MaxDefaultGrace) }

// RunConfig is one `renewlock run` invocation.
type RunConfig struct {
	Redis   RedisTarget
	Prefix  string        // key prefix in Redis
	Key     string        // the lock's name
	Limit   int           // --limit: take one of Limit permits of the semaphore Key; 0: the lock Key
	TTL     time.Duration // lease length
	Wait    Duration      // how long to wait for the lock; not Given: forever
	NoWait  bool          // fail at once if the lock is held
	Grace   Duration      // SIGTERM → SIGKILL delay on lease loss; default DefaultGrace
	Verbose bool          // report acquisition and release on stderr
	Command []string      // the command and its arguments

	Stdin          *os.File
	Stdout, Stderr *os.File
	Environ        []string // the command's environment, before RENEWLOCK_*
}

// grace returns the --grace in force.
func (c *RunConfig) grace() time.Duration {
	if c.Grace.Given {
		return c.Grace.D
	}
	return DefaultGrace(c.TTL)
}

// margin is the safety margin passed to the library: the lease-lost signal
// comes this long before the validity deadline would otherwise be, so
// SIGTERM, the grace period and SIGKILL all fit before Redis expires the key.
func (c *RunConfig) margin() time.Duration { return c.grace() + KillSlack }

// Validate checks the invocation and names any bad value.
func (c *RunConfig) Validate() error {
	if c.Key == "" {
		return Usagef("--key is required: the name of the lock, e.g. --key nightly-backup")
	}
	if len(c.Command) == 0 {
		return Usagef("no command to run; usage: renewlock run --key KEY [flags] -- COMMAND [ARGS...]")
	}
	if c.Limit < 0 || c.Limit > renewlock.MaxPermits {
		return Usagef("--limit %d is outside [1, %d]", c.Limit, renewlock.MaxPermits)
	}
	return c.validateTiming()
}

// validateTiming checks the flags that run and elect share: --wait,
// --no-wait, --ttl, --grace.
func (c *RunConfig) validateTiming() error {
	if c.NoWait && c.Wait.Given {
		return Usagef("--no-wait and --wait %v exclude each other", c.Wait.D)
	}
	if c.TTL < renewlock.MinTTL {
		return Usagef("--ttl %v is below the minimum %v", c.TTL, renewlock.MinTTL)
	}
	if c.TTL > renewlock.MaxTTL {
		return Usagef("--ttl %v is above the maximum %v", c.TTL, renewlock.MaxTTL)
	}
	validity := time.Duration(float64(c.TTL)*(1-renewlock.DefaultDrift)) - c.margin()
	if every := c.TTL / 3; every >= validity {
		return Usagef("--ttl %v is too short for --grace %v: the lease is renewed every %v (ttl/3), which must be shorter than the validity period %v (ttl × %v − grace − %v kill slack); use a longer --ttl or a shorter --grace",
			c.TTL, c.grace(), every, max(validity, 0), 1-renewlock.DefaultDrift, KillSlack)
	}
	return nil
}

// NewRedisClient returns a go-redis client for target (a single server,
// a Sentinel-managed primary or a Cluster: RedisTarget.NewClient). Context
// deadlines are honoured by the network calls, so every renewlock call is
// bounded by the context it gets.
func NewRedisClient(target RedisTarget) (redis.UniversalClient, error) {
	quietRedisOnce.Do(func() { redis.SetLogger(discardLogger{}) })
	return target.NewClient()
}

var quietRedisOnce sync.Once

// discardLogger silences go-redis's own log lines (dial retries and the
// like): every failure that matters reaches the user as one message.
type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

// ping checks that Redis answers and lets the user in, so that a wrong URL
// fails at once with ExitUnavailable, and a wrong password with ExitNoPerm,
// instead of waiting.
func ping(ctx context.Context, rdb redis.UniversalClient, target RedisTarget) error {
	if err := pingErr(ctx, rdb); err != nil {
		return redisFailure("connecting", target, err)
	}
	return nil
}

// pingErr sends PING, bounded by ConnectTimeout. A user who may not PING
// got in: the commands renewlock needs are checked when they run.
func pingErr(ctx context.Context, rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil && replyPrefix(err) != "NOPERM" {
		return err
	}
	return nil
}

// redactErr hides the target's password in err's text.
func redactErr(err error, target RedisTarget) string { return redactMsg(err.Error(), target) }

// warnLogger writes the library's warnings (renewal failures) to w as
// "renewlock: warning: …" lines. The library's own "lease lost" line is
// dropped: run reports the loss itself, with what it does about it.
func warnLogger(w io.Writer) *slog.Logger { return slog.New(&warnHandler{w: w, mu: new(sync.Mutex)}) }

type warnHandler struct {
	w     io.Writer
	mu    *sync.Mutex
	attrs []slog.Attr
}

func (h *warnHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *warnHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "renewlock: lease lost" {
		return nil
	}
	var b strings.Builder
	b.WriteString("renewlock: warning: ")
	b.WriteString(strings.TrimPrefix(r.Message, "renewlock: "))
	add := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *warnHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &warnHandler{w: h.w, mu: h.mu, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *warnHandler) WithGroup(string) slog.Handler { return h }

// Run takes the lock, runs the command while the lease is renewed, and
// releases the lock when the command exits. It returns nil when the command
// exited 0, else an *ExitError whose Code is the status renewlock must exit
// with (the command's, or one of the Exit constants with a message).
func Run(ctx context.Context, c *RunConfig) error {
	if err := c.Validate(); err != nil {
		return err
	}
	// Catch signals from the start: one that arrives while waiting for the
	// lock aborts the wait; later ones go to the command.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	client, closeClient, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer closeClient()

	start := time.Now()
	t, err := c.acquire(ctx, client, sigs)
	if err != nil {
		return err
	}
	if c.Verbose {
		fmt.Fprintf(c.Stderr, "renewlock: acquired %s after %s\n", t.got, ms(time.Since(start)))
	}
	res := c.supervise(t, sigs)
	return c.finish(t, res)
}

// connect checks that Redis answers and returns a renewlock client for the
// command's lease, and a function that closes it.
func (c *RunConfig) connect(ctx context.Context) (*renewlock.Client, func(), error) {
	rdb, err := NewRedisClient(c.Redis)
	if err != nil {
		return nil, nil, err
	}
	if err := ping(ctx, rdb, c.Redis); err != nil {
		rdb.Close()
		return nil, nil, err
	}
	client, err := renewlock.New(rdb,
		renewlock.WithTTL(c.TTL),
		renewlock.WithSafetyMargin(c.margin()),
		renewlock.WithKeyPrefix(c.Prefix),
		renewlock.WithLogger(warnLogger(c.Stderr)),
	)
	if err != nil {
		rdb.Close()
		return nil, nil, Usagef("%s", libErr(err))
	}
	return client, func() { client.Close(); rdb.Close() }, nil
}

// A tenure is what the command runs under: a lock, one of a semaphore's
// permits (run --limit) or a leadership (elect). supervise and finish run
// the command, stop it on a loss and end the tenure the same way for all.
type tenure struct {
	done    <-chan struct{}
	err     func() error
	release func(context.Context) error // Release, or Resign
	env     []string                    // RENEWLOCK_* for the command
	// For messages: what is held ("the lease on KEY (token N)"), what was
	// taken ("KEY (token N)") and the ending ("releasing KEY").
	what, got, releasing, released string
}

// Done and Err are those of the lock or leadership.
func (t *tenure) Done() <-chan struct{} { return t.done }
func (t *tenure) Err() error            { return t.err() }

// lockTenure is the tenure of l, the lock (or permit) Key.
func (c *RunConfig) lockTenure(l *renewlock.Lock) *tenure {
	key, tok := displayKey(c.Key), strconv.FormatUint(l.Token(), 10)
	t := &tenure{
		done: l.Done(), err: l.Err, release: l.Release,
		env:  []string{EnvKey + "=" + c.Key, EnvToken + "=" + tok},
		what: "the lease on " + key + " (token " + tok + ")", got: key + " (token " + tok + ")",
		releasing: "releasing " + key, released: "released " + key,
	}
	if c.Limit > 0 {
		t.env = append(t.env, EnvLimit+"="+strconv.Itoa(c.Limit))
		t.what = fmt.Sprintf("the lease on a permit of %s (token %s)", key, tok)
		t.got = fmt.Sprintf("a permit of %s (limit %d, token %s)", key, c.Limit, tok)
		t.releasing, t.released = "releasing the permit of "+key, "released the permit of "+key
	}
	return t
}

// noWait reports whether to give up at once instead of waiting.
func (c *RunConfig) noWait() bool { return c.NoWait || (c.Wait.Given && c.Wait.D == 0) }

// acquire takes the lock, or one of the semaphore's permits, as --wait /
// --no-wait say, giving up when a signal arrives.
func (c *RunConfig) acquire(ctx context.Context, client *renewlock.Client, sigs <-chan os.Signal) (*tenure, error) {
	noWait := c.noWait()
	t, sig, err := c.await(ctx, sigs, func(ctx context.Context) (*tenure, error) {
		var lock *renewlock.Lock
		var err error
		switch {
		case c.Limit > 0 && noWait:
			lock, err = client.TryAcquirePermit(ctx, c.Key, c.Limit)
		case c.Limit > 0:
			lock, err = client.AcquirePermit(ctx, c.Key, c.Limit)
		case noWait:
			lock, err = client.TryAcquire(ctx, c.Key)
		default:
			lock, err = client.Acquire(ctx, c.Key)
		}
		if err != nil {
			return nil, err
		}
		return c.lockTenure(lock), nil
	})
	if sig != nil {
		return nil, exitf(ExitSignalBase+signum(sig), "interrupted by %s while waiting for %s", signalName(sig), displayKey(c.Key))
	}
	switch {
	case err == nil:
		return t, nil
	case c.Limit > 0 && errors.Is(err, renewlock.ErrRejected) && errors.Is(err, renewlock.ErrInvalidArgument):
		return nil, c.limitMismatch(err)
	case errors.Is(err, renewlock.ErrRejected): // a permission problem, a key that is no lock: waiting cannot fix it
		return nil, redisFailure("acquiring "+displayKey(c.Key), c.Redis, err)
	case errors.Is(err, renewlock.ErrNotAcquired):
		note, probeErr := c.holderNote(ctx, client)
		if probeErr != nil {
			return nil, probeErr
		}
		if c.Limit > 0 {
			return nil, exitf(ExitNotAcquired, "no permit of %s is free%s; not waiting (--no-wait)", displayKey(c.Key), note)
		}
		return nil, exitf(ExitNotAcquired, "%s is not free%s; not waiting (--no-wait)", displayKey(c.Key), note)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		// Acquire retries Redis errors until the deadline, so a timeout may
		// hide an outage: probe once to tell the two apart.
		note, probeErr := c.holderNote(ctx, client)
		if probeErr != nil {
			return nil, probeErr
		}
		what := displayKey(c.Key)
		if c.Limit > 0 {
			what = "a permit of " + what
		}
		return nil, exitf(ExitNotAcquired, "%s not acquired within --wait %v%s", what, c.Wait.D, note)
	case errors.Is(err, renewlock.ErrInvalidArgument):
		return nil, Usagef("%s", libErr(err))
	}
	return nil, exitf(ExitUnavailable, "acquiring %s at %s: %s", displayKey(c.Key), c.Redis.Redacted(), redactErr(err, c.Redis))
}

// limitOf finds the limit in the library's "limit mismatch" error.
var limitOf = regexp.MustCompile(`is a semaphore of limit (\d+)`)

// limitMismatch is the exit for a --limit that differs from the one the
// semaphore's holders use: a disagreement between the runs of one key,
// which waiting does not fix, hence ExitConfig (like a name that is
// another kind of lock).
func (c *RunConfig) limitMismatch(err error) error {
	theirs := "another limit"
	if m := limitOf.FindStringSubmatch(err.Error()); m != nil {
		theirs = "--limit " + m[1]
	}
	return exitf(ExitConfig, "--limit %d disagrees with the semaphore %s, which its holders took with %s; every run of one key must give the same --limit (it can change once nobody holds or waits for a permit)",
		c.Limit, displayKey(c.Key), theirs)
}

// await runs take — an acquisition or a campaign — on a context that a
// signal cancels, bounded by --wait when given. If a signal ended it, it
// returns the signal, having released what take got meanwhile.
func (c *RunConfig) await(ctx context.Context, sigs <-chan os.Signal, take func(context.Context) (*tenure, error)) (*tenure, os.Signal, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.Wait.Given && c.Wait.D > 0 {
		actx, cancel = context.WithTimeout(actx, c.Wait.D)
		defer cancel()
	}
	interrupted := make(chan os.Signal, 1)
	stop := make(chan struct{})
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		select {
		case s := <-sigs:
			interrupted <- s
			cancel()
		case <-stop:
		}
	}()
	t, err := take(actx)
	close(stop)
	<-watcherDone

	select {
	case s := <-interrupted:
		if t != nil {
			c.release(t)
		}
		return nil, s, err
	default:
	}
	return t, nil, err
}

// holderNote describes the current holder for a "not acquired" message. It
// returns an ExitUnavailable error if Redis does not answer.
func (c *RunConfig) holderNote(ctx context.Context, client *renewlock.Client) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	info, err := client.Inspect(ctx, c.Key)
	switch {
	case errors.Is(err, renewlock.ErrNotHeld):
		return " (it is free now)", nil
	case err != nil:
		return "", redisFailure("acquiring "+displayKey(c.Key), c.Redis, err)
	}
	if len(info.Holders) > 0 {
		var hs []string
		first := info.Holders[0].TTL
		for _, h := range info.Holders {
			hs = append(hs, fmt.Sprintf("%s (token %d)", displayKey(h.Holder), h.Token))
			first = min(first, h.TTL)
		}
		what := info.Kind
		if info.Limit > 0 {
			what = fmt.Sprintf("%s of limit %d", info.Kind, info.Limit)
		}
		return fmt.Sprintf(": the %s is held by %s; the first lease ends in %v", what, strings.Join(hs, ", "), first.Round(time.Millisecond)), nil
	}
	return fmt.Sprintf(": held by %s (owner %s, token %d, lease ends in %v)", info.Holder, ownerPrefix(info.Owner), info.Token, info.TTL.Round(time.Millisecond)), nil
}

// childResult is how the command ended.
type childResult struct {
	startErr error     // the command could not be started
	exit     childExit // how it ended, when it ran
	lost     error     // the lease was lost while it ran, or before it could start
	// notStarted: the lease was lost before the command started, so it was
	// not; lostAtStart: lost as it started, so it was killed at once.
	notStarted, lostAtStart bool
}

// resumeSettle is how long renewlock waits, once continued after it
// stopped itself for the command (job control), before it continues the
// command: a stop that outlasted the lease makes the lease lost as soon as
// the renewal loop runs again, and the command must then not run on.
const resumeSettle = 20 * time.Millisecond

// Test hooks, called right before and right after the command starts.
var testHookBeforeStart, testHookAfterStart func(*tenure)

// supervise runs the command until it exits, forwarding signals to it and
// stopping every process it started if the tenure (lease, leadership) is
// lost. run and elect both run their command through it.
func (c *RunConfig) supervise(lock *tenure, sigs chan os.Signal) childResult {
	cmd := exec.Command(c.Command[0], c.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	cmd.Env = append(append([]string(nil), c.Environ...), lock.env...)
	ch := newChild(cmd, c.Stdin, c.Stdout, c.Stderr, sigs)

	// Never start the command without a lease: acquiring, or a slow
	// machine, may have taken the time the lease had.
	if testHookBeforeStart != nil {
		testHookBeforeStart(lock)
	}
	select {
	case <-lock.Done():
		return childResult{lost: lock.Err(), notStarted: true}
	default:
	}
	if err := ch.start(); err != nil {
		return childResult{startErr: err}
	}
	if testHookAfterStart != nil {
		testHookAfterStart(lock)
	}
	var res childResult
	select {
	case <-lock.Done(): // lost while it started: it gets no grace
		res.lost, res.lostAtStart = lock.Err(), true
		fmt.Fprintf(c.Stderr, "renewlock: %s as the command started; killing it\n", libErr(res.lost))
		ch.killAll()
		res.exit = <-ch.exited
		ch.ended()
		ch.killAll()
		return res
	default:
	}

	send := func(sig syscall.Signal) {
		if err := ch.forward(sig); err != nil && !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH) {
			fmt.Fprintf(c.Stderr, "renewlock: sending %s to the command: %v\n", signalName(sig), err)
		}
	}
	var (
		done            = lock.Done()
		killC, resumeC  <-chan time.Time
		killer, resumer *time.Timer
	)
	defer func() {
		for _, t := range []*time.Timer{killer, resumer} {
			if t != nil {
				t.Stop()
			}
		}
	}()
	for {
		select {
		case res.exit = <-ch.exited:
			ch.ended()
			if res.lost != nil {
				// No lease: nothing the command left behind may keep running.
				ch.killAll()
			}
			return res
		case s := <-sigs:
			sig, _ := s.(syscall.Signal)
			if ch.sharedKeyboard && (sig == syscall.SIGINT || sig == syscall.SIGQUIT) {
				continue // the terminal sent it to the command too
			}
			send(sig)
		case sig := <-ch.stopped:
			if res.lost == nil {
				ch.onStopped(sig)
			}
		case <-ch.conts:
			if ch.onContinued() {
				resumer = time.NewTimer(resumeSettle)
				resumeC = resumer.C
			}
		case <-resumeC:
			resumeC = nil
			ch.resume(res.lost != nil)
		case <-done:
			done = nil
			res.lost = lock.Err()
			g := c.grace()
			fmt.Fprintf(c.Stderr, "renewlock: %s; sending SIGTERM to the command and every process it started, SIGKILL in %v\n", libErr(res.lost), g)
			ch.terminate()
			killer = time.NewTimer(g)
			killC = killer.C
		case <-killC:
			killC = nil
			fmt.Fprintf(c.Stderr, "renewlock: the command is still running %v after SIGTERM; sending SIGKILL to every process it started\n", c.grace())
			ch.killAll()
		}
	}
}

// finish releases the lock (resigns the leadership) and turns the
// command's end into renewlock's exit status.
func (c *RunConfig) finish(lock *tenure, res childResult) error {
	relErr := c.release(lock)
	switch {
	case res.notStarted:
		return exitf(ExitLeaseLost, "%s was lost before the command could start, so it was not started: %s", lock.what, libErr(res.lost))
	case res.startErr != nil:
		code := ExitCannotExecute
		if errors.Is(res.startErr, exec.ErrNotFound) || errors.Is(res.startErr, fs.ErrNotExist) {
			code = ExitCommandNotFound
		}
		return exitf(code, "cannot run %s: %v", strquote(c.Command[0]), res.startErr)
	case res.exit.err != nil:
		return exitf(ExitSoftware, "waiting for the command: %v", res.exit.err)
	case res.lostAtStart:
		return exitf(ExitLeaseLost, "%s was lost as the command started, so it was killed at once (%s)", lock.what, res.exit.how)
	case res.lost != nil:
		return exitf(ExitLeaseLost, "%s was lost while the command ran, so it was stopped (%s)", lock.what, res.exit.how)
	case errors.Is(relErr, renewlock.ErrLeaseLost):
		return exitf(ExitLeaseLost, "%s was lost before the command's end was released (%s): %s", lock.what, res.exit.how, libErr(relErr))
	}
	if relErr != nil {
		fmt.Fprintf(c.Stderr, "renewlock: warning: %s: %s; the lease expires by itself within %v\n", lock.releasing, redactMsg(libErr(relErr), c.Redis), c.TTL)
	} else if c.Verbose {
		fmt.Fprintf(c.Stderr, "renewlock: %s (%s)\n", lock.released, res.exit.how)
	}
	if res.exit.code == 0 {
		return nil
	}
	return &ExitError{Code: res.exit.code}
}

// release gives the lock up (resigns) on a fresh context: the command has
// ended, and even an interrupted renewlock must not leave the lease to
// expire.
func (c *RunConfig) release(lock *tenure) error {
	ctx, cancel := context.WithTimeout(context.Background(), min(c.TTL, MaxReleaseTime))
	defer cancel()
	return lock.release(ctx)
}

// libErr is the text of a library error without its "renewlock: " prefix,
// for messages that carry the prefix already.
func libErr(err error) string { return strings.TrimPrefix(err.Error(), "renewlock: ") }

// signalName names a signal the way kill(1) does (SIGTERM), where known.
func signalName(s os.Signal) string {
	if n, ok := s.(syscall.Signal); ok {
		if name := sysSignalName(n); name != "" {
			return name
		}
	}
	return s.String()
}

func signum(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return int(n)
	}
	return 0
}

// ownerPrefix shortens an owner id for display: enough to tell holders
// apart, not enough to act as the owner.
func ownerPrefix(owner string) string { return owner[:min(8, len(owner))] }
