package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// workerBin is the chaos/cmd/worker binary, built once for all tests.
var workerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "renewlock-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "worker")
	build := exec.Command("go", "build", "-o", workerBin, "./cmd/worker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the worker:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		// toxiproxy v2.5.0 can leave a toxic stub blocked on a channel send
		// when a link is torn down right after a toxic was added or
		// removed (its own bug, in its goroutines); everything else,
		// renewlock's goroutines included, must be gone.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
