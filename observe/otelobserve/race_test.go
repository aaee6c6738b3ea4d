//go:build race

package otelobserve_test

// The race detector allocates on its own: allocation counts mean nothing.
const raceEnabled = true
