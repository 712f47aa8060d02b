/* platform.h on POSIX: fork and exec, BSD sockets, dirent, sha256sum. */
#define _GNU_SOURCE
#include "platform.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int process_start(Process *process, const char *const *argv) {
    int out[2];
    if (pipe(out) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        close(out[1]);
        execv(argv[0], (char *const *)argv);
        perror("exec");
        _exit(127);
    }
    close(out[1]);
    process->handle = pid;
    process->output = out[0];
    return 0;
}

int process_read_line(Process *process, char *line, size_t capacity) {
    size_t used = 0;
    while (used < capacity - 1) {
        ssize_t n = read((int)process->output, line + used, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || line[used] == '\n') break;
        used++;
    }
    line[used] = '\0';
    return used > 0 ? 0 : -1;
}

void process_close_output(Process *process) {
    if (process->output >= 0) close((int)process->output);
    process->output = -1;
}

void process_stop(Process *process) {
    process_close_output(process);
    if (process->handle > 0) {
        kill((pid_t)process->handle, SIGTERM);
        waitpid((pid_t)process->handle, NULL, 0);
        process->handle = 0;
    }
}

int process_wait(Process *process) {
    process_close_output(process);
    int status = 0;
    pid_t pid = (pid_t)process->handle;
    process->handle = 0;
    return waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

intptr_t tcp_connect_loopback(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in addr = loopback(port);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

intptr_t tcp_listen_loopback(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = loopback(0);
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

intptr_t tcp_accept(intptr_t listener, int timeout_ms) {
    struct pollfd ready = {.fd = (int)listener, .events = POLLIN};
    if (poll(&ready, 1, timeout_ms) != 1) return -1;
    return accept((int)listener, NULL, NULL);
}

int tcp_send_all(intptr_t socket, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write((int)socket, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

long tcp_receive(intptr_t socket, char *buffer, size_t capacity) {
    for (;;) {
        ssize_t n = read((int)socket, buffer, capacity);
        if (n < 0 && errno == EINTR) continue;
        return (long)n;
    }
}

void tcp_close(intptr_t socket) {
    close((int)socket);
}

char *folder_create(void) {
    char *folder = strdup("/tmp/defender-c-test-XXXXXX");
    if (mkdtemp(folder) == NULL) {
        free(folder);
        return NULL;
    }
    return folder;
}

int folder_make(const char *path) {
    return mkdir(path, 0700);
}

int folder_entries(const char *folder) {
    DIR *dir = opendir(folder);
    if (!dir) return -1;
    int count = 0;
    for (struct dirent *e; (e = readdir(dir));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) count++;
    closedir(dir);
    return count;
}

void folder_remove(char *folder) {
    DIR *dir = opendir(folder);
    for (struct dirent *e; dir && (e = readdir(dir));) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(path);
    }
    if (dir) closedir(dir);
    rmdir(folder);
    free(folder);
}

char *file_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc(*len + 1);
    if (fread(data, 1, *len, f) != *len) *len = 0;
    data[*len] = '\0';
    fclose(f);
    return data;
}

int file_write(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int failed = fputs(text, f) < 0;
    return fclose(f) != 0 || failed ? -1 : 0;
}

int file_sha256(const char *path, char digest[65]) {
    char command[4200];
    snprintf(command, sizeof command, "sha256sum '%s'", path);
    FILE *pipe = popen(command, "r");
    if (!pipe) return -1;
    int read = fscanf(pipe, "%64s", digest) == 1;
    pclose(pipe);
    return read && strlen(digest) == 64 ? 0 : -1;
}

void set_env(const char *name, const char *value) {
    setenv(name, value, 1);
}
