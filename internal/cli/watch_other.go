//go:build !unix

package cli

import "os"

// resizeSignals is empty: the size is read again at every refresh.
func resizeSignals() []os.Signal { return nil }

// readKeys sends the bytes typed on in to keys. The reader stays blocked
// in Read after stop until a key comes or the process ends.
func readKeys(in *os.File, keys chan<- byte) (stop func()) {
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := in.Read(buf)
			for _, b := range buf[:n] {
				select {
				case keys <- b:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return func() { close(done) }
}
