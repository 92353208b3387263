/*
 * tools/fedhubctl.c — talk to a running fedhub through its control socket
 * (control_socket in router.conf).
 *
 *   fedhubctl [-s SOCKET] [--json] COMMAND [ARG]
 *
 * It sends the command as one line, prints the answer, and exits 0 when the
 * hub answered OK, 1 when it answered ERR, 2 when it could not ask. No
 * parsing of its own: the hub does the work (router/ctl.c).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/fedhub/fedhub.sock"

static void usage(FILE *f)
{
	fprintf(f, "usage: fedhubctl [-s SOCKET] [--json] COMMAND [ARG]\n"
		   "  -s SOCKET   the hub's control_socket (default $FEDHUB_SOCKET, else " DEFAULT_SOCKET ")\n"
		   "  --json      machine-readable answer\n"
		   "commands:\n"
		   "  status            state (ok, starting, draining), workers, links, reloads\n"
		   "  links             every connection: direction, domains, auth, TLS, queue, age\n"
		   "  components        each component and its connections\n"
		   "  backends          each [backend]: domains, addresses, links up, queued; its links\n"
		   "  close ID          close one link politely (ID from `links`)\n"
		   "  resolve DOMAIN    what the hub would dial for DOMAIN (static route or DNS)\n"
		   "  reload            re-read the configuration (as SIGHUP)\n"
		   "  drain             drain and stop (as SIGTERM)\n"
		   "  config check      run the checks of `fedhub -t` on the configuration file\n");
}

int main(int argc, char **argv)
{
	const char *path = getenv("FEDHUB_SOCKET");
	char req[600] = "";
	bool json = false;
	int nargs = 0;
	if (!path || !*path)
		path = DEFAULT_SOCKET;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-s") && i + 1 < argc) {
			path = argv[++i];
		} else if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			if (strlen(req) + strlen(argv[i]) + 2 >= sizeof(req) || strchr(argv[i], '\n')) {
				fprintf(stderr, "fedhubctl: request too long\n");
				return 2;
			}
			if (nargs++)
				strcat(req, " ");
			strcat(req, argv[i]);
		}
	}
	if (!nargs) {
		usage(stderr);
		return 2;
	}
	if (json)
		strcat(req, " --json");
	strcat(req, "\n");

	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "fedhubctl: socket path too long\n");
		return 2;
	}
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		fprintf(stderr, "fedhubctl: cannot connect to %s: %s\n", path, strerror(errno));
		return 2;
	}
	/* a hub that stops answering must not hang a script */
	struct timeval tv = {30, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	size_t n = strlen(req);
	if (write(fd, req, n) != (ssize_t)n) {
		fprintf(stderr, "fedhubctl: cannot send to %s: %s\n", path, strerror(errno));
		return 2;
	}
	char buf[65536];
	int status = -1; /* 0 OK, 1 ERR, -1 not seen yet */
	char head[8];
	size_t hn = 0;
	ssize_t k;
	while ((k = read(fd, buf, sizeof(buf))) > 0) {
		char *p = buf;
		size_t left = (size_t)k;
		while (status < 0 && left) {
			char ch = *p++;
			left--;
			if (ch == '\n') {
				head[hn] = 0;
				status = !strcmp(head, "OK") ? 0 : 1;
			} else if (hn < sizeof(head) - 1) {
				head[hn++] = ch;
			}
		}
		if (left)
			fwrite(p, 1, left, status == 0 ? stdout : stderr);
	}
	if (k < 0 && status < 0) {
		fprintf(stderr, "fedhubctl: no answer from %s: %s\n", path, strerror(errno));
		return 2;
	}
	close(fd);
	if (status < 0) {
		fprintf(stderr, "fedhubctl: the hub closed the connection without answering\n");
		return 2;
	}
	return status;
}
