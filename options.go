package renewlock

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"time"
)

// Limits on option values. They exist so that a mistyped value fails loudly
// instead of producing a lock that renews in a hot loop or expires before its
// first renewal.
const (
	// DefaultTTL is the lease length when WithTTL is not given.
	DefaultTTL = 10 * time.Second
	// MinTTL is the shortest lease accepted by WithTTL.
	MinTTL = 100 * time.Millisecond
	// MaxTTL is the longest lease accepted by WithTTL. The TTL only bounds
	// how long a crashed holder blocks others; a live holder keeps its lock
	// as long as it likes by renewing.
	MaxTTL = 24 * time.Hour
	// MinRenewInterval is the shortest renew interval accepted.
	MinRenewInterval = 10 * time.Millisecond
	// DefaultDrift is the clock drift factor when WithDrift is not given.
	DefaultDrift = 0.01
	// DefaultSafetyMargin is subtracted from every validity deadline when
	// WithSafetyMargin is not given. It absorbs timer and scheduling lateness
	// in the holder so the loss signal still comes before Redis expires the key.
	DefaultSafetyMargin = 10 * time.Millisecond
	// DefaultKeyPrefix is put in front of every key in Redis.
	DefaultKeyPrefix = "renewlock:"
)

// An Option configures a Client (when passed to New) or a single acquisition
// (when passed to Acquire, TryAcquire or Do, where it overrides the Client's
// value for that call only). Invalid values are reported as an error wrapping
// ErrInvalidArgument by the call that receives them.
type Option func(*config)

// config is the resolved set of options for one client or one acquisition.
type config struct {
	ttl           time.Duration
	renewInterval time.Duration // 0: ttl/3
	drift         float64
	margin        time.Duration
	prefix        string
	logger        *slog.Logger
	holder        string
	observer      *Observer
	// replicas > 0: WAIT replicas replicaTimeout after each write that
	// must count (WithReplicaAck).
	replicas       int
	replicaTimeout time.Duration
}

func defaultConfig() config {
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	return config{
		ttl:    DefaultTTL,
		drift:  DefaultDrift,
		margin: DefaultSafetyMargin,
		prefix: DefaultKeyPrefix,
		logger: slog.Default(),
		holder: fmt.Sprintf("%s:%d", host, os.Getpid()),
	}
}

// WithTTL sets the lease length: how long Redis keeps the lock if the holder
// stops renewing it (crash, partition). Default: DefaultTTL (10 s); minimum
// MinTTL. A longer TTL means a crashed holder blocks others for longer; a
// shorter one means renewals must get through more often. Maximum MaxTTL.
// Redis keeps the lease in whole milliseconds, so the TTL is truncated to
// milliseconds.
func WithTTL(ttl time.Duration) Option {
	return func(c *config) { c.ttl = ttl }
}

// WithRenewInterval sets how often the holder extends its lease. Default:
// TTL/3, so two renewals in a row may fail before the lease is in danger. It
// must be at least MinRenewInterval and shorter than the validity period
// TTL·(1−drift)−margin.
func WithRenewInterval(d time.Duration) Option {
	return func(c *config) { c.renewInterval = d }
}

// WithDrift sets the assumed bound on the rate difference between the
// holder's clock and Redis's clock, as a fraction in [0, 0.5). The validity
// deadline is shortened by TTL·drift. Default: DefaultDrift (0.01).
func WithDrift(drift float64) Option {
	return func(c *config) { c.drift = drift }
}

// WithSafetyMargin sets a fixed time subtracted from every validity deadline,
// on top of the drift, so the holder is told of a possible loss this long
// before Redis can expire the key. Default: DefaultSafetyMargin (10 ms).
func WithSafetyMargin(d time.Duration) Option {
	return func(c *config) { c.margin = d }
}

// WithKeyPrefix sets the string put in front of every key in Redis (and of
// the release notification channel). Default: DefaultKeyPrefix ("renewlock:").
// All clients that contend for a key must use the same prefix.
func WithKeyPrefix(prefix string) Option {
	return func(c *config) { c.prefix = prefix }
}

// WithLogger sets where renewal failures and lease losses are logged (at
// Warn level). Default: slog.Default(). A nil logger turns logging off; the
// holder still learns of every loss through Lock.Done and Lock.Err.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			l = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		c.logger = l
	}
}

// WithHolder sets the free-form description of the holder stored next to the
// lock in Redis, shown to operators by Inspect and the renewlock CLI.
// Default: "HOSTNAME:PID". It is informational only; ownership is decided by
// a random owner id.
func WithHolder(holder string) Option {
	return func(c *config) { c.holder = holder }
}

func (c *config) apply(opts []Option) {
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
}

// interval is the renew interval in force: the explicit one, or TTL/3.
func (c *config) interval() time.Duration {
	if c.renewInterval != 0 {
		return c.renewInterval
	}
	return c.ttl / 3
}

// validity is how long after sending a successful acquire or renew the
// holder may consider itself the owner.
func (c *config) validity() time.Duration {
	return time.Duration(float64(c.ttl)*(1-c.drift)) - c.margin
}

// validate checks the timing rules and names the offending value.
func (c *config) validate() error {
	if c.ttl < MinTTL {
		return fmt.Errorf("%w: ttl %v is below the minimum %v", ErrInvalidArgument, c.ttl, MinTTL)
	}
	c.ttl = c.ttl.Truncate(time.Millisecond)
	if c.ttl > MaxTTL {
		return fmt.Errorf("%w: ttl %v is above the maximum %v", ErrInvalidArgument, c.ttl, MaxTTL)
	}
	if math.IsNaN(c.drift) || c.drift < 0 || c.drift >= 0.5 {
		return fmt.Errorf("%w: drift %v is outside [0, 0.5)", ErrInvalidArgument, c.drift)
	}
	if c.margin < 0 {
		return fmt.Errorf("%w: safety margin %v is negative", ErrInvalidArgument, c.margin)
	}
	iv := c.interval()
	if c.renewInterval < 0 || iv < MinRenewInterval {
		return fmt.Errorf("%w: renew interval %v is below the minimum %v", ErrInvalidArgument, iv, MinRenewInterval)
	}
	if iv >= c.ttl {
		return fmt.Errorf("%w: renew interval %v must be shorter than ttl %v", ErrInvalidArgument, iv, c.ttl)
	}
	if c.replicas < 0 || c.replicas > MaxReplicaAck {
		return fmt.Errorf("%w: replica ack %d is outside [0, %d]", ErrInvalidArgument, c.replicas, MaxReplicaAck)
	}
	if c.replicas > 0 && (c.replicaTimeout < time.Millisecond || c.replicaTimeout >= iv) {
		return fmt.Errorf("%w: replica ack timeout %v must be at least 1ms and shorter than the renew interval %v",
			ErrInvalidArgument, c.replicaTimeout, iv)
	}
	if v := c.validity(); iv >= v {
		return fmt.Errorf("%w: renew interval %v must be shorter than the validity period %v (ttl %v × (1 − drift %v) − safety margin %v)",
			ErrInvalidArgument, iv, v, c.ttl, c.drift, c.margin)
	}
	return nil
}
