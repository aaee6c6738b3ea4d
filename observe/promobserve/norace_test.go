//go:build !race

package promobserve_test

const raceEnabled = false
