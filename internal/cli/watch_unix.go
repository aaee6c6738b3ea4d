//go:build unix

package cli

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// resizeSignals are the signals that say the terminal changed size.
func resizeSignals() []os.Signal { return []os.Signal{syscall.SIGWINCH} }

// readKeys sends the bytes typed on in (a terminal in raw mode) to keys
// until stop is called. It polls, so that stop ends the reader at once
// and nothing is left blocked reading the terminal.
func readKeys(in *os.File, keys chan<- byte) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fd := int(in.Fd())
		buf := make([]byte, 64)
		for {
			select {
			case <-done:
				return
			default:
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 100)
			if errors.Is(err, unix.EINTR) || n == 0 {
				continue
			}
			if err != nil || fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 && fds[0].Revents&unix.POLLIN == 0 {
				return
			}
			m, err := unix.Read(fd, buf)
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			if err != nil || m == 0 {
				return
			}
			for _, b := range buf[:m] {
				select {
				case keys <- b:
				case <-done:
					return
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
