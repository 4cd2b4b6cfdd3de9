# The project's own checks. `make run` starts a manager on ./data; `make test` runs every test.
CARGO ?= cargo
DATA ?= data

.PHONY: run test check bench build

build:
	$(CARGO) build --locked --release

run: build
	./target/release/picket manager --data-dir $(DATA)

test:
	$(CARGO) test --locked --all-targets

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# The load generator arrives with the benchmark issue; until then this says so and fails.
bench:
	@echo "make bench: 'picket bench' is not built yet (see the benchmark issue)" >&2
	@exit 1
