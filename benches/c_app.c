/*
 * The benchmark application, C face: the same behaviour and configuration
 * as benches/app.py (see there), on libcotyledon (include/cotyledon.h).
 * Built by benches/run.sh against the static library.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cotyledon.h"

struct reporter {
    uint64_t wid;
    int fd;
};

static struct sockaddr_un dest;

static void send_event(struct reporter *r, const char *event)
{
    struct timespec ts;
    char msg[128];
    int len;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    len = snprintf(msg, sizeof msg, "%s %llu %ld %lld", event, (unsigned long long)r->wid,
                   (long)getpid(), (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    if (r->fd >= 0)
        (void)sendto(r->fd, msg, (size_t)len, 0, (struct sockaddr *)&dest, sizeof dest);
}

static int bench_create(void *userdata, const cotyledon_worker_identity *worker, void **instance)
{
    struct reporter *r = malloc(sizeof *r);
    (void)userdata;
    if (r == NULL)
        return 1;
    r->wid = worker->worker_id;
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    send_event(r, "init");
    *instance = r;
    return 0;
}

static int bench_run(void *userdata, void *instance)
{
    (void)userdata;
    send_event(instance, "run");
    return 0;
}

static int bench_terminate(void *userdata, void *instance)
{
    (void)userdata;
    send_event(instance, "term");
    return 0;
}

static int bench_reload(void *userdata, void *instance)
{
    (void)userdata;
    send_event(instance, "reload");
    return 0;
}

static void bench_destroy(void *userdata, void *instance)
{
    struct reporter *r = instance;
    (void)userdata;
    if (r->fd >= 0)
        close(r->fd);
    free(r);
}

int main(void)
{
    const char *sock = getenv("BENCH_SOCK");
    const char *workers_s = getenv("BENCH_WORKERS");
    const char *wait = getenv("BENCH_WAIT_INTERVAL");
    const char *reload = getenv("BENCH_RELOAD");
    long workers = workers_s ? strtol(workers_s, NULL, 10) : 1;
    cotyledon_config *config = NULL;
    cotyledon_manager *manager = NULL;
    cotyledon_service service;
    uint64_t id;
    cotyledon_result rc;

    if (sock == NULL || strlen(sock) >= sizeof dest.sun_path) {
        fprintf(stderr, "BENCH_SOCK missing or too long\n");
        return 2;
    }
    dest.sun_family = AF_UNIX;
    strcpy(dest.sun_path, sock);

    memset(&service, 0, sizeof service);
    service.create = bench_create;
    service.run = bench_run;
    service.terminate = bench_terminate;
    service.reload = (reload == NULL || strcmp(reload, "1") == 0) ? bench_reload : NULL;
    service.destroy = bench_destroy;

    if (cotyledon_config_new(&config) != 0)
        return 2;
    if (wait != NULL && strcmp(wait, "default") != 0)
        cotyledon_config_set_wait_interval_ms(config, (uint64_t)(strtod(wait, NULL) * 1000.0));
    rc = cotyledon_manager_new(config, &manager);
    cotyledon_config_free(config);
    if (rc != 0) {
        fprintf(stderr, "manager: %s\n", cotyledon_last_error_message());
        return 2;
    }
    rc = cotyledon_manager_add(manager, "bench", workers, &service, NULL, &id);
    if (rc != 0) {
        fprintf(stderr, "add: %s\n", cotyledon_last_error_message());
        return 2;
    }
    rc = cotyledon_manager_run(manager);
    cotyledon_manager_free(manager);
    return rc == 0 ? 0 : 1;
}
