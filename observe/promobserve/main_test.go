package promobserve_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/renewlock/renewlock/internal/redistest"
)

// redisAddr is the address of a redis-server started for the examples.
var redisAddr string

func TestMain(m *testing.M) {
	srv, err := redistest.Launch()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	redisAddr = srv.Addr()
	code := m.Run()
	srv.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
