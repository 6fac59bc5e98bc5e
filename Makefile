# The two set-up commands (see README.md):
#   make run   build, then start the two-site example on this machine (Ctrl-C stops it)
#   make test  build, then run the whole test suite
#   make drill build, then run a DR drill of the two-site example (see README.md)
BUILD_DIR ?= build/release
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
TOPOLOGY ?= examples/two-sites.toml
DATA_DIR ?= ./tandem-data

.PHONY: all deps configure build run drill test unit-tests clean

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) > /dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/bin/tandem --data-dir $(DATA_DIR) up $(TOPOLOGY)

# A DR drill of $(TOPOLOGY) on its own servers (its ports must be free): RPO, RTO, failback time.
drill: build
	$(BUILD_DIR)/bin/tandem drill $(TOPOLOGY)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900

unit-tests: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -L unit

clean:
	rm -rf $(BUILD_DIR)
