/*
 * The application the C driver runs as a real master process. Options are
 * key=value arguments; what happens is reported as log lines
 * ("INFO:app:event ...") on stderr (default logger) or, with log=cb,
 * through a log callback writing "[cb] LEVEL:target:message" to stdout.
 *
 *   workers=N       workers of the service "svc" (default 2)
 *   log=cb          use the log callback instead of the default stderr
 *   reload=null     no reload callback (SIGHUP restarts the workers)
 *   term_code=N     terminate returns N
 *   term_hang=1     terminate never returns
 *   run_exit=N      run returns N at once
 *   timeout_ms=N    graceful shutdown timeout of the manager
 *   shutdown_on_dead=1  the dead-worker hook calls cotyledon_manager_shutdown
 *   cmd=1           a thread reads commands on stdin: "reconfigure N",
 *                   "workers", "shutdown", "status" (logs the status JSON),
 *                   "reload", "restart WORKER_ID"
 *   status=1        the reload hook logs the status JSON too
 *   ctl_socket=PATH the control socket (cotyledon_config_set_control_socket)
 *   metrics_file=PATH  the metrics file; metrics_ms=N its interval
 *   init=N          cotyledon_config_set_init (0 auto, 1 always, 2 never)
 *   orphan=1        each worker's run leaves a dead grandchild orphaned
 *   done_exit=N     the program exits with N after run returned OK
 *   kill_grace_ms=N cotyledon_config_set_kill_grace_ms
 *   notify_hook=1   the reload hook sends its own datagrams to NOTIFY_SOCKET
 *                   (read with getenv in the master): "X-APP-HOOK=begin",
 *                   then (after hook_sleep_ms=N, default 0) "X-APP-HOOK=end";
 *                   it logs the master's systemd variables too
 *   env=1           run logs the worker's systemd variables (getenv; "-"
 *                   when unset): "event env wid=W pid=P NOTIFY_SOCKET=- ..."
 *   grandchildren=1 run starts two `sh -c 'trap "" TERM INT; exec sleep
 *                   1000'`, the second in a session of its own:
 *                   "event grandchildren wid=W pid=P child=C escaped=E"
 *   wedge=1         as grandchildren=1, after setting SIGTERM and SIGINT to
 *                   SIG_IGN in the worker ("event wedged ..." instead)
 *   exit_codes=A,B  worker 0's run ends the worker with status A, worker
 *                   1's with B (0: _exit(0))
 *   restart=N       the restart policy (a cotyledon_restart value)
 *   stop_on_exit=1  the manager stops once the service has no worker left
 *   backoff_ms=B,M  backoff from B to M ms (jitter 0)
 *   give_up=N,W     give up after N failures within W ms
 *   worker_calls=1  each worker's run first calls the manager's functions
 *                   (all must fail there): "event worker_call NAME
 *                   result=R pid=P msg=..."
 *   check_file=PATH a reload check refuses the reload while PATH reads
 *                   "bad" (reason "PATH says bad") or "mute" (returns 2,
 *                   no reason), after logging "event check <content>"
 * Each worker logs "event identity wid=W sid=S name=N current=N(W)" from
 * create (what it got, and what cotyledon_current_worker says); the
 * dead-worker hook names the service (cotyledon_manager_service_name) and
 * says whether the master believes it is a worker ("master_is_worker=0").
 * At the end: "event run_returned result=R status=S" (S from
 * cotyledon_manager_exit_status, -1 if none), and the process exits with
 * S after STOPPED, done_exit (else S) after OK, 3 otherwise.
 */
#define _GNU_SOURCE
#include <cotyledon.h>

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int opt_workers = 2, opt_log_cb, opt_reload_null, opt_term_code, opt_term_hang;
static int opt_run_exit, opt_shutdown_on_dead, opt_cmd, opt_status;
static int opt_init = -1, opt_orphan, opt_done_exit;
static int opt_exit_codes[2] = {-1, -1}, opt_restart = -1, opt_stop_on_exit;
static long opt_backoff[2], opt_give_up[2];
static int opt_notify_hook, opt_env, opt_grandchildren, opt_wedge, opt_worker_calls;
static long opt_timeout_ms = -1, opt_metrics_ms = -1, opt_kill_grace_ms = -1, opt_hook_sleep_ms;
static const char *opt_ctl_socket, *opt_metrics_file, *opt_check_file;
static cotyledon_manager *manager;
static uint64_t service_id;
static void *created_instance; /* in a worker: what create made */

static void event(const char *fmt, ...)
{
    char line[4000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cotyledon_log(COTYLEDON_LOG_LEVEL_INFO, "app", line);
}

static void log_to_stdout(void *userdata, uint32_t level, const char *target, const char *message)
{
    char line[4096];
    int n = snprintf(line, sizeof line, "%s %s:%s:%s\n", (const char *)userdata,
                     cotyledon_log_level_name(level), target, message);
    if (n > (int)sizeof line - 1)
        n = (int)sizeof line - 1;
    ssize_t w = write(1, line, (size_t)n);
    (void)w;
}

/* systemd's variables for the main process, which no worker may inherit. */
static const char *const systemd_vars[] = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                                           "LISTEN_PID",    "LISTEN_FDS",    "LISTEN_FDNAMES"};

/* " NAME=value" for each of them ("-" when unset) into buf. */
static const char *systemd_env(char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof systemd_vars / sizeof systemd_vars[0]; i++) {
        const char *v = getenv(systemd_vars[i]);
        int n = snprintf(buf + off, size - off, " %s=%s", systemd_vars[i], v ? v : "-");
        if (n < 0 || (size_t)n >= size - off)
            break;
        off += (size_t)n;
    }
    return buf;
}

/* Sends `msg` to NOTIFY_SOCKET (a path, or "@name" in the abstract
 * namespace) the way an application's own sd_notify would. */
static void app_notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un a;
    size_t len = path ? strlen(path) : 0;
    if (len == 0 || len >= sizeof a.sun_path) {
        event("event app_notify msg=%s result=no-socket", msg);
        return;
    }
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, path, len);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (path[0] == '@')
        a.sun_path[0] = 0;
    else
        alen += 1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ssize_t n = fd < 0 ? -1 : sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&a, alen);
    if (fd >= 0)
        close(fd);
    event("event app_notify msg=%s result=%zd", msg, n);
}

/* A child that ignores SIGTERM and SIGINT (also when the worker does not),
 * in a session of its own when `escape`. */
static pid_t stubborn_child(int escape)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (escape)
            setsid();
        execl("/bin/sh", "sh", "-c", "trap '' TERM INT; exec sleep 1000", (char *)NULL);
        _exit(127);
    }
    return pid;
}

struct inst {
    uint64_t wid;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
};

static int svc_create(void *ud, const cotyledon_worker_identity *who, void **out)
{
    if (strcmp((const char *)ud, "svc-userdata") != 0)
        return 42;
    uint64_t wid = who->worker_id;
    cotyledon_worker_identity me = {0, NULL, 0};
    int known = cotyledon_current_worker(&me);
    event("event identity wid=%llu sid=%llu name=%s current=%s(%llu) known=%d",
          (unsigned long long)wid, (unsigned long long)who->service_id, who->service_name,
          known ? me.service_name : "-", (unsigned long long)me.worker_id, known);
    struct inst *s = calloc(1, sizeof *s);
    if (!s)
        return 1;
    s->wid = wid;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    created_instance = s;
    *out = s;
    event("event init wid=%llu pid=%d", (unsigned long long)wid, (int)getpid());
    return 0;
}

static int hook_terminate(void *ud);

static void worker_call(const char *name, cotyledon_result r)
{
    event("event worker_call %s result=%u pid=%d msg=%s", name, r, (int)getpid(),
          r ? cotyledon_last_error_message() : "");
}

/* Every manager function, called in a worker. */
static void worker_calls(void)
{
    int64_t n = -1;
    char *json = NULL;
    uint64_t id = 0;
    int status = -1;
    cotyledon_service svc = {0};
    worker_call("reconfigure", cotyledon_manager_reconfigure(manager, service_id, 5));
    worker_call("workers", cotyledon_manager_workers(manager, service_id, &n));
    worker_call("reload", cotyledon_manager_reload(manager));
    worker_call("restart_worker", cotyledon_manager_restart_worker(manager, service_id, 0));
    worker_call("set_graceful_shutdown_timeout_ms", cotyledon_manager_set_graceful_shutdown_timeout_ms(manager, 1));
    worker_call("status_json", cotyledon_manager_status_json(manager, &json));
    cotyledon_string_free(json);
    worker_call("add", cotyledon_manager_add(manager, "more", 1, &svc, NULL, &id));
    worker_call("on_terminate", cotyledon_manager_on_terminate(manager, hook_terminate, NULL));
    worker_call("service_name", cotyledon_manager_service_name(manager, service_id, &json));
    cotyledon_string_free(json);
    json = NULL;
    worker_call("exit_status", cotyledon_manager_exit_status(manager, &status));
    worker_call("run", cotyledon_manager_run(manager));
    worker_call("shutdown", cotyledon_manager_shutdown(manager));
    event("event worker_calls done pid=%d", (int)getpid());
}

static int svc_run(void *ud, void *p)
{
    (void)ud;
    struct inst *s = p;
    event("event run wid=%llu pid=%d", (unsigned long long)s->wid, (int)getpid());
    if (opt_worker_calls)
        worker_calls();
    if (opt_env) {
        char env[1024];
        event("event env wid=%llu pid=%d%s", (unsigned long long)s->wid, (int)getpid(),
              systemd_env(env, sizeof env));
    }
    if (opt_wedge) {
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
    }
    if (opt_wedge || opt_grandchildren) {
        pid_t child = stubborn_child(0), escaped = stubborn_child(1);
        event("event %s wid=%llu pid=%d child=%d escaped=%d", opt_wedge ? "wedged" : "grandchildren",
              (unsigned long long)s->wid, (int)getpid(), (int)child, (int)escaped);
    }
    if (opt_run_exit)
        return opt_run_exit;
    if (opt_orphan) {
        /* sh leaves a grandchild that exits at once: an orphan to reap */
        FILE *f = popen("sh -c 'exit 0' & echo $!", "r");
        int orphan = -1;
        if (f) {
            if (fscanf(f, "%d", &orphan) != 1)
                orphan = -1;
            pclose(f);
        }
        event("event orphan wid=%llu pid=%d", (unsigned long long)s->wid, orphan);
    }
    if (s->wid < 2 && opt_exit_codes[s->wid] > 0)
        return opt_exit_codes[s->wid];
    if (s->wid < 2 && opt_exit_codes[s->wid] == 0) {
        fflush(NULL);
        _exit(0);
    }
    pthread_mutex_lock(&s->lock);
    while (!s->stop)
        pthread_cond_wait(&s->wake, &s->lock);
    pthread_mutex_unlock(&s->lock);
    event("event run_done wid=%llu pid=%d", (unsigned long long)s->wid, (int)getpid());
    return 0;
}

static int svc_terminate(void *ud, void *p)
{
    (void)ud;
    struct inst *s = p;
    event("event terminate wid=%llu pid=%d", (unsigned long long)s->wid, (int)getpid());
    if (opt_term_hang)
        for (;;)
            pause();
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return opt_term_code;
}

static int svc_reload(void *ud, void *p)
{
    (void)ud;
    struct inst *s = p;
    event("event reload wid=%llu pid=%d", (unsigned long long)s->wid, (int)getpid());
    return 0;
}

static void svc_destroy(void *ud, void *p)
{
    (void)ud;
    struct inst *s = p;
    event("event destroy wid=%llu pid=%d", (unsigned long long)s->wid, (int)getpid());
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int hook_terminate(void *ud)
{
    event("event hook terminate %s", (const char *)ud);
    return 0;
}

/* Logs the status JSON on one line: "event status from=WHERE result=R json=..." */
static void log_status(const char *where)
{
    char *json = NULL;
    cotyledon_result r = cotyledon_manager_status_json(manager, &json);
    event("event status from=%s result=%u json=%s", where, r, json ? json : "(none)");
    cotyledon_string_free(json);
}

static int hook_reload(void *ud)
{
    (void)ud;
    event("event hook reload");
    if (opt_status)
        log_status("hook");
    if (opt_notify_hook) {
        char env[1024];
        event("event hook_env pid=%d%s", (int)getpid(), systemd_env(env, sizeof env));
        app_notify("X-APP-HOOK=begin");
        if (opt_hook_sleep_ms > 0) {
            struct timespec t = {opt_hook_sleep_ms / 1000, (opt_hook_sleep_ms % 1000) * 1000000L};
            while (nanosleep(&t, &t) == -1)
                ;
        }
        app_notify("X-APP-HOOK=end");
    }
    return 0;
}

static int hook_new_worker(void *ud, uint64_t sid, uint64_t wid, void *instance)
{
    (void)ud;
    event("event new_worker sid=%llu wid=%llu same_instance=%d pid=%d", (unsigned long long)sid,
          (unsigned long long)wid, instance == created_instance, (int)getpid());
    return 0;
}

static int hook_dead_worker(void *ud, uint64_t sid, uint64_t wid, int code)
{
    (void)ud;
    char *name = NULL;
    cotyledon_result nr = cotyledon_manager_service_name(manager, sid, &name);
    cotyledon_worker_identity me;
    event("event dead_worker sid=%llu wid=%llu code=%d name=%s master_is_worker=%d",
          (unsigned long long)sid, (unsigned long long)wid, code, nr == COTYLEDON_RESULT_OK ? name : "?",
          cotyledon_current_worker(&me));
    cotyledon_string_free(name);
    if (opt_shutdown_on_dead) {
        cotyledon_result r = cotyledon_manager_shutdown(manager);
        event("event shutdown_from_hook result=%u", r);
    }
    return 0;
}

static int reload_check(void *ud, char *reason, size_t reason_size)
{
    (void)ud;
    char text[64] = "";
    FILE *f = fopen(opt_check_file, "r");
    if (!f) {
        snprintf(reason, reason_size, "cannot open %s", opt_check_file);
        return 1;
    }
    if (!fgets(text, sizeof text, f))
        text[0] = 0;
    fclose(f);
    text[strcspn(text, "\n")] = 0;
    event("event check %s", text);
    if (strcmp(text, "bad") == 0) {
        snprintf(reason, reason_size, "%s says bad", opt_check_file);
        return 1;
    }
    if (strcmp(text, "mute") == 0)
        return 2; /* refused without a reason */
    return 0;
}

/* The command thread's work (calls that allocate, log lines) never runs
 * while the master forks: a worker forked in the middle of it would hold a
 * copy of that thread's half-done allocations, which nothing references
 * in the worker (valgrind counts them as definitely lost there). */
static pthread_mutex_t command_lock = PTHREAD_MUTEX_INITIALIZER;
static void before_fork(void) { pthread_mutex_lock(&command_lock); }
static void after_fork(void) { pthread_mutex_unlock(&command_lock); }

static void *commands(void *arg)
{
    (void)arg;
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        pthread_mutex_lock(&command_lock);
        long n;
        if (sscanf(line, "reconfigure %ld", &n) == 1) {
            cotyledon_result r = cotyledon_manager_reconfigure(manager, service_id, n);
            event("event reconfigured n=%ld result=%u", n, r);
        } else if (strncmp(line, "workers", 7) == 0) {
            int64_t w = -1;
            cotyledon_result r = cotyledon_manager_workers(manager, service_id, &w);
            event("event workers n=%lld result=%u", (long long)w, r);
        } else if (strncmp(line, "shutdown", 8) == 0) {
            cotyledon_result r = cotyledon_manager_shutdown(manager);
            event("event shutdown result=%u", r);
        } else if (strncmp(line, "status", 6) == 0) {
            log_status("thread");
        } else if (strncmp(line, "reload", 6) == 0) {
            cotyledon_result r = cotyledon_manager_reload(manager);
            event("event reload_requested result=%u", r);
        } else if (sscanf(line, "restart %ld", &n) == 1) {
            cotyledon_result r = cotyledon_manager_restart_worker(manager, service_id, (uint64_t)n);
            event("event restart wid=%ld result=%u", n, r);
        }
        pthread_mutex_unlock(&command_lock);
    }
    return NULL;
}

static int die(const char *what, cotyledon_result r)
{
    fprintf(stderr, "app: %s: %s: %s\n", what, cotyledon_result_str(r),
            cotyledon_last_error_message());
    return 70;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (sscanf(a, "workers=%d", &opt_workers) == 1 || sscanf(a, "term_code=%d", &opt_term_code) == 1 ||
            sscanf(a, "term_hang=%d", &opt_term_hang) == 1 || sscanf(a, "run_exit=%d", &opt_run_exit) == 1 ||
            sscanf(a, "timeout_ms=%ld", &opt_timeout_ms) == 1 ||
            sscanf(a, "shutdown_on_dead=%d", &opt_shutdown_on_dead) == 1 || sscanf(a, "cmd=%d", &opt_cmd) == 1 ||
            sscanf(a, "status=%d", &opt_status) == 1 || sscanf(a, "metrics_ms=%ld", &opt_metrics_ms) == 1 ||
            sscanf(a, "init=%d", &opt_init) == 1 || sscanf(a, "orphan=%d", &opt_orphan) == 1 ||
            sscanf(a, "done_exit=%d", &opt_done_exit) == 1 ||
            sscanf(a, "exit_codes=%d,%d", &opt_exit_codes[0], &opt_exit_codes[1]) >= 1 ||
            sscanf(a, "restart=%d", &opt_restart) == 1 || sscanf(a, "stop_on_exit=%d", &opt_stop_on_exit) == 1 ||
            sscanf(a, "backoff_ms=%ld,%ld", &opt_backoff[0], &opt_backoff[1]) == 2 ||
            sscanf(a, "give_up=%ld,%ld", &opt_give_up[0], &opt_give_up[1]) == 2 ||
            sscanf(a, "kill_grace_ms=%ld", &opt_kill_grace_ms) == 1 ||
            sscanf(a, "notify_hook=%d", &opt_notify_hook) == 1 ||
            sscanf(a, "hook_sleep_ms=%ld", &opt_hook_sleep_ms) == 1 || sscanf(a, "env=%d", &opt_env) == 1 ||
            sscanf(a, "grandchildren=%d", &opt_grandchildren) == 1 || sscanf(a, "wedge=%d", &opt_wedge) == 1 ||
            sscanf(a, "worker_calls=%d", &opt_worker_calls) == 1)
            continue;
        if (strncmp(a, "ctl_socket=", 11) == 0) {
            opt_ctl_socket = a + 11;
            continue;
        }
        if (strncmp(a, "check_file=", 11) == 0) {
            opt_check_file = a + 11;
            continue;
        }
        if (strncmp(a, "metrics_file=", 13) == 0) {
            opt_metrics_file = a + 13;
            continue;
        }
        if (strcmp(a, "log=cb") == 0)
            opt_log_cb = 1;
        else if (strcmp(a, "reload=null") == 0)
            opt_reload_null = 1;
        else {
            fprintf(stderr, "app: unknown option %s\n", a);
            return 64;
        }
    }
    static char tag[] = "[cb]";
    if (opt_log_cb)
        cotyledon_set_log_callback(log_to_stdout, tag);
    cotyledon_set_log_level(COTYLEDON_LOG_LEVEL_DEBUG);

    cotyledon_config *config = NULL;
    cotyledon_result r = cotyledon_config_new(&config);
    if (r)
        return die("config_new", r);
    cotyledon_config_set_wait_interval_ms(config, 0);
    if (opt_timeout_ms >= 0)
        cotyledon_config_set_graceful_shutdown_timeout_ms(config, (uint64_t)opt_timeout_ms);
    if ((opt_ctl_socket && (r = cotyledon_config_set_control_socket(config, opt_ctl_socket))) ||
        (opt_metrics_file && (r = cotyledon_config_set_metrics_file(config, opt_metrics_file))) ||
        (opt_metrics_ms >= 0 && (r = cotyledon_config_set_metrics_interval_ms(config, (uint64_t)opt_metrics_ms))) ||
        (opt_init >= 0 && (r = cotyledon_config_set_init(config, (uint32_t)opt_init))) ||
        (opt_kill_grace_ms >= 0 && (r = cotyledon_config_set_kill_grace_ms(config, (uint64_t)opt_kill_grace_ms))))
        return die("config", r);
    r = cotyledon_manager_new(config, &manager);
    cotyledon_config_free(config);
    if (r)
        return die("manager_new", r);

    cotyledon_service svc = {svc_create, svc_run, svc_terminate, svc_reload, svc_destroy};
    if (opt_reload_null)
        svc.reload = NULL;
    static char ud[] = "svc-userdata";
    static char one[] = "1", two[] = "2";
    if ((r = cotyledon_manager_add(manager, "svc", opt_workers, &svc, ud, &service_id)) ||
        (r = cotyledon_manager_on_terminate(manager, hook_terminate, one)) ||
        (r = cotyledon_manager_on_terminate(manager, hook_terminate, two)) ||
        (r = cotyledon_manager_on_reload(manager, hook_reload, NULL)) ||
        (r = cotyledon_manager_on_new_worker(manager, hook_new_worker, NULL)) ||
        (r = cotyledon_manager_on_dead_worker(manager, hook_dead_worker, NULL)) ||
        (opt_check_file && (r = cotyledon_manager_on_reload_check(manager, reload_check, NULL))))
        return die("setup", r);
    if (opt_restart >= 0 || opt_stop_on_exit || opt_backoff[0] || opt_give_up[0]) {
        cotyledon_policy *policy = NULL;
        if ((r = cotyledon_policy_new(&policy)) ||
            (opt_restart >= 0 && (r = cotyledon_policy_set_restart(policy, (uint32_t)opt_restart))) ||
            (r = cotyledon_policy_set_stop_on_exit(policy, opt_stop_on_exit)) ||
            (opt_backoff[0] &&
             ((r = cotyledon_policy_set_backoff_ms(policy, (uint64_t)opt_backoff[0], (uint64_t)opt_backoff[1], 0)) ||
              (r = cotyledon_policy_set_backoff_jitter(policy, 0.0)))) ||
            (opt_give_up[0] &&
             (r = cotyledon_policy_set_give_up(policy, (uint32_t)opt_give_up[0], (uint64_t)opt_give_up[1]))) ||
            (r = cotyledon_manager_set_policy(manager, service_id, policy))) {
            cotyledon_policy_free(policy);
            return die("policy", r);
        }
        cotyledon_policy_free(policy);
    }
    event("event master pid=%d sid=%llu ppid=%d", (int)getpid(), (unsigned long long)service_id, (int)getppid());
    if (opt_cmd) {
        pthread_atfork(before_fork, after_fork, after_fork);
        pthread_t t;
        pthread_create(&t, NULL, commands, NULL);
        pthread_detach(t);
    }
    r = cotyledon_manager_run(manager);
    int status = -1;
    cotyledon_manager_exit_status(manager, &status);
    if (r == COTYLEDON_RESULT_STOPPED)
        event("event run_returned result=%u status=%d why=%s", r, status, cotyledon_last_error_message());
    else
        event("event run_returned result=%u status=%d", r, status);
    cotyledon_manager_free(manager);
    if (r == COTYLEDON_RESULT_OK)
        return opt_done_exit ? opt_done_exit : status;
    return r == COTYLEDON_RESULT_STOPPED ? status : 3;
}
