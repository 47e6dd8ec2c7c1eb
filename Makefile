# alertflow: `make run` runs the broker locally, `make test` runs the tests.
# Both install what they need first (system Java 17 and Maven, the venv, the JVM jars, the
# Flink jars); each step is skipped when its output is newer than its inputs.

include flink_deploy/versions.env

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
BUILD := .build
JARS_STAMP := $(BUILD)/jars/.installed
FLINK_STAMP := $(BUILD)/flink-$(FLINK_VERSION)/.installed
VENV_STAMP := $(VENV)/.installed
POMS := flink_deploy/pom.xml $(wildcard flink_deploy/maven/*/pom.xml) flink_deploy/versions.env

.PHONY: install system-deps run stop test test-unit test-e2e lint clean

install: system-deps $(VENV_STAMP) $(JARS_STAMP) $(FLINK_STAMP)

# Java 17 and Maven from Debian when they are missing (needs root, as on our machines and CI).
system-deps:
	@if ! /usr/lib/jvm/java-17-openjdk-amd64/bin/java -version >/dev/null 2>&1 \
	    || ! command -v mvn >/dev/null 2>&1; then \
	  echo "installing openjdk-17-jdk-headless and maven with apt-get"; \
	  apt-get update -q && apt-get install -y -q openjdk-17-jdk-headless maven; \
	fi

$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

$(JARS_STAMP): $(POMS)
	JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 mvn -B -q -f flink_deploy/pom.xml package \
	  -Dbeam.version=$(BEAM_VERSION) -Dflink.minor=$(FLINK_MINOR) -Dkafka.version=$(KAFKA_VERSION)
	touch $@

# Flink's jars come from PyPI (flink-dist is not on Maven Central); kept out of the venv.
$(FLINK_STAMP): flink_deploy/versions.env | $(VENV_STAMP)
	rm -rf $(BUILD)/flink-$(FLINK_VERSION)
	$(BIN)/pip install -q --no-deps --target $(BUILD)/flink-$(FLINK_VERSION) \
	  apache-flink-libraries==$(FLINK_VERSION)
	touch $@

run: install
	$(BIN)/alertflow run $(if $(AUTOSCALE),--autoscale)

stop:
	$(BIN)/alertflow stack down

test: install
	$(BIN)/python -m pytest

# Style, the layers and the types: ruff (pyproject's rules and its format), the import-linter
# contracts in pyproject.toml, and mypy in strict mode.
lint: $(VENV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-e2e: install
	$(BIN)/python -m pytest tests/e2e

clean: stop
	rm -rf $(BUILD) .run flink_deploy/maven/*/target
