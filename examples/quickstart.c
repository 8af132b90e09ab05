/*
 * The quickstart in C: two workers of a service that logs its life.
 *
 *   cc quickstart.c -o quickstart $(pkg-config --cflags --libs cotyledon)
 *   ./quickstart
 *
 * Then press Ctrl-C (fast exit), or from another terminal send SIGHUP
 * (reload) or SIGTERM (graceful stop) to the master's pid.
 */
#include <cotyledon.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NAME "my_example_service"

/* One per worker process, made by create() in the worker. */
struct my_service {
    uint64_t worker_id;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopped; /* set by terminate(), read by run(): under lock */
};

static void say(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cotyledon_log(COTYLEDON_LOG_LEVEL_INFO, "quickstart", line);
}

/* Runs in the new worker, after the fork: build threads and event loops
 * here, never in the master. `worker` says which service and worker this is
 * (cotyledon_current_worker gives the same anywhere in the worker). */
static int create(void *userdata, const cotyledon_worker_identity *worker, void **instance)
{
    (void)userdata;
    struct my_service *s = calloc(1, sizeof *s);
    if (s == NULL)
        return 1;
    s->worker_id = worker->worker_id;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    say("[%d] %s worker %llu init", (int)getpid(), worker->service_name,
        (unsigned long long)worker->worker_id);
    *instance = s;
    return 0;
}

static int run(void *userdata, void *instance)
{
    (void)userdata;
    struct my_service *s = instance;
    say("[%d] %s worker %llu running...", (int)getpid(), NAME,
        (unsigned long long)s->worker_id);
    pthread_mutex_lock(&s->lock);
    while (!s->stopped) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&s->wake, &s->lock, &until);
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static int terminate(void *userdata, void *instance)
{
    (void)userdata;
    struct my_service *s = instance;
    say("[%d] %s worker %llu terminating...", (int)getpid(), NAME,
        (unsigned long long)s->worker_id);
    pthread_mutex_lock(&s->lock);
    s->stopped = 1;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return 0; /* the worker's exit status */
}

static int reload(void *userdata, void *instance)
{
    (void)userdata;
    struct my_service *s = instance;
    say("[%d] %s worker %llu reloading...", (int)getpid(), NAME,
        (unsigned long long)s->worker_id);
    return 0;
}

static void destroy(void *userdata, void *instance)
{
    (void)userdata;
    struct my_service *s = instance;
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int fail(const char *what, cotyledon_result r)
{
    fprintf(stderr, "%s: %s (%s)\n", what, cotyledon_result_str(r),
            cotyledon_last_error_message());
    return 1;
}

int main(void)
{
    const cotyledon_service service = {
        .create = create,
        .run = run,
        .terminate = terminate,
        .reload = reload,
        .destroy = destroy,
    };
    cotyledon_manager *manager = NULL;
    cotyledon_result r;

    say("Starting Cotyledon Service Manager");
    r = cotyledon_manager_new(NULL, &manager);
    if (r != COTYLEDON_RESULT_OK)
        return fail("cotyledon_manager_new", r);
    r = cotyledon_manager_add(manager, NAME, 2, &service, NULL, NULL);
    if (r != COTYLEDON_RESULT_OK) {
        cotyledon_manager_free(manager);
        return fail("cotyledon_manager_add", r);
    }
    r = cotyledon_manager_run(manager); /* until SIGTERM; SIGINT exits 1 */
    cotyledon_manager_free(manager);
    if (r != COTYLEDON_RESULT_OK)
        return fail("cotyledon_manager_run", r);
    say("Cotyledon Service Manager stopped.");
    return 0;
}
