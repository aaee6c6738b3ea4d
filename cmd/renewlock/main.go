// Command renewlock runs a command while holding a self-renewing Redis lock,
// like flock(1) for a fleet of machines, and inspects and demonstrates such
// locks. See docs/cli.md for the full reference.
//
//	renewlock run --key nightly-backup -- /usr/local/bin/backup.sh
//	renewlock run --key encoders --limit 3 -- ./encode.sh
//	renewlock elect --name scheduler -- ./scheduler
//	renewlock leader scheduler --watch
//	renewlock status nightly-backup
//	renewlock list 'jobs/*'
//	renewlock release --force nightly-backup
//	renewlock watch 'jobs/*'
//	renewlock exporter --listen :9721
//	renewlock demo
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/renewlock/renewlock/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module's build information.
var version = ""

func main() {
	os.Exit(execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// execute runs the command line args and returns the exit status, after
// printing the one-line reason for a failure on stderr.
func execute(args []string, stdin, stdout, stderr *os.File) int {
	root := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	code := cli.Code(err)
	if err != nil && err.Error() != "" {
		fmt.Fprintf(stderr, "renewlock: %s\n", err)
		if code == cli.ExitUsage {
			hint(stderr, args)
		}
	}
	return code
}

// hint points at the help of the subcommand that failed.
func hint(w io.Writer, args []string) {
	sub := ""
	for _, a := range args {
		if a == "--" {
			break
		}
		if subcommands[a] {
			sub = " " + a
			break
		}
	}
	fmt.Fprintf(w, "renewlock: see 'renewlock%s --help'\n", sub)
}

// buildVersion describes this build: the -ldflags version, else the module
// version and VCS revision recorded by the Go toolchain.
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" {
		v += " (" + rev + dirty + ")"
	}
	return v + " " + bi.GoVersion
}
