/*
 * The floor of any respawn on this machine: a minimal fork supervisor in
 * C, no framework (no limiter, no hooks, no logging, no self-pipe). Same
 * configuration and events as benches/app.py (BENCH_SOCK, BENCH_WORKERS).
 * The master waits in sigwaitinfo for SIGCHLD/SIGHUP/SIGTERM/SIGINT,
 * respawns a dead worker at once and forwards SIGHUP; on SIGTERM or SIGINT
 * it forwards the signal, reaps every worker and exits. A worker sends
 * "init", starts a thread that sends "run", answers SIGHUP with "reload"
 * and SIGTERM with "term" (then exits), exits at once on SIGINT, and the
 * kernel kills it when the master dies (PR_SET_PDEATHSIG). benches/run.sh
 * runs it as the "cfloor" face, the bound of the Rust and C faces.
 *   cc -O2 -pthread benches/profile/floor_app.c -o floor_c
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXW 1000000
static struct sockaddr_un dest;
static int wfd = -1;
static long wid;
static pid_t *pids;
static long n;

static void send_ev(const char *ev)
{
    struct timespec ts;
    char m[128];
    int len;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    len = snprintf(m, sizeof m, "%s %ld %d %lld", ev, wid, (int)getpid(),
                   (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    sendto(wfd, m, (size_t)len, 0, (struct sockaddr *)&dest, sizeof dest);
}

static void *run_thread(void *arg)
{
    (void)arg;
    send_ev("run");
    return NULL;
}

static void worker(sigset_t *set, pid_t master)
{
    pthread_t t;
    siginfo_t si;
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != master)
        _exit(1);
    wfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    send_ev("init");
    pthread_create(&t, NULL, run_thread, NULL);
    for (;;) {
        int sig = sigwaitinfo(set, &si);
        if (sig == SIGHUP) {
            send_ev("reload");
        } else if (sig == SIGTERM) {
            send_ev("term");
            _exit(0);
        } else if (sig == SIGINT) {
            _exit(1);
        }
    }
}

static void spawn(long w, sigset_t *set, pid_t master)
{
    pid_t p = fork();
    if (p == 0) {
        wid = w;
        worker(set, master);
    }
    pids[w] = p;
}

int main(void)
{
    sigset_t set;
    siginfo_t si;
    const char *s = getenv("BENCH_SOCK"), *ns = getenv("BENCH_WORKERS");
    n = ns ? atol(ns) : 1;
    pid_t master = getpid();
    int stopping = 0;
    long alive;
    if (!s || n < 1 || n > MAXW)
        return 2;
    pids = calloc((size_t)n, sizeof *pids);
    if (!pids)
        return 2;
    dest.sun_family = AF_UNIX;
    strncpy(dest.sun_path, s, sizeof dest.sun_path - 1);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (long w = 0; w < n; w++)
        spawn(w, &set, master);
    alive = n;
    while (alive > 0) {
        if (sigwaitinfo(&set, &si) < 0)
            continue;
        if (si.si_signo == SIGHUP) {
            if (!stopping)
                for (long w = 0; w < n; w++)
                    kill(pids[w], SIGHUP);
        } else if (si.si_signo == SIGCHLD) {
            pid_t p;
            while ((p = waitpid(-1, NULL, WNOHANG)) > 0)
                for (long w = 0; w < n; w++)
                    if (pids[w] == p) {
                        if (stopping) {
                            pids[w] = 0;
                            alive--;
                        } else {
                            spawn(w, &set, master);
                        }
                        break;
                    }
        } else if (!stopping) {
            stopping = 1;
            for (long w = 0; w < n; w++)
                kill(pids[w], si.si_signo);
        }
    }
    return 0;
}
