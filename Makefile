# The two commands of the README: `make demo` and `make test`.
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: demo test test-all test-rust test-dashboard test-fleet test-fuzz fuzz test-hostile bench bench-http fmt sim

## Run the demo: 1,000 payments per delivery mode through an outbox to a simulated bank, on
## temporary SQLite files, over a network with seeded faults.
demo:
	$(CARGO) run -q -p oncely-cli -- demo payment

## Run every test in every language present, with a throwaway PostgreSQL cluster on loopback
## for the PostgreSQL store's tests (scripts/with-postgres.sh; under CI it installs the server).
test:
	scripts/with-postgres.sh $(MAKE) --no-print-directory test-all

## Every test, using the PostgreSQL server in ONCELY_POSTGRES_URL when set.
test-all: test-rust test-dashboard test-fleet test-fuzz test-python test-node test-kotlin

test-rust:
	$(CARGO) test --no-fail-fast
	$(CARGO) test -q -p oncely --bench inbox -- --quick
	$(CARGO) test -q -p oncely --bench outbox -- --quick
	$(CARGO) test -q -p oncely --bench postgres -- --quick
	$(CARGO) test -q -p oncely --features otel --test otel
	$(CARGO) run -q -p oncely --example quickstart
	$(CARGO) run -q -p oncely --example outbox_quickstart
	$(CARGO) run -q -p oncely --example inbox_modes -- 300 0.3 11
	SIM_SEEDS=$${SIM_SEEDS:-10000} $(CARGO) test --release -q -p oncely-sim --test sim --test power_cut

## The dashboard of `oncely serve` in headless Chromium (Debian's chromium, playwright-core,
## node --test): on SQLite, and on PostgreSQL when ONCELY_POSTGRES_URL is set. About 15 s per store.
test-dashboard:
	tests/dashboard/run.sh

## The deterministic simulator on more seeds (docs/simulation.md): `make sim SEEDS=1000000`.
## A failing seed prints the one command that replays it with its schedule.
SEEDS ?= 100000
sim:
	SIM_SEEDS=$(SEEDS) $(CARGO) test --release -q -p oncely-sim --test sim

## The PostgreSQL fleet: 8 worker processes, 100,000 messages per mode, SIGKILLs and terminated
## connections (release build: the debug one takes minutes longer). Then the fault test: 5
## workers through a proxy that resets connections and loses COMMIT answers, SIGKILLs, a server
## restart.
test-fleet:
	$(CARGO) test --release -q -p oncely-crash-tests --test postgres_fleet
	$(CARGO) test --release -q -p oncely-crash-tests --test postgres_faults

## Every fuzz target for 10 s (cargo-fuzz, libFuzzer, nightly Rust; debug build). Committed
## inputs are replayed by `cargo test` (tests/fuzz).
test-fuzz:
	FUZZ_SECONDS=$${FUZZ_SECONDS:-10} scripts/fuzz.sh

## Longer fuzzing: every target for 5 minutes, release build (FUZZ_SECONDS to change it).
fuzz:
	FUZZ_SECONDS=$${FUZZ_SECONDS:-300} FUZZ_RELEASE=1 scripts/fuzz.sh

## The hostile-input suites at 5,000 cases per language (each case in a child process; about
## 3 min in Rust, 2 min in Python, 10 min in Node and 5 min in Kotlin here). `make test` runs each
## at its default size. ONCELY_HOSTILE_CASES and ONCELY_HOSTILE_SEED change the size and the seed.
test-hostile:
	ONCELY_HOSTILE_CASES=$${ONCELY_HOSTILE_CASES:-5000} $(CARGO) test -q -p oncely --test hostile_isolated -- --nocapture
	ONCELY_HOSTILE_CASES=$${ONCELY_HOSTILE_CASES:-5000} python/run-tests.sh -k test_hostile_isolated
	ONCELY_HOSTILE_CASES=$${ONCELY_HOSTILE_CASES:-5000} node/run-tests.sh test/hostile_isolated.test.js
	ONCELY_HOSTILE_CASES=$${ONCELY_HOSTILE_CASES:-5000} $(MAKE) --no-print-directory test-kotlin

## The benchmarks of docs/benchmarks.md (release build; takes a few minutes).
bench:
	$(CARGO) bench -p oncely --bench inbox
	$(CARGO) bench -p oncely --bench outbox
	scripts/with-postgres.sh $(CARGO) bench -p oncely --bench postgres

## The HTTP Idempotency-Key middleware against its peers, Python then Node (release builds; wrk).
bench-http:
	python/bench/run-http.sh
	node/bench/run-http.sh

fmt:
	$(CARGO) fmt --all

# The bindings' test targets (after the targets above, so `make` alone still means `make demo`).
include python/Makefile.inc
include node/Makefile.inc
include bindings/Makefile.inc
