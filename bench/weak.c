/*
 * bench/weak.c — fallbacks for scenarios whose code lives in other files.
 *
 * tok_bench.c, tls_bench.c and net_relay.c define bench_tokenizer(),
 * bench_handshakes(), bench_tls_certload() and bench_relay();
 * until they are part of the build the linker picks these weak definitions,
 * which say so and fail rather than report a made-up figure.
 */
#include <stdio.h>
#include "bench/bench.h"

__attribute__((weak)) int bench_tokenizer(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "fedhub-bench: tokenizer: not built (bench/tok_bench.c missing)\n");
	return 2;
}

__attribute__((weak)) int bench_handshakes(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "fedhub-bench: handshakes: not built (bench/tls_bench.c missing)\n");
	return 2;
}

__attribute__((weak)) int bench_tls_certload(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "fedhub-bench: certload: not built (bench/tls_bench.c missing)\n");
	return 2;
}

__attribute__((weak)) int bench_relay(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "fedhub-bench: relay: not built (bench/net_relay.c missing)\n");
	return 2;
}
