#define _GNU_SOURCE
#include "harness.h"

Simulator sim;
int failures;
const char *current_test;

const char *status_name(DefenderStatus status) {
    return defender_status_name((int32_t)status);
}

char *last_error(void) {
    size_t len = defender_last_error_message(NULL, 0);
    char *message = malloc(len + 1);
    size_t again = defender_last_error_message(message, len + 1);
    if (again != len) fprintf(stderr, "last error length changed: %zu then %zu\n", len, again);
    return message;
}

int has_secret(const char *text) {
    const char *sas = strstr(text, "token=");
    return strstr(text, SIM_CLIENT_SECRET) != NULL || strstr(text, "Bearer ") != NULL ||
           (sas != NULL && strncmp(sas, "token=REDACTED", 14) != 0);
}

DefenderClient *new_client(void) {
    return new_client_for(sim.base_url);
}

DefenderClient *new_client_for(const char *base_url) {
    DefenderClient *client = NULL;
    CHECK(defender_client_new(&client) == DEFENDER_STATUS_OK && client != NULL, "client_new");
    const char *options[][2] = {
        {"base_url", base_url},           {"authority_url", base_url},
        {"tenant_id", SIM_TENANT_ID},     {"client_id", SIM_CLIENT_ID},
        {"client_secret", SIM_CLIENT_SECRET}, {"rate_limit", "off"},
    };
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        DefenderStatus status = defender_client_set(client, options[i][0], options[i][1]);
        CHECK(status == DEFENDER_STATUS_OK, "set %s: %s", options[i][0], status_name(status));
    }
    return client;
}

char *create_action(const char *json_spec) {
    char *body = NULL;
    int status = sim_request(&sim, "POST", "/_sim/actions", json_spec, &body);
    CHECK(status >= 200 && status < 300, "create action: HTTP %d %s", status, body ? body : "");
    char *id = body ? json_string(body, "id") : NULL;
    CHECK(id != NULL, "no id in %s", body ? body : "(nothing)");
    free(body);
    return id ? id : strdup("missing");
}

void add_fault(const char *json_rule) {
    char *body = NULL;
    int status = sim_request(&sim, "POST", "/_sim/faults", json_rule, &body);
    CHECK(status >= 200 && status < 300, "add fault: HTTP %d %s", status, body ? body : "");
    free(body);
}

void control(const char *method, const char *path, const char *json_body) {
    char *body = NULL;
    int status = sim_request(&sim, method, path, json_body, &body);
    CHECK(status >= 200 && status < 300, "%s %s: HTTP %d %s", method, path, status, body ? body : "");
    free(body);
}

char *new_folder(void) {
    char *folder = folder_create();
    CHECK(folder != NULL, "could not create a scenario folder");
    return folder ? folder : strdup("no-folder");
}

int entries(const char *folder) {
    return folder_entries(folder);
}

void remove_folder(char *folder) {
    folder_remove(folder);
}

char *read_file(const char *path, size_t *len) {
    return file_read(path, len);
}

void expect_package(const char *path, const char *action_id, const char *result_json) {
    size_t len = 0;
    char *data = read_file(path, &len);
    CHECK(data != NULL, "no file at %s", path);
    char control_path[256];
    snprintf(control_path, sizeof control_path, "/_sim/actions/%s/package", action_id);
    char *expected = NULL;
    size_t expected_len = 0;
    int status = sim_request_bytes(&sim, "GET", control_path, NULL, &expected, &expected_len);
    CHECK(status == 200, "package from the simulator: HTTP %d", status);
    CHECK(data && expected && len == expected_len && memcmp(data, expected, len) == 0,
          "%s (%zu bytes) differs from the package the simulator serves (%zu bytes)", path, len, expected_len);
    CHECK(data && len > 4 && memcmp(data, "PK\x03\x04", 4) == 0, "not a ZIP");
    char digest[65] = {0};
    CHECK(file_sha256(path, digest) == 0, "SHA-256 of %s", path);
    char *reported = result_json ? json_string(result_json, "sha256") : NULL;
    CHECK(reported && strcmp(reported, digest) == 0, "sha256 %s reported, %s on disk", reported, digest);
    char bytes_field[64];
    snprintf(bytes_field, sizeof bytes_field, "\"bytes\":%zu", len);
    CHECK(result_json && strstr(result_json, bytes_field), "result %s does not say %s", result_json, bytes_field);
    free(reported);
    free(expected);
    free(data);
}

/* Whether the test was named on the command line (argv[2...]); all are when none is. */
static int is_named(const char *name, int argc, char **argv, int *named) {
    *named = 0;
    if (argc <= 2) return 1;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0) *named = 1;
    return *named;
}

/* Runs this program again for `test` alone, passing its output through; whether it passed. */
static int run_alone(char **argv, const char *test) {
    const char *child_argv[] = {argv[0], argv[1], test, NULL};
    Process child;
    if (process_start(&child, child_argv) != 0) return 0;
    char line[4096];
    while (process_read_line(&child, line, sizeof line) == 0)
        if (strstr(line, " against the simulator at ") == NULL && strstr(line, " passed, ") == NULL &&
            strncmp(line, "ok ", 3) != 0 && strncmp(line, "FAILED ", 7) != 0)
            printf("%s\n", line);
    return process_wait(&child) == 0;
}

int run_tests(int argc, char **argv, const char *const *sim_args, const TestCase *tests, size_t count) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s <defender-simulator binary> [test...]\n", argv[0]);
        return 2;
    }
    if (!getenv("RUST_LOG")) set_env("RUST_LOG", "warn"); /* the simulator logs each request at info */
    if (sim_start(&sim, argv[1], sim_args) != 0) {
        fprintf(stderr, "could not start the simulator\n");
        return 2;
    }
    printf("defender %s against the simulator at %s\n", defender_version(), sim.base_url);
    fflush(stdout);
    int passed = 0, failed = 0, named;
    for (size_t i = 0; i < count; i++) {
        if (!is_named(tests[i].name, argc, argv, &named)) continue;
        int before = failures;
        current_test = tests[i].name;
        if (tests[i].alone && !named) {
            fflush(stdout);
            if (!run_alone(argv, tests[i].name)) failures++;
        } else {
            tests[i].run();
        }
        if (failures == before) {
            passed++;
            printf("ok      %s%s\n", tests[i].name, tests[i].alone && !named ? " (in a process of its own)" : "");
        } else {
            failed++;
            printf("FAILED  %s\n", tests[i].name);
        }
        fflush(stdout);
    }
    sim_stop(&sim);
    printf("%d passed, %d failed\n", passed, failed);
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    return failures || passed + failed == 0 ? 1 : 0;
}
