/*
 * API and misuse tests of libcotyledon, in one process (plus one short run
 * that forks a worker). Meant to run under valgrind as well.
 * Prints "PASS <test>" / "FAIL <test>: ..." lines and a summary.
 */
#define _GNU_SOURCE
#include <cotyledon.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int checks_failed;
static const char *current;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("  check failed in %s (unit.c:%d): %s\n", current, __LINE__, #cond);           \
            checks_failed++;                                                                       \
        }                                                                                          \
    } while (0)

#define CHECK_RESULT(expr, code)                                                                   \
    do {                                                                                           \
        cotyledon_result r_ = (expr);                                                              \
        if (r_ != (code)) {                                                                        \
            printf("  check failed in %s (unit.c:%d): %s gave %u (%s: %s), expected %u\n",         \
                   current, __LINE__, #expr, r_, cotyledon_result_str(r_),                         \
                   cotyledon_last_error_message(), (unsigned)(code));                              \
            checks_failed++;                                                                       \
        }                                                                                          \
    } while (0)

#define LAST_ERROR_IS(text) CHECK(strcmp(cotyledon_last_error_message(), (text)) == 0)
#define LAST_ERROR_HAS(text) CHECK(strstr(cotyledon_last_error_message(), (text)) != NULL)

static cotyledon_config *quiet_config(void)
{
    cotyledon_config *c = NULL;
    if (cotyledon_config_new(&c) != COTYLEDON_RESULT_OK)
        return NULL;
    cotyledon_config_set_session_leader(c, false);
    cotyledon_config_set_titles(c, COTYLEDON_TITLE_MODE_OFF);
    cotyledon_config_set_wait_interval_ms(c, 0);
    cotyledon_config_set_notify_systemd(c, false);
    return c;
}

static const cotyledon_service empty_service;

/* ---- tests -------------------------------------------------------------- */

static void test_version(void)
{
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", COTYLEDON_VERSION_MAJOR, COTYLEDON_VERSION_MINOR,
             COTYLEDON_VERSION_PATCH);
    CHECK(strcmp(cotyledon_version(), expected) == 0);
}

static void test_result_str(void)
{
    for (uint32_t c = 0; c <= COTYLEDON_RESULT_INVALID_SERVICE_NAME; c++) {
        const char *s = cotyledon_result_str(c);
        CHECK(s != NULL && s[0] != '\0' && strcmp(s, "unknown result code") != 0);
    }
    CHECK(strcmp(cotyledon_result_str(COTYLEDON_RESULT_OK), "success") == 0);
    CHECK(strcmp(cotyledon_result_str(COTYLEDON_RESULT_ALREADY_CREATED), "a service manager already exists") == 0);
    CHECK(strcmp(cotyledon_result_str(COTYLEDON_RESULT_NO_SUCH_WORKER), "no such running worker") == 0);
    CHECK(strcmp(cotyledon_result_str(COTYLEDON_RESULT_STOPPED), "stopped by a restart policy") == 0);
    CHECK(strcmp(cotyledon_result_str(COTYLEDON_RESULT_NOT_IN_MASTER), "called outside the master process") == 0);
    CHECK(strcmp(cotyledon_result_str(COTYLEDON_RESULT_INVALID_SERVICE_NAME), "invalid service name") == 0);
    CHECK(COTYLEDON_RESULT_INVALID_SERVICE_NAME == 14);
    CHECK(strcmp(cotyledon_result_str(16), "unknown result code") == 0);
    CHECK(strcmp(cotyledon_result_str(UINT32_MAX), "unknown result code") == 0);
    /* published numbers never change */
    CHECK(COTYLEDON_RESULT_OK == 0 && COTYLEDON_RESULT_NULL_PARAMETER == 1 && COTYLEDON_RESULT_PANIC == 2 &&
          COTYLEDON_RESULT_INVALID_ARGUMENT == 3 && COTYLEDON_RESULT_INVALID_HANDLE == 4 &&
          COTYLEDON_RESULT_INVALID_WORKERS == 5 && COTYLEDON_RESULT_ALREADY_CREATED == 6 &&
          COTYLEDON_RESULT_UNKNOWN_SERVICE == 7 && COTYLEDON_RESULT_ALREADY_RUNNING == 8 &&
          COTYLEDON_RESULT_INTERRUPTED == 9 && COTYLEDON_RESULT_IO == 10 && COTYLEDON_RESULT_UNKNOWN == 11 &&
          COTYLEDON_RESULT_NO_SUCH_WORKER == 12 && COTYLEDON_RESULT_STOPPED == 13 &&
          COTYLEDON_RESULT_INVALID_SERVICE_NAME == 14 && COTYLEDON_RESULT_NOT_IN_MASTER == 15);
    CHECK(COTYLEDON_GIVE_UP_STATUS == 125);
    CHECK(strcmp(cotyledon_log_level_name(COTYLEDON_LOG_LEVEL_WARNING), "WARNING") == 0);
    CHECK(strcmp(cotyledon_log_level_name(7), "LEVEL") == 0);
}

static int hook0(void *ud) { (void)ud; return 0; }
static int check0(void *ud, char *reason, size_t size) { (void)ud, (void)reason, (void)size; return 0; }
static int hook_new(void *ud, uint64_t s, uint64_t w, void *i) { (void)ud, (void)s, (void)w, (void)i; return 0; }
static int hook_dead(void *ud, uint64_t s, uint64_t w, int c) { (void)ud, (void)s, (void)w, (void)c; return 0; }

static void test_null_handles(void)
{
    const cotyledon_result N = COTYLEDON_RESULT_NULL_PARAMETER;
    uint64_t id = 7;
    int64_t n = 7;
    CHECK_RESULT(cotyledon_config_new(NULL), N);
    LAST_ERROR_IS("'out' must not be NULL");
    CHECK_RESULT(cotyledon_config_set_wait_interval_ms(NULL, 1), N);
    LAST_ERROR_IS("'config' must not be NULL");
    CHECK_RESULT(cotyledon_config_set_graceful_shutdown_timeout_ms(NULL, 1), N);
    CHECK_RESULT(cotyledon_config_set_single_instance(NULL, true), N);
    CHECK_RESULT(cotyledon_config_set_session_leader(NULL, true), N);
    CHECK_RESULT(cotyledon_config_set_keep_terminal(NULL, true), N);
    CHECK_RESULT(cotyledon_config_set_titles(NULL, 0), N);
    CHECK_RESULT(cotyledon_config_set_init(NULL, COTYLEDON_INIT_MODE_NEVER), N);
    CHECK_RESULT(cotyledon_config_set_notify_systemd(NULL, true), N);
    CHECK_RESULT(cotyledon_manager_new(NULL, NULL), N);
    CHECK_RESULT(cotyledon_manager_add(NULL, "x", 1, &empty_service, NULL, &id), N);
    LAST_ERROR_IS("'manager' must not be NULL");
    CHECK_RESULT(cotyledon_manager_reconfigure(NULL, 1, 1), N);
    CHECK_RESULT(cotyledon_manager_workers(NULL, 1, &n), N);
    CHECK_RESULT(cotyledon_manager_shutdown(NULL), N);
    CHECK_RESULT(cotyledon_manager_set_graceful_shutdown_timeout_ms(NULL, 1), N);
    CHECK_RESULT(cotyledon_manager_on_terminate(NULL, hook0, NULL), N);
    CHECK_RESULT(cotyledon_manager_on_reload(NULL, hook0, NULL), N);
    CHECK_RESULT(cotyledon_manager_on_new_worker(NULL, hook_new, NULL), N);
    CHECK_RESULT(cotyledon_manager_on_dead_worker(NULL, hook_dead, NULL), N);
    CHECK_RESULT(cotyledon_manager_run(NULL), N);
    char *json = (char *)"untouched";
    CHECK_RESULT(cotyledon_manager_status_json(NULL, &json), N);
    LAST_ERROR_IS("'manager' must not be NULL");
    CHECK(strcmp(json, "untouched") == 0);
    CHECK_RESULT(cotyledon_manager_reload(NULL), N);
    CHECK_RESULT(cotyledon_manager_restart_worker(NULL, 1, 0), N);
    CHECK_RESULT(cotyledon_config_set_control_socket(NULL, "/tmp/x.sock"), N);
    CHECK_RESULT(cotyledon_config_set_metrics_file(NULL, "/tmp/x.prom"), N);
    CHECK_RESULT(cotyledon_config_set_metrics_interval_ms(NULL, 1000), N);
    CHECK_RESULT(cotyledon_config_set_kill_grace_ms(NULL, 300), N);
    LAST_ERROR_IS("'config' must not be NULL");
    CHECK(id == 7 && n == 7);
    cotyledon_string_free(NULL);
    cotyledon_config_free(NULL);
    cotyledon_manager_free(NULL);
    cotyledon_log(COTYLEDON_LOG_LEVEL_DEBUG, NULL, NULL); /* below the level: dropped */
}

static void test_invalid_handles(void)
{
    const cotyledon_result H = COTYLEDON_RESULT_INVALID_HANDLE;
    cotyledon_config *c = NULL;
    CHECK_RESULT(cotyledon_config_new(&c), COTYLEDON_RESULT_OK);
    CHECK(c != NULL);
    CHECK_RESULT(cotyledon_config_set_titles(c, 99), COTYLEDON_RESULT_INVALID_ARGUMENT);
    LAST_ERROR_IS("unknown title mode 99");
    CHECK_RESULT(cotyledon_config_set_titles(c, COTYLEDON_TITLE_MODE_FULL), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_config_set_init(c, 3), COTYLEDON_RESULT_INVALID_ARGUMENT);
    LAST_ERROR_IS("unknown init mode 3");
    CHECK_RESULT(cotyledon_config_set_init(c, COTYLEDON_INIT_MODE_NEVER), COTYLEDON_RESULT_OK);
    /* a config is not a manager */
    CHECK_RESULT(cotyledon_manager_shutdown((cotyledon_manager *)c), H);
    LAST_ERROR_HAS("is not a live manager handle");
    char *json = NULL;
    CHECK_RESULT(cotyledon_manager_status_json((cotyledon_manager *)c, &json), H);
    CHECK(json == NULL);
    CHECK_RESULT(cotyledon_manager_reload((cotyledon_manager *)c), H);
    CHECK_RESULT(cotyledon_manager_restart_worker((cotyledon_manager *)c, 0, 0), H);
    /* paths: UTF-8 and not empty; NULL clears */
    CHECK_RESULT(cotyledon_config_set_control_socket(c, ""), COTYLEDON_RESULT_INVALID_ARGUMENT);
    LAST_ERROR_IS("path must not be empty (NULL clears it)");
    CHECK_RESULT(cotyledon_config_set_control_socket(c, "/tmp/\xff.sock"), COTYLEDON_RESULT_INVALID_ARGUMENT);
    LAST_ERROR_IS("path is not UTF-8");
    CHECK_RESULT(cotyledon_config_set_metrics_file(c, ""), COTYLEDON_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(cotyledon_config_set_metrics_file(c, "\xc3("), COTYLEDON_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(cotyledon_config_set_control_socket(c, "/tmp/x.sock"), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_config_set_control_socket(c, NULL), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_config_set_metrics_file(c, "/tmp/x.prom"), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_config_set_metrics_file(c, NULL), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_config_set_metrics_interval_ms(c, 0), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_config_set_kill_grace_ms(c, 0), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_config_set_kill_grace_ms(c, 300), COTYLEDON_RESULT_OK);
    cotyledon_config_free(c);
    /* freed: every use is an error, a second free is ignored */
    CHECK_RESULT(cotyledon_config_set_wait_interval_ms(c, 1), H);
    LAST_ERROR_HAS("is not a live config handle");
    CHECK_RESULT(cotyledon_config_set_control_socket(c, "/tmp/x.sock"), H);
    CHECK_RESULT(cotyledon_config_set_metrics_file(c, "/tmp/x.prom"), H);
    CHECK_RESULT(cotyledon_config_set_metrics_interval_ms(c, 1), H);
    CHECK_RESULT(cotyledon_config_set_kill_grace_ms(c, 1), H);
    LAST_ERROR_HAS("is not a live config handle");
    cotyledon_config_free(c);
    cotyledon_manager *m = NULL;
    CHECK_RESULT(cotyledon_manager_new(c, &m), H);
    CHECK(m == NULL);
    /* garbage pointers */
    int local = 0;
    CHECK_RESULT(cotyledon_manager_run((cotyledon_manager *)&local), H);
    CHECK_RESULT(cotyledon_config_set_single_instance((cotyledon_config *)(uintptr_t)0x10, true), H);
    cotyledon_manager_free((cotyledon_manager *)&local);
    cotyledon_config_free((cotyledon_config *)&local);
}

/* A freed handle stays dead even when a new object is created right after
 * (where an allocator would likely reuse the freed memory): handles are
 * never-reused tokens, not addresses. Many rounds, so a reused address
 * would be caught. */
static void test_stale_handles_after_recreate(void)
{
    const cotyledon_result H = COTYLEDON_RESULT_INVALID_HANDLE;
    cotyledon_config *c = NULL;
    CHECK_RESULT(cotyledon_config_new(&c), COTYLEDON_RESULT_OK);
    for (int i = 0; i < 1000; i++) {
        cotyledon_config *stale = c, *fresh = NULL;
        cotyledon_config_free(stale);
        CHECK_RESULT(cotyledon_config_new(&fresh), COTYLEDON_RESULT_OK);
        CHECK(fresh != NULL && fresh != stale);
        CHECK_RESULT(cotyledon_config_set_wait_interval_ms(stale, 1), H);
        CHECK_RESULT(cotyledon_config_set_wait_interval_ms(fresh, 1), COTYLEDON_RESULT_OK);
        c = fresh;
    }
    CHECK_RESULT(cotyledon_config_set_titles(c, COTYLEDON_TITLE_MODE_OFF), COTYLEDON_RESULT_OK);
    cotyledon_config_set_session_leader(c, false);
    cotyledon_config_set_notify_systemd(c, false);

    cotyledon_manager *m = NULL;
    CHECK_RESULT(cotyledon_manager_new(c, &m), COTYLEDON_RESULT_OK);
    for (int i = 0; i < 100; i++) {
        cotyledon_manager *stale = m, *fresh = NULL;
        uint64_t id = 0;
        int64_t n = -1;
        cotyledon_manager_free(stale);
        /* single instance: only possible because the first one is gone */
        CHECK_RESULT(cotyledon_manager_new(c, &fresh), COTYLEDON_RESULT_OK);
        CHECK(fresh != NULL && fresh != stale);
        CHECK_RESULT(cotyledon_manager_add(stale, "stale", 1, &empty_service, NULL, &id), H);
        LAST_ERROR_HAS("is not a live manager handle");
        CHECK_RESULT(cotyledon_manager_shutdown(stale), H);
        CHECK_RESULT(cotyledon_manager_run(stale), H);
        CHECK_RESULT(cotyledon_manager_add(fresh, "fresh", 2, &empty_service, NULL, &id), COTYLEDON_RESULT_OK);
        CHECK_RESULT(cotyledon_manager_workers(fresh, id, &n), COTYLEDON_RESULT_OK);
        CHECK(n == 2);
        CHECK_RESULT(cotyledon_manager_workers(stale, id, &n), H);
        m = fresh;
    }
    /* a live handle of one kind is not a handle of the other */
    CHECK_RESULT(cotyledon_config_set_titles((cotyledon_config *)m, COTYLEDON_TITLE_MODE_OFF), H);
    LAST_ERROR_HAS("is not a live config handle");
    CHECK_RESULT(cotyledon_manager_shutdown((cotyledon_manager *)c), H);
    CHECK_RESULT(cotyledon_manager_set_graceful_shutdown_timeout_ms(m, 1000), COTYLEDON_RESULT_OK);
    cotyledon_manager_free(m);
    cotyledon_config_free(c);
}

static void test_second_manager(void)
{
    cotyledon_config *c = quiet_config();
    cotyledon_manager *m1 = NULL, *m2 = (cotyledon_manager *)(uintptr_t)0x1234, *m3 = NULL;
    CHECK_RESULT(cotyledon_manager_new(c, &m1), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_new(c, &m2), COTYLEDON_RESULT_ALREADY_CREATED);
    LAST_ERROR_IS("a service manager already exists in this process (one at a time, unless single_instance is off)");
    CHECK(m2 == (cotyledon_manager *)(uintptr_t)0x1234); /* untouched on failure */
    CHECK_RESULT(cotyledon_manager_new(NULL, &m2), COTYLEDON_RESULT_ALREADY_CREATED);
    /* without the single-instance rule, a second one is allowed */
    cotyledon_config_set_single_instance(c, false);
    CHECK_RESULT(cotyledon_manager_new(c, &m3), COTYLEDON_RESULT_OK);
    cotyledon_manager_free(m3);
    cotyledon_config_set_single_instance(c, true);
    cotyledon_manager_free(m1);
    m2 = NULL;
    CHECK_RESULT(cotyledon_manager_new(c, &m2), COTYLEDON_RESULT_OK); /* the first is gone */
    CHECK(m2 != NULL);
    cotyledon_manager_free(m2);
    cotyledon_manager_free(m2); /* double free: ignored */
    CHECK_RESULT(cotyledon_manager_shutdown(m2), COTYLEDON_RESULT_INVALID_HANDLE);
    cotyledon_config_free(c);
}

static void test_add_and_ids(void)
{
    cotyledon_config *c = quiet_config();
    cotyledon_manager *m = NULL;
    CHECK_RESULT(cotyledon_manager_new(c, &m), COTYLEDON_RESULT_OK);
    cotyledon_config_free(c);
    uint64_t id = 99, id2 = 99;
    CHECK_RESULT(cotyledon_manager_add(m, "svc", 0, &empty_service, NULL, &id), COTYLEDON_RESULT_INVALID_WORKERS);
    LAST_ERROR_IS("invalid worker count 0: the minimum is 1");
    CHECK_RESULT(cotyledon_manager_add(m, "svc", -3, &empty_service, NULL, &id), COTYLEDON_RESULT_INVALID_WORKERS);
    LAST_ERROR_IS("invalid worker count -3: the minimum is 1");
    CHECK_RESULT(cotyledon_manager_add(m, NULL, 1, &empty_service, NULL, &id), COTYLEDON_RESULT_NULL_PARAMETER);
    LAST_ERROR_IS("'name' must not be NULL");
    CHECK_RESULT(cotyledon_manager_add(m, "svc", 1, NULL, NULL, &id), COTYLEDON_RESULT_NULL_PARAMETER);
    LAST_ERROR_IS("'service' must not be NULL");
    CHECK_RESULT(cotyledon_manager_add(m, "bad\xff", 1, &empty_service, NULL, &id), COTYLEDON_RESULT_INVALID_ARGUMENT);
    CHECK(id == 99);
    CHECK_RESULT(cotyledon_manager_add(m, "svc", 2, &empty_service, NULL, &id), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_add(m, "other", 1, &empty_service, NULL, &id2), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_add(m, "no-id-wanted", 1, &empty_service, NULL, NULL), COTYLEDON_RESULT_OK);
    CHECK(id != 99 && id2 != 99 && id != id2);
    /* names are unique and not empty */
    uint64_t id3 = 99;
    CHECK_RESULT(cotyledon_manager_add(m, "svc", 1, &empty_service, NULL, &id3), COTYLEDON_RESULT_INVALID_SERVICE_NAME);
    LAST_ERROR_IS("a service named \"svc\" was already added");
    CHECK_RESULT(cotyledon_manager_add(m, "", 1, &empty_service, NULL, &id3), COTYLEDON_RESULT_INVALID_SERVICE_NAME);
    LAST_ERROR_IS("a service name must not be empty");
    CHECK(id3 == 99);
    /* ids map back to names */
    char *name = NULL;
    CHECK_RESULT(cotyledon_manager_service_name(m, id2, &name), COTYLEDON_RESULT_OK);
    CHECK(name != NULL && strcmp(name, "other") == 0);
    cotyledon_string_free(name);
    name = NULL;
    CHECK_RESULT(cotyledon_manager_service_name(m, 424242, &name), COTYLEDON_RESULT_UNKNOWN_SERVICE);
    LAST_ERROR_IS("unknown service id 424242");
    CHECK(name == NULL);
    CHECK_RESULT(cotyledon_manager_service_name(m, id, NULL), COTYLEDON_RESULT_NULL_PARAMETER);
    CHECK_RESULT(cotyledon_manager_service_name(NULL, id, &name), COTYLEDON_RESULT_NULL_PARAMETER);
    /* the master (this process) is no worker */
    cotyledon_worker_identity me = {7, "x", 7};
    CHECK(!cotyledon_current_worker(&me));
    CHECK(me.service_id == 7 && me.worker_id == 7); /* untouched */
    CHECK(!cotyledon_current_worker(NULL));

    int64_t n = -1;
    CHECK_RESULT(cotyledon_manager_workers(m, id, &n), COTYLEDON_RESULT_OK);
    CHECK(n == 2);
    CHECK_RESULT(cotyledon_manager_workers(m, id, NULL), COTYLEDON_RESULT_NULL_PARAMETER);
    n = -1;
    CHECK_RESULT(cotyledon_manager_workers(m, 424242, &n), COTYLEDON_RESULT_UNKNOWN_SERVICE);
    LAST_ERROR_IS("unknown service id 424242");
    CHECK(n == -1);
    CHECK_RESULT(cotyledon_manager_reconfigure(m, 424242, 3), COTYLEDON_RESULT_UNKNOWN_SERVICE);
    LAST_ERROR_IS("unknown service id 424242");
    CHECK_RESULT(cotyledon_manager_reconfigure(m, id, 5), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_workers(m, id, &n), COTYLEDON_RESULT_OK);
    CHECK(n == 5);
    CHECK_RESULT(cotyledon_manager_reconfigure(m, id, -5), COTYLEDON_RESULT_INVALID_WORKERS);
    LAST_ERROR_IS("invalid worker count -5: the minimum is -4");
    CHECK_RESULT(cotyledon_manager_set_graceful_shutdown_timeout_ms(m, 5000), COTYLEDON_RESULT_OK);

    CHECK_RESULT(cotyledon_manager_on_terminate(m, NULL, NULL), COTYLEDON_RESULT_NULL_PARAMETER);
    LAST_ERROR_IS("'hook' must not be NULL");
    CHECK_RESULT(cotyledon_manager_on_reload(m, NULL, NULL), COTYLEDON_RESULT_NULL_PARAMETER);
    CHECK_RESULT(cotyledon_manager_on_new_worker(m, NULL, NULL), COTYLEDON_RESULT_NULL_PARAMETER);
    CHECK_RESULT(cotyledon_manager_on_dead_worker(m, NULL, NULL), COTYLEDON_RESULT_NULL_PARAMETER);
    CHECK_RESULT(cotyledon_manager_on_reload_check(m, NULL, NULL), COTYLEDON_RESULT_NULL_PARAMETER);
    CHECK_RESULT(cotyledon_manager_on_reload_check(m, check0, NULL), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_on_terminate(m, hook0, NULL), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_on_reload(m, hook0, NULL), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_on_new_worker(m, hook_new, NULL), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_on_dead_worker(m, hook_dead, NULL), COTYLEDON_RESULT_OK);
    cotyledon_manager_free(m); /* never run: fine */
}

/* Every count the engine cannot run is INVALID_WORKERS, at both ends, and
 * leaves the configured count as it was (nothing wraps). */
static void test_worker_count_edges(void)
{
    cotyledon_config *c = quiet_config();
    cotyledon_manager *m = NULL;
    CHECK_RESULT(cotyledon_manager_new(c, &m), COTYLEDON_RESULT_OK);
    cotyledon_config_free(c);
    const cotyledon_result W = COTYLEDON_RESULT_INVALID_WORKERS;
    uint64_t id = 99;
    CHECK(COTYLEDON_MAX_WORKERS == 10000);
    CHECK_RESULT(cotyledon_manager_add(m, "x", INT64_MAX, &empty_service, NULL, &id), W);
    LAST_ERROR_IS("invalid worker count 9223372036854775807: the maximum is 10000");
    CHECK_RESULT(cotyledon_manager_add(m, "x", COTYLEDON_MAX_WORKERS + 1, &empty_service, NULL, &id), W);
    LAST_ERROR_IS("invalid worker count 10001: the maximum is 10000");
    CHECK_RESULT(cotyledon_manager_add(m, "x", INT64_MIN, &empty_service, NULL, &id), W);
    LAST_ERROR_IS("invalid worker count -9223372036854775808: the minimum is 1");
    /* a -1 kept in an unsigned count, passed on */
    size_t minus_one = (size_t)-1;
    CHECK_RESULT(cotyledon_manager_add(m, "x", (int64_t)minus_one, &empty_service, NULL, &id), W);
    LAST_ERROR_IS("invalid worker count -1: the minimum is 1");
    CHECK_RESULT(cotyledon_manager_add(m, "x", 0, &empty_service, NULL, &id), W);
    CHECK(id == 99);
    CHECK_RESULT(cotyledon_manager_add(m, "x", COTYLEDON_MAX_WORKERS, &empty_service, NULL, &id), COTYLEDON_RESULT_OK);
    int64_t n = -1;
    CHECK_RESULT(cotyledon_manager_reconfigure(m, id, INT64_MAX), W);
    LAST_ERROR_IS("invalid worker count 9223372036854775807: the maximum is 10000");
    CHECK_RESULT(cotyledon_manager_reconfigure(m, id, INT64_MIN), W);
    LAST_ERROR_IS("invalid worker count -9223372036854775808: the minimum is -9999");
    CHECK_RESULT(cotyledon_manager_workers(m, id, &n), COTYLEDON_RESULT_OK);
    CHECK(n == COTYLEDON_MAX_WORKERS);
    CHECK_RESULT(cotyledon_manager_reconfigure(m, id, 1), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_reconfigure(m, id, (int64_t)minus_one), W);
    LAST_ERROR_IS("invalid worker count -1: the minimum is 0");
    CHECK_RESULT(cotyledon_manager_reconfigure(m, id, 0), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_workers(m, id, &n), COTYLEDON_RESULT_OK);
    CHECK(n == 0);
    cotyledon_manager_free(m);
}

/* The status JSON before run: the services, their counts, no worker yet. */
static void test_status_json_before_run(void)
{
    cotyledon_config *c = quiet_config();
    cotyledon_manager *m = NULL;
    CHECK_RESULT(cotyledon_manager_new(c, &m), COTYLEDON_RESULT_OK);
    cotyledon_config_free(c);
    uint64_t web = 0, jobs = 0;
    CHECK_RESULT(cotyledon_manager_add(m, "web", 3, &empty_service, NULL, &web), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_add(m, "jobs", 1, &empty_service, NULL, &jobs), COTYLEDON_RESULT_OK);
    char *json = NULL;
    CHECK_RESULT(cotyledon_manager_status_json(m, &json), COTYLEDON_RESULT_OK);
    CHECK(json != NULL);
    if (json) {
        char want[128];
        snprintf(want, sizeof want, "{\"pid\":%d,", (int)getpid());
        CHECK(strncmp(json, want, strlen(want)) == 0);
        snprintf(want, sizeof want, "\"id\":%llu,\"name\":\"web\",\"workers\":3,\"running\":0,",
                 (unsigned long long)web);
        CHECK(strstr(json, want) != NULL);
        snprintf(want, sizeof want, "\"id\":%llu,\"name\":\"jobs\",\"workers\":1,", (unsigned long long)jobs);
        CHECK(strstr(json, want) != NULL);
        CHECK(strstr(json, "\"workers\":3") < strstr(json, "\"workers\":1")); /* in the order added */
        CHECK(strchr(json, '\n') == NULL);                                   /* one line */
    }
    cotyledon_string_free(json);
    /* a reconfigure shows at once */
    CHECK_RESULT(cotyledon_manager_reconfigure(m, web, 5), COTYLEDON_RESULT_OK);
    json = NULL;
    CHECK_RESULT(cotyledon_manager_status_json(m, &json), COTYLEDON_RESULT_OK);
    CHECK(json && strstr(json, "\"name\":\"web\",\"workers\":5,") != NULL);
    cotyledon_string_free(json);
    cotyledon_string_free(NULL);
    CHECK_RESULT(cotyledon_manager_status_json(m, NULL), COTYLEDON_RESULT_NULL_PARAMETER);
    LAST_ERROR_IS("'out' must not be NULL");

    /* restart: the service must exist, and have that worker running */
    CHECK_RESULT(cotyledon_manager_restart_worker(m, 424242, 0), COTYLEDON_RESULT_UNKNOWN_SERVICE);
    LAST_ERROR_IS("unknown service id 424242");
    CHECK_RESULT(cotyledon_manager_restart_worker(m, web, 0), COTYLEDON_RESULT_NO_SUCH_WORKER);
    LAST_ERROR_HAS("has no running worker 0");
    CHECK_RESULT(cotyledon_manager_restart_worker(m, web, 99), COTYLEDON_RESULT_NO_SUCH_WORKER);
    CHECK_RESULT(cotyledon_manager_restart_worker(m, jobs, UINT64_MAX), COTYLEDON_RESULT_NO_SUCH_WORKER);
    /* reload before run: ignored */
    CHECK_RESULT(cotyledon_manager_reload(m), COTYLEDON_RESULT_OK);
    cotyledon_manager_free(m);
    /* freed: the handle is dead for these too */
    json = NULL;
    CHECK_RESULT(cotyledon_manager_status_json(m, &json), COTYLEDON_RESULT_INVALID_HANDLE);
    CHECK(json == NULL);
    CHECK_RESULT(cotyledon_manager_reload(m), COTYLEDON_RESULT_INVALID_HANDLE);
    CHECK_RESULT(cotyledon_manager_restart_worker(m, web, 0), COTYLEDON_RESULT_INVALID_HANDLE);
}

static char thread_error[256];
static void *fail_in_thread(void *arg)
{
    (void)arg;
    snprintf(thread_error, sizeof thread_error, "%s", cotyledon_last_error_message());
    cotyledon_config_set_titles(NULL, 0);
    return NULL;
}

static void test_last_error_is_per_thread(void)
{
    cotyledon_config *c = NULL;
    cotyledon_config_new(&c);
    CHECK_RESULT(cotyledon_config_set_titles(c, 77), COTYLEDON_RESULT_INVALID_ARGUMENT);
    pthread_t t;
    pthread_create(&t, NULL, fail_in_thread, NULL);
    pthread_join(t, NULL);
    CHECK(strcmp(thread_error, "") == 0); /* a fresh thread has no error */
    LAST_ERROR_IS("unknown title mode 77");  /* the other thread's did not leak here */
    CHECK_RESULT(cotyledon_config_set_titles(c, 0), COTYLEDON_RESULT_OK);
    LAST_ERROR_IS("unknown title mode 77");  /* success leaves it */
    cotyledon_config_free(c);
}

static char got[8][256];
static uint32_t got_level[8];
static int ngot;
static void capture(void *ud, uint32_t level, const char *target, const char *message)
{
    if (ngot < 8 && strcmp((const char *)ud, "ud") == 0) {
        snprintf(got[ngot], sizeof got[ngot], "%s|%s", target, message);
        got_level[ngot++] = level;
    }
}

static void test_logging(void)
{
    static char ud[] = "ud";
    cotyledon_set_log_callback(capture, ud);
    cotyledon_log(COTYLEDON_LOG_LEVEL_WARNING, "t", "m");
    cotyledon_log(COTYLEDON_LOG_LEVEL_DEBUG, "t", "dropped at INFO");
    cotyledon_set_log_level(COTYLEDON_LOG_LEVEL_DEBUG);
    cotyledon_log(COTYLEDON_LOG_LEVEL_DEBUG, "t", "kept at DEBUG");
    cotyledon_set_log_level(COTYLEDON_LOG_LEVEL_INFO);
    CHECK(ngot == 2);
    CHECK(strcmp(got[0], "t|m") == 0 && got_level[0] == COTYLEDON_LOG_LEVEL_WARNING);
    CHECK(strcmp(got[1], "t|kept at DEBUG") == 0 && got_level[1] == COTYLEDON_LOG_LEVEL_DEBUG);

    /* the default: LEVEL:target:message lines on stderr */
    cotyledon_set_log_callback(NULL, NULL);
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    int saved = dup(2);
    dup2(pipefd[1], 2);
    cotyledon_log(COTYLEDON_LOG_LEVEL_INFO, "app", "hello");
    cotyledon_log(COTYLEDON_LOG_LEVEL_WARNING, "cotyledon._service_manager", "careful");
    cotyledon_log(42, "app", "odd level");
    cotyledon_log(COTYLEDON_LOG_LEVEL_DEBUG, "app", "dropped");
    dup2(saved, 2);
    close(saved);
    close(pipefd[1]);
    char buf[512] = {0};
    size_t len = 0;
    ssize_t r;
    while ((r = read(pipefd[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)r;
    close(pipefd[0]);
    CHECK(strcmp(buf, "INFO:app:hello\nWARNING:cotyledon._service_manager:careful\nLevel 42:app:odd level\n") == 0);
}

/* ---- one short run: shutdown and free from another thread --------------- */

/* A manager for a short run in this process (the quiet config, a 10 s
 * graceful timeout in case a worker hangs). */
static cotyledon_manager *run_test_manager(void)
{
    cotyledon_config *c = quiet_config();
    cotyledon_config_set_graceful_shutdown_timeout_ms(c, 10000);
    cotyledon_manager *m = NULL;
    CHECK_RESULT(cotyledon_manager_new(c, &m), COTYLEDON_RESULT_OK);
    cotyledon_config_free(c);
    return m;
}

static int ready_pipe[2];
static int worker_run(void *ud, void *instance)
{
    (void)instance;
    char b = *(const char *)ud;
    ssize_t w = write(ready_pipe[1], &b, 1);
    (void)w;
    return 0; /* the worker keeps waiting for signals */
}

static int terminate_hooks;
static int count_terminate(void *ud)
{
    (void)ud;
    terminate_hooks++;
    return 0;
}

static int failing_hook(void *ud)
{
    (void)ud;
    return 7; /* logged, later hooks of the event skipped */
}

static int stopper_ok, status_during_run_ok;
static cotyledon_result restart_missing, restart_unknown;
static uint64_t unit_service;

/* Polls the status JSON (from this thread, while run executes) until the
 * worker runs; checks the service is there with its pid. */
static int status_shows_running_worker(cotyledon_manager *m)
{
    for (int i = 0; i < 2000; i++) {
        char *json = NULL;
        if (cotyledon_manager_status_json(m, &json) != COTYLEDON_RESULT_OK)
            return 0;
        int ok = strstr(json, "\"name\":\"unit\",\"workers\":1,\"running\":1,") != NULL &&
                 strstr(json, "{\"worker_id\":0,\"pid\":") != NULL && strstr(json, "\"state\":\"running\"") != NULL;
        cotyledon_string_free(json);
        if (ok)
            return 1;
        usleep(5000);
    }
    return 0;
}

static void *stopper(void *arg)
{
    cotyledon_manager *m = arg;
    struct pollfd p = {ready_pipe[0], POLLIN, 0};
    char b = 0;
    if (poll(&p, 1, 20000) == 1 && read(ready_pipe[0], &b, 1) == 1 && b == 'R')
        stopper_ok = 1;
    status_during_run_ok = status_shows_running_worker(m);
    restart_missing = cotyledon_manager_restart_worker(m, unit_service, 1);
    restart_unknown = cotyledon_manager_restart_worker(m, unit_service + 1000, 0);
    cotyledon_manager_shutdown(m);
    cotyledon_manager_shutdown(m); /* twice: harmless */
    cotyledon_manager_free(m);     /* while run executes: it returns all the same */
    return NULL;
}

static void test_run_shutdown_from_thread(void)
{
    CHECK(pipe2(ready_pipe, O_CLOEXEC) == 0);
    cotyledon_manager *m = run_test_manager();
    static char tag[] = "R";
    cotyledon_service svc = {0};
    svc.run = worker_run;
    uint64_t id = 0;
    CHECK_RESULT(cotyledon_manager_add(m, "unit", 1, &svc, tag, &id), COTYLEDON_RESULT_OK);
    unit_service = id;
    CHECK_RESULT(cotyledon_manager_on_terminate(m, count_terminate, NULL), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_on_terminate(m, failing_hook, NULL), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_on_terminate(m, count_terminate, NULL), COTYLEDON_RESULT_OK);
    static char ud[] = "ud";
    ngot = 0;
    cotyledon_set_log_callback(capture, ud);
    pthread_t t;
    pthread_create(&t, NULL, stopper, m);
    CHECK_RESULT(cotyledon_manager_run(m), COTYLEDON_RESULT_OK);
    pthread_join(t, NULL);
    cotyledon_set_log_callback(NULL, NULL);
    CHECK(stopper_ok);
    CHECK(status_during_run_ok);
    CHECK(restart_missing == COTYLEDON_RESULT_NO_SUCH_WORKER);
    CHECK(restart_unknown == COTYLEDON_RESULT_UNKNOWN_SERVICE);
    CHECK(terminate_hooks == 1);
    int seen_hook_error = 0, seen_request = 0;
    for (int i = 0; i < ngot; i++) {
        seen_hook_error |= strcmp(got[i], "cotyledon._utils|Exception raised during terminate hooks: "
                                          "hook 2 of 3 failed: hook returned 7") == 0;
        seen_request |= strcmp(got[i], "cotyledon._service_manager|Manager shutdown requested") == 0;
    }
    CHECK(seen_hook_error && seen_request);
    /* the manager was freed during run: the handle is dead now */
    CHECK_RESULT(cotyledon_manager_run(m), COTYLEDON_RESULT_INVALID_HANDLE);
    close(ready_pipe[0]);
    close(ready_pipe[1]);
}

/* ---- hooks added while run executes, from another thread ---------------- */

struct note {
    char tag; /* 'R': a worker's run started; 'N': the new-worker hook ran */
    pid_t pid;
};
static int notes[2];

static void send_note(char tag)
{
    struct note n = {tag, getpid()};
    ssize_t w = write(notes[1], &n, sizeof n); /* below PIPE_BUF: atomic */
    (void)w;
}

static int note_run(void *ud, void *instance)
{
    (void)ud;
    (void)instance;
    send_note('R');
    return 0;
}

static int note_new_worker(void *ud, uint64_t service_id, uint64_t worker_id, void *instance)
{
    (void)ud;
    (void)service_id;
    (void)instance;
    if (worker_id == 0)
        send_note('N');
    return 0;
}

static int late_dead_code = 1, late_dead_calls;
static int record_dead(void *ud, uint64_t service_id, uint64_t worker_id, int exit_code)
{
    (void)ud;
    (void)service_id;
    (void)worker_id;
    late_dead_code = exit_code;
    late_dead_calls++;
    return 0;
}

static int next_note(struct note *n)
{
    struct pollfd p = {notes[0], POLLIN, 0};
    return poll(&p, 1, 20000) == 1 && read(notes[0], n, sizeof *n) == (ssize_t)sizeof *n;
}

static int registrar_ok;
static void *registrar(void *arg)
{
    cotyledon_manager *m = arg;
    struct note first, a, b;
    if (next_note(&first) && first.tag == 'R') {
        int added = cotyledon_manager_on_new_worker(m, note_new_worker, NULL) == COTYLEDON_RESULT_OK &&
                    cotyledon_manager_on_dead_worker(m, record_dead, NULL) == COTYLEDON_RESULT_OK &&
                    cotyledon_manager_on_terminate(m, count_terminate, NULL) == COTYLEDON_RESULT_OK;
        /* the replacement runs the new-worker hook, then its run */
        if (added && kill(first.pid, SIGKILL) == 0 && next_note(&a) && next_note(&b))
            registrar_ok = a.tag == 'N' && b.tag == 'R' && a.pid == b.pid && a.pid != first.pid &&
                           a.pid != getpid();
    }
    cotyledon_manager_shutdown(m);
    return NULL;
}

static void test_hooks_added_while_running(void)
{
    CHECK(pipe2(notes, O_CLOEXEC) == 0);
    cotyledon_manager *m = run_test_manager();
    cotyledon_service svc = {0};
    svc.run = note_run;
    CHECK_RESULT(cotyledon_manager_add(m, "late", 1, &svc, NULL, NULL), COTYLEDON_RESULT_OK);
    terminate_hooks = 0;
    pthread_t t;
    pthread_create(&t, NULL, registrar, m);
    CHECK_RESULT(cotyledon_manager_run(m), COTYLEDON_RESULT_OK);
    pthread_join(t, NULL);
    CHECK(registrar_ok);
    CHECK(late_dead_calls == 1 && late_dead_code == -SIGKILL);
    CHECK(terminate_hooks == 1);
    /* once run has returned, a hook would never run: refused */
    CHECK_RESULT(cotyledon_manager_on_terminate(m, count_terminate, NULL), COTYLEDON_RESULT_ALREADY_RUNNING);
    LAST_ERROR_IS("the manager is running or has run (run() runs once)");
    cotyledon_manager_free(m);
    close(notes[0]);
    close(notes[1]);
}

static void test_after_run(void)
{
    cotyledon_config *c = quiet_config();
    cotyledon_manager *m = NULL;
    CHECK_RESULT(cotyledon_manager_new(c, &m), COTYLEDON_RESULT_OK);
    cotyledon_config_free(c);
    uint64_t id = 0;
    CHECK_RESULT(cotyledon_manager_add(m, "x", 1, &empty_service, NULL, &id), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_shutdown(m), COTYLEDON_RESULT_OK); /* before run: run stops at once */
    int status = -1;
    CHECK_RESULT(cotyledon_manager_exit_status(m, &status), COTYLEDON_RESULT_INVALID_ARGUMENT);
    LAST_ERROR_IS("cotyledon_manager_run has not returned OK or STOPPED");
    CHECK(status == -1);
    CHECK_RESULT(cotyledon_manager_run(m), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_exit_status(m, &status), COTYLEDON_RESULT_OK);
    CHECK(status == 0);
    CHECK_RESULT(cotyledon_manager_exit_status(m, NULL), COTYLEDON_RESULT_NULL_PARAMETER);
    cotyledon_policy *policy = NULL;
    CHECK_RESULT(cotyledon_policy_new(&policy), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_set_policy(m, id, policy), COTYLEDON_RESULT_ALREADY_RUNNING);
    cotyledon_policy_free(policy);
    CHECK_RESULT(cotyledon_manager_run(m), COTYLEDON_RESULT_ALREADY_RUNNING);
    LAST_ERROR_IS("the manager is running or has run (run() runs once)");
    CHECK_RESULT(cotyledon_manager_add(m, "y", 1, &empty_service, NULL, &id), COTYLEDON_RESULT_ALREADY_RUNNING);
    CHECK_RESULT(cotyledon_manager_on_reload(m, hook0, NULL), COTYLEDON_RESULT_ALREADY_RUNNING);
    CHECK_RESULT(cotyledon_manager_shutdown(m), COTYLEDON_RESULT_OK); /* after: harmless */
    char *json = NULL;
    CHECK_RESULT(cotyledon_manager_status_json(m, &json), COTYLEDON_RESULT_OK); /* after: still there */
    CHECK(json && strstr(json, "\"name\":\"x\",\"workers\":1,\"running\":0,") != NULL);
    cotyledon_string_free(json);
    CHECK_RESULT(cotyledon_manager_restart_worker(m, id, 0), COTYLEDON_RESULT_NO_SUCH_WORKER);
    CHECK_RESULT(cotyledon_manager_reload(m), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_reconfigure(m, id, 2), COTYLEDON_RESULT_OK);
    cotyledon_manager_free(m);
}

static void test_policy_misuse(void)
{
    cotyledon_policy *p = NULL;
    CHECK_RESULT(cotyledon_policy_new(NULL), COTYLEDON_RESULT_NULL_PARAMETER);
    CHECK_RESULT(cotyledon_policy_set_restart(NULL, COTYLEDON_RESTART_NEVER), COTYLEDON_RESULT_NULL_PARAMETER);
    CHECK_RESULT(cotyledon_policy_new(&p), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_policy_set_restart(p, 3), COTYLEDON_RESULT_INVALID_ARGUMENT);
    LAST_ERROR_HAS("not: 3");
    CHECK_RESULT(cotyledon_policy_set_restart(p, COTYLEDON_RESTART_ON_FAILURE), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_policy_set_backoff_jitter(p, 0.5), COTYLEDON_RESULT_INVALID_ARGUMENT);
    LAST_ERROR_HAS("before its jitter");
    CHECK_RESULT(cotyledon_policy_set_backoff_ms(p, 500, 100, 0), COTYLEDON_RESULT_INVALID_ARGUMENT);
    LAST_ERROR_IS("invalid restart policy: backoff max (100ms) must be at least its base (500ms)");
    CHECK_RESULT(cotyledon_policy_set_backoff_ms(p, 100, 500, 0), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_policy_set_backoff_jitter(p, 1.0), COTYLEDON_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(cotyledon_policy_set_backoff_jitter(p, 0.0 / 0.0), COTYLEDON_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(cotyledon_policy_set_backoff_jitter(p, 0.25), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_policy_set_give_up(p, 3, 0), COTYLEDON_RESULT_INVALID_ARGUMENT);
    LAST_ERROR_IS("invalid restart policy: give-up window must be more than 0 s");
    CHECK_RESULT(cotyledon_policy_set_give_up(p, 3, 1000), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_policy_set_stop_on_exit(p, true), COTYLEDON_RESULT_OK);

    cotyledon_config *c = quiet_config();
    cotyledon_manager *m = NULL;
    CHECK_RESULT(cotyledon_manager_new(c, &m), COTYLEDON_RESULT_OK);
    cotyledon_config_free(c);
    uint64_t id = 0;
    CHECK_RESULT(cotyledon_manager_add(m, "svc", 1, &empty_service, NULL, &id), COTYLEDON_RESULT_OK);
    CHECK_RESULT(cotyledon_manager_set_policy(m, id, NULL), COTYLEDON_RESULT_NULL_PARAMETER);
    CHECK_RESULT(cotyledon_manager_set_policy(m, id + 1000, p), COTYLEDON_RESULT_UNKNOWN_SERVICE);
    CHECK_RESULT(cotyledon_manager_set_policy((cotyledon_manager *)p, id, p), COTYLEDON_RESULT_INVALID_HANDLE);
    CHECK_RESULT(cotyledon_manager_set_policy(m, id, (cotyledon_policy *)m), COTYLEDON_RESULT_INVALID_HANDLE);
    CHECK_RESULT(cotyledon_manager_set_policy(m, id, p), COTYLEDON_RESULT_OK);
    char *json = NULL;
    CHECK_RESULT(cotyledon_manager_status_json(m, &json), COTYLEDON_RESULT_OK);
    CHECK(json && strstr(json, "\"policy\":{\"restart\":\"on-failure\",\"stop_on_exit\":true,"
                               "\"backoff\":{\"base\":0.1,\"max\":0.5,\"jitter\":0.25,\"stable\":10.0},"
                               "\"give_up\":{\"failures\":3,\"window\":1.0}}") != NULL);
    cotyledon_string_free(json);
    cotyledon_policy_free(p);
    CHECK_RESULT(cotyledon_policy_set_stop_on_exit(p, true), COTYLEDON_RESULT_INVALID_HANDLE);
    cotyledon_policy_free(p); /* twice: ignored */
    cotyledon_announce_restart(); /* not a worker: nothing */
    cotyledon_manager_free(m);
}

static const struct {
    const char *name;
    void (*fn)(void);
} tests[] = {
    {"version", test_version},
    {"result_str", test_result_str},
    {"null_handles", test_null_handles},
    {"invalid_handles", test_invalid_handles},
    {"stale_handles_after_recreate", test_stale_handles_after_recreate},
    {"second_manager", test_second_manager},
    {"add_and_ids", test_add_and_ids},
    {"worker_count_edges", test_worker_count_edges},
    {"status_json_before_run", test_status_json_before_run},
    {"last_error_is_per_thread", test_last_error_is_per_thread},
    {"logging", test_logging},
    {"run_shutdown_and_free_from_thread", test_run_shutdown_from_thread},
    {"hooks_added_while_running", test_hooks_added_while_running},
    {"after_run", test_after_run},
    {"policy_misuse", test_policy_misuse},
};

int main(int argc, char **argv)
{
    const char *label = argc > 1 ? argv[1] : "unit";
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int before = checks_failed;
        current = tests[i].name;
        tests[i].fn();
        if (checks_failed == before) {
            printf("PASS %s %s\n", label, tests[i].name);
            passed++;
        } else {
            printf("FAIL %s %s\n", label, tests[i].name);
            failed++;
        }
        fflush(stdout);
    }
    printf("unit %s: %d passed, %d failed\n", label, passed, failed);
    return failed ? 1 : 0;
}
