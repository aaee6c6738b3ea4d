# The few commands people need. `make test` is what CI runs (.ci/run).
# `make stress` runs the randomized API-interruption stress test alone
# (TestStress, ≈ 20 s; also part of `unit`); longer with
# `make stress RENEWLOCK_STRESS=10m`, replay a seed's choices with
# RENEWLOCK_STRESS_SEED=N.
GO ?= go
FUZZTIME ?= 5s

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
	$(GO) test -run '^$$' -fuzz '^FuzzAcquire$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzRedisTarget$$' -fuzztime $(FUZZTIME) ./internal/cli
	$(GO) test -run '^$$' -fuzz '^FuzzParseDuration$$' -fuzztime $(FUZZTIME) ./internal/cli
	cd chaos && $(GO) test -run '^$$' -fuzz '^FuzzOptions$$' -fuzztime $(FUZZTIME) .
	cd chaos && $(GO) test -run '^$$' -fuzz '^FuzzKeys$$' -fuzztime $(FUZZTIME) .

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
