# The README's commands. Each target sets up what it needs, so a fresh clone only
# needs python3 (3.11+), make and npm.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 5000
SOAK_SECONDS ?= 300
BENCH_STAMP := $(VENV)/.bench-stamp
# The browser packages of package.json (tus-js-client, hash-wasm), at the lockfile's
# versions; the demo and the browser tests serve them from node_modules, never a CDN.
NODE_STAMP := node_modules/.installed-stamp

.PHONY: test lint typecheck demo bench bench-floors bench-serving bench-s3 bench-direct bench-sweep bench-tus bench-uploads soak soak-s3

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,test,demo]'
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck $(NODE_STAMP)
	$(BIN)/pytest

# The example gallery on http://127.0.0.1:$(PORT)/, storing under .demo-data/; with
# DEMO_S3=1, on a bucket of a local SeaweedFS (.demo-data/s3/), with direct uploads.
demo: $(STAMP) $(NODE_STAMP)
ifeq ($(DEMO_S3),1)
	PYTHONPATH=examples:. $(BIN)/python -m demo.s3 --port $(PORT)
else
	$(BIN)/flask --app examples/demo run --host 127.0.0.1 --port $(PORT)
endif

# The store against its limit and hashfs 0.7.2 (under 10 minutes; ARGS=--quick for ~1).
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_store.py $(ARGS)

# The least that the lookups' and the dedupe put's guarantees cost, against hashfs 0.7.2.
bench-floors: $(BENCH_STAMP)
	$(BIN)/python benchmarks/lookup_floors.py $(ARGS)

# Serving under gunicorn and wrk against send_from_directory and nginx. Needs the
# Debian packages nginx and wrk; the script names whichever is missing.
bench-serving: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_serving.py $(ARGS)

# A 256 MiB upload through gunicorn (1 sync worker), sent by curl and by Python: the
# discard endpoint, put(request.stream), stream_uploads, put_upload and FileStorage.save
# (~3 minutes; ARGS=--quick for a few seconds). Needs curl.
bench-uploads: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_uploads.py $(ARGS)

# The store on a SeaweedFS bucket against raw boto3 uploads (the test extra has both).
bench-s3: $(STAMP)
	$(BIN)/python benchmarks/bench_s3.py $(ARGS)

# A direct upload through the app's endpoints against a raw presigned PUT, on SeaweedFS
# (256 MiB, 5 rounds; ARGS="--size 64 --repeats 3" for less).
bench-direct: $(STAMP)
	$(BIN)/python benchmarks/bench_direct.py $(ARGS)

# 256 MiB through tus in 8 MiB chunks (tuspy) against one put(request.stream), under
# gunicorn (the test extra has both).
bench-tus: $(STAMP)
	$(BIN)/python benchmarks/bench_tus.py $(ARGS)

# gunicorn under mixed load and scheduled faults, then a check that nothing is lost
# (benchmarks/README.md). Needs root: the store gets a tmpfs of its own to fill up.
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py --seconds $(SOAK_SECONDS) $(ARGS)

# The same on a SeaweedFS bucket, whose server is killed and restarted mid-run.
soak-s3: $(STAMP)
	$(BIN)/python benchmarks/soak.py --s3 --seconds $(SOAK_SECONDS) $(ARGS)

# A sweep over 100,000 objects with 1,000,000 live ids, on disk and on SeaweedFS:
# objects examined per second and peak memory (ARGS=--quick for a small run).
bench-sweep: $(STAMP)
	$(BIN)/python benchmarks/bench_sweep.py $(ARGS)
