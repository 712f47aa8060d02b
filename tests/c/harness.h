/*
 * What the C test programs share: checks that count failures, the simulator they run against,
 * clients pointed at it, scenario folders, and a runner over a table of tests. Each program
 * (defender_test.c everywhere, windows_test.c on Windows) is a table of test functions; a new
 * case is a function and a TEST() line in its program's table.
 */
#ifndef DEFENDER_TEST_HARNESS_H
#define DEFENDER_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defender.h"
#include "simulator.h"

extern Simulator sim;
extern int failures;
extern const char *current_test;

#define CHECK(cond, ...)                                                                        \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            failures++;                                                                         \
            fprintf(stderr, "FAIL %s (%s:%d): %s: ", current_test, __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fputc('\n', stderr);                                                                \
        }                                                                                       \
    } while (0)

/* Asserts `status`, and that the message names no secret: not the client secret, no bearer
   token, no SAS token value. */
#define EXPECT_STATUS(status, expected)                                                         \
    do {                                                                                        \
        DefenderStatus got_ = (status);                                                         \
        char *message_ = last_error();                                                          \
        CHECK(got_ == (expected), "expected %s, got %s: %s", status_name(expected),              \
              status_name(got_), message_);                                                     \
        CHECK(got_ == DEFENDER_STATUS_OK || strlen(message_) > 0, "no message after a failure"); \
        CHECK(got_ != DEFENDER_STATUS_OK || strlen(message_) == 0, "message after success: %s", \
              message_);                                                                        \
        CHECK(!has_secret(message_), "message holds a secret: %s", message_);                    \
        free(message_);                                                                         \
    } while (0)

/* Bindings name statuses through the library rather than copying its table. */
const char *status_name(DefenderStatus status);
/* The calling thread's last error message, in a buffer sized from the library's answer. */
char *last_error(void);
int has_secret(const char *text);

/* A client pointed at `sim`, signed in with the simulator's app, rate limits off. */
DefenderClient *new_client(void);
/* The same, for the simulator at `base_url` (a child process's, which has no `sim`). */
DefenderClient *new_client_for(const char *base_url);
/* Creates an action in the simulator (see simulator/README.md) and returns its id. */
char *create_action(const char *json_spec);
void add_fault(const char *json_rule);
/* Sends a control call that must succeed. */
void control(const char *method, const char *path, const char *json_body);

/* A fresh, empty folder for one scenario's downloads. */
char *new_folder(void);
/* How many entries the folder holds (a partial or temporary file counts). */
int entries(const char *folder);
void remove_folder(char *folder);
char *read_file(const char *path, size_t *len);

/* Asserts that `path` holds exactly the action's package as the simulator serves it, and that
   the result JSON reports its size and SHA-256. */
void expect_package(const char *path, const char *action_id, const char *result_json);

typedef struct TestCase {
    const char *name;
    void (*run)(void);
    /* Run in a process of its own (the program started again for that test alone): for a test
       whose state would leak into others, or that needs a fresh process. */
    int alone;
} TestCase;
#define TEST(function) {#function, function, 0}
#define TEST_ALONE(function) {#function, function, 1}

/* Starts the simulator given as argv[1] with `sim_args`, runs each test (all of them, or those
   named in argv[2...]), prints a line per test and "N passed, N failed", stops the simulator.
   Returns the process's exit status. */
int run_tests(int argc, char **argv, const char *const *sim_args, const TestCase *tests, size_t count);

#endif
