# The two commands of the README: `make demo` and `make test`. Both create the virtualenv and
# install envleads into it when needed, so they work on a fresh clone with only Python 3.11 and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-envleads
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/envleads demo

test: $(STAMP) prism
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

# Prism, Beam's portable runner (Go), for tests/test_prism.py: built from Beam's Go module at the
# version of the installed Python SDK (PrismRunner would download a release binary from GitHub at run
# time, which these machines cannot reach) into .cache/prism/v<version>/prism, and passed to the SDK
# with --prism_location. Cached: quick when the binary is there. Without Go it says so and those tests skip.
PRISM_CACHE := .cache/prism
PRISM_PKG := github.com/apache/beam/sdks/v2/go/cmd/prism
.PHONY: prism
prism: $(STAMP)
	@version=v$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('apache-beam'))" | sed 's/rc/-RC/'); \
	dir="$(CURDIR)/$(PRISM_CACHE)/$$version"; \
	if [ -x "$$dir/prism" ]; then echo "prism $$version: $(PRISM_CACHE)/$$version/prism (cached)"; \
	elif ! command -v go >/dev/null 2>&1; then echo "go not found: Prism not built, tests/test_prism.py will skip" >&2; \
	else echo "building prism $$version from Beam's Go module (a few minutes the first time)"; \
	  rm -rf "$$dir.tmp" && GOBIN="$$dir.tmp" go install $(PRISM_PKG)@$$version && \
	  mkdir -p "$$dir" && mv "$$dir.tmp/prism" "$$dir/prism" && rmdir "$$dir.tmp" && \
	  echo "prism $$version: $(PRISM_CACHE)/$$version/prism"; fi

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# Long reliability runs (not part of `make test`): bench/soak.py through `envleads batch --engine rounds`
# (default 1,000,000 complaints) and through `envleads stream` on the embedded broker (200,000),
# peak RSS, events/s, complaints lost (must be 0). Smaller: make soak SOAK_COUNT=100000 SOAK_STREAM_COUNT=20000
SOAK_COUNT ?= 1000000
SOAK_STREAM_COUNT ?= 200000
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python bench/soak.py --count $(SOAK_COUNT)
	$(BIN)/python bench/soak.py --stream --count $(SOAK_STREAM_COUNT)

# Apache Kafka itself (org.apache.kafka:kafka_2.13, ops/kafka/pom.xml) for what the embedded Tansu
# cannot do: a broker restart that keeps its data, TLS, SASL/SCRAM (envleads.ops.apache_kafka,
# tests/test_apache_kafka.py). Maven resolves the pom into its own repository under .cache/kafka/m2
# and copies the jars to .cache/kafka/libs (~45 MB); redone only when the pom changes, so quick when
# cached. `make demo` needs none of it. Without Maven it says so; the tests then fail ("run make
# kafka"), or skip where there is no Java either.
KAFKA_CACHE := .cache/kafka
KAFKA_STAMP := $(KAFKA_CACHE)/libs/.fetched
MVN ?= mvn
.PHONY: kafka
kafka: $(KAFKA_STAMP)
$(KAFKA_STAMP): ops/kafka/pom.xml
	@if ! command -v $(MVN) >/dev/null 2>&1; then echo "$(MVN) not found: Apache Kafka jars not fetched" >&2; exit 0; fi; \
	rm -rf $(KAFKA_CACHE)/libs $(KAFKA_CACHE)/libs.tmp && \
	echo "fetching Apache Kafka jars with Maven into $(KAFKA_CACHE)/libs" && \
	$(MVN) -B -q -Dstyle.color=never -f ops/kafka/pom.xml -Dmaven.repo.local=$(CURDIR)/$(KAFKA_CACHE)/m2 \
	  dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(KAFKA_CACHE)/libs.tmp && \
	mv $(KAFKA_CACHE)/libs.tmp $(KAFKA_CACHE)/libs && touch $@
test: kafka

# Beam's Flink job server (ops/flink/pom.xml: org.apache.beam:beam-runners-flink-$(FLINK_VERSION)-job-server,
# one shaded jar; FLINK_VERSION 1.19, 1.20, 2.0, 2.1 or 2.2) at the installed Python SDK's version,
# into .cache/flink/<version>/, to run the Beam jobs on an embedded Flink without Beam downloading
# the jar at run time (docs/operations.md, "Flink").
# NOT a prerequisite of `make test`: the registry these machines reach serves no beam-runners-flink
# artifact at any version tried, so here it stops with Maven's "Could not find artifact"; where Maven
# reaches all of Maven Central (or a mirror that has it) it fetches the jar, then cached.
FLINK_CACHE := .cache/flink
FLINK_VERSION ?= 2.2
.PHONY: flink
flink: $(STAMP)
	@version=$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('apache-beam'))"); \
	dir="$(CURDIR)/$(FLINK_CACHE)/$$version"; \
	if ls "$$dir"/beam-runners-flink-$(FLINK_VERSION)-job-server-$$version.jar >/dev/null 2>&1; then \
	  echo "flink job server $$version: $$(ls "$$dir"/beam-runners-flink-$(FLINK_VERSION)-*.jar) (cached)"; \
	elif ! command -v $(MVN) >/dev/null 2>&1; then echo "$(MVN) not found: Beam's Flink job server not fetched" >&2; exit 1; \
	else echo "fetching Beam's Flink job server $$version with Maven into $(FLINK_CACHE)/$$version"; \
	  rm -rf "$$dir.tmp" && \
	  $(MVN) -B -q -Dstyle.color=never -f ops/flink/pom.xml -Dmaven.repo.local=$(CURDIR)/$(FLINK_CACHE)/m2 \
	    -Dbeam.version=$$version -Dflink.minor=$(FLINK_VERSION) dependency:copy-dependencies -DoutputDirectory="$$dir.tmp" && \
	  mkdir -p "$$dir" && mv "$$dir.tmp"/*.jar "$$dir"/ && rmdir "$$dir.tmp" && \
	  echo "flink job server $$version: $$(ls "$$dir"/beam-runners-flink-$(FLINK_VERSION)-*.jar)"; fi
