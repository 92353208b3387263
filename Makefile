# fedhub — a plain Makefile.
#   make            fedhub and fedhub-bench
#   make test       every test (unit, integration), ends with "N passed, N failed"
#   make bench      the benchmark suite, rewrites BENCHMARKS.md
#   make run        fedhub on the shipped router.conf
#   make asan/tsan  sanitizer builds in build/asan, build/tsan
#   make fuzz       libFuzzer targets (clang) in build/fuzz

CC      ?= gcc
BUILD   ?= build/release
OPT     ?= -O2 -g
CFLAGS  += -std=gnu11 $(OPT) -Wall -Wextra -Wno-unused-parameter -Wshadow -fno-strict-aliasing \
           -D_GNU_SOURCE -I. -MMD -MP
LDFLAGS +=

# The accelerated wolfSSL from ./scripts/build-wolfssl.sh when present, else the system one.
WOLF_LOCAL := $(wildcard .deps/wolfssl/lib/pkgconfig/wolfssl.pc)
ifneq ($(WOLF_LOCAL),)
WOLF_CFLAGS := -I$(CURDIR)/.deps/wolfssl/include -DFEDHUB_WOLFSSL_LOCAL=1
WOLF_LIBS   := -L$(CURDIR)/.deps/wolfssl/lib -Wl,-rpath,$(CURDIR)/.deps/wolfssl/lib -lwolfssl
else
WOLF_CFLAGS := $(shell pkg-config --cflags wolfssl)
WOLF_LIBS   := $(shell pkg-config --libs wolfssl)
endif

PKGS    := liburing mxml hiredis liburcu-qsbr liburcu-cds libcares libidn2 libmicrohttpd libsystemd
CFLAGS  += $(shell pkg-config --cflags $(PKGS)) $(WOLF_CFLAGS)
LIBS    := $(shell pkg-config --libs $(PKGS)) $(WOLF_LIBS) -lexpat -lpthread -lm
MALLOC  ?= -ljemalloc

# One static library per folder; a binary links the libraries it needs and the
# linker takes from them only the objects it uses. Sources are found by
# wildcard, so a new .c file in a folder is built without editing this file.
XML_SRC    := $(wildcard xml/*.c)
NET_SRC    := $(wildcard net/*.c)
ROUTER_SRC := $(filter-out router/main.c,$(wildcard router/*.c))
BENCH_SRC  := $(wildcard bench/*.c)
TEST_SRC   := $(wildcard tests/unit/test_*.c)
LIBXML     := $(BUILD)/libxml.a
LIBNET     := $(BUILD)/libnet.a
LIBROUTER  := $(BUILD)/librouter.a
# in link order: router uses net and xml, net uses neither
ALL_LIBS   := $(LIBROUTER) $(LIBNET) $(LIBXML)
TESTS      := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

all: fedhub fedhub-bench fedhubctl

# The version: the nearest v* tag (git describe), else VERSION_BASE and the
# commit; VERSION_BASE alone outside a git checkout. Only main.o sees it.
VERSION_BASE := 0.1.0
VERSION := $(or $(shell git describe --match 'v[0-9]*' --dirty 2>/dev/null | sed 's/^v//'),\
$(shell git rev-parse --short HEAD >/dev/null 2>&1 && echo $(VERSION_BASE)+g$$(git rev-parse --short HEAD)$$(git diff --quiet HEAD -- 2>/dev/null || echo -dirty)),\
$(VERSION_BASE))
$(BUILD)/router/main.o: CFLAGS += -DFEDHUB_VERSION='"$(VERSION)"'
$(BUILD)/router/main.o: $(BUILD)/version.stamp
$(BUILD)/version.stamp: FORCE
	@mkdir -p $(dir $@)
	@[ "$$(cat $@ 2>/dev/null)" = "$(VERSION)" ] || echo "$(VERSION)" >$@

fedhub: $(BUILD)/fedhub
	ln -sf $< $@
fedhub-bench: $(BUILD)/fedhub-bench
	ln -sf $< $@
fedhubctl: $(BUILD)/fedhubctl
	ln -sf $< $@

$(LIBXML): $(XML_SRC:%.c=$(BUILD)/%.o)
$(LIBNET): $(NET_SRC:%.c=$(BUILD)/%.o)
$(LIBROUTER): $(ROUTER_SRC:%.c=$(BUILD)/%.o)
$(ALL_LIBS):
	@rm -f $@
	$(AR) rcs $@ $(filter %.o,$^)

$(BUILD)/fedhub: $(BUILD)/router/main.o $(ALL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LIBS) $(MALLOC)
$(BUILD)/fedhubctl: $(BUILD)/tools/fedhubctl.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^
$(BUILD)/fedhub-bench: $(BENCH_SRC:%.c=$(BUILD)/%.o) $(LIBNET) $(LIBXML)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LIBS) $(MALLOC)
$(BUILD)/tests/%: tests/unit/%.c $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LIBS) -lcmocka $(MALLOC)
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

unit-tests: $(TESTS)

test: all unit-tests
	BUILD=$(BUILD) ./tests/run.sh

bench: all
	./bench/run-suite.sh

run: fedhub
	./fedhub -c router.conf

asan:
	$(MAKE) BUILD=build/asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" MALLOC= \
		build/asan/fedhub build/asan/fedhub-bench unit-tests
tsan:
	$(MAKE) BUILD=build/tsan OPT="-O1 -g -fsanitize=thread" MALLOC= build/tsan/fedhub unit-tests

# libFuzzer targets: the three libraries are rebuilt with clang, coverage
# instrumentation and ASan + UBSan in build/fuzz; each target links them and
# so takes only the code it exercises.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
fuzz:
	$(MAKE) CC=clang BUILD=build/fuzz OPT="-g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link" MALLOC= \
		$(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(ALL_LIBS)
	$(CC) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LIBS)

clean:
	rm -rf build fedhub fedhub-bench fedhubctl

.PHONY: all test unit-tests bench run asan tsan fuzz clean FORCE
-include $(shell find build -name '*.d' 2>/dev/null)

# ---- make install [PREFIX=/usr/local] [DESTDIR=] ---------------------------
# fedhub, fedhub-bench and fedhubctl in PREFIX/bin, relinked in build/install so they do
# not depend on the checkout: the accelerated wolfSSL (when the build uses
# it) goes to PREFIX/lib/fedhub and the binaries find it through RUNPATH
# $ORIGIN/../lib/fedhub, wherever the tree is copied. router.conf becomes
# SYSCONFDIR/fedhub/router.conf.example (SYSCONFDIR: /etc for PREFIX=/usr,
# else PREFIX/etc); the systemd unit (its paths set to PREFIX and SYSCONFDIR)
# and the sysusers.d entry for the `fedhub` user go under PREFIX/lib.
PREFIX     ?= /usr/local
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
INST_BUILD := build/install
comma      := ,
INST_WOLF  := $(if $(WOLF_LOCAL),WOLF_LIBS="-L$(CURDIR)/.deps/wolfssl/lib -Wl$(comma)-rpath$(comma)'\$$\$$ORIGIN/../lib/fedhub' -lwolfssl")

install:
	$(MAKE) BUILD=$(INST_BUILD) $(INST_WOLF) $(INST_BUILD)/fedhub $(INST_BUILD)/fedhub-bench $(INST_BUILD)/fedhubctl
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SYSCONFDIR)/fedhub \
		$(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/lib/sysusers.d
	install -m 755 $(INST_BUILD)/fedhub $(INST_BUILD)/fedhub-bench $(INST_BUILD)/fedhubctl $(DESTDIR)$(PREFIX)/bin/
ifneq ($(WOLF_LOCAL),)
	install -d $(DESTDIR)$(PREFIX)/lib/fedhub
	cp -P .deps/wolfssl/lib/libwolfssl.so.* $(DESTDIR)$(PREFIX)/lib/fedhub/
endif
	install -m 644 router.conf $(DESTDIR)$(SYSCONFDIR)/fedhub/router.conf.example
	sed -e 's|/usr/local/bin/|$(PREFIX)/bin/|g' -e 's|/usr/local/etc/fedhub/|$(SYSCONFDIR)/fedhub/|g' \
		examples/fedhub.service >$(DESTDIR)$(PREFIX)/lib/systemd/system/fedhub.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/fedhub.service
	install -m 644 examples/fedhub.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/fedhub.conf

.PHONY: install
