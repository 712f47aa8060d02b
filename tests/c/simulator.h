/*
 * A test's handle on the Defender simulator: starts the binary, reads its ready line, and talks
 * to its control API (/_sim/...) over loopback HTTP. On POSIX and Windows (platform.h); test
 * code, not product code.
 */
#ifndef DEFENDER_TEST_SIMULATOR_H
#define DEFENDER_TEST_SIMULATOR_H

#include <stddef.h>

#include "platform.h"

/* The simulator's pre-registered app (see simulator/README.md). */
#define SIM_TENANT_ID "00000000-0000-4000-8000-000000000001"
#define SIM_CLIENT_ID "00000000-0000-4000-8000-0000000000c1"
#define SIM_CLIENT_SECRET "simulator-secret"

typedef struct Simulator {
    Process process;
    char base_url[128];
    int port;
    /* With --tls: the CA's PEM file from the ready line (its control API is then HTTPS too,
       which sim_request does not speak). */
    char ca_file[1024];
    char ready_line[4096];
} Simulator;

/* Starts `binary` with `args` (NULL-terminated, may be NULL) and waits for its ready line. */
int sim_start(Simulator *sim, const char *binary, const char *const *args);
void sim_stop(Simulator *sim);

/* Sends a request to the simulator's API port. Returns the HTTP status (or -1) and, when
   body_out is not NULL, the body as a malloc'd string the caller frees. */
int sim_request(const Simulator *sim, const char *method, const char *path, const char *json_body,
                char **body_out);

/* The same, also giving the body's length (for binary bodies). */
int sim_request_bytes(const Simulator *sim, const char *method, const char *path, const char *json_body,
                      char **body_out, size_t *body_len);

/* The string value of "field" in a flat JSON object, unescaped, malloc'd, or NULL. */
char *json_string(const char *json, const char *field);

/* How many times `needle` occurs in `haystack`. */
int count_occurrences(const char *haystack, const char *needle);

#endif
