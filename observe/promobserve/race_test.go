//go:build race

package promobserve_test

// The race detector allocates on its own: allocation counts mean nothing.
const raceEnabled = true
