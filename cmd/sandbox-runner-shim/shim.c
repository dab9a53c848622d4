/*
 * sandbox-runner-shim is the shim binary containerd runs for the runner's
 * crun and runc sandboxes. It is containerd's runc shim
 * (containerd-shim-runc-v2) but for two calls it answers itself.
 *
 * Whenever a shim's connection closes, even after a task was deleted the
 * normal way, containerd runs "SHIM ... delete" for the task, on the path
 * of the task's deletion: the runc shim, a Go program, starts (about 17 ms
 * of CPU here) to run "crun delete --force" (or runc's) on a container that
 * is gone already, and unmount a rootfs that is unmounted. That is about
 * 30 ms of every sandbox's teardown. This program answers that call itself
 * when there is provably nothing to clean up: the OCI runtime keeps no
 * state for the container and its rootfs is not mounted. Every other call,
 * and that one whenever anything is left, runs the runc shim with the same
 * arguments, environment and working directory (execv: the same process),
 * so a crashed shim's container is cleaned up as before.
 *
 * It also answers "SHIM ... start" for a sandbox that joins a shim group
 * whose shim runs: containerd runs a start for every sandbox, and for one
 * that joins a running shim the runc shim (again a Go program start) only
 * checks that the group's socket answers and prints its address. The
 * runner writes that address into the sandbox's spec (annotation
 * io.sandbox-runner/shim-socket), computed as the runc shim does, from the
 * containerd address it names (io.sandbox-runner/shim-address); this
 * program prints it when containerd's -address is that one and the socket
 * takes a connection, and otherwise leaves the start to the runc shim,
 * which starts the group's shim or finds it where it is.
 *
 * It keeps no state of its own (a start it answers writes the bundle's
 * "address" file, as the runc shim does). It is C and static, so that it
 * costs a few hundred microseconds.
 *
 * Its answer to a cleanup is what the runc shim answers, a
 * containerd.task.v2.DeleteResponse in protobuf's wire format: exit status
 * 137 (SIGKILL) and the time of now.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The runc shim, and where it keeps every OCI runtime's state: its root
 * (process.RuncRoot), then the namespace, then the container's id. */
#define RUNC_SHIM "containerd-shim-runc-v2"
#define RUNC_ROOT "/run/containerd/runc"

static void fail(const char *what, const char *detail)
{
	dprintf(2, "sandbox-runner-shim: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	_exit(1);
}

/* run_runc_shim becomes the runc shim: from PATH, as containerd looks for
 * it, else from the directory of containerd's binary (this process's
 * parent), where containerd looks next. */
static void run_runc_shim(char **argv)
{
	char path[PATH_MAX], exe[PATH_MAX], link[64];
	const char *p = getenv("PATH");
	ssize_t n;

	while (p && *p) {
		const char *end = strchrnul(p, ':');
		int len = end - p;
		if (len > 0 && snprintf(path, sizeof path, "%.*s/%s", len, p, RUNC_SHIM) < (int)sizeof path && path[0] == '/')
			execv(path, argv);
		p = *end ? end + 1 : end;
	}
	snprintf(link, sizeof link, "/proc/%d/exe", (int)getppid());
	n = readlink(link, exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash && snprintf(path, sizeof path, "%.*s/%s", (int)(slash - exe), exe, RUNC_SHIM) < (int)sizeof path)
			execv(path, argv);
	}
	fail("cannot run " RUNC_SHIM ", containerd's runc shim", "not on PATH or beside containerd");
}

/* flag returns the value after name in argv, or NULL. */
static const char *flag(int argc, char **argv, const char *name)
{
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

/* plain tells whether s can be a path component as the runc shim would
 * use it: no "/", no "." or "..", nothing empty. */
static int plain(const char *s)
{
	return s && *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && strlen(s) < 256;
}

/* mounted tells whether dir is a mount point, from this process's
 * mountinfo: 1 yes, 0 no, -1 unknown. A path with a character mountinfo
 * escapes (space, tab, newline, backslash) is unknown. */
static int mounted(const char *dir)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	if (strpbrk(dir, " \t\n\\"))
		return -1;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -1;
	while (!found && getline(&line, &cap, f) > 0) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
		char *field = line;
		for (int i = 0; i < 4 && field; i++) {
			field = strchr(field, ' ');
			if (field)
				field++;
		}
		if (!field)
			continue;
		size_t len = strcspn(field, " ");
		found = len == strlen(dir) && strncmp(field, dir, len) == 0;
	}
	free(line);
	fclose(f);
	return found;
}

/* gone tells whether nothing is left of container id of namespace ns whose
 * bundle is bundle: no OCI runtime state, no rootfs mount. */
static int gone(const char *ns, const char *id, const char *bundle)
{
	char path[PATH_MAX];
	struct stat st;

	if (!plain(ns) || !plain(id) || !bundle || bundle[0] != '/')
		return 0;
	if (snprintf(path, sizeof path, "%s/%s/%s", RUNC_ROOT, ns, id) >= (int)sizeof path)
		return 0;
	if (lstat(path, &st) == 0 || errno != ENOENT)
		return 0;
	if (snprintf(path, sizeof path, "%s/rootfs", bundle) >= (int)sizeof path)
		return 0;
	return mounted(path) == 0;
}

/* varint appends v to b in protobuf's base-128 encoding. */
static size_t varint(unsigned char *b, unsigned long long v)
{
	size_t n = 0;
	do {
		b[n] = v & 0x7f;
		v >>= 7;
		if (v)
			b[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

/* answer_deleted writes the runc shim's cleanup answer: DeleteResponse
 * {exit_status: 137, exited_at: now}. */
static void answer_deleted(void)
{
	unsigned char ts[32], out[64];
	size_t tn = 0, n = 0;
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	ts[tn++] = 0x08; /* Timestamp.seconds, varint */
	tn += varint(ts + tn, (unsigned long long)now.tv_sec);
	if (now.tv_nsec) {
		ts[tn++] = 0x10; /* Timestamp.nanos, varint */
		tn += varint(ts + tn, (unsigned long long)now.tv_nsec);
	}
	out[n++] = 0x10; /* DeleteResponse.exit_status, varint */
	n += varint(out + n, 128 + 9);
	out[n++] = 0x1a; /* DeleteResponse.exited_at, length-delimited */
	n += varint(out + n, tn);
	memcpy(out + n, ts, tn);
	n += tn;
	for (size_t done = 0; done < n;) {
		ssize_t w = write(1, out + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			fail("writing the cleanup's answer", strerror(errno));
		done += w;
	}
	_exit(0);
}

/* read_small reads a file of at most max bytes, NUL-terminated, or NULL. */
static char *read_small(const char *path, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf;
	size_t have = 0;
	if (fd < 0)
		return NULL;
	buf = malloc(max + 1);
	while (buf && have < max) {
		ssize_t n = read(fd, buf + have, max - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0) {
				free(buf);
				buf = NULL;
			}
			break;
		}
		have += n;
	}
	close(fd);
	if (!buf || have == max) {
		free(buf);
		return NULL;
	}
	buf[have] = '\0';
	return buf;
}

/* annotation returns the value of the spec's annotation key, as containerd
 * writes config.json (Go's encoding/json: no spaces), or NULL. A value
 * with an escape is not one the runner wrote: NULL. */
static char *annotation(const char *json, const char *key)
{
	char pat[128];
	const char *p, *end;
	if (snprintf(pat, sizeof pat, "\"%s\":\"", key) >= (int)sizeof pat)
		return NULL;
	p = strstr(json, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	end = strchr(p, '"');
	if (!end || memchr(p, '\\', end - p))
		return NULL;
	return strndup(p, end - p);
}

/* answers tells whether the unix socket at path takes a connection. */
static int answers(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, ok;
	if (strlen(path) >= sizeof sa.sun_path)
		return 0;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

/* join answers a start with the address of the running shim of the
 * sandbox's group, as the runc shim does, when the runner named it and it
 * answers; else it returns, for the runc shim to start. */
static void join(int argc, char **argv)
{
	const char *address = flag(argc, argv, "-address");
	char *spec, *basis, *socket;
	size_t n;
	int fd;

	if (!address)
		return;
	spec = read_small("config.json", 4 << 20);
	if (!spec)
		return;
	basis = annotation(spec, "io.sandbox-runner/shim-address");
	socket = annotation(spec, "io.sandbox-runner/shim-socket");
	if (!basis || !socket || strcmp(basis, address) != 0 || strncmp(socket, "unix:///", 8) != 0 || !answers(socket + 7))
		return;
	/* Where containerd 1.6 finds the shim again after a restart; the
	 * runc shim writes it the same way. */
	n = strlen(socket);
	fd = open(".address", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, socket, n) != (ssize_t)n || close(fd) < 0 || rename(".address", "address") < 0)
		fail("writing the shim's address", strerror(errno));
	if (write(1, socket, n) != (ssize_t)n)
		fail("writing the shim's address", strerror(errno));
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[argc - 1], "start") == 0)
		join(argc, argv);
	if (argc > 1 && strcmp(argv[argc - 1], "delete") == 0) {
		char cwd[PATH_MAX];
		const char *bundle = flag(argc, argv, "-bundle");
		if (!bundle)
			bundle = getcwd(cwd, sizeof cwd);
		if (gone(flag(argc, argv, "-namespace"), flag(argc, argv, "-id"), bundle))
			answer_deleted();
	}
	run_runc_shim(argv);
	return 1;
}
