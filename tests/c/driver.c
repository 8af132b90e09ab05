/*
 * Drives tests/c/app.c (and the quickstart) as real master processes and
 * checks what a user sees: log lines, exit statuses, pids.
 *
 *   driver <app> <quickstart> <label> [scenario...]
 *
 * DRIVER_CTL names the installed cotyledon-ctl, for the control socket
 * scenarios (they fail without it); their sockets go in a directory made
 * under DRIVER_TMP (else /tmp) and removed after each scenario.
 *
 * The driver is a child subreaper: workers orphaned by a killed master are
 * reparented to it, so it can wait for them. Every wait has a deadline.
 * Each scenario's process group is SIGKILLed and reaped at its end, pass
 * or fail (and the processes it named with `forget_later`, which left the
 * group). Prints "PASS <label> <scenario>" / "FAIL ..." lines.
 *
 * The systemd scenarios bind a datagram socket (a path or an abstract
 * name) and hand it to the app as NOTIFY_SOCKET: every datagram is read as
 * soon as it arrives, whatever the driver waits for (a notify socket's
 * queue is short: a sender finding it full blocks), and kept with the
 * kernel's time of arrival.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 10000
#define MAX_LINES 4096

struct proc {
    pid_t pid;
    int out; /* the process's stdout+stderr */
    int in;  /* its stdin */
    char buf[8192];
    size_t blen;
    char *lines[MAX_LINES];
    int n;
    int eof;
};

static const char *app, *quickstart, *label;
static volatile pid_t current_group;
/* A process group outside the scenario's to SIGKILL at its end (the master
 * of a split: a session of its own). */
static pid_t extra_group;
/* A "NAME=value" the next started processes get in their environment. */
static const char *child_env;
/* More of them, for the app only (start()); "WATCHDOG_PID=self" gives the
 * started process its own pid. */
static const char *app_env[8];
/* Processes a scenario learnt of that may leave the app's process group:
 * SIGKILLed at its end too. */
static pid_t strays[16];
static int nstrays;
/* A scenario's scratch directory, removed (with what is in it) after it. */
static char scratch[64];
static char why[1024], miss[700];

/* ---- reaping ------------------------------------------------------------ */

static struct {
    pid_t pid;
    int status;
} reaped[4096];
static int nreaped;

static void reap_all(void)
{
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
        if (nreaped < (int)(sizeof reaped / sizeof reaped[0])) {
            reaped[nreaped].pid = r;
            reaped[nreaped].status = st;
            nreaped++;
        }
    }
}

static int find_reaped(pid_t pid, int *status)
{
    for (int i = 0; i < nreaped; i++)
        if (reaped[i].pid == pid) {
            if (status)
                *status = reaped[i].status;
            return 1;
        }
    return 0;
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void nap(void)
{
    struct timespec t = {0, 5 * 1000 * 1000};
    nanosleep(&t, NULL);
}

/* ---- the systemd notify socket ------------------------------------------ */

static int make_scratch(void);

struct dgram {
    char *text;
    long long at_us;   /* the kernel's time of arrival (CLOCK_REALTIME) */
    long long mono_us; /* our CLOCK_MONOTONIC when we read it */
};
static int notify_fd = -1;
static struct dgram dgrams[2048];
static int ndgrams;

static long long mono_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Binds the notify socket: in the scenario's scratch directory, or an
 * abstract name; writes "NOTIFY_SOCKET=..." to `env`. */
static int notify_open(int abstract, char *env, size_t size)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    socklen_t len;
    if (abstract) {
        static int serial;
        int n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "cotyledon-driver-%d-%d", (int)getpid(), ++serial);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
        snprintf(env, size, "NOTIFY_SOCKET=@%s", a.sun_path + 1);
    } else {
        if (!scratch[0] && !make_scratch())
            return 0;
        snprintf(a.sun_path, sizeof a.sun_path, "%s/notify.sock", scratch);
        len = (socklen_t)sizeof a;
        snprintf(env, size, "NOTIFY_SOCKET=%s", a.sun_path);
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&a, len)) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    notify_fd = fd;
    return 1;
}

/* Reads every datagram waiting; whether there was one. */
static int notify_drain(void)
{
    int got = 0;
    while (notify_fd >= 0 && ndgrams < (int)(sizeof dgrams / sizeof dgrams[0])) {
        char buf[4096];
        union {
            char space[CMSG_SPACE(sizeof(struct timespec))];
            struct cmsghdr align;
        } control;
        struct iovec iov = {buf, sizeof buf - 1};
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.space;
        msg.msg_controllen = sizeof control.space;
        ssize_t n = recvmsg(notify_fd, &msg, MSG_DONTWAIT);
        if (n < 0)
            break;
        buf[n] = 0;
        struct dgram *d = &dgrams[ndgrams++];
        d->text = strdup(buf);
        d->mono_us = mono_us();
        d->at_us = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec ts;
                memcpy(&ts, CMSG_DATA(c), sizeof ts);
                d->at_us = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
            }
        got = 1;
    }
    return got;
}

static void notify_close(void)
{
    if (notify_fd >= 0)
        close(notify_fd);
    notify_fd = -1;
    for (int i = 0; i < ndgrams; i++)
        free(dgrams[i].text);
    ndgrams = 0;
}

/* The value of datagram i's first line "KEY=value" whose "KEY=" is `key`
 * (copied into a static buffer), or NULL. */
static const char *dg_value(int i, const char *key)
{
    static char value[1024];
    size_t klen = strlen(key);
    for (const char *line = dgrams[i].text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len >= klen && strncmp(line, key, klen) == 0) {
            size_t vlen = len - klen < sizeof value - 1 ? len - klen : sizeof value - 1;
            memcpy(value, line + klen, vlen);
            value[vlen] = 0;
            return value;
        }
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* Whether datagram i has the line `line` exactly ("KEY=value"), or a line
 * starting with it when it ends with '*'. */
static int dg_has(int i, const char *line)
{
    size_t len = strlen(line);
    int prefix = len > 0 && line[len - 1] == '*';
    const char *eq = strchr(line, '=');
    if (!eq)
        return 0;
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)(eq - line + 1), line);
    const char *v = dg_value(i, key);
    if (!v)
        return 0;
    return prefix ? strncmp(v, eq + 1, len - 1 - (size_t)(eq - line + 1)) == 0 : strcmp(v, eq + 1) == 0;
}

static int dg_count(int from, int to, const char *line)
{
    int n = 0;
    for (int i = from < 0 ? 0 : from; i < to && i < ndgrams; i++)
        n += dg_has(i, line);
    return n;
}

static void dump_dgrams(void)
{
    if (ndgrams == 0)
        return;
    fprintf(stderr, "---- datagrams ----\n");
    for (int i = 0; i < ndgrams; i++) {
        fprintf(stderr, "%4d| +%lld ms |", i, (dgrams[i].at_us - dgrams[0].at_us) / 1000);
        for (const char *c = dgrams[i].text; *c; c++)
            fputc(*c == '\n' ? '|' : *c, stderr);
        fputc('\n', stderr);
    }
}

/* Waits until `pid` (a child of ours) ended; its wait status in *status. */
static int wait_exit(pid_t pid, int *status, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        reap_all();
        if (find_reaped(pid, status))
            return 1;
        if (now_ms() > end)
            return 0;
        nap();
    }
}

/* Waits until `pid` no longer exists (reaped by us, or by its parent). */
static int wait_gone(pid_t pid, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        reap_all();
        if (find_reaped(pid, NULL) || (kill(pid, 0) == -1 && errno == ESRCH))
            return 1;
        if (now_ms() > end)
            return 0;
        nap();
    }
}

/* ---- processes and their lines ------------------------------------------ */

static int start(struct proc *p, char *const argv[])
{
    int out[2], in[2];
    memset(p, 0, sizeof *p);
    if (pipe2(out, O_CLOEXEC) || pipe2(in, O_CLOEXEC))
        return 0;
    /* DRIVER_WRAP="valgrind --error-exitcode=99 ..." runs the program under it */
    char *args[64];
    int k = 0;
    static char wrap[1024];
    const char *w = getenv("DRIVER_WRAP");
    if (w && *w) {
        snprintf(wrap, sizeof wrap, "%s", w);
        for (char *tok = strtok(wrap, " "); tok && k < 32; tok = strtok(NULL, " "))
            args[k++] = tok;
    }
    for (int i = 0; argv[i] && k < 63; i++)
        args[k++] = argv[i];
    args[k] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        setsid();
        if (child_env)
            putenv((char *)child_env);
        for (int i = 0; i < (int)(sizeof app_env / sizeof app_env[0]) && app_env[i]; i++) {
            static char self[64];
            if (strcmp(app_env[i], "WATCHDOG_PID=self") == 0) {
                snprintf(self, sizeof self, "WATCHDOG_PID=%d", (int)getpid());
                putenv(self);
            } else {
                putenv((char *)app_env[i]);
            }
        }
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        execvp(args[0], args);
        _exit(127);
    }
    close(out[1]);
    close(in[0]);
    p->pid = pid;
    p->out = out[0];
    p->in = in[1];
    current_group = pid;
    return 1;
}

static void add_line(struct proc *p, const char *s, size_t len)
{
    if (p->n < MAX_LINES)
        p->lines[p->n++] = strndup(s, len);
}

/* Reads what is available within `ms` (the output, and the datagrams of
 * the notify socket when there is one); returns 0 on timeout or EOF. */
static int read_more(struct proc *p, int ms)
{
    struct pollfd fds[2];
    int nfds = 0, out = -1;
    if (!p->eof) {
        fds[nfds] = (struct pollfd){p->out, POLLIN, 0};
        out = nfds++;
    }
    if (notify_fd >= 0)
        fds[nfds++] = (struct pollfd){notify_fd, POLLIN, 0};
    if (nfds == 0)
        return 0;
    int r = poll(fds, (nfds_t)nfds, ms < 0 ? 0 : ms);
    if (r <= 0)
        return 0;
    int got = notify_drain();
    if (out < 0 || !fds[out].revents)
        return got;
    ssize_t n = read(p->out, p->buf + p->blen, sizeof p->buf - p->blen);
    if (n <= 0) {
        if (p->blen)
            add_line(p, p->buf, p->blen);
        p->blen = 0;
        p->eof = 1;
        return 0;
    }
    p->blen += (size_t)n;
    char *start = p->buf, *nl;
    while ((nl = memchr(start, '\n', p->blen - (size_t)(start - p->buf)))) {
        add_line(p, start, (size_t)(nl - start));
        start = nl + 1;
    }
    p->blen -= (size_t)(start - p->buf);
    memmove(p->buf, start, p->blen);
    if (p->blen == sizeof p->buf) { /* an overlong line: cut it */
        add_line(p, p->buf, p->blen);
        p->blen = 0;
    }
    return 1;
}

/* Index of the first line after `after` containing `pattern`, waiting up
 * to `timeout_ms` for it; -1 if it does not come. */
static int wait_line(struct proc *p, int after, const char *pattern, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    int i = after + 1;
    for (;;) {
        for (; i < p->n; i++)
            if (strstr(p->lines[i], pattern))
                return i;
        long long left = end - now_ms();
        if (left <= 0 || p->eof)
            break;
        read_more(p, (int)left);
    }
    snprintf(miss, sizeof miss, "no line containing \"%.600s\" after line %d", pattern, after);
    return -1;
}

/* Collects output (and datagrams) for `ms` more milliseconds. */
static void drain_for(struct proc *p, int ms)
{
    long long end = now_ms() + ms;
    while (now_ms() < end && (!p->eof || notify_fd >= 0))
        read_more(p, (int)(end - now_ms()));
}

/* Index of the first datagram after `after` that has `line` (see dg_has),
 * waiting up to `timeout_ms` for it (reading the output meanwhile); -1 if
 * it does not come. */
static int wait_dgram(struct proc *p, int after, const char *line, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (int i = after + 1;; i++) {
        while (i >= ndgrams) {
            long long left = end - now_ms();
            if (left <= 0) {
                snprintf(miss, sizeof miss, "no datagram with \"%.500s\" after datagram %d", line, after);
                return -1;
            }
            read_more(p, (int)left);
        }
        if (dg_has(i, line))
            return i;
    }
}

static int count_lines(struct proc *p, const char *pattern)
{
    int c = 0;
    for (int i = 0; i < p->n; i++)
        if (strstr(p->lines[i], pattern))
            c++;
    return c;
}

static int pid_in(const char *line)
{
    const char *s = strstr(line, "pid=");
    return s ? atoi(s + 4) : -1;
}

static void finish(struct proc *p)
{
    if (p->pid > 0) {
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
    }
    if (extra_group > 0)
        kill(-extra_group, SIGKILL);
    extra_group = 0;
    reap_all();
    for (int i = 0; i < nstrays; i++)
        if (!find_reaped(strays[i], NULL))
            kill(strays[i], SIGKILL);
    nstrays = 0;
    long long end = now_ms() + 5000;
    for (;;) { /* reap everything: the master and any orphaned worker */
        int st;
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (r > 0) {
            if (nreaped < (int)(sizeof reaped / sizeof reaped[0])) {
                reaped[nreaped].pid = r;
                reaped[nreaped].status = st;
                nreaped++;
            }
            continue;
        }
        if (r < 0 && errno == ECHILD)
            break;
        if (now_ms() > end)
            break;
        nap();
    }
    current_group = 0;
    notify_close();
    if (p->out >= 0)
        close(p->out);
    if (p->in >= 0)
        close(p->in);
    for (int i = 0; i < p->n; i++)
        free(p->lines[i]);
    p->n = 0;
}

static void dump(struct proc *p)
{
    fprintf(stderr, "---- output of pid %d ----\n", (int)p->pid);
    for (int i = 0; i < p->n; i++)
        fprintf(stderr, "%4d| %s\n", i, p->lines[i]);
    dump_dgrams();
    fprintf(stderr, "----\n");
}

static void send_line(struct proc *p, const char *text)
{
    ssize_t w = write(p->in, text, strlen(text));
    (void)w;
}

static void failf(int line, const char *f, ...)
{
    char m[700];
    va_list ap;
    va_start(ap, f);
    vsnprintf(m, sizeof m, f, ap);
    va_end(ap);
    snprintf(why, sizeof why, "%.700s (driver.c:%d)", m, line);
}

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failf(__LINE__, __VA_ARGS__);                                                          \
            return 0;                                                                              \
        }                                                                                          \
    } while (0)

/* Waits for a line containing `pattern` after line `after`; its index in `var`. */
#define LINE(var, after, pattern)                                                                  \
    int var = wait_line(p, (after), (pattern), WAIT_MS);                                          \
    if (var < 0) {                                                                                 \
        failf(__LINE__, "%s", miss);                                                               \
        return 0;                                                                                  \
    }

/* Waits for a datagram with `line` (see dg_has) after datagram `after`;
 * its index in `var`. */
#define DGRAM(var, after, line)                                                                    \
    int var = wait_dgram(p, (after), (line), WAIT_MS);                                            \
    if (var < 0) {                                                                                 \
        failf(__LINE__, "%s", miss);                                                               \
        return 0;                                                                                  \
    }

/* Reads the start of the file `path` into `buf` (NUL-terminated). */
static int slurp(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = 0;
    return 1;
}

/* The state letter of `pid` in /proc (R, S, T, Z, ...), 0 if it is gone. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!slurp(path, buf, sizeof buf))
        return 0;
    const char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' ? paren[2] : 0;
}

/* Waits until `pid` is in state `state` (T: stopped). */
static int wait_state(pid_t pid, char state, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (proc_state(pid) != state) {
        if (now_ms() > end)
            return 0;
        nap();
    }
    return 1;
}

/* Whether `pid` is alive: it exists and is not a zombie. */
static int alive(pid_t pid)
{
    char st = proc_state(pid);
    return st != 0 && st != 'Z' && st != 'X';
}

static int field_int(const char *line, const char *key)
{
    const char *s = strstr(line, key);
    return s ? atoi(s + strlen(key)) : -1;
}

static char pat[512];
static const char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(pat, sizeof pat, f, ap);
    va_end(ap);
    return pat;
}

/* Starts app with args; waits for the master line and both workers. */
struct world {
    int master;
    unsigned long long sid;
    int w[3];
    int last;
};

static int boot(struct proc *p, struct world *w, int workers, char **args)
{
    char *argv[16];
    int k = 0;
    argv[k++] = (char *)app;
    for (int i = 0; args && args[i] && k < 15; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    EXPECT(start(p, argv), "cannot start %s", app);
    LINE(m, -1, "event master pid=");
    w->master = pid_in(p->lines[m]);
    const char *s = strstr(p->lines[m], "sid=");
    w->sid = s ? strtoull(s + 4, NULL, 10) : 0;
    EXPECT(w->master == p->pid, "master pid %d != started pid %d", w->master, (int)p->pid);
    w->last = m;
    for (int i = 0; i < workers; i++) {
        LINE(ini, m, fmt("event init wid=%d ", i));
        w->w[i] = pid_in(p->lines[ini]);
        EXPECT(w->w[i] > 0 && w->w[i] != w->master, "worker pid");
        LINE(run, ini, fmt("event run wid=%d pid=%d", i, w->w[i]));
        if (run > w->last)
            w->last = run;
    }
    return 1;
}

static int stop_clean(struct proc *p, struct world *w)
{
    kill(w->master, SIGTERM);
    LINE(ret, w->last, "event run_returned result=0");
    int st;
    EXPECT(wait_exit(w->master, &st, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status 0x%x", st);
    (void)ret;
    return 1;
}

/* ---- cotyledon-ctl and the control socket ------------------------------- */

/* Runs `$DRIVER_CTL args...` (with child_env), its stdout and stderr in
 * `out` (NUL-terminated, cut to `size`); returns its exit code, or -1 if it
 * could not run or took longer than WAIT_MS (it is then killed). */
static int run_ctl(char *out, size_t size, ...)
{
    const char *ctl = getenv("DRIVER_CTL");
    out[0] = 0;
    if (!ctl || !*ctl) {
        snprintf(out, size, "DRIVER_CTL is not set");
        return -1;
    }
    char *argv[16];
    int k = 0;
    argv[k++] = (char *)ctl;
    va_list ap;
    va_start(ap, size);
    for (char *a; k < 15 && (a = va_arg(ap, char *));)
        argv[k++] = a;
    va_end(ap);
    argv[k] = NULL;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC))
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (child_env)
            putenv((char *)child_env);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    long long end = now_ms() + WAIT_MS;
    for (;;) {
        long long left = end - now_ms();
        struct pollfd fd = {fds[0], POLLIN, 0};
        if (left <= 0 || poll(&fd, 1, (int)left) <= 0)
            break;
        char tmp[4096];
        ssize_t n = read(fds[0], tmp, sizeof tmp);
        if (n <= 0)
            break;
        size_t take = (size_t)n < size - 1 - len ? (size_t)n : size - 1 - len;
        memcpy(out + len, tmp, take);
        len += take;
    }
    out[len] = 0;
    close(fds[0]);
    int st;
    if (!wait_exit(pid, &st, (int)(end - now_ms() > 0 ? end - now_ms() : 1))) {
        kill(pid, SIGKILL);
        wait_exit(pid, &st, 1000);
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `s` without blanks, so that JSON can be matched whatever its layout. */
static void squeeze(char *s)
{
    char *d = s;
    for (; *s; s++)
        if (*s != ' ' && *s != '\n' && *s != '\t' && *s != '\r')
            *d++ = *s;
    *d = 0;
}

/* Makes the scenario's scratch directory (short: sun_path is 108 bytes). */
static int make_scratch(void)
{
    /* under DRIVER_TMP (run.sh's work directory, removed even if we are
     * killed) when its path is short enough */
    const char *base = getenv("DRIVER_TMP");
    if (!base || !*base || strlen(base) > 40)
        base = "/tmp";
    snprintf(scratch, sizeof scratch, "%s/drv.XXXXXX", base);
    if (!mkdtemp(scratch)) {
        scratch[0] = 0;
        return 0;
    }
    return 1;
}

static void remove_scratch(void)
{
    if (!scratch[0])
        return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0)
        fprintf(stderr, "driver: cannot remove %s\n", scratch);
    scratch[0] = 0;
}

static int file_has(const char *path, const char *needle)
{
    char buf[16384];
    return slurp(path, buf, sizeof buf) && strstr(buf, needle) != NULL;
}

/* Waits until the file `path` exists and contains `needle`. */
static int wait_file_has(const char *path, const char *needle, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (!file_has(path, needle)) {
        if (now_ms() > end)
            return 0;
        nap();
    }
    return 1;
}

/* ---- scenarios ---------------------------------------------------------- */

static int t_startup_and_sigterm(struct proc *p)
{
    struct world w;
    char *args[] = {"log=cb", NULL};
    if (!boot(p, &w, 2, args))
        return 0;
    EXPECT(w.w[0] != w.w[1], "distinct worker pids");
    for (int i = 0; i < 2; i++) {
        LINE(nw, -1, fmt("event new_worker sid=%llu wid=%d same_instance=1 pid=%d", w.sid, i, w.w[i]));
        LINE(rs, -1, fmt("[cb] DEBUG:cotyledon._service_worker:Run service svc(%d) [%d]", i, w.w[i]));
        EXPECT(nw < rs, "new_worker hook before Run service");
    }
    kill(w.master, SIGTERM);
    LINE(a, w.last, "[cb] INFO:cotyledon._service_manager:Caught SIGTERM signal, graceful exiting of master process");
    LINE(b, a, "[cb] INFO:app:event hook terminate 1");
    LINE(c, b, "[cb] INFO:app:event hook terminate 2");
    LINE(d, c, "[cb] DEBUG:cotyledon._service_manager:Killing services with signal SIGTERM");
    LINE(e, d, "[cb] DEBUG:cotyledon._service_manager:Waiting services to terminate");
    for (int i = 0; i < 2; i++) {
        LINE(t0, a, fmt("[cb] INFO:cotyledon._service_worker:Caught SIGTERM signal, graceful exiting of service svc(%d) [%d]", i, w.w[i]));
        LINE(t1, t0, fmt("event terminate wid=%d pid=%d", i, w.w[i]));
        LINE(t2, t1, fmt("event run_done wid=%d pid=%d", i, w.w[i]));
        LINE(t3, t2, fmt("event destroy wid=%d pid=%d", i, w.w[i]));
        (void)t3;
    }
    LINE(f, e, "[cb] DEBUG:cotyledon._service_manager:Shutdown finish");
    LINE(g, f, "event run_returned result=0");
    (void)g;
    int st;
    EXPECT(wait_exit(w.master, &st, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status 0x%x", st);
    EXPECT(wait_gone(w.w[0], WAIT_MS) && wait_gone(w.w[1], WAIT_MS), "workers still there");
    EXPECT(count_lines(p, "event dead_worker") == 0, "no dead-worker hook during shutdown");
    EXPECT(count_lines(p, "event init") == 2, "exactly two workers started");
    return 1;
}

static int t_respawn_after_sigkill(struct proc *p)
{
    struct world w;
    if (!boot(p, &w, 2, NULL))
        return 0;
    /* default logger: plain "LEVEL:target:message" lines on stderr */
    LINE(plain, -1, "DEBUG:cotyledon._service_worker:Run service svc(0)");
    EXPECT(strncmp(p->lines[plain], "DEBUG:cotyledon._service_worker:", 32) == 0, "stderr format");
    kill(w.w[1], SIGKILL);
    LINE(d, w.last, fmt("event dead_worker sid=%llu wid=1 code=-9", w.sid));
    LINE(c, d, fmt("INFO:cotyledon._service_manager:Child %d killed by signal SIGKILL", w.w[1]));
    LINE(n, c, "event init wid=1 ");
    int np = pid_in(p->lines[n]);
    EXPECT(np > 0 && np != w.w[1] && np != w.w[0], "respawned worker has a new pid");
    LINE(r, n, fmt("event run wid=1 pid=%d", np));
    w.last = r;
    EXPECT(kill(w.w[0], 0) == 0, "worker 0 untouched");
    EXPECT(count_lines(p, "event init wid=0 ") == 1, "worker 0 not restarted");
    return stop_clean(p, &w);
}

static int t_exit_status(struct proc *p)
{
    struct world w;
    char *args[] = {"term_code=3", NULL};
    if (!boot(p, &w, 2, args))
        return 0;
    kill(w.w[0], SIGTERM);
    LINE(t, w.last, fmt("event terminate wid=0 pid=%d", w.w[0]));
    LINE(ds, t, fmt("event destroy wid=0 pid=%d", w.w[0]));
    LINE(d, ds, fmt("event dead_worker sid=%llu wid=0 code=3", w.sid));
    LINE(c, d, fmt("INFO:cotyledon._service_manager:Child %d exited with status 3", w.w[0]));
    LINE(n, c, "event init wid=0 ");
    LINE(r, n, "event run wid=0 ");
    w.last = r;
    return stop_clean(p, &w);
}

static int t_run_exit(struct proc *p)
{
    char *args[] = {"run_exit=4", "workers=1", NULL};
    char *argv[] = {(char *)app, args[0], args[1], NULL};
    EXPECT(start(p, argv), "start");
    LINE(m, -1, "event master pid=");
    int master = pid_in(p->lines[m]);
    LINE(i, m, "event init wid=0 ");
    int w0 = pid_in(p->lines[i]);
    LINE(ds, i, fmt("event destroy wid=0 pid=%d", w0));
    LINE(d, ds, "event dead_worker sid=");
    EXPECT(strstr(p->lines[d], "wid=0 code=4") != NULL, "run's status reaches the master");
    LINE(c, d, fmt("Child %d exited with status 4", w0));
    kill(master, SIGTERM);
    int st;
    EXPECT(wait_exit(master, &st, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status 0x%x", st);
    (void)c;
    return 1;
}

static int t_reload_callback(struct proc *p)
{
    struct world w;
    if (!boot(p, &w, 2, NULL))
        return 0;
    kill(w.master, SIGHUP);
    LINE(h, w.last, "INFO:app:event hook reload");
    LINE(r0, h, fmt("event reload wid=0 pid=%d", w.w[0]));
    LINE(r1, h, fmt("event reload wid=1 pid=%d", w.w[1]));
    w.last = r0 > r1 ? r0 : r1;
    drain_for(p, 200);
    EXPECT(count_lines(p, "event init") == 2, "reload restarted no worker");
    EXPECT(count_lines(p, "event terminate") == 0, "reload terminated no worker");
    return stop_clean(p, &w);
}

static int t_identity(struct proc *p)
{
    struct world w;
    if (!boot(p, &w, 2, NULL))
        return 0;
    for (int i = 0; i < 2; i++) {
        LINE(id, -1, fmt("event identity wid=%d sid=%llu name=svc current=svc(%d) known=1", i, w.sid, i));
        (void)id;
    }
    kill(w.w[1], SIGKILL);
    LINE(d, w.last, fmt("event dead_worker sid=%llu wid=1 code=-9 name=svc master_is_worker=0", w.sid));
    LINE(n, d, fmt("event identity wid=1 sid=%llu name=svc current=svc(1) known=1", w.sid));
    LINE(r, n, "event run wid=1 ");
    w.last = r;
    return stop_clean(p, &w);
}

/* Writes `text` to the file `path`. */
static int put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return 0;
    fputs(text, f);
    return fclose(f) == 0;
}

static int t_reload_check(struct proc *p)
{
    struct world w;
    static char arg[128], path[96];
    EXPECT(make_scratch(), "scratch directory");
    snprintf(path, sizeof path, "%s/config", scratch);
    snprintf(arg, sizeof arg, "check_file=%s", path);
    EXPECT(put_file(path, "bad\n"), "write %s", path);
    char *args[] = {arg, NULL};
    if (!boot(p, &w, 2, args))
        return 0;
    /* Refused: the reason at ERROR, no reload hook, no SIGHUP. */
    kill(w.master, SIGHUP);
    LINE(c, w.last, "event check bad");
    LINE(e, c, fmt("ERROR:cotyledon._service_manager:Reload refused by a reload check: %s says bad", path));
    /* Refused without a reason: the status says it. */
    EXPECT(put_file(path, "mute\n"), "write %s", path);
    kill(w.master, SIGHUP);
    LINE(mc, e, "event check mute");
    LINE(me, mc, "ERROR:cotyledon._service_manager:Reload refused by a reload check: reload check returned 2");
    /* Accepted: the hooks run and both workers reload. */
    EXPECT(put_file(path, "good\n"), "write %s", path);
    kill(w.master, SIGHUP);
    LINE(g, me, "event check good");
    LINE(h, g, "INFO:app:event hook reload");
    LINE(r0, h, fmt("event reload wid=0 pid=%d", w.w[0]));
    LINE(r1, h, fmt("event reload wid=1 pid=%d", w.w[1]));
    w.last = r0 > r1 ? r0 : r1;
    if (!stop_clean(p, &w))
        return 0;
    drain_for(p, 200);
    EXPECT(count_lines(p, "event reload wid=") == 2, "the refused reload reached no worker");
    EXPECT(count_lines(p, "event hook reload") == 1, "the refused reload ran no reload hook");
    return 1;
}

static int t_reload_null_restarts(struct proc *p)
{
    struct world w;
    char *args[] = {"reload=null", NULL};
    if (!boot(p, &w, 2, args))
        return 0;
    kill(w.master, SIGHUP);
    LINE(h, w.last, "INFO:app:event hook reload");
    int last = h;
    for (int i = 0; i < 2; i++) {
        LINE(a, h, fmt("INFO:cotyledon._service_worker:Caught SIGTERM signal, graceful exiting of service svc(%d) [%d]", i, w.w[i]));
        LINE(b, a, fmt("event terminate wid=%d pid=%d", i, w.w[i]));
        LINE(c, b, fmt("event destroy wid=%d pid=%d", i, w.w[i]));
        LINE(d, c, fmt("event dead_worker sid=%llu wid=%d code=0", w.sid, i));
        LINE(e, d, fmt("Child %d exited with status 0", w.w[i]));
        LINE(n, e, fmt("event init wid=%d ", i));
        int np = pid_in(p->lines[n]);
        EXPECT(np != w.w[i], "worker %d restarted with a new pid", i);
        LINE(r, n, fmt("event run wid=%d pid=%d", i, np));
        if (r > last)
            last = r;
    }
    EXPECT(count_lines(p, "event reload wid") == 0, "no reload callback");
    w.last = last;
    return stop_clean(p, &w);
}

static int t_graceful_timeout(struct proc *p)
{
    struct world w;
    char *args[] = {"term_hang=1", "timeout_ms=1000", "workers=1", NULL};
    if (!boot(p, &w, 1, args))
        return 0;
    kill(w.w[0], SIGTERM);
    LINE(t, w.last, fmt("event terminate wid=0 pid=%d", w.w[0]));
    LINE(g, t, fmt("INFO:cotyledon._service_worker:Graceful shutdown timeout (1) exceeded, exiting svc(0) [%d] now.", w.w[0]));
    LINE(c, g, fmt("Child %d exited with status 1", w.w[0]));
    EXPECT(count_lines(p, fmt("event destroy wid=0 pid=%d", w.w[0])) == 0, "no destroy after a timeout");
    LINE(n, c, "event init wid=0 ");
    int w1 = pid_in(p->lines[n]);
    LINE(r, n, fmt("event run wid=0 pid=%d", w1));
    /* now the master's stop, the worker hanging in terminate: with equal
     * timeouts the worker's own deadline comes first (it exits 1) and the
     * master's stop ends well (0), as Cotyledon's does */
    kill(w.master, SIGTERM);
    LINE(a, r, "INFO:cotyledon._service_manager:Caught SIGTERM signal, graceful exiting of master process");
    LINE(b, a, fmt("INFO:cotyledon._service_worker:Graceful shutdown timeout (1) exceeded, exiting svc(0) [%d] now.", w1));
    LINE(f, b, "DEBUG:cotyledon._service_manager:Shutdown finish");
    (void)f;
    int st;
    EXPECT(wait_exit(w.master, &st, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status 0x%x", st);
    EXPECT(count_lines(p, "Graceful shutdown timeout exceeded, instantaneous exiting") == 0,
           "the master's deadline came first");
    EXPECT(wait_gone(w1, WAIT_MS), "worker still there");
    return 1;
}

static int t_sigint(struct proc *p)
{
    struct world w;
    if (!boot(p, &w, 2, NULL))
        return 0;
    kill(w.master, SIGINT);
    LINE(a, w.last, "INFO:cotyledon._service_manager:Caught SIGINT signal, instantaneous exiting");
    (void)a;
    int st;
    EXPECT(wait_exit(w.master, &st, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 1, "master status 0x%x", st);
    EXPECT(wait_gone(w.w[0], WAIT_MS) && wait_gone(w.w[1], WAIT_MS), "workers still there");
    EXPECT(count_lines(p, "event run_returned") == 0, "run does not return on SIGINT");
    return 1;
}

static int t_master_sigkill(struct proc *p)
{
    struct world w;
    if (!boot(p, &w, 2, NULL))
        return 0;
    kill(w.master, SIGKILL);
    for (int i = 0; i < 2; i++) {
        LINE(a, w.last, fmt("INFO:cotyledon._service_worker:Parent process has died unexpectedly, svc(%d) [%d] exiting", i, w.w[i]));
        LINE(b, a, fmt("Caught SIGTERM signal, graceful exiting of service svc(%d) [%d]", i, w.w[i]));
        LINE(c, b, fmt("event terminate wid=%d pid=%d", i, w.w[i]));
        (void)c;
    }
    int st;
    EXPECT(wait_exit(w.master, &st, WAIT_MS) && WIFSIGNALED(st), "master killed");
    /* orphans are reparented to us (subreaper): they exit 0 by themselves */
    for (int i = 0; i < 2; i++) {
        EXPECT(wait_exit(w.w[i], &st, WAIT_MS), "worker %d still there", i);
        EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker %d status 0x%x", i, st);
    }
    return 1;
}

static int t_reconfigure(struct proc *p)
{
    struct world w;
    char *args[] = {"cmd=1", NULL};
    if (!boot(p, &w, 2, args))
        return 0;
    send_line(p, "reconfigure 3\n");
    LINE(a, w.last, "event reconfigured n=3 result=0");
    LINE(n, a, "event init wid=2 ");
    w.w[2] = pid_in(p->lines[n]);
    LINE(r, n, "event run wid=2 ");
    send_line(p, "workers\n");
    LINE(c, r, "event workers n=3 result=0");
    send_line(p, "reconfigure 1\n");
    LINE(d, c, "event reconfigured n=1 result=0");
    /* the workers may react before the command thread logs its result */
    LINE(t1, c, fmt("event terminate wid=1 pid=%d", w.w[1]));
    LINE(t2, c, fmt("event terminate wid=2 pid=%d", w.w[2]));
    LINE(e1, c, fmt("Child %d exited with status 0", w.w[1]));
    LINE(e2, c, fmt("Child %d exited with status 0", w.w[2]));
    (void)t1, (void)t2;
    int last = d > e1 ? d : e1;
    last = last > e2 ? last : e2;
    send_line(p, "reconfigure -5\n");
    LINE(f, last, "event reconfigured n=-5 result=5");
    send_line(p, "shutdown\n");
    LINE(g, f, "INFO:cotyledon._service_manager:Manager shutdown requested");
    LINE(h, g, "event run_returned result=0");
    (void)h;
    int st;
    EXPECT(wait_exit(w.master, &st, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status 0x%x", st);
    EXPECT(count_lines(p, "event init wid=1 ") == 1 && count_lines(p, "event init wid=2 ") == 1,
           "stopped workers not respawned");
    return 1;
}

static int t_shutdown_from_hook(struct proc *p)
{
    struct world w;
    char *args[] = {"shutdown_on_dead=1", NULL};
    if (!boot(p, &w, 2, args))
        return 0;
    kill(w.w[0], SIGKILL);
    LINE(a, w.last, "event dead_worker");
    LINE(b, a, "event shutdown_from_hook result=0");
    LINE(c, a, "Manager shutdown requested");
    /* the master says what happened: no signal was caught */
    LINE(e, c, "INFO:cotyledon._service_manager:Shutdown requested, graceful exiting of master process");
    LINE(d, e, "event run_returned result=0");
    (void)b, (void)d;
    EXPECT(count_lines(p, "Caught SIGTERM signal, graceful exiting of master") == 0, "logged as a SIGTERM");
    int st;
    EXPECT(wait_exit(w.master, &st, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status 0x%x", st);
    EXPECT(wait_gone(w.w[1], WAIT_MS), "worker 1 still there");
    return 1;
}

/* Each manager function called in a worker fails with NOT_IN_MASTER and
 * says why; the master keeps its count and stops on SIGTERM only. */
static int t_worker_calls(struct proc *p)
{
    struct world w;
    char *args[] = {"workers=1", "worker_calls=1", NULL};
    if (!boot(p, &w, 1, args))
        return 0;
    static const char *const calls[] = {"reconfigure", "workers", "reload", "restart_worker",
                                        "set_graceful_shutdown_timeout_ms", "status_json", "add",
                                        "on_terminate", "service_name", "exit_status", "run", "shutdown"};
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        LINE(l, w.last, fmt("event worker_call %s result=%d pid=%d msg=manager calls work only in the master "
                            "process (pid %d), not in process %d (a worker or another child of the master)",
                            calls[i], 15 /* NOT_IN_MASTER */, w.w[0], w.master, w.w[0]));
        (void)l;
    }
    LINE(d, w.last, "event worker_calls done");
    w.last = d;
    EXPECT(count_lines(p, "Manager shutdown requested") == 0, "a worker's shutdown logged");
    EXPECT(count_lines(p, "Shutdown requested") == 0, "a worker's shutdown acted");
    EXPECT(count_lines(p, "event init wid=1 ") == 0, "a worker's reconfigure acted");
    return stop_clean(p, &w);
}

static int t_quickstart(struct proc *p)
{
    char *argv[] = {(char *)quickstart, NULL};
    EXPECT(start(p, argv), "start");
    LINE(s, -1, "INFO:quickstart:Starting Cotyledon Service Manager");
    int pids[2];
    int last = s;
    for (int i = 0; i < 2; i++) {
        LINE(a, s, fmt("] my_example_service worker %d init", i));
        pids[i] = atoi(strchr(p->lines[a], '[') + 1);
        LINE(b, a, fmt("INFO:quickstart:[%d] my_example_service worker %d running...", pids[i], i));
        if (b > last)
            last = b;
    }
    kill(p->pid, SIGHUP);
    for (int i = 0; i < 2; i++) {
        LINE(a, last, fmt("INFO:quickstart:[%d] my_example_service worker %d reloading...", pids[i], i));
        (void)a;
    }
    drain_for(p, 100);
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 2; i++) {
        LINE(a, last, fmt("INFO:quickstart:[%d] my_example_service worker %d terminating...", pids[i], i));
        (void)a;
    }
    LINE(e, last, "INFO:quickstart:Cotyledon Service Manager stopped.");
    (void)e;
    int st;
    EXPECT(wait_exit(p->pid, &st, WAIT_MS), "quickstart did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "quickstart status 0x%x", st);
    return 1;
}

/* The status JSON from inside the master: cotyledon_manager_status_json
 * called from a thread (the app's command thread) and from a reload hook,
 * and reload and restart_worker called from that thread. */
static int t_status_json(struct proc *p)
{
    struct world w;
    char *args[] = {"cmd=1", "status=1", NULL};
    if (!boot(p, &w, 2, args))
        return 0;
    static char json[8192];
    send_line(p, "status\n");
    LINE(a, w.last, "event status from=thread result=0 json={");
    snprintf(json, sizeof json, "%s", strstr(p->lines[a], "json=") + 5);
    const char *head = fmt("{\"pid\":%d,\"state\":\"running\",", w.master);
    EXPECT(strncmp(json, head, strlen(head)) == 0, "master pid and state in %.300s", json);
    EXPECT(strstr(json, fmt("\"id\":%llu,\"name\":\"svc\",\"workers\":2,\"running\":2,", w.sid)),
           "service in %.300s", json);
    for (int i = 0; i < 2; i++)
        EXPECT(strstr(json, fmt("{\"worker_id\":%d,\"pid\":%d,", i, w.w[i])), "worker %d in %.400s", i, json);
    /* from a hook: the reload hook, in the thread running run */
    send_line(p, "reload\n");
    LINE(b, a, "event reload_requested result=0");
    LINE(h, a, "event hook reload");
    LINE(c, h, "event status from=hook result=0 json={");
    EXPECT(strstr(p->lines[c], fmt("{\"pid\":%d,\"state\":\"reloading\",", w.master)), "state reloading");
    for (int i = 0; i < 2; i++) {
        EXPECT(strstr(p->lines[c], fmt("{\"worker_id\":%d,\"pid\":%d,", i, w.w[i])), "worker %d in the hook's", i);
        LINE(r, c, fmt("event reload wid=%d pid=%d", i, w.w[i]));
        (void)r;
    }
    /* restart_worker: worker 1 is replaced by a new pid with the same id */
    send_line(p, "restart 1\n");
    LINE(e, b, "event restart wid=1 result=0");
    LINE(t, b, fmt("event terminate wid=1 pid=%d", w.w[1]));
    LINE(x, t, fmt("Child %d exited with status 0", w.w[1]));
    LINE(n, x, "event init wid=1 ");
    int np = pid_in(p->lines[n]);
    EXPECT(np > 0 && np != w.w[1] && np != w.w[0], "a new pid for worker 1");
    LINE(r, n, fmt("event run wid=1 pid=%d", np));
    /* (after the fork: a worker forked later would inherit the command
     * thread's last-error string, unreachable there, a valgrind leak) */
    send_line(p, "restart 7\n");
    LINE(d, e > r ? e : r, "event restart wid=7 result=12"); /* NO_SUCH_WORKER */
    send_line(p, "status\n");
    LINE(f, d, "event status from=thread result=0 json={");
    EXPECT(strstr(p->lines[f], fmt("{\"worker_id\":1,\"pid\":%d,", np)), "new pid in the status");
    EXPECT(strstr(p->lines[f], fmt("{\"worker_id\":0,\"pid\":%d,", w.w[0])), "worker 0 unchanged");
    EXPECT(strstr(p->lines[f], "\"restarts\":1,"), "worker 1 restarted once");
    EXPECT(count_lines(p, "event init wid=0 ") == 1, "worker 0 not restarted");
    w.last = f;
    return stop_clean(p, &w);
}

/* The control socket served by the master, driven by the installed
 * cotyledon-ctl. `by_env`: the socket is named by COTYLEDON_CONTROL_SOCKET
 * (for the app and for cotyledon-ctl) instead of the config and --socket. */
static int control_socket(struct proc *p, int by_env)
{
    static char out[65536], sock[128], metrics[128], env[160], arg_sock[160], arg_metrics[160];
    EXPECT(make_scratch(), "mkdtemp: %s", strerror(errno));
    snprintf(sock, sizeof sock, "%s/ctl.sock", scratch);
    snprintf(metrics, sizeof metrics, "%s/cotyledon.prom", scratch);
    snprintf(arg_sock, sizeof arg_sock, "ctl_socket=%s", sock);
    snprintf(arg_metrics, sizeof arg_metrics, "metrics_file=%s", metrics);
    snprintf(env, sizeof env, "COTYLEDON_CONTROL_SOCKET=%s", sock);
    char *args_cfg[] = {arg_sock, arg_metrics, "metrics_ms=100", NULL};
    char *args_env[] = {NULL};
    if (by_env)
        child_env = env;
    struct world w;
    if (!boot(p, &w, 2, by_env ? args_env : args_cfg))
        return 0;
    /* bound before the workers were forked */
    struct stat sb;
    EXPECT(lstat(sock, &sb) == 0, "no socket at %s: %s", sock, strerror(errno));
    EXPECT(S_ISSOCK(sb.st_mode), "%s is not a socket (mode 0%o)", sock, (unsigned)sb.st_mode);
    EXPECT((sb.st_mode & 07777) == 0600, "socket mode 0%o, not 0600", (unsigned)(sb.st_mode & 07777));
#define CTL(...) (by_env ? run_ctl(out, sizeof out, __VA_ARGS__, NULL) \
                         : run_ctl(out, sizeof out, "--socket", sock, __VA_ARGS__, NULL))
    int rc = CTL("status", "--json");
    EXPECT(rc == 0, "status --json exited %d: %.600s", rc, out);
    squeeze(out);
    EXPECT(strstr(out, fmt("\"pid\":%d,", w.master)), "master pid in %.500s", out);
    EXPECT(strstr(out, fmt("\"id\":%llu,\"name\":\"svc\",\"workers\":2,", w.sid)), "service in %.500s", out);
    for (int i = 0; i < 2; i++)
        EXPECT(strstr(out, fmt("{\"worker_id\":%d,\"pid\":%d,", i, w.w[i])), "worker %d in %.500s", i, out);
    rc = CTL("status", "--check");
    EXPECT(rc == 0, "status --check exited %d: %.600s", rc, out);
    if (!by_env) {
        /* the metrics file, written every 100 ms: soon with both starts */
        EXPECT(wait_file_has(metrics, fmt("cotyledon_worker_starts_total{service=\"svc\",service_id=\"%llu\"} 2", w.sid),
                             WAIT_MS),
               "no metrics file %s with the starts of svc", metrics);
    }
    /* restart: worker 0 is replaced by a new pid with the same worker id */
    rc = CTL("restart", "svc", "0");
    EXPECT(rc == 0, "restart svc 0 exited %d: %.600s", rc, out);
    LINE(q, w.last, "on the control socket by pid");
    EXPECT(strstr(p->lines[q], fmt("Restart of worker 0 of service %llu requested", w.sid)), "logged request");
    LINE(t, w.last, fmt("event terminate wid=0 pid=%d", w.w[0]));
    LINE(x, t, fmt("Child %d exited with status 0", w.w[0]));
    LINE(n, x, "event init wid=0 ");
    int np = pid_in(p->lines[n]);
    EXPECT(np > 0 && np != w.w[0] && np != w.w[1], "a new pid for worker 0");
    LINE(r, n, fmt("event run wid=0 pid=%d", np));
    w.last = r;
    rc = CTL("status", "--json");
    EXPECT(rc == 0, "status --json exited %d", rc);
    squeeze(out);
    EXPECT(strstr(out, fmt("{\"worker_id\":0,\"pid\":%d,", np)), "new pid of worker 0 in %.600s", out);
    EXPECT(strstr(out, fmt("{\"worker_id\":1,\"pid\":%d,", w.w[1])), "worker 1 unchanged in %.600s", out);
    rc = CTL("restart", "svc", "5");
    EXPECT(rc == 1, "restart of a worker that does not exist exited %d: %.300s", rc, out);
    EXPECT(kill(np, 0) == 0 && kill(w.w[1], 0) == 0, "workers alive");
    /* stop: the master exits 0 and removes its socket */
    rc = CTL("stop");
    EXPECT(rc == 0, "stop exited %d: %.600s", rc, out);
    LINE(s, w.last, "Stop requested on the control socket by pid");
    LINE(e, s, "event run_returned result=0");
    (void)e;
    int st;
    EXPECT(wait_exit(w.master, &st, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master status 0x%x", st);
    EXPECT(wait_gone(np, WAIT_MS) && wait_gone(w.w[1], WAIT_MS), "workers still there");
    EXPECT(lstat(sock, &sb) == -1 && errno == ENOENT, "socket file left behind");
    rc = CTL("status");
    EXPECT(rc == 3, "status with no master exited %d (not 3): %.300s", rc, out);
#undef CTL
    return 1;
}

static int t_control_socket(struct proc *p)
{
    return control_socket(p, 0);
}

static int t_control_socket_env(struct proc *p)
{
    return control_socket(p, 1);
}

/* ---- PID 1 and containers ------------------------------------------------ */

/* The first child of `pid`, waited for; 0 if none comes. */
static pid_t first_child(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    long long end = now_ms() + WAIT_MS;
    while (now_ms() < end) {
        FILE *f = fopen(path, "r");
        int child = 0;
        if (f) {
            if (fgets(buf, sizeof buf, f))
                child = atoi(buf);
            fclose(f);
        }
        if (child > 0)
            return child;
        nap();
    }
    return 0;
}

/* The state letter of `pid` (host view), or 0 if it does not exist. */
static char state_of(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *close = strrchr(buf, ')');
    return close && close[1] == ' ' ? close[2] : 0;
}

/* How many processes the PID namespace `ns` holds, and how many are zombies. */
static void ns_count(const char *ns, int *all, int *zombies)
{
    *all = *zombies = 0;
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0)
            continue;
        char path[64], link[128];
        snprintf(path, sizeof path, "/proc/%d/ns/pid", pid);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = 0;
        if (strcmp(link, ns) != 0)
            continue;
        char st = state_of(pid);
        if (st) {
            (*all)++;
            *zombies += st == 'Z';
        }
    }
    closedir(d);
}

/* Waits until namespace `ns` holds `n` processes and no zombie. */
static int wait_ns(const char *ns, int n)
{
    long long end = now_ms() + WAIT_MS;
    int all, zombies;
    for (;;) {
        ns_count(ns, &all, &zombies);
        if (all == n && zombies == 0)
            return 1;
        if (now_ms() > end) {
            snprintf(miss, sizeof miss, "namespace holds %d processes (%d zombies), not %d", all, zombies, n);
            return 0;
        }
        nap();
    }
}

static int can_unshare(void)
{
    if (geteuid() != 0)
        return 0;
    int st = system("unshare --pid --fork true >/dev/null 2>&1");
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* As PID 1 of a new PID namespace (a container without --init): the init
 * reaps the orphans the workers leave, a SIGTERM to it from outside stops
 * the master gracefully, and the master's status comes out. */
static int t_pid1_namespace(struct proc *p)
{
    if (!can_unshare()) {
        printf("SKIP %s pid1_namespace: needs root and unshare(1)\n", label);
        return 1;
    }
    char *argv[] = {"unshare", "--pid", "--fork", "--mount-proc", (char *)app,
                    "workers=2", "orphan=1", "done_exit=7", NULL};
    EXPECT(start(p, argv), "cannot start unshare");
    LINE(m, -1, "event master pid=2 ");
    EXPECT(strstr(p->lines[m], " ppid=1"), "the master is the init's child: %s", p->lines[m]);
    LINE(o1, m, "event orphan wid=");
    LINE(o2, o1, "event orphan wid=");
    pid_t init = first_child(p->pid);
    EXPECT(init > 0, "unshare has no child");
    char path[64], ns[128];
    snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)init);
    ssize_t n = readlink(path, ns, sizeof ns - 1);
    EXPECT(n > 0, "no namespace for %d", (int)init);
    ns[n] = 0;
    /* init, master, two workers: the orphans reaped, no zombie */
    EXPECT(wait_ns(ns, 4), "%s", miss);
    kill(init, SIGTERM);
    LINE(t, o2, "event hook terminate 1");
    LINE(ret, t, "event run_returned result=0");
    (void)ret;
    int st;
    EXPECT(wait_exit(p->pid, &st, WAIT_MS), "unshare did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 7, "unshare status 0x%x, not the master's 7", st);
    EXPECT(wait_ns(ns, 0), "%s", miss);
    return 1;
}

/* init=ALWAYS without a namespace: the init is a subreaper that reaps the
 * orphans; signals reach the master through it; its status comes out. */
static int t_init_always(struct proc *p)
{
    char *args[] = {"init=1", "workers=1", "orphan=1", "done_exit=5", NULL};
    char *argv[8];
    int k = 0;
    argv[k++] = (char *)app;
    for (int i = 0; args[i]; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    EXPECT(start(p, argv), "cannot start %s", app);
    LINE(m, -1, "event master pid=");
    int master = pid_in(p->lines[m]);
    extra_group = master;
    EXPECT(master != p->pid, "no split: master %d is the started process", master);
    EXPECT(strstr(p->lines[m], fmt(" ppid=%d", (int)p->pid)), "the master's parent is the init: %s", p->lines[m]);
    LINE(o, m, "event orphan wid=0 ");
    int orphan = pid_in(p->lines[o]);
    EXPECT(orphan > 0, "no orphan pid");
    long long end = now_ms() + WAIT_MS;
    while (state_of(orphan) && now_ms() < end)
        nap();
    EXPECT(!state_of(orphan), "orphan %d not reaped (state %c)", orphan, state_of(orphan));
    kill(p->pid, SIGHUP);
    LINE(r, o, "event reload wid=0");
    kill(p->pid, SIGTERM);
    LINE(ret, r, "event run_returned result=0");
    (void)ret;
    int st;
    EXPECT(wait_exit(p->pid, &st, WAIT_MS), "init did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 5, "init status 0x%x, not the master's 5", st);
    return 1;
}

/* COTYLEDON_INIT with an unknown value: cotyledon_manager_new fails. */
static int t_init_env_invalid(struct proc *p)
{
    child_env = "COTYLEDON_INIT=sometimes";
    char *argv[] = {(char *)app, NULL};
    EXPECT(start(p, argv), "cannot start %s", app);
    LINE(e, -1, "app: manager_new: invalid argument: COTYLEDON_INIT must be auto, always or never, not: \"sometimes\"");
    (void)e;
    int st;
    EXPECT(wait_exit(p->pid, &st, WAIT_MS), "app did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 70, "app status 0x%x", st);
    return 1;
}

/* ---- restart policies ---------------------------------------------------- */

static int t_policy_on_failure(struct proc *p)
{
    char *argv[] = {(char *)app, "workers=2", "exit_codes=0,3", "restart=1", "backoff_ms=20,20", "status=1", NULL};
    EXPECT(start(p, argv), "start");
    LINE(m, -1, "event master pid=");
    int master = pid_in(p->lines[m]);
    LINE(f, m, "INFO:cotyledon._service_manager:Worker 0 of service svc finished (restart policy on-failure)");
    LINE(i1, m, "event init wid=1 ");
    LINE(i2, i1 > f ? i1 : f, "event init wid=1 ");
    kill(master, SIGHUP);
    LINE(st, i2, "event status from=hook result=0 json=");
    EXPECT(strstr(p->lines[st], "\"worker_id\":0,\"pid\":null") != NULL, "worker 0 not running: %s", p->lines[st]);
    EXPECT(strstr(p->lines[st], "\"finished\":true") != NULL, "worker 0 finished: %s", p->lines[st]);
    EXPECT(strstr(p->lines[st], "\"restart\":\"on-failure\"") != NULL, "policy shown");
    EXPECT(count_lines(p, "event init wid=0 ") == 1, "worker 0 started once");
    kill(master, SIGTERM);
    LINE(ret, st, "event run_returned result=0 status=0");
    int code;
    EXPECT(wait_exit(master, &code, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(code) && WEXITSTATUS(code) == 0, "master status 0x%x", code);
    (void)ret;
    return 1;
}

static int t_policy_stop_on_exit(struct proc *p)
{
    char *argv[] = {(char *)app, "workers=2", "exit_codes=7,0", "restart=2", "stop_on_exit=1", NULL};
    EXPECT(start(p, argv), "start");
    LINE(m, -1, "event master pid=");
    int master = pid_in(p->lines[m]);
    LINE(e, m, "ERROR:cotyledon._service_manager:Service svc has no worker left (stop on exit): stopping the manager with exit status 7");
    LINE(ret, e, "event run_returned result=13 status=7 why=the manager stopped with exit status 7: Service svc has no worker left");
    int code;
    EXPECT(wait_exit(master, &code, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(code) && WEXITSTATUS(code) == 7, "master status 0x%x", code);
    EXPECT(count_lines(p, "event init ") == 2, "no worker respawned");
    (void)ret;
    return 1;
}

static int t_policy_give_up(struct proc *p)
{
    char *argv[] = {(char *)app, "workers=1", "exit_codes=5", "backoff_ms=20,20", "give_up=3,60000", NULL};
    EXPECT(start(p, argv), "start");
    LINE(m, -1, "event master pid=");
    int master = pid_in(p->lines[m]);
    LINE(b, m, "Worker 0 of service svc restarting in 0.020s (backoff)");
    LINE(e, b, "ERROR:cotyledon._service_manager:Service svc gave up: 3 failures within 60s: stopping the manager with exit status 125");
    LINE(ret, e, "event run_returned result=13 status=125");
    int code;
    EXPECT(wait_exit(master, &code, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(code) && WEXITSTATUS(code) == 125, "master status 0x%x", code);
    EXPECT(count_lines(p, "event init wid=0 ") == 3, "3 starts");
    (void)ret;
    return 1;
}

static int t_policy_reload_restarts(struct proc *p)
{
    /* Under "never", the default reload still restarts the worker: it is
     * announced, not counted. */
    struct world w;
    char *args[] = {"reload=null", "restart=2", "stop_on_exit=1", NULL};
    if (!boot(p, &w, 2, args))
        return 0;
    kill(w.master, SIGHUP);
    int last = w.last;
    for (int i = 0; i < 2; i++) {
        LINE(e, w.last, fmt("Child %d exited with status 0", w.w[i]));
        LINE(n, e, fmt("event init wid=%d ", i));
        EXPECT(pid_in(p->lines[n]) != w.w[i], "worker %d restarted", i);
        LINE(r, n, fmt("event run wid=%d ", i));
        if (r > last)
            last = r;
    }
    EXPECT(count_lines(p, "finished (restart policy") == 0, "no worker finished");
    w.last = last;
    return stop_clean(p, &w);
}

/* ---- systemd ------------------------------------------------------------ */

/* systemd's variables as a worker's "event env" line shows them unset. */
static const char no_systemd_env[] =
    " NOTIFY_SOCKET=- WATCHDOG_USEC=- WATCHDOG_PID=- LISTEN_PID=- LISTEN_FDS=- LISTEN_FDNAMES=-";

/* The notify protocol seen by systemd (the driver's socket: a path, or an
 * abstract name): READY=1 with MAINPID and STATUS at start, STATUS when
 * every worker runs; on SIGHUP RELOADING=1 with MONOTONIC_USEC, then the
 * reload hooks (whose own datagrams prove the order), then READY=1; on
 * SIGTERM (path) or SIGINT (abstract) STOPPING=1 with EXTEND_TIMEOUT_USEC
 * first. Every systemd variable is set: none reaches a worker (nor its
 * replacement), the master keeps them (its hook reads them), and
 * WATCHDOG_PID naming another process means no WATCHDOG=1. */
static int systemd_sequence(struct proc *p, int abstract)
{
    static char env[160];
    EXPECT(notify_open(abstract, env, sizeof env), "notify socket: %s", strerror(errno));
    app_env[0] = env;
    app_env[1] = "WATCHDOG_USEC=200000";
    app_env[2] = "WATCHDOG_PID=1"; /* systemd watches another process */
    app_env[3] = "LISTEN_PID=1";
    app_env[4] = "LISTEN_FDS=0";
    app_env[5] = "LISTEN_FDNAMES=none";
    char *args[] = {"notify_hook=1", "env=1", "timeout_ms=2000", "kill_grace_ms=300", NULL};
    struct world w;
    if (!boot(p, &w, 2, args))
        return 0;
    DGRAM(d0, -1, "READY=1");
    EXPECT(d0 == 0, "READY=1 not in the first datagram but in datagram %d", d0);
    EXPECT(dg_has(0, fmt("MAINPID=%d", w.master)), "no MAINPID=%d in %s", w.master, dgrams[0].text);
    EXPECT(dg_has(0, "STATUS=svc: 0/2 workers"), "start STATUS in %s", dgrams[0].text);
    DGRAM(up, d0, "STATUS=svc: 2/2 workers");
    (void)up;
    for (int i = 0; i < 2; i++) {
        LINE(e, -1, fmt("event env wid=%d pid=%d ", i, w.w[i]));
        EXPECT(strstr(p->lines[e], no_systemd_env), "worker %d inherited: %s", i, p->lines[e]);
    }
    /* a replacement worker neither */
    kill(w.w[1], SIGKILL);
    LINE(n, w.last, "event init wid=1 ");
    w.w[1] = pid_in(p->lines[n]);
    LINE(e1, n, fmt("event env wid=1 pid=%d ", w.w[1]));
    EXPECT(strstr(p->lines[e1], no_systemd_env), "respawned worker inherited: %s", p->lines[e1]);
    LINE(run1, n, fmt("event run wid=1 pid=%d", w.w[1]));
    w.last = e1 > run1 ? e1 : run1;

    /* reload */
    int before = ndgrams - 1;
    long long sent_at = mono_us();
    kill(w.master, SIGHUP);
    DGRAM(r, before, "RELOADING=1");
    const char *mono = dg_value(r, "MONOTONIC_USEC=");
    long long m = mono ? atoll(mono) : -1;
    /* the master's CLOCK_MONOTONIC after our SIGHUP and before we read it */
    EXPECT(m >= sent_at && m <= dgrams[r].mono_us, "MONOTONIC_USEC=%s not between the SIGHUP (%lld) and its arrival (%lld)",
           mono ? mono : "(none)", sent_at, dgrams[r].mono_us);
    EXPECT(dg_has(r, "STATUS=reloading; svc: *"), "reloading STATUS in %s", dgrams[r].text);
    EXPECT(!dg_has(r, "READY=1"), "READY=1 with RELOADING=1: %s", dgrams[r].text);
    DGRAM(b, r, "X-APP-HOOK=begin");
    DGRAM(e, b, "X-APP-HOOK=end");
    DGRAM(rd, r, "READY=1");
    EXPECT(rd > e, "READY=1 (datagram %d) before the reload hook ended (datagram %d)", rd, e);
    EXPECT(dg_has(rd, fmt("MAINPID=%d", w.master)), "no MAINPID=%d in %s", w.master, dgrams[rd].text);
    EXPECT(dg_value(rd, "STATUS=") != NULL, "no STATUS with READY=1: %s", dgrams[rd].text);
    LINE(h, w.last, "event hook_env pid=");
    EXPECT(strstr(p->lines[h], fmt(" %s WATCHDOG_USEC=200000 WATCHDOG_PID=1 LISTEN_PID=1 LISTEN_FDS=0 LISTEN_FDNAMES=none", env)),
           "the master lost its variables: %s", p->lines[h]);
    for (int i = 0; i < 2; i++) {
        LINE(x, h, fmt("event reload wid=%d pid=%d", i, w.w[i]));
        if (x > w.last)
            w.last = x;
    }
    /* WATCHDOG_PID is another process: not one WATCHDOG=1 in 3 periods */
    long long since = mono_us() - dgrams[0].mono_us;
    if (since < 600000)
        drain_for(p, (int)((600000 - since) / 1000) + 1);
    EXPECT(dg_count(0, ndgrams, "WATCHDOG=1") == 0, "WATCHDOG=1 sent though WATCHDOG_PID is another process");

    /* stop */
    before = ndgrams - 1;
    kill(w.master, abstract ? SIGINT : SIGTERM);
    DGRAM(s, before, "STOPPING=1");
    if (abstract) {
        /* kill grace 300 ms + 5 s */
        EXPECT(dg_has(s, "EXTEND_TIMEOUT_USEC=5300000"), "EXTEND_TIMEOUT_USEC in %s", dgrams[s].text);
        EXPECT(dg_has(s, "STATUS=exiting: 2 workers left"), "STATUS in %s", dgrams[s].text);
    } else {
        /* graceful timeout 2 s + 1 s for the workers' own deadline + kill
         * grace 300 ms + 5 s */
        EXPECT(dg_has(s, "EXTEND_TIMEOUT_USEC=8300000"), "EXTEND_TIMEOUT_USEC in %s", dgrams[s].text);
        EXPECT(dg_has(s, "STATUS=stopping: 2 workers left"), "STATUS in %s", dgrams[s].text);
    }
    int st;
    EXPECT(wait_exit(w.master, &st, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == (abstract ? 1 : 0), "master status 0x%x", st);
    EXPECT(wait_gone(w.w[0], WAIT_MS) && wait_gone(w.w[1], WAIT_MS), "workers still there");
    notify_drain();
    EXPECT(dg_count(0, ndgrams, "STOPPING=1") == 1, "STOPPING=1 sent %d times", dg_count(0, ndgrams, "STOPPING=1"));
    EXPECT(dg_count(0, ndgrams, "READY=1") == 2, "READY=1 sent %d times (start, reload)", dg_count(0, ndgrams, "READY=1"));
    return 1;
}

static int t_systemd_path(struct proc *p)
{
    return systemd_sequence(p, 0);
}

static int t_systemd_abstract(struct proc *p)
{
    return systemd_sequence(p, 1);
}

/* WATCHDOG_USEC=200000 with WATCHDOG_PID the master's own pid: WATCHDOG=1
 * every half period from the master's loop, so never a gap above the
 * period while idle; none while the loop is stuck in a 600 ms reload
 * hook; again after it. (Gaps are measured with the kernel's arrival
 * times, not when the driver read them.) */
static int t_watchdog(struct proc *p)
{
    static char env[160];
    EXPECT(notify_open(0, env, sizeof env), "notify socket: %s", strerror(errno));
    app_env[0] = env;
    app_env[1] = "WATCHDOG_USEC=200000";
    app_env[2] = "WATCHDOG_PID=self";
    char *args[] = {"notify_hook=1", "hook_sleep_ms=600", NULL};
    struct world w;
    if (!boot(p, &w, 2, args))
        return 0;
    DGRAM(d0, -1, "READY=1");
    EXPECT(d0 == 0 && dg_has(0, "WATCHDOG=1"), "no WATCHDOG=1 in the first datagram: %s", dgrams[d0].text);
    DGRAM(up, d0, "STATUS=svc: 2/2 workers");
    DGRAM(first, up, "WATCHDOG=1");
    int prev = first;
    long long worst = 0;
    for (int k = 0; k < 10; k++) {
        DGRAM(next, prev, "WATCHDOG=1");
        long long gap = dgrams[next].at_us - dgrams[prev].at_us;
        worst = gap > worst ? gap : worst;
        prev = next;
    }
    EXPECT(worst <= 200000, "idle master: %lld ms between two WATCHDOG=1 (period 200 ms)", worst / 1000);
    /* the reload hook holds the loop for 600 ms */
    int before = ndgrams - 1;
    kill(w.master, SIGHUP);
    DGRAM(r, before, "RELOADING=1");
    DGRAM(b, r, "X-APP-HOOK=begin");
    DGRAM(e, b, "X-APP-HOOK=end");
    DGRAM(rd, e, "READY=1");
    (void)rd;
    EXPECT(dg_count(b + 1, e, "WATCHDOG=1") == 0, "WATCHDOG=1 while the master's loop ran the hook");
    int last_wd = -1;
    for (int i = b; i >= 0 && last_wd < 0; i--)
        if (dg_has(i, "WATCHDOG=1"))
            last_wd = i;
    DGRAM(next_wd, e, "WATCHDOG=1");
    long long gap = dgrams[next_wd].at_us - dgrams[last_wd].at_us;
    EXPECT(gap >= 500000, "only %lld ms without WATCHDOG=1 across a 600 ms hook", gap / 1000);
    /* and it goes on */
    DGRAM(again, next_wd, "WATCHDOG=1");
    DGRAM(again2, again, "WATCHDOG=1");
    (void)again2;
    LINE(h, w.last, "event hook reload");
    for (int i = 0; i < 2; i++) {
        LINE(x, h, fmt("event reload wid=%d pid=%d", i, w.w[i]));
        if (x > w.last)
            w.last = x;
    }
    return stop_clean(p, &w);
}

/* ---- nothing outlives the master ---------------------------------------- */

/* The pids in a "event wedged/grandchildren ..." line: child=, escaped=. */
static int grandchildren_of(struct proc *p, int line, pid_t kids[2])
{
    kids[0] = field_int(p->lines[line], "child=");
    kids[1] = field_int(p->lines[line], "escaped=");
    for (int k = 0; k < 2; k++)
        if (kids[k] > 0 && nstrays < (int)(sizeof strays / sizeof strays[0]))
            strays[nstrays++] = kids[k];
    return kids[0] > 0 && kids[1] > 0;
}

/* Workers that ignore SIGTERM and SIGINT, whose terminate would hang, each
 * with two children that ignore them too (one in a session of its own);
 * worker 1 SIGSTOPped. Graceful timeout 1 s, kill grace 300 ms: after
 * SIGTERM the master gives up, SIGINTs, then SIGKILLs the workers, what
 * they started and its group, and exits 1 once its group is gone. */
static int t_wedged_workers(struct proc *p)
{
    char *args[] = {"wedge=1", "term_hang=1", "timeout_ms=1000", "kill_grace_ms=300", NULL};
    struct world w;
    if (!boot(p, &w, 2, args))
        return 0;
    pid_t kids[2][2];
    for (int i = 0; i < 2; i++) {
        LINE(g, -1, fmt("event wedged wid=%d pid=%d ", i, w.w[i]));
        EXPECT(grandchildren_of(p, g, kids[i]), "children of worker %d: %s", i, p->lines[g]);
        w.last = g > w.last ? g : w.last;
    }
    kill(w.w[1], SIGSTOP);
    EXPECT(wait_state(w.w[1], 'T', WAIT_MS), "worker 1 not stopped (state %c)", proc_state(w.w[1]));
    kill(w.master, SIGTERM);
    LINE(a, w.last, "INFO:cotyledon._service_manager:Caught SIGTERM signal, graceful exiting of master process");
    LINE(b, a, "INFO:cotyledon._service_manager:Graceful shutdown timeout exceeded, instantaneous exiting of master process");
    int lo = w.w[0] < w.w[1] ? w.w[0] : w.w[1], hi = w.w[0] < w.w[1] ? w.w[1] : w.w[0];
    LINE(c, b, fmt("INFO:cotyledon._service_manager:Still alive 300 ms after SIGINT, killing with SIGKILL: "
                   "workers %d, %d and the rest of the process group", lo, hi));
    (void)c;
    int st;
    EXPECT(wait_exit(w.master, &st, WAIT_MS), "master did not exit");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 1, "master status 0x%x", st);
    /* the master waited for its workers and its group */
    for (int i = 0; i < 2; i++) {
        EXPECT(!alive(w.w[i]), "worker %d (%d) alive after the master exited", i, w.w[i]);
        EXPECT(!alive(kids[i][0]), "child %d of worker %d alive after the master exited", kids[i][0], i);
    }
    /* the one that left the group was SIGKILLed too */
    for (int i = 0; i < 2; i++)
        EXPECT(wait_gone(kids[i][1], WAIT_MS), "child %d of worker %d (own session) still there", kids[i][1], i);
    EXPECT(count_lines(p, "event terminate") == 0, "a worker ran terminate: it did not ignore SIGTERM");
    return 1;
}

/* The master SIGKILLed: its worker notices, exits, and SIGKILLs what it
 * started (children that ignore SIGTERM and SIGINT, one in a session of
 * its own): none of them is left. */
static int t_master_sigkill_grandchildren(struct proc *p)
{
    char *args[] = {"grandchildren=1", "workers=1", NULL};
    struct world w;
    if (!boot(p, &w, 1, args))
        return 0;
    LINE(g, -1, fmt("event grandchildren wid=0 pid=%d ", w.w[0]));
    pid_t kids[2];
    EXPECT(grandchildren_of(p, g, kids), "children: %s", p->lines[g]);
    kill(w.master, SIGKILL);
    LINE(a, w.last, fmt("Parent process has died unexpectedly, svc(0) [%d] exiting", w.w[0]));
    (void)a;
    int st;
    EXPECT(wait_exit(w.master, &st, WAIT_MS) && WIFSIGNALED(st), "master killed");
    EXPECT(wait_exit(w.w[0], &st, WAIT_MS), "worker still there");
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker status 0x%x", st);
    for (int k = 0; k < 2; k++)
        EXPECT(wait_gone(kids[k], WAIT_MS), "child %d of the worker still there", kids[k]);
    return 1;
}

static const struct {
    const char *name;
    int (*fn)(struct proc *);
} scenarios[] = {
    {"startup_and_sigterm", t_startup_and_sigterm},
    {"respawn_after_sigkill", t_respawn_after_sigkill},
    {"terminate_exit_status", t_exit_status},
    {"run_exit_status", t_run_exit},
    {"reload_callback", t_reload_callback},
    {"reload_null_restarts", t_reload_null_restarts},
    {"identity", t_identity},
    {"reload_check", t_reload_check},
    {"graceful_timeout", t_graceful_timeout},
    {"sigint", t_sigint},
    {"master_sigkill", t_master_sigkill},
    {"reconfigure", t_reconfigure},
    {"shutdown_from_hook", t_shutdown_from_hook},
    {"worker_calls", t_worker_calls},
    {"quickstart", t_quickstart},
    {"status_json", t_status_json},
    {"control_socket", t_control_socket},
    {"control_socket_env", t_control_socket_env},
    {"pid1_namespace", t_pid1_namespace},
    {"init_always", t_init_always},
    {"init_env_invalid", t_init_env_invalid},
    {"policy_on_failure", t_policy_on_failure},
    {"policy_stop_on_exit", t_policy_stop_on_exit},
    {"policy_give_up", t_policy_give_up},
    {"policy_reload_restarts", t_policy_reload_restarts},
    {"systemd_path", t_systemd_path},
    {"systemd_abstract", t_systemd_abstract},
    {"watchdog", t_watchdog},
    {"wedged_workers", t_wedged_workers},
    {"master_sigkill_grandchildren", t_master_sigkill_grandchildren},
};

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "driver: global timeout\n";
    ssize_t w = write(2, m, sizeof m - 1);
    (void)w;
    if (current_group > 0)
        kill(-current_group, SIGKILL);
    _exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s <app> <quickstart> <label> [scenario...]\n", argv[0]);
        return 64;
    }
    app = argv[1];
    quickstart = argv[2];
    label = argv[3];
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    /* Scenarios choose whether a master splits off an init. */
    unsetenv("COTYLEDON_INIT");
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm(170);
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        if (argc > 4) {
            int wanted = 0;
            for (int k = 4; k < argc; k++)
                wanted |= strcmp(argv[k], scenarios[i].name) == 0;
            if (!wanted)
                continue;
        }
        struct proc p;
        memset(&p, 0, sizeof p);
        p.out = p.in = -1;
        why[0] = 0;
        long long t0 = now_ms();
        int ok = scenarios[i].fn(&p);
        if (ok) {
            printf("PASS %s %s (%lld ms)\n", label, scenarios[i].name, now_ms() - t0);
            passed++;
            if (getenv("DRIVER_DUMP")) /* DRIVER_DUMP=1: what a passing scenario saw */
                dump(&p);
        } else {
            printf("FAIL %s %s: %s\n", label, scenarios[i].name, why);
            fflush(stdout);
            drain_for(&p, 100);
            dump(&p);
            failed++;
        }
        fflush(stdout);
        finish(&p);
        child_env = NULL;
        memset(app_env, 0, sizeof app_env);
        remove_scratch();
    }
    printf("driver %s: %d passed, %d failed\n", label, passed, failed);
    return failed ? 1 : 0;
}
