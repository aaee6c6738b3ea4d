package main

import (
	"context"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/cli"
)

var subcommands = map[string]bool{"run": true, "status": true, "list": true, "release": true, "watch": true, "exporter": true, "demo": true}

// globals are the flags every subcommand takes.
type globals struct {
	redis  string
	prefix string
	conn   cli.ConnFlags
}

// target resolves the Redis URL, the user, password and TLS settings from
// the flags and the environment.
func (g *globals) target(cmd *cobra.Command) (cli.RedisTarget, error) {
	t, err := cli.ResolveRedis(g.redis, cmd.Flags().Changed("redis"), os.Getenv)
	if err != nil {
		return t, err
	}
	g.conn.Changed = cmd.Flags().Changed
	if t.Conn, err = cli.ResolveConn(g.conn, os.Getenv); err != nil {
		return t, err
	}
	// A bad URL or certificate file is a usage error before any work.
	if err := t.Validate(); err != nil {
		return t, err
	}
	return t, nil
}

// connFlagGiven returns the first user, password or TLS flag given on the
// command line, or "".
func connFlagGiven(cmd *cobra.Command) string {
	for _, name := range []string{cli.FlagUser, cli.FlagPass, cli.FlagPassFile, cli.FlagTLSCACert, cli.FlagTLSCert, cli.FlagTLSKey, cli.FlagTLSSNI, cli.FlagTLSInsecure} {
		if cmd.Flags().Changed(name) {
			return "--" + name
		}
	}
	return ""
}

// addConnFlags adds the user, password and TLS flags, like redis-cli's.
func addConnFlags(f *pflag.FlagSet, c *cli.ConnFlags) {
	f.StringVar(&c.User, cli.FlagUser, "", "Redis ACL `USER` (default $"+cli.EnvUser+", else the URL's)")
	f.StringVar(&c.Pass, cli.FlagPass, "", "Redis `PASSWORD`; other users can see it in ps: prefer $"+cli.EnvPass+" or --"+cli.FlagPassFile)
	f.StringVar(&c.PassFile, cli.FlagPassFile, "", "read the Redis password from the first line of `FILE`")
	f.StringVar(&c.TLSCACert, cli.FlagTLSCACert, "", "verify the server's certificate with the CA certificates in `FILE` (PEM) instead of the system's; turns TLS on")
	f.StringVar(&c.TLSCert, cli.FlagTLSCert, "", "client certificate `FILE` (PEM) for mutual TLS; with --"+cli.FlagTLSKey)
	f.StringVar(&c.TLSKey, cli.FlagTLSKey, "", "private key `FILE` (PEM) of the client certificate")
	f.StringVar(&c.TLSSNI, cli.FlagTLSSNI, "", "server `NAME` sent in the TLS handshake and checked against the certificate (default: the URL's host)")
	f.BoolVar(&c.TLSInsecure, cli.FlagTLSInsecure, false, "do not verify the server's certificate (testing only)")
}

func newRoot(stdin, stdout, stderr *os.File) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "renewlock",
		Short: "Run commands under self-renewing Redis locks with fencing tokens",
		Long: `renewlock runs a command while holding a lock in Redis, like flock(1) for a
fleet of machines. The lease is renewed in the background while the command
runs; if it is lost, the command is stopped before another holder can get in.
The command gets a fencing token to hand to the resources it writes to.

The Redis server is taken from --redis, else $RENEWLOCK_REDIS, else
$REDIS_URL, else redis://127.0.0.1:6379. URL forms: redis://[user:pass@]host[:port][/db],
rediss://… (TLS), unix://[user:pass@]/path/to/socket[?db=N].

--user, --pass (or --pass-file) and the --tls-* flags override the URL, and
so do $RENEWLOCK_USER, $RENEWLOCK_PASS and $RENEWLOCK_TLS_CACERT, _CERT,
_KEY, _SNI, _INSECURE when the flag is not given (flag > environment > URL).
A rediss:// URL or any TLS setting turns TLS on. Passwords on the command
line are visible to other users (ps): use $RENEWLOCK_PASS or --pass-file.`,
		Example: `  # Nightly backup on every host; only one runs at a time.
  renewlock run --key nightly-backup --no-wait -- /usr/local/bin/backup.sh

  # Who holds it?
  renewlock status nightly-backup

  # A tour with a local Redis (or an embedded one), nothing to set up.
  renewlock demo`,
		Version:       buildVersion(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// The lock family's commands (family.go).
	root.AddCommand(electCmd(g, stdin, stdout, stderr))
	root.AddCommand(leaderCmd(g, stdout))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.Usagef("%v", err) })
	root.PersistentFlags().StringVar(&g.redis, "redis", "", "Redis URL (default $RENEWLOCK_REDIS, $REDIS_URL, redis://127.0.0.1:6379)")
	root.PersistentFlags().StringVar(&g.prefix, "prefix", renewlock.DefaultKeyPrefix, "key prefix in Redis; must match the prefix of every client of the lock")
	addConnFlags(root.PersistentFlags(), &g.conn)

	root.AddCommand(runCmd(g, stdin, stdout, stderr), statusCmd(g, stdout), listCmd(g, stdout), releaseCmd(g, stdout), watchCmd(g, stdin, stdout, stderr), exporterCmd(g, stderr), demoCmd(g, stdout, stderr), demoWorkerCmd(g, stdin, stdout))
	return root
}

func runCmd(g *globals, stdin, stdout, stderr *os.File) *cobra.Command {
	c := &cli.RunConfig{TTL: cli.DefaultTTL, Stdin: stdin, Stdout: stdout, Stderr: stderr}
	ttl := cli.Duration{D: cli.DefaultTTL}
	var limit int
	cmd := &cobra.Command{
		Use:   "run --key KEY [--limit N] [flags] -- COMMAND [ARGS...]",
		Short: "Run a command while holding a lock",
		Long: `run takes the lock KEY (waiting for it unless --no-wait or --wait says
otherwise), runs COMMAND with $RENEWLOCK_KEY and $RENEWLOCK_TOKEN (the fencing
token, decimal) in its environment, renews the lease while it runs and
releases the lock when it exits. Stdin, stdout and stderr pass through;
SIGINT, SIGTERM and SIGHUP are forwarded to it.

If the lease is lost (Redis unreachable until the lease's validity ran out,
or the lock force-released), COMMAND and every process it started get
SIGTERM at once and SIGKILL after --grace, both before Redis can let another
holder in; COMMAND is never started once the lease is lost. If renewlock
itself dies, even by SIGKILL, the kernel kills COMMAND too (Linux, FreeBSD).
On a terminal, COMMAND runs as the terminal's foreground process group:
Ctrl-C and Ctrl-Z go to it.

With --limit N, run takes one of N permits of the semaphore KEY instead of
the lock KEY, so that up to N commands run at once (like consul lock -n);
everything else is the same, and COMMAND also gets $RENEWLOCK_LIMIT. Every
run of one KEY must give the same --limit: one that differs from the
holders' exits 78. A name is one kind of lock: KEY with --limit and KEY
without are different locks that cannot be used at the same time.

Exit status: COMMAND's own (128+N if it died of signal N); 75 the lock was not
acquired (held, or all N permits taken, with --no-wait or after --wait); 76
the lease was lost while COMMAND ran (or before it could start); 69 Redis
unavailable; 77 permission
problem (ACL denial, wrong password: see the README, "Least privilege"); 78
Redis rejected the lock for another reason retrying cannot fix (e.g. a key
that is not a lock at its name, or another kind of lock; a --limit that
differs from the holders'); 64 usage error; 70 internal error; 126/127
COMMAND could not be run / was not found.`,
		Example: `  # Cron: skip this run if another host is already running it.
  */5 * * * * renewlock run -k reports -n -- /opt/reports/run.sh

  # Wait at most two minutes for a deploy lock, lease of 30 s.
  renewlock run --key deploy/web --wait 2m --ttl 30s -- ./deploy.sh

  # Pass the fencing token on to the protected resource.
  renewlock run --key migrate -- sh -c 'migrate --fence "$RENEWLOCK_TOKEN"'

  # At most 3 encoders at once across the fleet.
  renewlock run --key encoders --limit 3 -- ./encode.sh`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cli.Usagef("no command to run; usage: renewlock run --key KEY [flags] -- COMMAND [ARGS...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.target(cmd)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("limit") && limit < 1 {
				return cli.Usagef("--limit %d: a semaphore has at least 1 permit", limit)
			}
			c.Redis, c.Prefix, c.TTL, c.Command, c.Limit = t, g.prefix, ttl.D, args, limit
			c.Environ = os.Environ()
			return cli.Run(context.Background(), c)
		},
	}
	f := cmd.Flags()
	// Everything after COMMAND belongs to it, with or without "--".
	f.SetInterspersed(false)
	f.StringVarP(&c.Key, "key", "k", "", "name of the lock (required)")
	f.VarP(&ttl, "ttl", "t", "lease length: how long Redis keeps the lock if renewlock stops renewing it (min 100ms)")
	f.VarP(&c.Wait, "wait", "w", "how long to wait for the lock, e.g. 30s or 30 (default: forever; 0 = do not wait)")
	f.BoolVarP(&c.NoWait, "no-wait", "n", false, "fail at once (exit 75) if the lock is held")
	f.Var(&c.Grace, "grace", "after a lost lease, how long COMMAND has between SIGTERM and SIGKILL (default ttl/10, at most 5s)")
	f.BoolVarP(&c.Verbose, "verbose", "v", false, "report acquisition and release on stderr")
	f.IntVar(&limit, "limit", 0, "take one of `N` permits of the semaphore KEY instead of the lock KEY (1–1000; every run of KEY must give the same N)")
	return cmd
}

func opFlags(cmd *cobra.Command, o *cli.OpConfig) {
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON for scripts")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", cli.DefaultOpTimeout, "give up on Redis after this long")
}

func statusCmd(g *globals, stdout *os.File) *cobra.Command {
	o := &cli.OpConfig{Stdout: stdout}
	cmd := &cobra.Command{
		Use:   "status KEY",
		Short: "Show who holds a lock",
		Long: `status shows the holder of KEY: its description (host:pid by default), the
first characters of its owner id, its fencing token, the remaining lease and
when it was acquired; also the kind of lock (mutex, election, semaphore,
read-write lock), an election's leader value, and a semaphore's limit and
every holder of a semaphore or read-write lock. Exit status: 0 held, 1 not held, 69 Redis unavailable,
77 permission problem (ACL denial, wrong password), 78 rejected by Redis.`,
		Example: `  renewlock status nightly-backup
  renewlock status nightly-backup --json | jq .token`,
		Args: exactlyOne("status", "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.target(cmd)
			if err != nil {
				return err
			}
			o.Redis, o.Prefix = t, g.prefix
			return cli.Status(o, args[0])
		},
	}
	opFlags(cmd, o)
	return cmd
}

func listCmd(g *globals, stdout *os.File) *cobra.Command {
	o := &cli.OpConfig{Stdout: stdout}
	cmd := &cobra.Command{
		Use:   "list [PATTERN]",
		Short: "List held locks",
		Long: `list shows every held lock whose key matches the glob PATTERN (Redis MATCH
syntax: * ? [abc]; default all), sorted by key, with the same details as
status: one row per holder (a semaphore or a read-write lock has several),
with its kind (a semaphore's as "semaphore HELD/LIMIT"). It scans the keyspace incrementally (SCAN), so it does not block Redis.
Exit status: 0 (also when nothing matches), 69 Redis unavailable, 77
permission problem (ACL denial, wrong password), 78 rejected by Redis.`,
		Example: `  renewlock list
  renewlock list 'deploy/*' --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return cli.Usagef("list takes at most one PATTERN, got %d arguments (quote the pattern so the shell does not expand it)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.target(cmd)
			if err != nil {
				return err
			}
			o.Redis, o.Prefix = t, g.prefix
			pattern := ""
			if len(args) == 1 {
				pattern = args[0]
			}
			return cli.List(o, pattern)
		},
	}
	opFlags(cmd, o)
	return cmd
}

func releaseCmd(g *globals, stdout *os.File) *cobra.Command {
	o := &cli.OpConfig{Stdout: stdout}
	var force bool
	cmd := &cobra.Command{
		Use:   "release --force KEY",
		Short: "Remove a lock's holder (operators' escape hatch)",
		Long: `release --force removes whoever holds KEY and wakes its waiters; it prints
what it removed. Use it for a holder known to be dead whose lease is long. A
holder that is still alive learns of the loss at its next renewal (a
renewlock run stops its command then), but may act until that moment: only
fencing tokens protect the resource from it. Exit status: 0 removed, 1 not
held, 69 Redis unavailable, 77 permission problem (ACL denial, wrong
password), 78 rejected by Redis (e.g. a key that is not a lock).`,
		Example: `  renewlock release --force nightly-backup`,
		Args:    exactlyOne("release", "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !force {
				return cli.Usagef("release removes the lease of whoever holds %q, which may still be running; confirm with --force", args[0])
			}
			t, err := g.target(cmd)
			if err != nil {
				return err
			}
			o.Redis, o.Prefix = t, g.prefix
			return cli.ForceRelease(o, args[0])
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "required: confirm removing another process's lease")
	opFlags(cmd, o)
	return cmd
}

func watchCmd(g *globals, stdin, stdout, stderr *os.File) *cobra.Command {
	w := &cli.WatchConfig{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	interval := cli.Duration{D: cli.DefaultWatchInterval}
	cmd := &cobra.Command{
		Use:   "watch [PATTERN]",
		Short: "A live view of the held locks, like top",
		Long: `watch shows the held locks whose key matches the glob PATTERN (default all)
on the terminal and refreshes the view every --interval: key, holder, fencing
token, how long it has been held (age, by the Redis server's clock), the
lease left (TTL) and the waiters in its queue. Longest held first; s changes
the order (age, key, ttl, waiters), r refreshes now, q or Ctrl-C quits.

For scripts: --once prints one snapshot as a table; --json prints one JSON
object per line per held lock at every refresh (key, holder, token, ttl_ms,
age_ms, waiters, …; with --once, one refresh). A --json stream goes on
through Redis outages (warnings on stderr) until interrupted.

Exit status: 0 (also when quit with q, Ctrl-C or SIGTERM), 64 usage error
(also: not a terminal without --once or --json), 69 Redis unavailable at
the start (or at the --once snapshot), 77 permission problem, 78 rejected by
Redis.`,
		Example: `  renewlock watch
  renewlock watch 'deploy/*' --interval 500ms
  renewlock watch --once
  renewlock watch --json | jq -c 'select(.age_ms > 3600000)'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return cli.Usagef("watch takes at most one PATTERN, got %d arguments (quote the pattern so the shell does not expand it)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.target(cmd)
			if err != nil {
				return err
			}
			w.Redis, w.Prefix, w.Interval = t, g.prefix, interval.D
			if len(args) == 1 {
				w.Pattern = args[0]
			}
			return cli.Watch(context.Background(), w)
		},
	}
	f := cmd.Flags()
	f.VarP(&interval, "interval", "i", "time between refreshes (min 100ms)")
	f.StringVar(&w.Sort, "sort", cli.WatchSorts[0], "order: age (longest held first), key, ttl (least left first) or waiters (most first)")
	f.BoolVar(&w.Once, "once", false, "print one snapshot and exit")
	f.BoolVar(&w.JSON, "json", false, "print one JSON object per line per held lock per refresh")
	f.DurationVar(&w.Timeout, "timeout", cli.DefaultOpTimeout, "give up on one refresh after this long")
	return cmd
}

func exporterCmd(g *globals, stderr *os.File) *cobra.Command {
	e := &cli.ExporterConfig{Stderr: stderr}
	cmd := &cobra.Command{
		Use:   "exporter --listen ADDR [PATTERN]",
		Short: "Serve Prometheus metrics about the held locks",
		Long: `exporter serves /metrics in the Prometheus text format on --listen. Every
scrape reads the held locks whose key matches the glob PATTERN (default all)
from Redis (SCAN, as list does) and reports:

  renewlock_up                        1 if reading Redis worked, else 0
  renewlock_scrape_errors_total{kind} failed reads: unavailable, permission, rejected
  renewlock_scrape_duration_seconds   how long the read took
  renewlock_held_locks                held locks
  renewlock_waiters                   places in their queues, added up
  renewlock_max_waiters               the longest queue
  renewlock_oldest_holder_age_seconds how long the longest-held lock has been held

These have no per-key labels, so the number of series stays fixed whatever
the keys. --per-key N adds renewlock_lock_age_seconds, renewlock_lock_ttl_seconds
and renewlock_lock_waiters with a key label for the N longest-held locks (and
renewlock_per_key_omitted_locks): keep N small.

Redis unreachable at the start or later is reported as renewlock_up 0, not an
exit. SIGINT or SIGTERM stop it gracefully. Exit status: 0 stopped by a
signal, 64 usage error, 69 cannot listen on ADDR, 77 permission problem
at the start (ACL denial, wrong password), 78 rejected by Redis.`,
		Example: `  renewlock exporter --listen :9721
  renewlock exporter --listen 127.0.0.1:9721 'jobs/*' --per-key 20

  # Prometheus alert: a lock held for more than 3 hours
  renewlock_oldest_holder_age_seconds > 3 * 3600`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return cli.Usagef("exporter takes at most one PATTERN, got %d arguments (quote the pattern so the shell does not expand it)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.target(cmd)
			if err != nil {
				return err
			}
			e.Redis, e.Prefix = t, g.prefix
			if len(args) == 1 {
				e.Pattern = args[0]
			}
			return cli.Exporter(context.Background(), e)
		},
	}
	f := cmd.Flags()
	f.StringVar(&e.Listen, "listen", "", "`ADDR` to serve on, HOST:PORT or :PORT (required; port 0 picks a free one)")
	f.StringVar(&e.Path, "path", cli.DefaultMetricsPath, "HTTP path of the metrics")
	f.IntVar(&e.PerKey, "per-key", 0, "also export series with a key label for the `N` longest-held locks (0: none)")
	f.DurationVar(&e.Timeout, "timeout", cli.DefaultExporterTimeout, "give up on Redis after this long at a scrape")
	return cmd
}

func demoCmd(g *globals, stdout, stderr *os.File) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "A self-contained tour: contention, renewal, a crash and fencing",
		Long: `demo shows, as a timeline, several worker processes contending for one lock,
the watchdog keeping a long job's lease alive, a holder crashing and the next
taking over when its lease expires, and a stale holder's write rejected by its
fencing token. It needs nothing but this binary: without --redis (or
$RENEWLOCK_REDIS) it starts a redis-server on a free loopback port if one is
installed, else an embedded Redis-compatible server (miniredis). $REDIS_URL is
ignored here, so the demo never touches a Redis you did not name. It takes
about 10 seconds.`,
		Example: `  go run ./cmd/renewlock demo
  renewlock demo --redis redis://127.0.0.1:6379/15`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d := &cli.DemoConfig{TTL: ttl, Prefix: g.prefix, Stdout: stdout, Stderr: stderr}
			if !cmd.Flags().Changed("redis") && os.Getenv(cli.EnvRedis) == "" {
				if f := connFlagGiven(cmd); f != "" {
					return cli.Usagef("demo: %s applies to the Redis server named by --redis (or $%s); without one the demo starts its own", f, cli.EnvRedis)
				}
			} else {
				t, err := g.target(cmd)
				if err != nil {
					return err
				}
				d.Redis = &t
			}
			self, err := os.Executable()
			if err != nil {
				return cli.Usagef("demo: cannot find its own executable to start workers: %v", err)
			}
			d.Self = self
			return cli.Demo(context.Background(), d)
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", cli.DemoTTL, "lease length used in the demo")
	return cmd
}

// demoWorkerCmd is a worker process of the demo, driven over stdin/stdout.
func demoWorkerCmd(g *globals, stdin, stdout *os.File) *cobra.Command {
	w := &cli.DemoWorkerConfig{Stdin: stdin, Stdout: stdout}
	cmd := &cobra.Command{
		Use:    cli.DemoWorkerCommand,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.target(cmd)
			if err != nil {
				return err
			}
			w.Redis, w.Prefix = t, g.prefix
			return cli.DemoWorker(context.Background(), w)
		},
	}
	cmd.Flags().StringVar(&w.Name, "name", "worker", "worker name, stored as the holder")
	cmd.Flags().StringVar(&w.Key, "key", "", "lock key")
	cmd.Flags().DurationVar(&w.TTL, "ttl", cli.DemoTTL, "lease length")
	cmd.Flags().StringVar(&w.Register, "register", "", "key of the fenced register")
	return cmd
}

// exactlyOne accepts exactly one argument, the WHAT of command name; any
// other count is a usage error that says how many came.
func exactlyOne(name, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return cli.Usagef("%s takes exactly one %s, got %d arguments", name, what, len(args))
		}
		return nil
	}
}
