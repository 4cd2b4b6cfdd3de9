# The project's own checks. `make run` starts a manager on ./data; `make test` runs every test.
CARGO ?= cargo
DATA ?= data

.PHONY: run test check bench build browser-deps sim deb

build:
	$(CARGO) build --locked --release

# Debian packages of the release build, left under target/: picket-agent (the binary and the
# agent's unit) and picket (the manager's unit, user and data dir). packaging/deb/build.sh says
# how; tests/e2e/packages.rs checks what it makes.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
deb: build
	sh packaging/deb/build.sh $(TARGET_DIR)/release/picket target

run: build
	./target/release/picket manager --data-dir $(DATA)

test: browser-deps
	$(CARGO) test --locked --all-targets

# playwright-core for the browser test (tests/e2e/browser.rs), from the lock file; the browser itself
# is Debian's chromium (.ci/run installs it), never a downloaded one.
browser-deps:
	@[ -d tests/browser/node_modules/playwright-core ] || npm ci --prefix tests/browser --no-audit --no-fund

# The alert-truth simulation (src/sim/) over many seeds, optimised: `make sim SEEDS=100000`.
# `make test` runs 200 of them; a failing seed prints the line that replays it alone.
SEEDS ?= 10000
sim:
	PICKET_SIM_SEEDS=$(SEEDS) $(CARGO) test --locked --release --lib sim:: -- --nocapture

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# The standard sweep: 1k, 10k and 100k registered agents at a 1-minute heartbeat, 30 s of load
# each, plus the saturation and bare-TLS floor phases, then 10k agents that the manager dials
# (manager-initiated). Agent-initiated rows are primed (every agent a session, then a manager
# restart) and warmed up (one interval unmeasured): the table is a site's steady state, not the
# storm of full handshakes after its first start. About ten minutes in all; the table goes
# to target/bench.md and stdout (README.md shows the latest and how to read it).
BENCH_AGENTS ?= 1000 10000 100000
BENCH_DIALED ?= 10000
# Saturation and the floor: 20,000 sessions, 128 in flight. With 32, a session's wait for its
# group commit (10-20 ms) capped the rate before the manager's CPU did (1,000 agents: 2,824/s at
# 32, 3,488/s at 128, the floor 3,779 and 3,740); 2,000 sessions lasted about a second, which at
# 100,000 agents measured the hand-over from the interval phase (1,623/s) and not the steady
# rate (2,552/s over 30,000).
BENCH_FLAGS ?= --interval 1m --duration 30s --warmup --prime --saturation 20000 --concurrency 128

bench: build
	@mkdir -p target
	@rm -f target/bench.md
	@for run in $(foreach n,$(BENCH_AGENTS),$(n):agent-initiated) $(foreach n,$(BENCH_DIALED),$(n):manager-initiated); do \
		n=$${run%%:*}; direction=$${run#*:}; out=target/bench-$$n-$$direction.md; \
		./target/release/picket bench --agents $$n --direction $$direction $(BENCH_FLAGS) --markdown > $$out || exit 1; \
		if [ -s target/bench.md ]; then tail -n 1 $$out >> target/bench.md; \
		else cat $$out > target/bench.md; fi; \
	done
	@cat target/bench.md
