/* platform.h on Windows: CreateProcessW and an anonymous pipe, Winsock, the wide file
   functions, BCrypt's SHA-256. Built with mingw-w64 by tests/run-all.sh windows. */
#include "platform.h"

#include <winsock2.h>
#include <windows.h>
#include <bcrypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform_windows.h"

static void start_winsock(void) {
    static int started;
    WSADATA data;
    if (!started && WSAStartup(MAKEWORD(2, 2), &data) == 0) started = 1;
}

/* A command line from argv, each argument quoted as CommandLineToArgvW reads it back. */
static wchar_t *command_line(const char *const *argv) {
    size_t capacity = 64;
    for (const char *const *arg = argv; *arg; arg++) capacity += 2 * strlen(*arg) + 3;
    char *line = malloc(capacity), *at = line;
    for (const char *const *arg = argv; *arg; arg++) {
        if (arg != argv) *at++ = ' ';
        *at++ = '"';
        for (const char *c = *arg;; c++) {
            size_t backslashes = 0;
            while (*c == '\\') backslashes++, c++;
            if (*c == '\0' || *c == '"') {
                /* Backslashes before a quote (ours or the argument's) are doubled. */
                for (size_t i = 0; i < backslashes * 2; i++) *at++ = '\\';
                if (*c == '\0') break;
                *at++ = '\\';
                *at++ = '"';
            } else {
                for (size_t i = 0; i < backslashes; i++) *at++ = '\\';
                *at++ = *c;
            }
        }
        *at++ = '"';
    }
    *at = '\0';
    wchar_t *wide = utf8_to_wide(line);
    free(line);
    return wide;
}

int process_start(Process *process, const char *const *argv) {
    SECURITY_ATTRIBUTES inherit = {.nLength = sizeof inherit, .bInheritHandle = TRUE};
    HANDLE read_end, write_end;
    if (!CreatePipe(&read_end, &write_end, &inherit, 0)) return -1;
    SetHandleInformation(read_end, HANDLE_FLAG_INHERIT, 0);
    STARTUPINFOW startup = {.cb = sizeof startup, .dwFlags = STARTF_USESTDHANDLES};
    startup.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    startup.hStdOutput = write_end;
    startup.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    PROCESS_INFORMATION info;
    wchar_t *application = utf8_to_wide(argv[0]), *line = command_line(argv);
    BOOL started = CreateProcessW(application, line, NULL, NULL, TRUE, 0, NULL, NULL, &startup, &info);
    free(application);
    free(line);
    CloseHandle(write_end);
    if (!started) {
        fprintf(stderr, "CreateProcessW %s: error %lu\n", argv[0], GetLastError());
        CloseHandle(read_end);
        return -1;
    }
    CloseHandle(info.hThread);
    process->handle = (intptr_t)info.hProcess;
    process->output = (intptr_t)read_end;
    return 0;
}

int process_read_line(Process *process, char *line, size_t capacity) {
    size_t used = 0;
    DWORD n = 0;
    while (used < capacity - 1 && ReadFile((HANDLE)process->output, line + used, 1, &n, NULL) && n == 1) {
        if (line[used] == '\n') break;
        used++;
    }
    if (used > 0 && line[used - 1] == '\r') used--;
    line[used] = '\0';
    return used > 0 ? 0 : -1;
}

void process_close_output(Process *process) {
    if (process->output) CloseHandle((HANDLE)process->output);
    process->output = 0;
}

void process_stop(Process *process) {
    process_close_output(process);
    if (process->handle) {
        TerminateProcess((HANDLE)process->handle, 0);
        WaitForSingleObject((HANDLE)process->handle, 10000);
        CloseHandle((HANDLE)process->handle);
        process->handle = 0;
    }
}

int process_wait(Process *process) {
    process_close_output(process);
    DWORD status = (DWORD)-1;
    if (WaitForSingleObject((HANDLE)process->handle, INFINITE) != WAIT_OBJECT_0 ||
        !GetExitCodeProcess((HANDLE)process->handle, &status))
        status = (DWORD)-1;
    CloseHandle((HANDLE)process->handle);
    process->handle = 0;
    return (int)status;
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((u_short)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

intptr_t tcp_connect_loopback(int port) {
    start_winsock();
    SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET) return -1;
    struct sockaddr_in addr = loopback(port);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        closesocket(s);
        return -1;
    }
    return (intptr_t)s;
}

intptr_t tcp_listen_loopback(int *port) {
    start_winsock();
    SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    struct sockaddr_in addr = loopback(0);
    int len = sizeof addr;
    if (s == INVALID_SOCKET || bind(s, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s, 8) != 0 ||
        getsockname(s, (struct sockaddr *)&addr, &len) != 0) {
        if (s != INVALID_SOCKET) closesocket(s);
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return (intptr_t)s;
}

intptr_t tcp_accept(intptr_t listener, int timeout_ms) {
    fd_set ready;
    FD_ZERO(&ready);
    FD_SET((SOCKET)listener, &ready);
    struct timeval timeout = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    if (select(0, &ready, NULL, NULL, &timeout) != 1) return -1;
    SOCKET s = accept((SOCKET)listener, NULL, NULL);
    return s == INVALID_SOCKET ? -1 : (intptr_t)s;
}

int tcp_send_all(intptr_t socket, const char *data, size_t len) {
    while (len > 0) {
        int n = send((SOCKET)socket, data, len > 65536 ? 65536 : (int)len, 0);
        if (n <= 0) return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

long tcp_receive(intptr_t socket, char *buffer, size_t capacity) {
    int n = recv((SOCKET)socket, buffer, capacity > 65536 ? 65536 : (int)capacity, 0);
    return n < 0 ? -1 : n;
}

void tcp_close(intptr_t socket) {
    closesocket((SOCKET)socket);
}

char *folder_create(void) {
    wchar_t temp[MAX_PATH + 1];
    DWORD len = GetTempPathW(MAX_PATH + 1, temp);
    if (len == 0 || len > MAX_PATH) return NULL;
    char *base = wide_to_utf8(temp);
    for (unsigned attempt = 0; attempt < 100; attempt++) {
        char path[MAX_PATH * 4];
        snprintf(path, sizeof path, "%sdefender-c-test-%08lx-%u", base, GetCurrentProcessId() ^ GetTickCount(), attempt);
        if (folder_make(path) == 0) {
            free(base);
            return strdup(path);
        }
    }
    free(base);
    return NULL;
}

int folder_make(const char *path) {
    wchar_t *wide = long_path(path);
    BOOL made = CreateDirectoryW(wide, NULL);
    free(wide);
    return made ? 0 : -1;
}

/* Calls `each` with the full path of every entry of `folder`; returns how many, or -1. */
static int for_each_entry(const char *folder, void (*each)(const wchar_t *path)) {
    size_t len = strlen(folder);
    char *pattern = malloc(len + 3);
    snprintf(pattern, len + 3, "%s\\*", folder);
    wchar_t *wide = long_path(pattern);
    free(pattern);
    WIN32_FIND_DATAW found;
    HANDLE find = FindFirstFileW(wide, &found);
    if (find == INVALID_HANDLE_VALUE) {
        free(wide);
        return -1;
    }
    int count = 0;
    size_t prefix = wcslen(wide) - 1; /* up to the backslash before '*' */
    do {
        if (wcscmp(found.cFileName, L".") == 0 || wcscmp(found.cFileName, L"..") == 0) continue;
        count++;
        if (each) {
            wchar_t *path = malloc((prefix + wcslen(found.cFileName) + 1) * sizeof *path);
            memcpy(path, wide, prefix * sizeof *path);
            wcscpy(path + prefix, found.cFileName);
            each(path);
            free(path);
        }
    } while (FindNextFileW(find, &found));
    FindClose(find);
    free(wide);
    return count;
}

int folder_entries(const char *folder) {
    return for_each_entry(folder, NULL);
}

static void remove_entry(const wchar_t *path) {
    if (!DeleteFileW(path)) RemoveDirectoryW(path);
}

void folder_remove(char *folder) {
    for_each_entry(folder, remove_entry);
    wchar_t *wide = long_path(folder);
    RemoveDirectoryW(wide);
    free(wide);
    free(folder);
}

char *file_read(const char *path, size_t *len) {
    wchar_t *wide = long_path(path);
    HANDLE file = CreateFileW(wide, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
    free(wide);
    if (file == INVALID_HANDLE_VALUE) return NULL;
    LARGE_INTEGER size;
    char *data = NULL;
    DWORD got = 0;
    if (GetFileSizeEx(file, &size) && size.QuadPart < 0x7fffffff) {
        data = malloc((size_t)size.QuadPart + 1);
        if (!ReadFile(file, data, (DWORD)size.QuadPart, &got, NULL)) got = 0;
        data[got] = '\0';
        *len = got;
    }
    CloseHandle(file);
    return data;
}

int file_write(const char *path, const char *text) {
    wchar_t *wide = long_path(path);
    HANDLE file = CreateFileW(wide, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
    free(wide);
    if (file == INVALID_HANDLE_VALUE) return -1;
    DWORD written = 0;
    BOOL ok = WriteFile(file, text, (DWORD)strlen(text), &written, NULL) && written == strlen(text);
    return CloseHandle(file) && ok ? 0 : -1;
}

int file_sha256(const char *path, char digest[65]) {
    size_t len = 0;
    char *data = file_read(path, &len);
    if (!data) return -1;
    unsigned char hash[32];
    BCRYPT_ALG_HANDLE algorithm;
    NTSTATUS status = BCryptOpenAlgorithmProvider(&algorithm, BCRYPT_SHA256_ALGORITHM, NULL, 0);
    if (status == 0) {
        status = BCryptHash(algorithm, NULL, 0, (PUCHAR)data, (ULONG)len, hash, sizeof hash);
        BCryptCloseAlgorithmProvider(algorithm, 0);
    }
    free(data);
    if (status != 0) return -1;
    for (int i = 0; i < 32; i++) snprintf(digest + 2 * i, 3, "%02x", hash[i]);
    return 0;
}

void set_env(const char *name, const char *value) {
    /* _putenv_s updates the C runtime's copy, SetEnvironmentVariable what CreateProcess passes. */
    _putenv_s(name, value);
    SetEnvironmentVariableA(name, value);
}

wchar_t *utf8_to_wide(const char *text) {
    int len = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, text, -1, NULL, 0);
    wchar_t *wide = malloc((size_t)(len > 0 ? len : 1) * sizeof *wide);
    if (len <= 0 || MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, text, -1, wide, len) != len) wide[0] = L'\0';
    return wide;
}

char *wide_to_utf8(const wchar_t *text) {
    int len = WideCharToMultiByte(CP_UTF8, 0, text, -1, NULL, 0, NULL, NULL);
    char *utf8 = malloc((size_t)(len > 0 ? len : 1));
    if (len <= 0 || WideCharToMultiByte(CP_UTF8, 0, text, -1, utf8, len, NULL, NULL) != len) utf8[0] = '\0';
    return utf8;
}

wchar_t *long_path(const char *path) {
    int drive = ((path[0] | 0x20) >= 'a' && (path[0] | 0x20) <= 'z') && path[1] == ':' &&
                (path[2] == '\\' || path[2] == '/');
    size_t len = strlen(path);
    char *prefixed = malloc(len + 5);
    snprintf(prefixed, len + 5, "%s%s", drive ? "\\\\?\\" : "", path);
    if (drive)
        for (char *c = prefixed; *c; c++)
            if (*c == '/') *c = '\\';
    wchar_t *wide = utf8_to_wide(prefixed);
    free(prefixed);
    return wide;
}
