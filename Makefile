# Lantern. Quickstart: `make run`, then `make test`.
CARGO ?= cargo

.PHONY: run build test lint bench demo conformance fmt clean fuzz

run:
	$(CARGO) run --release -p lantern -- run --config config/lantern.toml

build:
	$(CARGO) build --release -p lantern

# The whole suite. With LANTERN_TEST_MQTT_URL and LANTERN_TEST_DATABASE_URL set it also runs
# against that Mosquitto and PostgreSQL; without them it uses the embedded broker and SQLite.
# The mental-health figures (precision and recall with 95% intervals on the sealed blind sets,
# recall per category, false alarms on ordinary notes) are printed by their own run, which
# selects the whole workspace as the first does so it reuses that build (`-p lantern-flagger`
# alone would resolve features differently and compile tokio and most crates again).
test:
	$(CARGO) test --workspace -- --skip mental_health::tests::
	$(CARGO) test --workspace --lib -- mental_health::tests:: --nocapture --test-threads 1

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The public contract check, through the release binary (needs python3).
conformance: build
	python3 ../shared/conformance/check.py target/release/lantern

# Every benchmark; the report goes to target/bench/report.md and report.json.
bench:
	$(CARGO) bench -p lantern-tests --bench lantern

# Lantern with simulated traffic (new flags every few seconds), a throwaway demo nurse whose
# password it prints, and Prometheus if installed; all in target/demo, never the real data.
demo:
	$(CARGO) run --release -p lantern -- demo --config config/lantern.toml

# Each fuzz target for FUZZ_SECONDS (default 180) under cargo-fuzz, which needs a nightly
# toolchain beside stable (the build itself never uses nightly). Seeds: fuzz/seeds/<target>.
FUZZ_SECONDS ?= 180
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz
	@for t in event lexicon config flag; do \
	  mkdir -p fuzz/corpus/$$t && cp -n fuzz/seeds/$$t/* fuzz/corpus/$$t/ ; \
	  echo "fuzzing $$t for $(FUZZ_SECONDS) s"; \
	  (cd fuzz && $(CARGO) +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096) || exit 1; \
	done

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
