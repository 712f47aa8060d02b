#define _GNU_SOURCE
#include "simulator.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sim_start(Simulator *sim, const char *binary, const char *const *args) {
    const char *argv[32] = {binary};
    int argc = 1;
    for (; args && args[argc - 1] && argc < 31; argc++) argv[argc] = args[argc - 1];
    argv[argc] = NULL;
    memset(sim, 0, sizeof *sim);
    if (process_start(&sim->process, argv) != 0) return -1;

    /* The first line on stdout is the ready line: {"base_url":"http://127.0.0.1:PORT",...} */
    char *line = sim->ready_line;
    process_read_line(&sim->process, line, sizeof sim->ready_line);
    process_close_output(&sim->process); /* later output is not needed; the simulator logs to stderr */

    char *base_url = json_string(line, "base_url");
    if (!base_url || strlen(base_url) >= sizeof sim->base_url) {
        fprintf(stderr, "simulator did not print a ready line (got '%s')\n", line);
        free(base_url);
        sim_stop(sim);
        return -1;
    }
    strcpy(sim->base_url, base_url);
    free(base_url);
    char *ca_file = json_string(line, "ca_file");
    if (ca_file && strlen(ca_file) < sizeof sim->ca_file) strcpy(sim->ca_file, ca_file);
    free(ca_file);
    const char *colon = strrchr(sim->base_url, ':');
    sim->port = colon ? atoi(colon + 1) : 0;
    return sim->port > 0 ? 0 : -1;
}

void sim_stop(Simulator *sim) {
    process_stop(&sim->process);
}

/* The first occurrence of needle[0..needle_len) in haystack[0..len), or NULL. */
static char *find_bytes(char *haystack, size_t len, const char *needle, size_t needle_len) {
    for (size_t i = 0; i + needle_len <= len; i++)
        if (memcmp(haystack + i, needle, needle_len) == 0) return haystack + i;
    return NULL;
}

/* Whether the response head holds `header` (lowercase), in any case. */
static int head_has(const char *head, const char *header) {
    size_t len = strlen(header);
    for (const char *at = head; *at; at++) {
        size_t i = 0;
        while (i < len && at[i] && (at[i] | 0x20) == header[i]) i++;
        if (i == len) return 1;
    }
    return 0;
}

int sim_request(const Simulator *sim, const char *method, const char *path, const char *json_body,
                char **body_out) {
    return sim_request_bytes(sim, method, path, json_body, body_out, NULL);
}

int sim_request_bytes(const Simulator *sim, const char *method, const char *path, const char *json_body,
                      char **body_out, size_t *body_len) {
    if (body_out) *body_out = NULL;
    if (body_len) *body_len = 0;
    intptr_t socket = tcp_connect_loopback(sim->port);
    if (socket < 0) return -1;
    size_t request_len = json_body ? strlen(json_body) : 0;
    char head[1024];
    int head_len = snprintf(head, sizeof head,
                            "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                            method, path, sim->port, request_len);
    if (tcp_send_all(socket, head, (size_t)head_len) != 0 ||
        (request_len && tcp_send_all(socket, json_body, request_len) != 0)) {
        tcp_close(socket);
        return -1;
    }

    size_t cap = 65536, used = 0;
    char *response = malloc(cap);
    for (;;) {
        if (used + 4096 > cap) response = realloc(response, cap *= 2);
        long n = tcp_receive(socket, response + used, cap - used - 1);
        if (n <= 0) break;
        used += (size_t)n;
    }
    tcp_close(socket);
    response[used] = '\0';

    int status = -1;
    if (sscanf(response, "HTTP/1.%*d %d", &status) != 1) status = -1;
    char *body = find_bytes(response, used, "\r\n\r\n", 4);
    if (body_out && body) {
        *body = '\0'; /* ends the head, so that header searches stay inside it */
        body += 4;
        size_t len = used - (size_t)(body - response);
        char *copy = malloc(len + 1);
        size_t out_len = 0;
        if (head_has(response, "transfer-encoding: chunked")) {
            char *cursor = body, *end = body + len;
            while (cursor < end) {
                unsigned long size = strtoul(cursor, &cursor, 16);
                cursor = find_bytes(cursor, (size_t)(end - cursor), "\r\n", 2);
                if (!cursor || size == 0 || cursor + 2 + size > end) break;
                memcpy(copy + out_len, cursor + 2, size);
                out_len += size;
                cursor += 2 + size + 2;
            }
        } else {
            memcpy(copy, body, len);
            out_len = len;
        }
        copy[out_len] = '\0';
        *body_out = copy;
        if (body_len) *body_len = out_len;
    }
    free(response);
    return status;
}

/* Appends the UTF-8 encoding of `code` at `out`; returns the byte after it. */
static char *put_utf8(char *out, unsigned long code) {
    if (code < 0x80) {
        *out++ = (char)code;
    } else if (code < 0x800) {
        *out++ = (char)(0xc0 | (code >> 6));
        *out++ = (char)(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
        *out++ = (char)(0xe0 | (code >> 12));
        *out++ = (char)(0x80 | ((code >> 6) & 0x3f));
        *out++ = (char)(0x80 | (code & 0x3f));
    } else {
        *out++ = (char)(0xf0 | (code >> 18));
        *out++ = (char)(0x80 | ((code >> 12) & 0x3f));
        *out++ = (char)(0x80 | ((code >> 6) & 0x3f));
        *out++ = (char)(0x80 | (code & 0x3f));
    }
    return out;
}

static unsigned long hex4(const char *at) {
    char digits[5] = {0};
    memcpy(digits, at, 4);
    return strtoul(digits, NULL, 16);
}

char *json_string(const char *json, const char *field) {
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\":", field);
    const char *at = strstr(json, pattern);
    if (!at) return NULL;
    at += strlen(pattern);
    while (*at == ' ') at++;
    if (*at != '"') return NULL;
    at++;
    char *value = malloc(strlen(at) + 1), *out = value;
    while (*at && *at != '"') {
        if (*at != '\\' || !at[1]) {
            *out++ = *at++;
            continue;
        }
        char escaped = at[1];
        at += 2;
        switch (escaped) {
            case 'n': *out++ = '\n'; break;
            case 't': *out++ = '\t'; break;
            case 'r': *out++ = '\r'; break;
            case 'b': *out++ = '\b'; break;
            case 'f': *out++ = '\f'; break;
            case 'u': {
                if (strlen(at) < 4) break;
                unsigned long code = hex4(at);
                at += 4;
                if (code >= 0xd800 && code < 0xdc00 && at[0] == '\\' && at[1] == 'u' && strlen(at) >= 6) {
                    code = 0x10000 + ((code - 0xd800) << 10) + (hex4(at + 2) - 0xdc00);
                    at += 6;
                }
                out = put_utf8(out, code);
                break;
            }
            default: *out++ = escaped; /* \" \\ \/ */
        }
    }
    *out = '\0';
    return value;
}

int count_occurrences(const char *haystack, const char *needle) {
    int count = 0;
    for (const char *at = haystack; (at = strstr(at, needle)) != NULL; at += strlen(needle)) count++;
    return count;
}
