/*
 * sandbox-runner-init is PID 1 of every sandbox, cold or pooled.
 *
 * The runner bind-mounts this static binary read-only into the sandbox and
 * makes it the container's process, with the path of the task's command
 * file as its one argument. The runner writes that file (read-only inside,
 * in a directory of this sandbox alone) just before it starts the
 * container, which is what lets a warm-pool sandbox be made before anyone
 * knows what it will run. A pooled sandbox is started ahead: its command
 * file is a FIFO, which this process opens and reads to its end when the
 * runner writes the task's command into it; the deadline counts from
 * then.
 *
 * It starts the task as its child, so the task gets the signal semantics
 * of any process (a PID 1 has no default signal actions: abort() and a
 * self-sent SIGTERM would be ignored), reaps every orphan, forwards the
 * signals it receives to the task, detaches itself if the task makes it a
 * tracer (PTRACE_TRACEME), and exits with the task's status: its exit code,
 * or 128+N when signal N killed it. When the task's main process ends,
 * whatever it left running is killed. At the deadline the command file
 * gives, it kills every process in the sandbox and exits, so the kernel
 * tears the pid namespace down even when no runner process is alive.
 *
 * A sandbox started ahead also has a status FIFO beside its command file,
 * which the runner reads. This process opens its writing end before it
 * waits for the command, and the runner unlinks it before it writes the
 * command, so no task can reach it: this process alone holds it (not
 * dumpable, its descriptors cannot be taken from /proc/1/fd), and it writes
 * its exit status there, one byte, just before it exits. The runner has the
 * verdict then, without waiting for the shim to reap this process and
 * containerd to pass the exit on.
 *
 * It runs as the task's unprivileged user, under the task's seccomp filter
 * and limits, adds no privilege and keeps no state. It is not dumpable, so
 * the task (the same uid) cannot ptrace it or read its memory to forge a
 * verdict. It is C rather than Go because it lives in the task's cgroup:
 * one thread and a few hundred KiB, where a Go runtime would take several
 * of the task's pids and megabytes of its memory.
 *
 * The command file (see runner/initcmd) is a sequence of NUL-terminated
 * fields:
 *
 *   "sandbox-runner-command 1"
 *   deadline in milliseconds after start ("0": none)
 *   working directory
 *   argc, then argc arguments
 *   envc, then envc KEY=VALUE entries
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "sandbox-runner-command 1"
#define MAX_COMMAND (8 << 20)

/* Exit statuses, as POSIX shells use them. */
#define EXIT_CANNOT_RUN 126
#define EXIT_NOT_FOUND 127
/* Exit status when the deadline killed the task, as timeout(1). */
#define EXIT_DEADLINE 124

extern char **environ;

/* The name of the status FIFO in the command file's directory. */
#define STATUS_FILE "status"

/* status_fd is the status FIFO's writing end, or -1 when there is none. */
static int status_fd = -1;

/* open_status opens the status FIFO beside the command file, if the runner
 * made one and reads it; non-blocking, so a FIFO with no reader is an
 * error (ENXIO) rather than a wait. */
static void open_status(const char *command_file)
{
	const char *slash = strrchr(command_file, '/');
	size_t dir = slash ? (size_t)(slash - command_file) + 1 : 0;
	char path[4096];
	if (dir + sizeof STATUS_FILE > sizeof path)
		return;
	memcpy(path, command_file, dir);
	memcpy(path + dir, STATUS_FILE, sizeof STATUS_FILE);
	status_fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
}

/* finish reports code on the status FIFO, if there is one, and exits with
 * it. */
static void finish(int code)
{
	if (status_fd >= 0) {
		unsigned char b = code;
		/* SIGPIPE is blocked: a reader gone is EPIPE, nothing more. */
		(void)write(status_fd, &b, 1);
	}
	_exit(code);
}

static void fail(int code, const char *what, const char *detail)
{
	dprintf(2, "sandbox-runner-init: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	_exit(code);
}

struct command {
	long long deadline_ms;
	char *dir;
	char **argv;
	char **envp;
};

/* next returns the field at *p and moves *p past it, or NULL at the end. */
static char *next(char **p, char *end)
{
	char *s = *p;
	char *nul;
	if (s >= end)
		return NULL;
	nul = memchr(s, '\0', end - s);
	if (!nul)
		return NULL;
	*p = nul + 1;
	return s;
}

static char **list(char **p, char *end)
{
	char *n = next(p, end);
	char *stop;
	long count;
	char **out;
	if (!n)
		return NULL;
	errno = 0;
	count = strtol(n, &stop, 10);
	if (errno || *stop || count < 0 || count > 1 << 20)
		return NULL;
	out = calloc(count + 1, sizeof(char *));
	if (!out)
		return NULL;
	for (long i = 0; i < count; i++)
		if (!(out[i] = next(p, end)))
			return NULL;
	return out;
}

static void read_command(const char *path, struct command *c)
{
	/* A regular file, or a FIFO (a pooled sandbox, started ahead): then
	 * the open waits for the runner, which writes the command and closes
	 * its end when a task claims the sandbox. Either way it is read to
	 * its end. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL, *p, *end, *f, *stop;
	size_t have = 0, cap = 0;
	if (fd < 0)
		fail(EXIT_CANNOT_RUN, "reading the task's command", strerror(errno));
	for (;;) {
		ssize_t n;
		if (have == cap) {
			cap = cap ? cap * 2 : 64 << 10;
			if (cap > MAX_COMMAND + 1)
				cap = MAX_COMMAND + 1;
			if (have == cap)
				fail(EXIT_CANNOT_RUN, "the task's command file is too large", NULL);
			if (!(buf = realloc(buf, cap)))
				fail(EXIT_CANNOT_RUN, "reading the task's command", "out of memory");
		}
		n = read(fd, buf + have, cap - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail(EXIT_CANNOT_RUN, "reading the task's command", strerror(errno));
		if (n == 0)
			break;
		have += n;
	}
	if (have == 0)
		fail(EXIT_CANNOT_RUN, "the task's command file is empty", NULL);
	close(fd);
	p = buf;
	end = buf + have;
	f = next(&p, end);
	if (!f || strcmp(f, MAGIC) != 0)
		fail(EXIT_CANNOT_RUN, "the task's command file is not in this init's format", NULL);
	f = next(&p, end);
	if (!f)
		fail(EXIT_CANNOT_RUN, "the task's command is malformed", "no deadline");
	errno = 0;
	c->deadline_ms = strtoll(f, &stop, 10);
	if (errno || *stop || c->deadline_ms < 0)
		fail(EXIT_CANNOT_RUN, "the task's command is malformed", "bad deadline");
	c->dir = next(&p, end);
	c->argv = list(&p, end);
	c->envp = list(&p, end);
	if (!c->dir || !c->argv || !c->envp || !c->argv[0] || p != end)
		fail(EXIT_CANNOT_RUN, "the task's command is malformed", NULL);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* kill_all kills every process but this one: all of the pid namespace when
 * this is its PID 1, else (when run outside a sandbox, in tests) the task's
 * process group. */
static void kill_all(pid_t child)
{
	if (getpid() == 1)
		kill(-1, SIGKILL);
	else
		kill(-child, SIGKILL);
}

static int status_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return EXIT_CANNOT_RUN;
}

int main(int argc, char **argv)
{
	struct command c;
	sigset_t all, none;
	pid_t child;
	long long deadline = 0;

	if (argc != 2)
		fail(EXIT_CANNOT_RUN, "usage: sandbox-runner-init COMMAND-FILE", NULL);
	/* No ptrace, no /proc/1/mem, no core: the task runs as this uid too. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* Before the command: the runner unlinks the FIFO once this process
	 * waits for it. */
	open_status(argv[1]);
	read_command(argv[1], &c);

	/* Every signal is blocked here and taken with sigtimedwait, so none
	 * is lost between the fork and the wait. The child unblocks them. */
	sigfillset(&all);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &all, NULL);

	if (c.deadline_ms > 0)
		deadline = now_ms() + c.deadline_ms;
	child = fork();
	if (child < 0)
		fail(EXIT_CANNOT_RUN, "starting the task", strerror(errno));
	if (child == 0) {
		setpgid(0, 0);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (c.dir[0] && chdir(c.dir) < 0)
			fail(EXIT_CANNOT_RUN, "changing to the working directory", strerror(errno));
		/* execvp searches the PATH of environ: make it the task's. */
		environ = c.envp;
		execvp(c.argv[0], c.argv);
		if (errno == ENOENT)
			fail(EXIT_NOT_FOUND, c.argv[0], "command not found");
		fail(EXIT_CANNOT_RUN, c.argv[0], strerror(errno));
	}
	setpgid(child, child);

	for (;;) {
		siginfo_t info;
		struct timespec wait = {3600, 0};
		int sig, status;
		pid_t pid;

		if (deadline) {
			long long left = deadline - now_ms();
			if (left <= 0) {
				kill_all(child);
				finish(EXIT_DEADLINE);
			}
			wait.tv_sec = left / 1000;
			wait.tv_nsec = (left % 1000) * 1000000;
		}
		sig = sigtimedwait(&all, &info, &wait);
		if (sig < 0)
			continue; /* EAGAIN at the deadline, checked above; EINTR */
		if (sig != SIGCHLD) {
			kill(child, sig);
			continue;
		}
		while ((pid = waitpid(-1, &status, WNOHANG | __WALL)) > 0) {
			if (WIFSTOPPED(status)) {
				/* Only a tracee reports a stop to a parent that did not
				 * ask for them: the task made this process its tracer.
				 * Let go of it and hand it the signal it stopped with
				 * (but the SIGTRAP of an execve under tracing, which an
				 * untraced process never gets). */
				int s = WSTOPSIG(status);
				ptrace(PTRACE_DETACH, pid, 0, s == SIGTRAP ? 0 : s);
				continue;
			}
			if (pid == child && (WIFEXITED(status) || WIFSIGNALED(status))) {
				kill_all(child);
				finish(status_code(status));
			}
		}
	}
}
