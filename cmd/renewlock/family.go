package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/renewlock/renewlock/internal/cli"
)

// The lock family's commands: elect and leader (run --limit is in run).
func init() {
	subcommands["elect"] = true
	subcommands["leader"] = true
}

func electCmd(g *globals, stdin, stdout, stderr *os.File) *cobra.Command {
	e := &cli.ElectConfig{RunConfig: cli.RunConfig{TTL: cli.DefaultTTL, Stdin: stdin, Stdout: stdout, Stderr: stderr}}
	ttl := cli.Duration{D: cli.DefaultTTL}
	cmd := &cobra.Command{
		Use:   "elect --name NAME [--value V] [flags] -- COMMAND [ARGS...]",
		Short: "Run a command only while elected leader",
		Long: `elect campaigns for leader of the election NAME (waiting in its queue,
unless --no-wait or --wait says otherwise), runs COMMAND while it leads, and
resigns when COMMAND exits, so that the next candidate leads at once. The
leadership is a lease renewed in the background; COMMAND is supervised
exactly as by run: if the leadership is lost (Redis unreachable until the
lease's validity ran out, or the election force-released), COMMAND and every
process it started get SIGTERM at once and SIGKILL after --grace, before
Redis can let another candidate lead; if renewlock dies, even by SIGKILL,
the kernel kills COMMAND too (Linux, FreeBSD), and another candidate leads
within one --ttl.

COMMAND gets $RENEWLOCK_KEY (NAME), $RENEWLOCK_TERM and $RENEWLOCK_TOKEN
(both the term: the leadership's fencing token, larger for every later
leader) and $RENEWLOCK_LEADER_VALUE (the value; default HOSTNAME:PID), which
'renewlock leader NAME' shows to everyone.

Exit status: COMMAND's own (128+N if it died of signal N); 75 not elected
(a leader, with --no-wait; or --wait ran out); 76 the leadership was lost
while COMMAND ran (or before it could start); 69 Redis unavailable; 77
permission problem; 78 rejected by Redis (e.g. NAME is another kind of
lock); 64 usage error; 70 internal error; 126/127 COMMAND could not be run
/ was not found.`,
		Example: `  # One scheduler in the fleet; the others stand by and take over.
  renewlock elect --name scheduler --value "$(hostname):8080" -- ./scheduler

  # Who leads, and every change as it happens:
  renewlock leader scheduler
  renewlock leader scheduler --watch --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cli.Usagef("no command to run; usage: renewlock elect --name NAME [flags] -- COMMAND [ARGS...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.target(cmd)
			if err != nil {
				return err
			}
			e.Redis, e.Prefix, e.TTL, e.Command = t, g.prefix, ttl.D, args
			e.Environ = os.Environ()
			return cli.Elect(context.Background(), e)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // everything after COMMAND is COMMAND's
	f.StringVar(&e.Key, "name", "", "name of the election (required)")
	f.StringVar(&e.Value, "value", "", "value to lead with, shown by 'renewlock leader' (default HOSTNAME:PID)")
	f.VarP(&ttl, "ttl", "t", "lease length: how long Redis keeps the leadership if renewlock stops renewing it (min 100ms)")
	f.VarP(&e.Wait, "wait", "w", "how long to wait to be elected, e.g. 30s or 30 (default: forever; 0 = do not wait)")
	f.BoolVarP(&e.NoWait, "no-wait", "n", false, "fail at once (exit 75) if the election has a leader")
	f.Var(&e.Grace, "grace", "after a lost leadership, how long COMMAND has between SIGTERM and SIGKILL (default ttl/10, at most 5s)")
	f.BoolVarP(&e.Verbose, "verbose", "v", false, "report election and resignation on stderr")
	return cmd
}

func leaderCmd(g *globals, stdout *os.File) *cobra.Command {
	o := &cli.OpConfig{Stdout: stdout}
	var watch bool
	cmd := &cobra.Command{
		Use:   "leader NAME [--watch] [--json]",
		Short: "Show who leads an election, or watch it change",
		Long: `leader shows the leader of the election NAME: its value, its term (the
fencing token), its holder (host:pid of its renewlock elect, by default),
the lease left, the candidates waiting and when it was elected.

With --watch it prints the leader, then every change as it happens (a new
term, or no leader), one line each, until SIGINT or SIGTERM. Changes come
from Redis as they happen (pub/sub); a leader that crashed is seen gone when
its lease ends. Through a Redis outage it keeps trying, quietly. With --json,
one JSON object per line: {"name","value","term","holder","leader","time"}.

Exit status: 0 there is a leader (--watch: interrupted), 1 no leader, 69
Redis unavailable, 77 permission problem, 78 rejected by Redis (e.g. NAME is
another kind of lock).`,
		Example: `  renewlock leader scheduler
  renewlock leader scheduler --json | jq -r .value
  renewlock leader scheduler --watch --json`,
		Args: exactlyOne("leader", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.target(cmd)
			if err != nil {
				return err
			}
			o.Redis, o.Prefix = t, g.prefix
			return cli.Leader(o, args[0], watch)
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "print every change of leader, until interrupted")
	opFlags(cmd, o)
	return cmd
}
