#define _GNU_SOURCE
#include "simulator.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int sim_start(Simulator *sim, const char *binary, const char *const *args) {
    int out[2];
    if (pipe(out) != 0) return -1;
    const char *argv[32] = {binary};
    int argc = 1;
    for (; args && args[argc - 1] && argc < 31; argc++) argv[argc] = args[argc - 1];
    argv[argc] = NULL;

    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        close(out[1]);
        execv(binary, (char *const *)argv);
        perror("exec simulator");
        _exit(127);
    }
    close(out[1]);
    sim->pid = pid;

    /* The first line on stdout is the ready line: {"base_url":"http://127.0.0.1:PORT",...} */
    char line[4096];
    size_t used = 0;
    while (used < sizeof line - 1) {
        ssize_t n = read(out[0], line + used, 1);
        if (n <= 0 || line[used] == '\n') break;
        used++;
    }
    line[used] = '\0';
    close(out[0]); /* later output is not needed; the simulator logs to stderr */

    char *base_url = json_string(line, "base_url");
    if (!base_url || strlen(base_url) >= sizeof sim->base_url) {
        fprintf(stderr, "simulator did not print a ready line (got '%s')\n", line);
        free(base_url);
        sim_stop(sim);
        return -1;
    }
    strcpy(sim->base_url, base_url);
    free(base_url);
    const char *colon = strrchr(sim->base_url, ':');
    sim->port = colon ? atoi(colon + 1) : 0;
    return sim->port > 0 ? 0 : -1;
}

void sim_stop(Simulator *sim) {
    if (sim->pid > 0) {
        kill(sim->pid, SIGTERM);
        waitpid(sim->pid, NULL, 0);
        sim->pid = 0;
    }
}

static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        data += n;
        len -= (size_t)n;
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
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sim->port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    size_t request_len = json_body ? strlen(json_body) : 0;
    char head[1024];
    int head_len = snprintf(head, sizeof head,
                            "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                            method, path, sim->port, request_len);
    if (write_all(fd, head, (size_t)head_len) != 0 || (request_len && write_all(fd, json_body, request_len) != 0)) {
        close(fd);
        return -1;
    }

    size_t cap = 65536, used = 0;
    char *response = malloc(cap);
    for (;;) {
        if (used + 4096 > cap) response = realloc(response, cap *= 2);
        ssize_t n = read(fd, response + used, cap - used - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        used += (size_t)n;
    }
    close(fd);
    response[used] = '\0';

    int status = -1;
    if (sscanf(response, "HTTP/1.%*d %d", &status) != 1) status = -1;
    char *body = memmem(response, used, "\r\n\r\n", 4);
    if (body_out && body) {
        *body = '\0'; /* ends the head, so that header searches stay inside it */
        body += 4;
        size_t len = used - (size_t)(body - response);
        char *copy = malloc(len + 1);
        size_t out_len = 0;
        if (strcasestr(response, "transfer-encoding: chunked")) {
            char *cursor = body, *end = body + len;
            while (cursor < end) {
                unsigned long size = strtoul(cursor, &cursor, 16);
                cursor = memmem(cursor, (size_t)(end - cursor), "\r\n", 2);
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

char *json_string(const char *json, const char *field) {
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\":", field);
    const char *at = strstr(json, pattern);
    if (!at) return NULL;
    at += strlen(pattern);
    while (*at == ' ') at++;
    if (*at != '"') return NULL;
    at++;
    const char *end = at;
    while (*end && *end != '"') end += (*end == '\\' && end[1]) ? 2 : 1;
    return strndup(at, (size_t)(end - at));
}

int count_occurrences(const char *haystack, const char *needle) {
    int count = 0;
    for (const char *at = haystack; (at = strstr(at, needle)) != NULL; at += strlen(needle)) count++;
    return count;
}
