/*
 * End-to-end tests of the C API, written from include/defender.h alone, against the simulator.
 *
 *   defender_test <path to defender-simulator>
 *
 * Built with -Wall -Wextra -Werror -fsanitize=address,undefined by tests/run-all.sh. Each
 * scenario asserts the status, the files left in its own folder (never a partial or temporary
 * one), and that the error message holds no secret.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>

#include "harness.h"

/* Read by test_status_names; tests/run-all.sh runs this program from the repository's root. */
#ifndef DEFENDER_HEADER
#define DEFENDER_HEADER "include/defender.h"
#endif

static void test_download_succeeds(void) {
    current_test = "download succeeds";
    DefenderClient *client = new_client();
    char *id = create_action("{\"package_size\": 300000}");
    char *folder = new_folder();
    char *result = NULL;
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, &result), DEFENDER_STATUS_OK);
    char path[4200];
    snprintf(path, sizeof path, "%s" PATH_SEPARATOR "%s.zip", folder, id);
    expect_package(path, id, result);
    char *reported_path = result ? json_string(result, "path") : NULL;
    CHECK(reported_path && strcmp(reported_path, path) == 0, "path %s, expected %s", reported_path, path);
    CHECK(entries(folder) == 1, "%d entries, expected only the package", entries(folder));
    free(reported_path);
    defender_string_free(result);
    remove_folder(folder);
    free(id);
    defender_client_free(client);
}

static void test_quoted_link_is_unwrapped(void) {
    current_test = "quoted link";
    DefenderClient *client = new_client();
    char *id = create_action("{\"quoted_link\": true}");
    char *uri = NULL;
    EXPECT_STATUS(defender_get_package_uri(client, id, &uri), DEFENDER_STATUS_OK);
    CHECK(uri && strncmp(uri, "http://127.0.0.1:", 17) == 0, "link not unwrapped: %.40s", uri ? uri : "NULL");
    CHECK(uri && uri[strlen(uri) - 1] != '"', "trailing quote left");
    defender_string_free(uri);

    char *folder = new_folder(), *result = NULL;
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, &result), DEFENDER_STATUS_OK);
    CHECK(entries(folder) == 1, "%d entries", entries(folder));
    defender_string_free(result);
    remove_folder(folder);
    free(id);
    defender_client_free(client);
}

static void test_action_states(void) {
    current_test = "not ready / not found / failed";
    DefenderClient *client = new_client();
    char *uri = (char *)"untouched";
    char *pending = create_action("{\"schedule\": {\"pending_secs\": 3600, \"in_progress_secs\": 3600}}");
    EXPECT_STATUS(defender_get_package_uri(client, pending, &uri), DEFENDER_STATUS_NOT_READY);
    EXPECT_STATUS(defender_get_package_uri(client, "6a4e1f3c-0000-4000-8000-000000000404", &uri),
                  DEFENDER_STATUS_NOT_FOUND);
    const char *outcomes[] = {"Failed", "TimeOut", "Cancelled"};
    for (int i = 0; i < 3; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "{\"outcome\": \"%s\"}", outcomes[i]);
        char *failed = create_action(spec);
        EXPECT_STATUS(defender_get_package_uri(client, failed, &uri), DEFENDER_STATUS_ACTION_FAILED);
        free(failed);
    }
    CHECK(strcmp(uri, "untouched") == 0, "out-parameter written on failure");

    char *folder = new_folder(), *result = NULL;
    EXPECT_STATUS(defender_download_package(client, pending, folder, NULL, NULL, &result),
                  DEFENDER_STATUS_NOT_READY);
    CHECK(result == NULL, "result written on failure");
    CHECK(entries(folder) == 0, "%d entries after a failure", entries(folder));
    remove_folder(folder);
    free(pending);
    defender_client_free(client);
}

static void test_unauthorized_and_forbidden(void) {
    current_test = "401 / 403";
    char *id = create_action("{}");
    char *uri = NULL;

    DefenderClient *wrong_secret = new_client();
    defender_client_set(wrong_secret, "client_secret", "not-the-secret");
    DefenderStatus status = defender_get_package_uri(wrong_secret, id, &uri);
    char *message = last_error();
    CHECK(status == DEFENDER_STATUS_UNAUTHORIZED, "wrong secret: %s", status_name(status));
    CHECK(strstr(message, "AADSTS") != NULL, "the service's error text is missing: %s", message);
    CHECK(strstr(message, "not-the-secret") == NULL, "the secret leaked: %s", message);
    free(message);
    defender_client_free(wrong_secret);

    DefenderClient *bad_token = new_client();
    defender_client_set(bad_token, "client_secret", NULL);
    defender_client_set(bad_token, "access_token", "not-a-valid-token");
    EXPECT_STATUS(defender_get_package_uri(bad_token, id, &uri), DEFENDER_STATUS_UNAUTHORIZED);
    defender_client_free(bad_token);

    int http = sim_request(&sim, "POST", "/_sim/apps",
                           "{\"tenant_id\":\"" SIM_TENANT_ID "\",\"client_id\":\"forbidden-app\","
                           "\"client_secret\":\"forbidden-secret\",\"forbidden\":true}",
                           NULL);
    CHECK(http >= 200 && http < 300, "register app: HTTP %d", http);
    DefenderClient *forbidden = new_client();
    defender_client_set(forbidden, "client_id", "forbidden-app");
    defender_client_set(forbidden, "client_secret", "forbidden-secret");
    status = defender_get_package_uri(forbidden, id, &uri);
    message = last_error();
    CHECK(status == DEFENDER_STATUS_FORBIDDEN, "forbidden app: %s", status_name(status));
    CHECK(strstr(message, "403") && strstr(message, "correlation id"), "message lacks details: %s", message);
    CHECK(strstr(message, "forbidden-secret") == NULL, "the secret leaked: %s", message);
    free(message);
    defender_client_free(forbidden);
    free(id);
}

static void test_existing_destination(void) {
    current_test = "existing destination";
    DefenderClient *client = new_client();
    char *id = create_action("{}");
    char *folder = new_folder();
    char path[4200];
    snprintf(path, sizeof path, "%s" PATH_SEPARATOR "case.zip", folder);
    CHECK(file_write(path, "keep me") == 0, "writing %s", path);

    char *before = NULL;
    sim_request(&sim, "GET", "/_sim/requests?endpoint=get_package_uri", NULL, &before);
    EXPECT_STATUS(defender_download_package(client, id, path, NULL, NULL, NULL), DEFENDER_STATUS_EXISTS);
    char *after = NULL;
    sim_request(&sim, "GET", "/_sim/requests?endpoint=get_package_uri", NULL, &after);
    CHECK(before && after && count_occurrences(before, "\"seq\"") == count_occurrences(after, "\"seq\""),
          "a link was requested for a download that could not land");
    size_t len = 0;
    char *data = read_file(path, &len);
    CHECK(data && len == 7 && memcmp(data, "keep me", 7) == 0, "the existing file was changed");
    CHECK(entries(folder) == 1, "%d entries", entries(folder));
    free(data);

    char *result = NULL;
    defender_client_set(client, "overwrite", "true");
    EXPECT_STATUS(defender_download_package(client, id, path, NULL, NULL, &result), DEFENDER_STATUS_OK);
    expect_package(path, id, result);
    CHECK(entries(folder) == 1, "%d entries", entries(folder));
    defender_string_free(result);
    free(before);
    free(after);
    remove_folder(folder);
    free(id);
    defender_client_free(client);
}

typedef struct {
    int calls;
    uint64_t last_done, last_total;
    int cancel_after;
} Progress;

static int32_t on_progress(void *user_data, uint64_t done, uint64_t total) {
    Progress *p = user_data;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
    return p->cancel_after > 0 && p->calls >= p->cancel_after && done > 0;
}

static void test_progress_and_cancel(void) {
    current_test = "progress and cancel";
    DefenderClient *client = new_client();
    char *id = create_action("{\"package_size\": 4000000}");
    char *folder = new_folder();
    Progress progress = {0};
    EXPECT_STATUS(defender_download_package(client, id, folder, on_progress, &progress, NULL), DEFENDER_STATUS_OK);
    CHECK(progress.calls >= 2, "progress called %d times", progress.calls);
    CHECK(progress.last_done == 4000000 && progress.last_total == 4000000, "last progress %llu/%llu",
          (unsigned long long)progress.last_done, (unsigned long long)progress.last_total);
    remove_folder(folder);

    /* A slow body, so that the download is still running when the callback says stop. */
    char *slow = create_action("{\"package_size\": 4000000}");
    char rule[256];
    snprintf(rule, sizeof rule,
             "{\"endpoint\":\"download\",\"action_id\":\"%s\",\"fault\":{\"kind\":\"slow_body\",\"bytes_per_sec\":1000000}}",
             slow);
    add_fault(rule);
    folder = new_folder();
    Progress cancelling = {.cancel_after = 2};
    EXPECT_STATUS(defender_download_package(client, slow, folder, on_progress, &cancelling, NULL),
                  DEFENDER_STATUS_CANCELLED);
    CHECK(cancelling.calls == 2, "progress called %d times after asking to stop", cancelling.calls);
    CHECK(entries(folder) == 0, "%d entries left after cancel", entries(folder));
    remove_folder(folder);

    /* The client still works afterwards. */
    folder = new_folder();
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, NULL), DEFENDER_STATUS_OK);
    remove_folder(folder);
    free(slow);
    free(id);
    defender_client_free(client);
}

static void test_truncated_body(void) {
    current_test = "truncated body";
    DefenderClient *client = new_client();
    char *id = create_action("{\"package_size\": 200000}");
    char rule[256];
    snprintf(rule, sizeof rule,
             "{\"endpoint\":\"download\",\"action_id\":\"%s\",\"times\":0,\"fault\":{\"kind\":\"short_body\",\"bytes\":1000}}",
             id);
    add_fault(rule);
    char *folder = new_folder(), *result = NULL;
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, &result), DEFENDER_STATUS_INTEGRITY);
    CHECK(result == NULL, "result written on failure");
    CHECK(entries(folder) == 0, "%d entries left after a truncated body", entries(folder));
    remove_folder(folder);
    free(id);
    defender_client_free(client);
}

static void test_no_authorization_to_download_host(void) {
    current_test = "no Authorization to the download host";
    char *log = NULL;
    int status = sim_request(&sim, "GET", "/_sim/requests?endpoint=download", NULL, &log);
    CHECK(status == 200 && log, "request log: HTTP %d", status);
    CHECK(log && count_occurrences(log, "\"seq\"") > 0, "no downloads logged");
    CHECK(log && strstr(log, "\"authorization\"") == NULL, "Authorization reached the download host");
    free(log);
}

static void test_bad_arguments(void) {
    current_test = "NULL and invalid arguments";
    DefenderClient *client = new_client();
    char *out = NULL;
    const char *bad_utf8 = "\xff\xfe";
    EXPECT_STATUS(defender_client_new(NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_client_set(NULL, "base_url", "x"), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_client_set(client, NULL, "x"), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_client_set(client, bad_utf8, "x"), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_client_set(client, "tenant_id", bad_utf8), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_get_package_uri(NULL, "id", &out), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_get_package_uri(client, NULL, &out), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_get_package_uri(client, bad_utf8, &out), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_get_package_uri(client, "id", NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_get_package_uri(client, "", &out), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_download_package(client, NULL, "/tmp", NULL, NULL, NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_download_package(client, "id", NULL, NULL, NULL, NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_download_package(client, "id", bad_utf8, NULL, NULL, NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_client_cancel(NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_client_set_log_callback(NULL, NULL, NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    CHECK(out == NULL, "out-parameter written on failure");
    defender_string_free(NULL);
    defender_client_free(NULL);

    /* A message longer than the buffer is cut, NUL-terminated, and its full length returned. */
    defender_client_set(client, "no_such_option", "1");
    char small[8];
    size_t full = defender_last_error_message(small, sizeof small);
    CHECK(full > sizeof small && strlen(small) == sizeof small - 1, "cut message: %zu, '%s'", full, small);
    defender_client_free(client);
}

static void test_unknown_option(void) {
    current_test = "unknown option key";
    DefenderClient *client = new_client();
    DefenderStatus status = defender_client_set(client, "base_uri", "https://x.example");
    char *message = last_error();
    CHECK(status == DEFENDER_STATUS_UNKNOWN_OPTION, "%s", status_name(status));
    CHECK(strstr(message, "base_uri") && strstr(message, "base_url"), "message: %s", message);
    free(message);
    EXPECT_STATUS(defender_client_set(client, "timeout_ms", "soon"), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_client_set(client, "base_url", "http://example.com"), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_client_set(client, "timeout_ms", NULL), DEFENDER_STATUS_OK);
    CHECK(strcmp(defender_version(), "") != 0, "empty version");
    defender_client_free(client);
}

static void test_option_enumeration(void) {
    current_test = "option enumeration";
    DefenderClient *client = new_client();
    size_t count = 0;
    int has_timeout = 0;
    for (const char *key; (key = defender_option_name(count)) != NULL; count++) {
        const char *doc = defender_option_doc(count);
        CHECK(doc != NULL && strlen(doc) > 0 && strchr(doc, '\n') == NULL, "%s: doc '%s'", key, doc ? doc : "NULL");
        /* Every listed key is one that defender_client_set knows: NULL restores its default. */
        EXPECT_STATUS(defender_client_set(client, key, NULL), DEFENDER_STATUS_OK);
        has_timeout |= strcmp(key, "timeout_ms") == 0;
    }
    CHECK(count >= 22 && has_timeout, "%zu keys", count);
    CHECK(defender_option_doc(count) == NULL && defender_option_name((size_t)-1) == NULL, "NULL past the end");
    CHECK(defender_option_name(0) == defender_option_name(0), "a static string");
    defender_client_free(client);
}

enum { THREADS = 16 };

typedef struct {
    DefenderClient *client;
    char *action_id;
    char *folder;
    DefenderStatus status;
    char *result;
} Job;

static void *run_job(void *arg) {
    Job *job = arg;
    job->status = defender_download_package(job->client, job->action_id, job->folder, NULL, NULL, &job->result);
    return NULL;
}

static void test_many_threads_one_client(void) {
    current_test = "16 threads on one client";
    sim_request(&sim, "DELETE", "/_sim/requests", NULL, NULL);
    DefenderClient *client = new_client();
    char *folder = new_folder();
    Job jobs[THREADS];
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (Job){.client = client, .action_id = create_action("{\"package_size\": 100000}"), .folder = folder};
        pthread_create(&threads[i], NULL, run_job, &jobs[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < THREADS; i++) {
        CHECK(jobs[i].status == DEFENDER_STATUS_OK, "thread %d: %s", i, status_name(jobs[i].status));
        char path[4200];
        snprintf(path, sizeof path, "%s" PATH_SEPARATOR "%s.zip", folder, jobs[i].action_id);
        if (jobs[i].status == DEFENDER_STATUS_OK) expect_package(path, jobs[i].action_id, jobs[i].result);
        defender_string_free(jobs[i].result);
        free(jobs[i].action_id);
    }
    CHECK(entries(folder) == THREADS, "%d entries, expected %d", entries(folder), THREADS);
    char *tokens = NULL;
    sim_request(&sim, "GET", "/_sim/requests?endpoint=token", NULL, &tokens);
    CHECK(tokens && count_occurrences(tokens, "\"seq\"") == 1, "%d token requests for one client",
          tokens ? count_occurrences(tokens, "\"seq\"") : -1);
    free(tokens);
    remove_folder(folder);
    defender_client_free(client);
}

typedef struct {
    pthread_t caller;
    int progress_calls, items_done, wrong_thread;
    DefenderStatus statuses[3];
} Batch;

static int32_t on_batch_progress(void *user_data, size_t index, uint64_t done, uint64_t total) {
    Batch *batch = user_data;
    batch->progress_calls++;
    batch->wrong_thread |= !pthread_equal(pthread_self(), batch->caller);
    (void)index, (void)done, (void)total;
    return 0;
}

static void on_item_done(void *user_data, size_t index, DefenderStatus status, const char *item_json) {
    Batch *batch = user_data;
    batch->items_done++;
    batch->wrong_thread |= !pthread_equal(pthread_self(), batch->caller);
    if (index < 3) batch->statuses[index] = status;
    CHECK(item_json && strstr(item_json, "\"action_id\""), "item %zu: %s", index, item_json ? item_json : "NULL");
}

static void test_batch(void) {
    current_test = "batch download";
    DefenderClient *client = new_client();
    defender_client_set(client, "max_concurrent_downloads", "2");
    char *good1 = create_action("{\"package_size\": 120000}");
    char *good2 = create_action("{\"package_size\": 80000}");
    const char *ids[] = {good1, "00000000-0000-4000-8000-00000000dead", good2};
    char *folder = new_folder(), *results = NULL;
    Batch batch = {.caller = pthread_self()};
    EXPECT_STATUS(defender_download_packages(client, ids, 3, folder, on_batch_progress, on_item_done, &batch, &results),
                  DEFENDER_STATUS_OK);
    CHECK(batch.items_done == 3 && batch.progress_calls >= 2, "%d items done, %d progress calls", batch.items_done,
          batch.progress_calls);
    CHECK(!batch.wrong_thread, "a batch callback ran on another thread");
    CHECK(batch.statuses[0] == DEFENDER_STATUS_OK && batch.statuses[1] == DEFENDER_STATUS_NOT_FOUND &&
              batch.statuses[2] == DEFENDER_STATUS_OK,
          "statuses %d %d %d", batch.statuses[0], batch.statuses[1], batch.statuses[2]);
    CHECK(results && count_occurrences(results, "\"action_id\"") == 3, "results: %s", results ? results : "NULL");
    CHECK(results && strstr(results, "\"status\":\"NOT_FOUND\""), "results: %s", results ? results : "NULL");
    for (int i = 0; i < 3; i += 2) {
        char path[4200];
        snprintf(path, sizeof path, "%s" PATH_SEPARATOR "%s.zip", folder, ids[i]);
        size_t len = 0;
        char *data = read_file(path, &len);
        CHECK(data && len == (i == 0 ? 120000u : 80000u), "%s: %zu bytes", path, len);
        free(data);
    }
    CHECK(entries(folder) == 2, "%d entries: only the two packages", entries(folder));
    defender_string_free(results);

    /* Bad arguments write nothing. */
    results = NULL;
    EXPECT_STATUS(defender_download_packages(client, NULL, 2, folder, NULL, NULL, NULL, &results),
                  DEFENDER_STATUS_INVALID_ARGUMENT);
    const char *with_null[] = {good1, NULL};
    EXPECT_STATUS(defender_download_packages(client, with_null, 2, folder, NULL, NULL, NULL, &results),
                  DEFENDER_STATUS_INVALID_ARGUMENT);
    CHECK(results == NULL, "results written on failure");
    remove_folder(folder);
    free(good1);
    free(good2);
    defender_client_free(client);
}

/* A clone has options of its own and shares the client's sign-in: either may be freed first. */
static void test_clone(void) {
    current_test = "clone";
    DefenderClient *client = new_client();
    char *id = create_action("{\"package_size\": 20000}");
    char *folder = new_folder();
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, NULL), DEFENDER_STATUS_OK);

    DefenderClient *clone = NULL;
    EXPECT_STATUS(defender_client_clone(client, &clone), DEFENDER_STATUS_OK);
    CHECK(clone != NULL && clone != client, "clone_out");
    EXPECT_STATUS(defender_client_set(clone, "overwrite", "true"), DEFENDER_STATUS_OK);
    EXPECT_STATUS(defender_download_package(clone, id, folder, NULL, NULL, NULL), DEFENDER_STATUS_OK);
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, NULL), DEFENDER_STATUS_EXISTS);

    defender_client_free(client);
    EXPECT_STATUS(defender_download_package(clone, id, folder, NULL, NULL, NULL), DEFENDER_STATUS_OK);
    defender_client_free(clone);

    DefenderClient *out = NULL;
    EXPECT_STATUS(defender_client_clone(NULL, &out), DEFENDER_STATUS_INVALID_ARGUMENT);
    CHECK(out == NULL, "clone_out written after a failure");
    remove_folder(folder);
    free(id);
}

typedef struct {
    pthread_t caller;
    int on_other_thread;
    int counts[8];
    int last_phase;
    uint64_t last_bytes_done, last_bytes_total;
    char last_status[32];
} Phases;

static int32_t on_phase(void *user_data, const DefenderPhaseEvent *event) {
    Phases *p = user_data;
    if (!pthread_equal(p->caller, pthread_self())) p->on_other_thread++;
    if (event->phase >= 1 && event->phase <= 6) p->counts[event->phase]++;
    p->last_phase = event->phase;
    if (event->phase == DEFENDER_PHASE_WAITING_FOR_COLLECTION)
        snprintf(p->last_status, sizeof p->last_status, "%s", event->detail);
    if (event->phase == DEFENDER_PHASE_DOWNLOADING) {
        p->last_bytes_done = event->bytes_done;
        p->last_bytes_total = event->bytes_total;
    }
    return 0;
}

/* The phase callback hears the wait for the collection, the download and the check, on the
   calling thread. */
static void test_phases(void) {
    current_test = "phases";
    DefenderClient *client = new_client();
    EXPECT_STATUS(defender_client_set(client, "clock_scale", "10"), DEFENDER_STATUS_OK);
    EXPECT_STATUS(defender_client_set(client, "wait_timeout_ms", "600000"), DEFENDER_STATUS_OK);
    Phases phases = {.caller = pthread_self()};
    EXPECT_STATUS(defender_client_set_phase_callback(client, on_phase, &phases), DEFENDER_STATUS_OK);
    /* Long enough to be seen running even under valgrind, which slows the client's first look. */
    char *id = create_action("{\"package_size\": 300000, \"schedule\": {\"pending_secs\": 4, \"in_progress_secs\": 1}}");
    char *folder = new_folder();
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, NULL), DEFENDER_STATUS_OK);
    CHECK(phases.on_other_thread == 0, "%d phase events on another thread", phases.on_other_thread);
    CHECK(phases.counts[DEFENDER_PHASE_WAITING_FOR_COLLECTION] >= 1, "no wait for the collection reported");
    CHECK(strcmp(phases.last_status, "Pending") == 0 || strcmp(phases.last_status, "InProgress") == 0,
          "collection status '%s'", phases.last_status);
    CHECK(phases.counts[DEFENDER_PHASE_DOWNLOADING] >= 1, "no download reported");
    CHECK(phases.last_bytes_done == 300000 && phases.last_bytes_total == 300000, "last download figures %llu/%llu",
          (unsigned long long)phases.last_bytes_done, (unsigned long long)phases.last_bytes_total);
    CHECK(phases.last_phase == DEFENDER_PHASE_VERIFYING, "last phase %d", phases.last_phase);

    /* Removed, it hears nothing more. */
    EXPECT_STATUS(defender_client_set_phase_callback(client, NULL, NULL), DEFENDER_STATUS_OK);
    Phases none = {.caller = pthread_self()};
    EXPECT_STATUS(defender_client_set(client, "overwrite", "true"), DEFENDER_STATUS_OK);
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, NULL), DEFENDER_STATUS_OK);
    CHECK(none.counts[DEFENDER_PHASE_DOWNLOADING] == 0, "a removed callback was called");
    EXPECT_STATUS(defender_client_set_phase_callback(NULL, on_phase, NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    remove_folder(folder);
    free(id);
    defender_client_free(client);
}

typedef struct {
    pthread_t caller;
    int calls;
    int on_other_thread;
    size_t capacity;
    char audience[256];
    char client_id[64];
    const char *answer; /* NULL: refuse; "" : fill the buffer without a NUL */
} Signer;

static int32_t on_sign(void *user_data, const char *audience, const char *client_id, char *out, size_t capacity) {
    Signer *signer = user_data;
    signer->calls++;
    if (!pthread_equal(signer->caller, pthread_self())) signer->on_other_thread++;
    signer->capacity = capacity;
    snprintf(signer->audience, sizeof signer->audience, "%s", audience);
    snprintf(signer->client_id, sizeof signer->client_id, "%s", client_id);
    if (signer->answer == NULL) return 5;
    if (signer->answer[0] == '\0') {
        memset(out, 'x', capacity);
        return 0;
    }
    snprintf(out, capacity, "%s", signer->answer);
    return 0;
}

/* The assertion callback is asked on the calling thread, for the token endpoint and app, and
   what it answers is checked. (A valid signature is tested in tests/callbacks.rs.) */
static void test_assertion_callback(void) {
    current_test = "assertion callback";
    DefenderClient *client = NULL;
    EXPECT_STATUS(defender_client_new(&client), DEFENDER_STATUS_OK);
    const char *options[][2] = {
        {"base_url", sim.base_url}, {"authority_url", sim.base_url}, {"tenant_id", SIM_TENANT_ID},
        {"client_id", SIM_CLIENT_ID}, {"rate_limit", "off"},
    };
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        EXPECT_STATUS(defender_client_set(client, options[i][0], options[i][1]), DEFENDER_STATUS_OK);

    Signer signer = {.caller = pthread_self(), .answer = NULL};
    EXPECT_STATUS(defender_client_set_assertion_callback(client, on_sign, &signer), DEFENDER_STATUS_OK);
    EXPECT_STATUS(defender_client_sign_in(client), DEFENDER_STATUS_UNAUTHORIZED);
    CHECK(signer.calls == 1 && signer.on_other_thread == 0, "%d calls, %d on another thread", signer.calls,
          signer.on_other_thread);
    char expected[256];
    snprintf(expected, sizeof expected, "%s/%s/oauth2/v2.0/token", sim.base_url, SIM_TENANT_ID);
    CHECK(strcmp(signer.audience, expected) == 0, "audience '%s'", signer.audience);
    CHECK(strcmp(signer.client_id, SIM_CLIENT_ID) == 0, "client id '%s'", signer.client_id);
    CHECK(signer.capacity >= 16384, "capacity %zu", signer.capacity);

    /* An assertion the token endpoint refuses, and one that is not NUL-terminated. */
    signer.answer = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    EXPECT_STATUS(defender_client_sign_in(client), DEFENDER_STATUS_UNAUTHORIZED);
    signer.answer = "";
    EXPECT_STATUS(defender_client_sign_in(client), DEFENDER_STATUS_INVALID_ARGUMENT);

    /* With a secret as well, two sign-ins are configured; without the callback, the secret signs in. */
    EXPECT_STATUS(defender_client_set(client, "client_secret", SIM_CLIENT_SECRET), DEFENDER_STATUS_OK);
    EXPECT_STATUS(defender_client_sign_in(client), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_client_set_assertion_callback(client, NULL, NULL), DEFENDER_STATUS_OK);
    EXPECT_STATUS(defender_client_sign_in(client), DEFENDER_STATUS_OK);

    /* What it is connected to, without a secret; a NULL out is refused. */
    char *info = NULL;
    EXPECT_STATUS(defender_client_connection_info(client, &info), DEFENDER_STATUS_OK);
    CHECK(info && strstr(info, "\"sign_in\":\"client_secret\"") && strstr(info, "\"token_expires_at\":") &&
              !strstr(info, SIM_CLIENT_SECRET),
          "connection info %s", info ? info : "(null)");
    defender_string_free(info);
    EXPECT_STATUS(defender_client_connection_info(client, NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_client_connection_info(NULL, &info), DEFENDER_STATUS_INVALID_ARGUMENT);
    defender_client_free(client);
}

static void test_status_names(void) {
    current_test = "status names";
    CHECK(strcmp(defender_status_name(DEFENDER_STATUS_OK), "OK") == 0, "OK");
    CHECK(strcmp(defender_status_name(DEFENDER_STATUS_NOT_READY), "NOT_READY") == 0, "NOT_READY");
    CHECK(strcmp(defender_status_name(DEFENDER_STATUS_INTERNAL), "INTERNAL") == 0, "INTERNAL");
    CHECK(strcmp(defender_status_name(17), "UNKNOWN") == 0, "17");
    CHECK(strcmp(defender_status_name(-1), "UNKNOWN") == 0, "-1");

    /* This file copies no status table: every enumerator of the header has its name from the
       library, so a status added to the header without a name fails here. */
    FILE *header = fopen(DEFENDER_HEADER, "r");
    CHECK(header != NULL, "cannot read %s (run from the repository's root)", DEFENDER_HEADER);
    if (header == NULL) return;
    char line[512], name[64];
    int number, enumerators = 0;
    while (fgets(line, sizeof line, header)) {
        if (sscanf(line, " DEFENDER_STATUS_%63[A-Z_] = %d,", name, &number) != 2) continue;
        enumerators++;
        CHECK(strcmp(defender_status_name(number), name) == 0, "%d is %s in the header, %s in the library", number,
              name, defender_status_name(number));
    }
    fclose(header);
    CHECK(enumerators >= 18, "%d DEFENDER_STATUS_ enumerators in %s", enumerators, DEFENDER_HEADER);
}

static void test_machines(void) {
    current_test = "machines";
    control("POST", "/_sim/config", "{\"page_size\": 2}");
    control("POST", "/_sim/machines",
            "[{\"id\": \"c0000000000000000000000000000000000000a1\", \"computer_dns_name\": \"O'Brien-PC\","
            "  \"machine_tags\": [\"Incident4711\"], \"last_seen\": \"2024-01-01T00:00:00Z\"},"
            " {\"id\": \"c0000000000000000000000000000000000000a2\", \"computer_dns_name\": \"O'Brien-PC\","
            "  \"machine_tags\": [\"Incident4711\"], \"last_seen\": \"2024-06-01T00:00:00Z\"},"
            " {\"id\": \"c0000000000000000000000000000000000000a3\", \"computer_dns_name\": \"srv-01\","
            "  \"machine_tags\": [\"Incident4711\"]},"
            " {\"id\": \"c0000000000000000000000000000000000000a4\", \"computer_dns_name\": \"srv-02\"}]");
    DefenderClient *client = new_client();

    char *json = NULL;
    EXPECT_STATUS(defender_get_machine(client, "O'Brien-PC", &json), DEFENDER_STATUS_OK);
    char *id = json ? json_string(json, "id") : NULL;
    CHECK(id && strcmp(id, "c0000000000000000000000000000000000000a2") == 0, "the one seen last: %s", json);
    free(id);
    defender_string_free(json);
    json = NULL;
    EXPECT_STATUS(defender_get_machine(client, "c0000000000000000000000000000000000000a3", &json), DEFENDER_STATUS_OK);
    CHECK(json && strstr(json, "\"computerDnsName\":\"srv-01\""), "%s", json);
    defender_string_free(json);
    json = NULL;
    EXPECT_STATUS(defender_get_machine(client, "x' or computerDnsName ne 'y", &json), DEFENDER_STATUS_NOT_FOUND);
    CHECK(json == NULL, "nothing written on failure");

    /* Three tagged devices, two to a page: two pages, one array. */
    EXPECT_STATUS(defender_list_machines(client, "machineTags/any(t: t eq 'Incident4711')", 0, &json),
                  DEFENDER_STATUS_OK);
    CHECK(json && json[0] == '[' && count_occurrences(json, "\"computerDnsName\"") == 3, "%s", json);
    defender_string_free(json);
    json = NULL;
    EXPECT_STATUS(defender_list_machines(client, NULL, 1, &json), DEFENDER_STATUS_OK);
    CHECK(json && count_occurrences(json, "\"computerDnsName\"") == 1, "max_items 1: %s", json);
    defender_string_free(json);
    json = NULL;
    EXPECT_STATUS(defender_list_machines(client, "contains(computerDnsName, 'srv')", 0, &json), DEFENDER_STATUS_HTTP);
    EXPECT_STATUS(defender_list_machines(client, NULL, 0, NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_get_machine(NULL, "srv-01", &json), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_get_machine(client, "\xff", &json), DEFENDER_STATUS_INVALID_ARGUMENT);
    defender_client_free(client);
    control("POST", "/_sim/config", "{\"page_size\": 10000}");
}

static void test_action_lists_and_cancel(void) {
    current_test = "action lists and cancel";
    char *running = create_action("{\"type\": \"Isolate\", \"requestor\": \"o'neil@contoso.test\","
                                  " \"schedule\": {\"pending_secs\": 3600, \"in_progress_secs\": 0}}");
    DefenderClient *client = new_client();
    char *json = NULL;
    EXPECT_STATUS(defender_list_machine_actions(client, "requestor eq 'o''neil@contoso.test'", 0, &json),
                  DEFENDER_STATUS_OK);
    CHECK(json && count_occurrences(json, "\"requestor\"") == 1 && strstr(json, running), "%s", json);
    defender_string_free(json);
    json = NULL;

    EXPECT_STATUS(defender_cancel_machine_action(client, running, "wrong device", &json), DEFENDER_STATUS_OK);
    char *status = json ? json_string(json, "status") : NULL;
    CHECK(status && strcmp(status, "Cancelled") == 0, "%s", json);
    free(status);
    defender_string_free(json);
    json = NULL;
    EXPECT_STATUS(defender_cancel_machine_action(client, running, NULL, &json), DEFENDER_STATUS_HTTP);
    char *message = last_error();
    CHECK(strstr(message, "already in a final state (Cancelled)") != NULL, "%s", message);
    free(message);
    EXPECT_STATUS(defender_cancel_machine_action(client, "no-such-action", NULL, &json), DEFENDER_STATUS_NOT_FOUND);
    EXPECT_STATUS(defender_cancel_machine_action(client, NULL, NULL, &json), DEFENDER_STATUS_INVALID_ARGUMENT);
    CHECK(json == NULL, "nothing written on failure");
    defender_client_free(client);
    free(running);
}


/* The live response tests need the simulator to keep results in Azurite (tests/run-all.sh starts
   it and names it in DEFENDER_AZURITE_BLOB_ENDPOINT). Without it they fail, except for the
   Windows build under Wine, where they say so and skip. */
static int live_response_store(void) {
    if (getenv("DEFENDER_AZURITE_BLOB_ENDPOINT")) {
        /* Sessions end at once: these tests are about the calls, not the waits. */
        control("POST", "/_sim/config",
                "{\"live_response_schedule\": {\"pending_secs\": 0, \"in_progress_secs\": 0}, "
                "\"live_response_file_size\": 70000}");
        return 1;
    }
#ifdef _WIN32
    printf("skipped %s: DEFENDER_AZURITE_BLOB_ENDPOINT is not set (no Azurite)\n", current_test);
#else
    CHECK(0, "DEFENDER_AZURITE_BLOB_ENDPOINT is not set: run tests/run-all.sh c, which starts Azurite");
#endif
    return 0;
}

/* Not the machine of the other tests' collections (one still runs): a device takes one action at a time. */
static const char *const MACHINE = "c0ffee0000000000000000000000000000000001";

static void test_live_response_get_file(void) {
    current_test = "live response GetFile";
    if (!live_response_store()) return;
    DefenderClient *client = new_client();
    defender_client_set(client, "wait_timeout_ms", "20000");
    const char *commands = "[{\"type\":\"GetFile\",\"params\":[{\"key\":\"Path\",\"value\":\"C:\\\\Temp\\\\a.log\"}]}]";
    char *action = NULL;
    EXPECT_STATUS(defender_run_live_response(client, MACHINE, commands, NULL, &action), DEFENDER_STATUS_OK);
    char *id = action ? json_string(action, "id") : NULL;
    CHECK(id && action && strstr(action, "\"commandStatus\":\"Completed\""), "session: %s", action ? action : "NULL");

    char *uri = NULL;
    EXPECT_STATUS(defender_get_live_response_result_uri(client, id ? id : "x", 0, &uri), DEFENDER_STATUS_OK);
    CHECK(uri && strstr(uri, "sig="), "not a SAS link");
    defender_string_free(uri);

    char *folder = new_folder(), *result = NULL;
    EXPECT_STATUS(defender_download_live_response_result(client, id ? id : "x", 0, folder, NULL, NULL, &result),
                  DEFENDER_STATUS_OK);
    char path[4200], control_path[256];
    snprintf(path, sizeof path, "%s" PATH_SEPARATOR "%s-0.log", folder, id ? id : "x");
    snprintf(control_path, sizeof control_path, "/_sim/live_response/%s/0", id ? id : "x");
    size_t len = 0, expected_len = 0;
    char *data = read_file(path, &len), *expected = NULL;
    int status = sim_request_bytes(&sim, "GET", control_path, NULL, &expected, &expected_len);
    CHECK(status == 200 && data && expected && len == 70000 && len == expected_len && memcmp(data, expected, len) == 0,
          "%s (%zu bytes) differs from the result (HTTP %d, %zu bytes)", path, len, status, expected_len);
    CHECK(result && strstr(result, "\"content_encoding\":null") && strstr(result, "\"command_type\":\"GetFile\""),
          "result %s", result ? result : "NULL");
    CHECK(entries(folder) == 1, "%d entries", entries(folder));
    /* Again: the file exists. */
    EXPECT_STATUS(defender_download_live_response_result(client, id ? id : "x", 0, folder, NULL, NULL, NULL),
                  DEFENDER_STATUS_EXISTS);
    free(data);
    free(expected);
    defender_string_free(result);
    remove_folder(folder);
    free(id);
    defender_string_free(action);
    defender_client_free(client);
}

static void test_live_response_failures(void) {
    current_test = "live response failures";
    DefenderClient *client = new_client();
    char *out = (char *)"untouched";
    EXPECT_STATUS(defender_run_live_response(client, MACHINE, NULL, NULL, &out), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_run_live_response(client, MACHINE, "[]", NULL, &out), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_run_live_response(client, MACHINE, "[{\"type\":1}]", NULL, &out),
                  DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_get_live_response_result_uri(client, "a", 0, NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_get_files(client, "{}", ".", NULL, NULL, NULL, NULL), DEFENDER_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(defender_delete_library_file(NULL, "x"), DEFENDER_STATUS_INVALID_ARGUMENT);
    CHECK(strcmp(out, "untouched") == 0, "out-parameter written on failure");
    if (!live_response_store()) {
        defender_client_free(client);
        return;
    }
    defender_client_set(client, "wait_timeout_ms", "20000");
    const char *missing = "[{\"type\":\"GetFile\",\"params\":[{\"key\":\"Path\",\"value\":\"C:\\\\missing.txt\"}]}]";
    EXPECT_STATUS(defender_run_live_response(client, MACHINE, missing, "c test", &out), DEFENDER_STATUS_ACTION_FAILED);
    char *message = last_error();
    CHECK(strstr(message, "missing.txt was not found"), "the command's error is not in: %s", message);
    free(message);
    defender_client_free(client);
}

static void test_live_response_library(void) {
    current_test = "live response library";
    if (!live_response_store()) return;
    DefenderClient *client = new_client();
    char *folder = new_folder(), path[4200];
    snprintf(path, sizeof path, "%s" PATH_SEPARATOR "triage.ps1", folder);
    CHECK(file_write(path, "Get-Process\n") == 0, "writing %s", path);
    char *file = NULL, *list = NULL;
    EXPECT_STATUS(defender_upload_library_file(client, path, "Triage", NULL, 0, 0, &file), DEFENDER_STATUS_OK);
    CHECK(file && strstr(file, "\"fileName\":\"triage.ps1\""), "library file %s", file ? file : "NULL");
    EXPECT_STATUS(defender_upload_library_file(client, path, "Triage", NULL, 0, 0, NULL), DEFENDER_STATUS_EXISTS);
    EXPECT_STATUS(defender_upload_library_file(client, path, "Triage", "none", 1, 1, NULL), DEFENDER_STATUS_OK);
    EXPECT_STATUS(defender_list_library_files(client, &list), DEFENDER_STATUS_OK);
    CHECK(list && count_occurrences(list, "\"fileName\"") == 1, "list %s", list ? list : "NULL");
    EXPECT_STATUS(defender_delete_library_file(client, "triage.ps1"), DEFENDER_STATUS_OK);
    EXPECT_STATUS(defender_delete_library_file(client, "triage.ps1"), DEFENDER_STATUS_NOT_FOUND);
    defender_string_free(file);
    defender_string_free(list);
    remove_folder(folder);
    defender_client_free(client);
}

static int items_done;

static void count_item(void *user_data, size_t index, DefenderStatus status, const char *item_json) {
    (void)user_data;
    (void)index;
    CHECK(status == DEFENDER_STATUS_OK, "item %zu: %s", index, item_json);
    items_done++;
}

static void test_live_response_get_files(void) {
    current_test = "live response get_files";
    if (!live_response_store()) return;
    DefenderClient *client = new_client();
    defender_client_set(client, "wait_timeout_ms", "20000");
    char *folder = new_folder(), *results = NULL;
    const char *requests = "[{\"machine\":\"c0ffee0000000000000000000000000000000002\",\"path\":\"C:\\\\a.exe\"},"
                           "{\"machine\":\"3e5bc9d7e413ddd7902c2932e418702b84d0cc07\",\"path\":\"C:\\\\b.dll\"}]";
    items_done = 0;
    EXPECT_STATUS(defender_get_files(client, requests, folder, NULL, count_item, NULL, &results), DEFENDER_STATUS_OK);
    CHECK(items_done == 2, "%d items told", items_done);
    CHECK(results && count_occurrences(results, "\"status\":\"OK\"") == 2, "results %s", results ? results : "NULL");
    CHECK(entries(folder) == 2, "%d entries", entries(folder));
    defender_string_free(results);
    remove_folder(folder);
    defender_client_free(client);
}

static const TestCase tests[] = {
    TEST(test_download_succeeds),
    TEST(test_quoted_link_is_unwrapped),
    TEST(test_action_states),
    TEST(test_unauthorized_and_forbidden),
    TEST(test_existing_destination),
    TEST(test_progress_and_cancel),
    TEST(test_truncated_body),
    TEST(test_no_authorization_to_download_host),
    TEST(test_bad_arguments),
    TEST(test_unknown_option),
    TEST(test_option_enumeration),
    TEST(test_many_threads_one_client),
    TEST(test_batch),
    TEST(test_status_names),
    TEST(test_machines),
    TEST(test_action_lists_and_cancel),
    TEST(test_clone),
    TEST(test_phases),
    TEST(test_assertion_callback),
    TEST(test_live_response_get_file),
    TEST(test_live_response_failures),
    TEST(test_live_response_library),
    TEST(test_live_response_get_files),
};

int main(int argc, char **argv) {
    const char *store = getenv("DEFENDER_AZURITE_BLOB_ENDPOINT");
    const char *args[] = {"--rate-limit", "off", store ? "--blob-endpoint" : NULL, store, NULL};
    return run_tests(argc, argv, args, tests, sizeof tests / sizeof tests[0]);
}
