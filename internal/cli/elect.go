package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/renewlock/renewlock"
)

// Environment variables set for the command of `renewlock elect`, besides
// EnvKey (the election's name) and EnvToken (the term).
const (
	EnvTerm        = "RENEWLOCK_TERM"         // the term: the leadership's fencing token
	EnvLeaderValue = "RENEWLOCK_LEADER_VALUE" // the value campaigned with
)

// NoWaitCampaign bounds the campaign of `elect --no-wait` on an election
// that had no leader when it looked (the library has no one-shot
// campaign): a rival elected in between makes it give up after this long.
const NoWaitCampaign = 2 * time.Second

// ElectConfig is one `renewlock elect` invocation. It has run's settings,
// with Key the name of the election (--name); Limit must be 0.
type ElectConfig struct {
	RunConfig
	Value string // what to campaign with; "": HOSTNAME:PID
}

// DefaultLeaderValue is the value elect campaigns with when --value is
// not given: HOSTNAME:PID, like the holder text.
func DefaultLeaderValue() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid())
}

// Validate checks the invocation and names any bad value.
func (e *ElectConfig) Validate() error {
	if e.Key == "" {
		return Usagef("--name is required: the name of the election, e.g. --name scheduler")
	}
	if len(e.Command) == 0 {
		return Usagef("no command to run; usage: renewlock elect --name NAME [flags] -- COMMAND [ARGS...]")
	}
	if e.Limit != 0 {
		return Usagef("an election has no --limit")
	}
	return e.validateTiming()
}

func (e *ElectConfig) value() string {
	if e.Value != "" {
		return e.Value
	}
	return DefaultLeaderValue()
}

// Elect campaigns for leader of the election e.Key, runs the command while
// it leads — supervised exactly as Run supervises its command: stopped
// (SIGTERM, SIGKILL after --grace) if the leadership is lost — and resigns
// when the command exits. It returns nil when the command exited 0, else
// an *ExitError with the status renewlock must exit with.
func Elect(ctx context.Context, e *ElectConfig) error {
	if err := e.Validate(); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	client, closeClient, err := e.connect(ctx)
	if err != nil {
		return err
	}
	defer closeClient()

	start := time.Now()
	t, err := e.campaign(ctx, client, sigs)
	if err != nil {
		return err
	}
	if e.Verbose {
		fmt.Fprintf(e.Stderr, "renewlock: elected %s after %s\n", t.got, ms(time.Since(start)))
	}
	res := e.supervise(t, sigs)
	return e.finish(t, res)
}

// leaderTenure is the tenure of the leadership ld.
func (e *ElectConfig) leaderTenure(ld *renewlock.Leadership) *tenure {
	name, term := displayKey(e.Key), strconv.FormatUint(ld.Term(), 10)
	return &tenure{
		done: ld.Done(), err: ld.Err, release: ld.Resign,
		env: []string{EnvKey + "=" + e.Key, EnvToken + "=" + term, EnvTerm + "=" + term,
			EnvLeaderValue + "=" + ld.Value()},
		what:      "the leadership of " + name + " (term " + term + ")",
		got:       fmt.Sprintf("leader of %s (term %s, value %s)", name, term, strquote(ld.Value())),
		releasing: "resigning the leadership of " + name,
		released:  "resigned the leadership of " + name,
	}
}

// errLed: elect --no-wait found a leader.
type errLed struct{ note string }

func (e errLed) Error() string { return "the election has a leader" + e.note }

// campaign runs for leader as --wait / --no-wait say, giving up when a
// signal arrives.
func (e *ElectConfig) campaign(ctx context.Context, client *renewlock.Client, sigs <-chan os.Signal) (*tenure, error) {
	name, value, noWait := displayKey(e.Key), e.value(), e.noWait()
	t, sig, err := e.await(ctx, sigs, func(ctx context.Context) (*tenure, error) {
		if noWait {
			// Campaign always waits: look first, and campaign only for an
			// election that has no leader, for a bounded time.
			note, led, err := e.leaderNote(ctx, client)
			if err != nil {
				return nil, err
			}
			if led {
				return nil, errLed{note}
			}
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, NoWaitCampaign)
			defer cancel()
		}
		ld, err := client.Campaign(ctx, e.Key, value)
		if err != nil {
			return nil, err
		}
		return e.leaderTenure(ld), nil
	})
	if sig != nil {
		return nil, exitf(ExitSignalBase+signum(sig), "interrupted by %s while campaigning for leader of %s", signalName(sig), name)
	}
	var led errLed
	var exit *ExitError
	switch {
	case err == nil:
		return t, nil
	case errors.As(err, &exit): // from leaderNote
		return nil, exit
	case errors.As(err, &led):
		return nil, exitf(ExitNotAcquired, "not elected leader of %s at once%s; not waiting (--no-wait)", name, led.note)
	case errors.Is(err, renewlock.ErrRejected): // a permission problem, a name that is another kind of lock
		return nil, redisFailure("campaigning for leader of "+name, e.Redis, err)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		// Campaign retries Redis errors until the deadline, so a timeout
		// may hide an outage: probe once to tell the two apart.
		note, _, probeErr := e.leaderNote(ctx, client)
		if probeErr != nil {
			return nil, probeErr
		}
		if noWait {
			return nil, exitf(ExitNotAcquired, "not elected leader of %s at once: a rival was elected meanwhile%s; not waiting (--no-wait)", name, note)
		}
		return nil, exitf(ExitNotAcquired, "not elected leader of %s within --wait %v%s", name, e.Wait.D, note)
	case errors.Is(err, renewlock.ErrInvalidArgument):
		return nil, Usagef("%s", libErr(err))
	}
	return nil, exitf(ExitUnavailable, "campaigning for leader of %s at %s: %s", name, e.Redis.Redacted(), redactErr(err, e.Redis))
}

// leaderNote describes the election's leader for a "not elected" message;
// led is false if it has none (or the name is held as another kind of
// lock: campaigning says so). It returns an ExitUnavailable error if Redis
// does not answer.
func (e *ElectConfig) leaderNote(ctx context.Context, client *renewlock.Client) (note string, led bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	info, err := client.Inspect(ctx, e.Key)
	switch {
	case errors.Is(err, renewlock.ErrNotHeld):
		return " (it has no leader now)", false, nil
	case err != nil:
		return "", false, redisFailure("campaigning for leader of "+displayKey(e.Key), e.Redis, err)
	case info.Kind != electionKind:
		return "", false, nil
	}
	return fmt.Sprintf(": the leader is %s (holder %s, term %d, lease ends in %v)", strquote(info.Value), displayKey(info.Holder), info.Token, info.TTL.Round(time.Millisecond)), true, nil
}

// electionKind is renewlock.Info.Kind of an election.
const electionKind = "election"
