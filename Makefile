# The few commands people need. `make test` is what CI runs (.ci/run).
# `make stress` runs the randomized API-interruption stress test alone
# (TestStress, ≈ 20 s; also part of `unit`); longer with
# `make stress RENEWLOCK_STRESS=10m`, replay a seed's choices with
# RENEWLOCK_STRESS_SEED=N.
GO ?= go
# Fuzz budgets are counts of inputs, not durations: with a duration, Go
# 1.26's fuzz coordinator can report a bare "context deadline exceeded" at
# the deadline on a loaded machine, with no failing input (golang/go#75804,
# fixed in Go 1.27; seen here once in FuzzKeys). About 5 s each here.
FUZZ_REDIS ?= 3000x
FUZZ_PARSE ?= 30000x

.PHONY: test vet unit chaos fuzz bench demo lint stress

test: vet unit chaos fuzz

vet:
	gofmt -l . | (! grep .) || (echo "gofmt: the files above are not formatted" && false)
	$(GO) vet ./...
	cd chaos && $(GO) vet ./...
	cd bench && $(GO) vet ./... && $(GO) build ./...
	cd observe && $(GO) vet ./...
	cd docs/cookbook && $(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 3m .
	cd observe && $(GO) test -race -count=1 ./...
	cd docs/cookbook && $(GO) test -race -count=1 ./...

stress:
	RENEWLOCK_STRESS=$(RENEWLOCK_STRESS) RENEWLOCK_STRESS_SEED=$(RENEWLOCK_STRESS_SEED) \
		$(GO) test -race -count=1 -run '^TestStress$$' -v -timeout 0 .

chaos:
	cd chaos && $(GO) test -race -count=1 ./...

# Brief coverage-guided fuzzing of every parser of user input: key names and
# option values (library), Redis URLs and durations (CLI).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzAcquire$$' -fuzztime $(FUZZ_REDIS) .
	$(GO) test -run '^$$' -fuzz '^FuzzRedisTarget$$' -fuzztime $(FUZZ_PARSE) ./internal/cli
	$(GO) test -run '^$$' -fuzz '^FuzzParseDuration$$' -fuzztime $(FUZZ_PARSE) ./internal/cli
	cd chaos && $(GO) test -run '^$$' -fuzz '^FuzzOptions$$' -fuzztime $(FUZZ_PARSE) .
	cd chaos && $(GO) test -run '^$$' -fuzz '^FuzzKeys$$' -fuzztime $(FUZZ_REDIS) .

bench:
	cd bench && $(GO) run .

demo:
	$(GO) run ./cmd/renewlock demo

STATICCHECK = $(GO) run honnef.co/go/tools/cmd/staticcheck@latest

lint:
	$(STATICCHECK) ./...
	cd chaos && $(STATICCHECK) ./...
	cd bench && $(STATICCHECK) ./...
	cd observe && $(STATICCHECK) ./...
	cd docs/cookbook && $(STATICCHECK) ./...
