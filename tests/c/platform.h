/*
 * What the C tests need of the operating system, once for POSIX (platform_posix.c) and once
 * for Windows (platform_windows.c, Win32 calls: the windows suite runs it under Wine). Test
 * code, not product code. Paths are UTF-8 everywhere; on Windows they are converted to UTF-16
 * for the wide (W) functions, as the library does.
 */
#ifndef DEFENDER_TEST_PLATFORM_H
#define DEFENDER_TEST_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

/* The separator between a folder and a name in the paths this platform's library reports. */
#ifdef _WIN32
#define PATH_SEPARATOR "\\"
#else
#define PATH_SEPARATOR "/"
#endif

/* A child process whose standard output is a pipe to the test. */
typedef struct Process {
    intptr_t handle; /* a pid, or a process HANDLE */
    intptr_t output; /* the read end of its standard output */
} Process;

/* Starts `argv[0]` with `argv` (NULL-terminated); its standard error is the test's. */
int process_start(Process *process, const char *const *argv);
/* Reads one line of its standard output, without the newline. */
int process_read_line(Process *process, char *line, size_t capacity);
/* Closes its output pipe (what follows is not read). */
void process_close_output(Process *process);
/* Stops it (SIGTERM, or TerminateProcess) and waits for it. */
void process_stop(Process *process);
/* Waits for it to exit by itself; its exit status, or -1. */
int process_wait(Process *process);

/* A TCP connection to 127.0.0.1:port, or -1. */
intptr_t tcp_connect_loopback(int port);
/* A listening socket on 127.0.0.1 and the port it got, or -1. */
intptr_t tcp_listen_loopback(int *port);
/* Accepts one connection, waiting at most timeout_ms; -1 when none came. */
intptr_t tcp_accept(intptr_t listener, int timeout_ms);
int tcp_send_all(intptr_t socket, const char *data, size_t len);
/* Receives up to `capacity` bytes; 0 at the end, -1 on failure. */
long tcp_receive(intptr_t socket, char *buffer, size_t capacity);
void tcp_close(intptr_t socket);

/* A new, empty folder for one scenario (malloc'd path): under /tmp, or the user's %TEMP%. */
char *folder_create(void);
/* Creates a folder at `path`; 0 on success. */
int folder_make(const char *path);
/* How many entries a folder holds (a partial or temporary file counts); -1 when unreadable. */
int folder_entries(const char *folder);
/* Removes a folder's files, then the folder, and frees `folder`. */
void folder_remove(char *folder);

/* The whole file (malloc'd, NUL-terminated after `len` bytes), or NULL. */
char *file_read(const char *path, size_t *len);
/* Writes `text` as the whole file; 0 on success. */
int file_write(const char *path, const char *text);
/* The file's SHA-256 as 64 lowercase hex digits and a NUL; 0 on success. */
int file_sha256(const char *path, char digest[65]);

/* Sets an environment variable for this process and the processes it starts. */
void set_env(const char *name, const char *value);

#endif
