/*
 * The C API where Windows differs from POSIX, against the simulator (defender-simulator.exe):
 * drive letters and backslashes, paths past MAX_PATH, non-ASCII names (UTF-8 in, UTF-16 on
 * disk), the no-replace rename (MoveFileExW), cancellation from another thread, one writer per
 * destination (LockFileEx), a download resumed after its process was ended with TerminateProcess,
 * the system proxy read from the registry with loopback bypassed, and TLS with the CA in the
 * Windows certificate store or in ca_file.
 *
 *   windows_test.exe <path to defender-simulator.exe> [test...]
 *
 * Built with mingw-w64 and run under Wine by tests/run-all.sh windows; it changes the current
 * user's proxy settings and the local machine's root store only for the duration of a test,
 * and puts back what was there. A new case is a function and a TEST() line in the table below.
 */
#define _GNU_SOURCE
#include <winsock2.h>
#include <windows.h>
#include <wincrypt.h>
#include <stdint.h>

#include "harness.h"
#include "platform_windows.h"

/* `folder` + `\` + `name`, malloc'd. */
static char *join(const char *folder, const char *name) {
    size_t len = strlen(folder) + strlen(name) + 2;
    char *path = malloc(len);
    snprintf(path, len, "%s\\%s", folder, name);
    return path;
}

/* Whether a file of that exact (UTF-16) name is in the folder, found by listing it. */
static int folder_lists(const char *folder, const wchar_t *name) {
    char *pattern = join(folder, "*");
    wchar_t *wide = long_path(pattern);
    free(pattern);
    WIN32_FIND_DATAW found;
    HANDLE find = FindFirstFileW(wide, &found);
    free(wide);
    int listed = 0;
    if (find == INVALID_HANDLE_VALUE) return 0;
    do listed |= wcscmp(found.cFileName, name) == 0;
    while (FindNextFileW(find, &found));
    FindClose(find);
    return listed;
}

/* Downloads `id` to `destination`, expects OK, the simulator's bytes at `expected_path`, and
   `expected_path` as the reported path. */
static void download_to(DefenderClient *client, const char *id, const char *destination, const char *expected_path) {
    char *result = NULL;
    EXPECT_STATUS(defender_download_package(client, id, destination, NULL, NULL, &result), DEFENDER_STATUS_OK);
    expect_package(expected_path, id, result);
    char *reported = result ? json_string(result, "path") : NULL;
    CHECK(reported && strcmp(reported, expected_path) == 0, "path '%s' reported, expected '%s'", reported,
          expected_path);
    free(reported);
    defender_string_free(result);
}

/* A folder given with its drive letter and backslashes (%TEMP%), with forward slashes, and a
   relative path from the current directory: the reported path is always absolute, backslashed. */
static void test_drive_letter_and_backslashes(void) {
    DefenderClient *client = new_client();
    char *folder = new_folder();
    CHECK(folder[1] == ':' && folder[2] == '\\', "%%TEMP%% is not a drive path: %s", folder);
    char *id = create_action("{\"package_size\": 100000}");
    char expected[MAX_PATH * 4];
    snprintf(expected, sizeof expected, "%s\\%s.zip", folder, id);
    download_to(client, id, folder, expected);

    char *slashed = join(folder, "slashed.zip");
    char *forward = strdup(slashed);
    for (char *c = forward; *c; c++)
        if (*c == '\\') *c = '/';
    download_to(client, id, forward, slashed);

    wchar_t previous[MAX_PATH * 2];
    GetCurrentDirectoryW(MAX_PATH * 2, previous);
    wchar_t *wide = utf8_to_wide(folder);
    CHECK(SetCurrentDirectoryW(wide), "cd %s", folder);
    char *relative = join(folder, "relative.zip");
    download_to(client, id, "relative.zip", relative);
    SetCurrentDirectoryW(previous);
    CHECK(entries(folder) == 3, "%d entries", entries(folder));
    free(wide);
    free(relative);
    free(forward);
    free(slashed);
    free(id);
    remove_folder(folder);
    defender_client_free(client);
}

/* A destination past MAX_PATH (260), given as users write paths, without \\?\: the package is
   written, renamed into place, found again as EXISTS, and replaced with overwrite. */
static void test_long_paths(void) {
    DefenderClient *client = new_client();
    char *base = new_folder();
    char deep[MAX_PATH * 4];
    snprintf(deep, sizeof deep, "%s", base);
    for (int level = 0; level < 3; level++) {
        size_t len = strlen(deep);
        snprintf(deep + len, sizeof deep - len, "\\%s-%d", "a-folder-name-of-a-length-that-adds-up-quickly-0123456789", level);
        CHECK(folder_make(deep) == 0, "mkdir %s", deep);
    }
    char *destination = join(deep, "an-investigation-package-with-a-long-name-as-a-case-number-might-give-it.zip");
    CHECK(strlen(destination) > 300, "%zu characters", strlen(destination));
    char *id = create_action("{\"package_size\": 100000}");
    download_to(client, id, destination, destination);
    CHECK(entries(deep) == 1, "%d entries", entries(deep));
    EXPECT_STATUS(defender_download_package(client, id, destination, NULL, NULL, NULL), DEFENDER_STATUS_EXISTS);
    EXPECT_STATUS(defender_client_set(client, "overwrite", "true"), DEFENDER_STATUS_OK);
    download_to(client, id, destination, destination);
    char expected[MAX_PATH * 4];
    snprintf(expected, sizeof expected, "%s\\%s.zip", deep, id);
    download_to(client, id, deep, expected);
    CHECK(entries(deep) == 2, "%d entries", entries(deep));
    free(id);
    free(destination);
    /* Deepest first. */
    for (int level = 2; level >= 0; level--) {
        folder_remove(strdup(deep));
        *strrchr(deep, '\\') = '\0';
    }
    remove_folder(base);
    defender_client_free(client);
}

/* UTF-8 names, as the header says paths are: a folder and a file with accents, CJK and an emoji
   (a surrogate pair in UTF-16) are written under exactly those names. */
static void test_non_ascii_names(void) {
    DefenderClient *client = new_client();
    char *base = new_folder();
    char *folder = join(base, "F\xc3\xa4lle \xe2\x80\x93 \xe4\xba\x8b\xe4\xbb\xb6 \xf0\x9f\x94\x8d");
    CHECK(folder_make(folder) == 0, "mkdir %s", folder);
    char *destination = join(folder, "paquete-\xc3\xb1-\xc3\xbc.zip");
    char *id = create_action("{\"package_size\": 50000}");
    download_to(client, id, destination, destination);
    CHECK(folder_lists(folder, L"paquete-\u00f1-\u00fc.zip"), "no file of that UTF-16 name");
    CHECK(entries(folder) == 1, "%d entries", entries(folder));
    char expected[MAX_PATH * 4];
    snprintf(expected, sizeof expected, "%s\\%s.zip", folder, id);
    download_to(client, id, folder, expected);
    CHECK(folder_lists(base, L"F\u00e4lle \u2013 \u4e8b\u4ef6 \U0001F50D"), "no folder of that UTF-16 name");
    free(id);
    free(destination);
    remove_folder(folder);
    remove_folder(base);
    defender_client_free(client);
}

typedef struct {
    const char *destination;
    int written;
} Appearing;

/* Writes a file at the destination while the download runs, as another program might. */
static int32_t write_destination_meanwhile(void *user_data, uint64_t done, uint64_t total) {
    Appearing *appearing = user_data;
    (void)total;
    if (!appearing->written && done > 0) {
        appearing->written = 1;
        CHECK(file_write(appearing->destination, "theirs") == 0, "write");
    }
    return 0;
}

/* A file that appears under the destination's name during the download is never replaced
   (MoveFileExW without MOVEFILE_REPLACE_EXISTING): EXISTS, their file intact, no .part left.
   With overwrite, it is replaced. */
static void test_no_replace_rename(void) {
    DefenderClient *client = new_client();
    char *folder = new_folder();
    char *destination = join(folder, "case.zip");
    char *id = create_action("{\"package_size\": 400000}");
    char rule[256];
    snprintf(rule, sizeof rule,
             "{\"endpoint\":\"download\",\"action_id\":\"%s\",\"times\":0,\"fault\":{\"kind\":\"slow_body\",\"bytes_per_sec\":2000000}}",
             id);
    add_fault(rule);
    Appearing appearing = {.destination = destination};
    EXPECT_STATUS(defender_download_package(client, id, destination, write_destination_meanwhile, &appearing, NULL),
                  DEFENDER_STATUS_EXISTS);
    size_t len = 0;
    char *data = read_file(destination, &len);
    CHECK(data && len == 6 && memcmp(data, "theirs", 6) == 0, "their file was changed");
    free(data);
    CHECK(entries(folder) == 1, "%d entries: a .part file was left", entries(folder));

    EXPECT_STATUS(defender_client_set(client, "overwrite", "true"), DEFENDER_STATUS_OK);
    Appearing again = {.destination = destination};
    char *result = NULL;
    EXPECT_STATUS(defender_download_package(client, id, destination, write_destination_meanwhile, &again, &result),
                  DEFENDER_STATUS_OK);
    expect_package(destination, id, result);
    CHECK(entries(folder) == 1, "%d entries", entries(folder));
    defender_string_free(result);
    free(id);
    free(destination);
    remove_folder(folder);
    defender_client_free(client);
}

typedef struct {
    DefenderClient *client;
    HANDLE started;
} Canceller;

static int32_t signal_started(void *user_data, uint64_t done, uint64_t total) {
    (void)total;
    if (done > 0) SetEvent(((Canceller *)user_data)->started);
    return 0;
}

static DWORD WINAPI cancel_when_started(void *argument) {
    Canceller *canceller = argument;
    if (WaitForSingleObject(canceller->started, 30000) == WAIT_OBJECT_0) defender_client_cancel(canceller->client);
    return 0;
}

/* defender_client_cancel from another thread stops a running download: CANCELLED, and the
   .part file (still open when the call is cancelled) is closed and removed. */
static void test_cancel_from_another_thread(void) {
    DefenderClient *client = new_client();
    char *folder = new_folder();
    char *id = create_action("{\"package_size\": 4000000}");
    char rule[256];
    snprintf(rule, sizeof rule,
             "{\"endpoint\":\"download\",\"action_id\":\"%s\",\"times\":1,\"fault\":{\"kind\":\"slow_body\",\"bytes_per_sec\":500000}}",
             id);
    add_fault(rule);
    Canceller canceller = {.client = client, .started = CreateEventW(NULL, TRUE, FALSE, NULL)};
    HANDLE thread = CreateThread(NULL, 0, cancel_when_started, &canceller, 0, NULL);
    DWORD started = GetTickCount();
    EXPECT_STATUS(defender_download_package(client, id, folder, signal_started, &canceller, NULL),
                  DEFENDER_STATUS_CANCELLED);
    CHECK(GetTickCount() - started < 6000, "cancelled after %lu ms: the 4 MB would take 8 s", GetTickCount() - started);
    WaitForSingleObject(thread, INFINITE);
    CloseHandle(thread);
    CloseHandle(canceller.started);
    /* The .part file is deleted when the call ends, but its name stays until the last handle to
       it is closed, on file systems without POSIX delete semantics (Wine's, FAT, Windows before
       10 1903): the writing thread closes its handle just after. */
    for (int waited = 0; waited < 50 && entries(folder) != 0; waited++) Sleep(100);
    CHECK(entries(folder) == 0, "%d entries left 5 s after cancel", entries(folder));
    char *result = NULL;
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, &result), DEFENDER_STATUS_OK);
    defender_string_free(result);
    free(id);
    remove_folder(folder);
    defender_client_free(client);
}

typedef struct {
    DefenderClient *client;
    const char *id;
    const char *folder;
    HANDLE started;
    DefenderStatus status;
} Downloader;

static DWORD WINAPI download_in_thread(void *argument) {
    Downloader *downloader = argument;
    char *result = NULL;
    Canceller signal = {.client = downloader->client, .started = downloader->started};
    downloader->status = defender_download_package(downloader->client, downloader->id, downloader->folder,
                                                   signal_started, &signal, &result);
    defender_string_free(result);
    return 0;
}

/* One writer per destination, through LockFileEx: while a download runs, a second call for the
   same file is TIMEOUT at once without wait_timeout_ms, and with it waits for the first, then
   finds the package there (EXISTS); nothing is left beside it. */
static void test_one_writer_per_destination(void) {
    char *folder = new_folder();
    char *id = create_action("{\"package_size\": 3000000}");
    char rule[256];
    snprintf(rule, sizeof rule,
             "{\"endpoint\":\"download\",\"action_id\":\"%s\",\"times\":1,\"fault\":{\"kind\":\"slow_body\",\"bytes_per_sec\":1000000}}",
             id);
    add_fault(rule);
    Downloader first = {.client = new_client(), .id = id, .folder = folder,
                        .started = CreateEventW(NULL, TRUE, FALSE, NULL)};
    HANDLE thread = CreateThread(NULL, 0, download_in_thread, &first, 0, NULL);
    CHECK(WaitForSingleObject(first.started, 30000) == WAIT_OBJECT_0, "the first download did not start");

    DefenderClient *second = new_client();
    EXPECT_STATUS(defender_download_package(second, id, folder, NULL, NULL, NULL), DEFENDER_STATUS_TIMEOUT);
    char *message = last_error();
    CHECK(message && strstr(message, "is being downloaded by"), "TIMEOUT says who holds it: %s", message);
    free(message);
    EXPECT_STATUS(defender_client_set(second, "wait_timeout_ms", "60000"), DEFENDER_STATUS_OK);
    EXPECT_STATUS(defender_download_package(second, id, folder, NULL, NULL, NULL), DEFENDER_STATUS_EXISTS);

    WaitForSingleObject(thread, INFINITE);
    CloseHandle(thread);
    CloseHandle(first.started);
    CHECK(first.status == DEFENDER_STATUS_OK, "the first download: %s", status_name(first.status));
    CHECK(entries(folder) == 1, "%d entries: only the package is left", entries(folder));
    defender_client_free(second);
    defender_client_free(first.client);
    free(id);
    remove_folder(folder);
}

/* This program's own path, for the child process of test_resume_after_terminate_process. */
static char this_program[MAX_PATH];

/* The child of test_resume_after_terminate_process: downloads `id` into `folder` from the
   simulator at `base_url`, slowly, until it is ended. */
static int child_download(const char *base_url, const char *id, const char *folder) {
    DefenderClient *client = new_client_for(base_url);
    DefenderStatus status = defender_download_package(client, id, folder, NULL, NULL, NULL);
    defender_client_free(client);
    return (int)status;
}

/* A download whose process is ended with TerminateProcess mid-body leaves its part file and
   record (.<name>.part, .<name>.part.json) and its lock file; the next call resumes from the
   bytes it left (resumed_from above 0), the package is whole, and nothing is left beside it. */
static void test_resume_after_terminate_process(void) {
    char *folder = new_folder();
    char *id = create_action("{\"package_size\": 4000000}");
    char rule[256];
    snprintf(rule, sizeof rule,
             "{\"endpoint\":\"download\",\"action_id\":\"%s\",\"times\":1,\"fault\":{\"kind\":\"slow_body\",\"bytes_per_sec\":500000}}",
             id);
    add_fault(rule);
    Process child;
    const char *argv[] = {this_program, "--child-download", sim.base_url, id, folder, NULL};
    CHECK(process_start(&child, argv) == 0, "starting %s", this_program);
    char part_name[128];
    snprintf(part_name, sizeof part_name, ".%s.zip.part", id);
    char *part = join(folder, part_name);
    wchar_t *wide = long_path(part);
    LONGLONG size = 0;
    for (int waited = 0; waited < 300 && size < 2 * 1024 * 1024; waited++) {
        WIN32_FILE_ATTRIBUTE_DATA data;
        if (GetFileAttributesExW(wide, GetFileExInfoStandard, &data))
            size = ((LONGLONG)data.nFileSizeHigh << 32) | data.nFileSizeLow;
        Sleep(100);
    }
    CHECK(size >= 2 * 1024 * 1024, "the child wrote %lld bytes of its part", size);
    process_stop(&child);
    CHECK(entries(folder) >= 2, "%d entries: the ended download left its part and record", entries(folder));

    DefenderClient *client = new_client();
    char *result = NULL;
    char destination_name[128];
    snprintf(destination_name, sizeof destination_name, "%s.zip", id);
    char *destination = join(folder, destination_name);
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, &result), DEFENDER_STATUS_OK);
    expect_package(destination, id, result);
    CHECK(result && strstr(result, "\"resumed_from\":0") == NULL && strstr(result, "\"resumed_from\":"),
          "resumed from the part: %s", result ? result : "(no result)");
    CHECK(entries(folder) == 1, "%d entries: only the package is left", entries(folder));
    defender_string_free(result);
    defender_client_free(client);
    free(destination);
    free(wide);
    free(part);
    free(id);
    remove_folder(folder);
}

/* The current user's proxy settings (Internet Options), as WinINet and the library read them. */
#define INTERNET_SETTINGS L"Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings"

typedef struct {
    int present;
    DWORD type, size;
    BYTE data[2048];
} SavedValue;

static void save_value(HKEY key, const wchar_t *name, SavedValue *saved) {
    saved->size = sizeof saved->data;
    saved->present = RegQueryValueExW(key, name, NULL, &saved->type, saved->data, &saved->size) == ERROR_SUCCESS;
}

static void restore_value(HKEY key, const wchar_t *name, const SavedValue *saved) {
    if (saved->present) RegSetValueExW(key, name, 0, saved->type, saved->data, saved->size);
    else RegDeleteValueW(key, name);
}

typedef struct {
    intptr_t listener;
    int connections;
    char first_request[512];
    volatile LONG stop;
} Proxy;

/* A proxy that refuses every request (403), recording the first request line it was sent. */
static DWORD WINAPI refusing_proxy(void *argument) {
    Proxy *proxy = argument;
    while (!proxy->stop) {
        intptr_t connection = tcp_accept(proxy->listener, 100);
        if (connection < 0) continue;
        char request[512] = {0};
        long n = tcp_receive(connection, request, sizeof request - 1);
        if (proxy->connections++ == 0 && n > 0) memcpy(proxy->first_request, request, sizeof request);
        const char *refusal = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        tcp_send_all(connection, refusal, strlen(refusal));
        tcp_close(connection);
    }
    return 0;
}

/* The proxy of Internet Options (HKCU\...\Internet Settings: ProxyEnable, ProxyServer) is used
   for the service's hosts, and never for loopback: the simulator is reached directly although
   the proxy refuses everything, and a call to a named host goes to the proxy as CONNECT. */
static void test_registry_proxy_bypassed_for_loopback(void) {
    static const char *variables[] = {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                      "all_proxy",   "NO_PROXY",    "no_proxy"};
    for (size_t i = 0; i < sizeof variables / sizeof variables[0]; i++) SetEnvironmentVariableA(variables[i], NULL);
    Proxy proxy = {0};
    int port = 0;
    proxy.listener = tcp_listen_loopback(&port);
    CHECK(proxy.listener >= 0, "proxy listener");
    HKEY key;
    CHECK(RegCreateKeyExW(HKEY_CURRENT_USER, INTERNET_SETTINGS, 0, NULL, 0, KEY_READ | KEY_WRITE, NULL, &key, NULL) ==
              ERROR_SUCCESS,
          "open Internet Settings");
    SavedValue enable, server, override;
    save_value(key, L"ProxyEnable", &enable);
    save_value(key, L"ProxyServer", &server);
    save_value(key, L"ProxyOverride", &override);
    DWORD on = 1;
    wchar_t address[64];
    swprintf(address, 64, L"127.0.0.1:%d", port);
    RegSetValueExW(key, L"ProxyEnable", 0, REG_DWORD, (const BYTE *)&on, sizeof on);
    RegSetValueExW(key, L"ProxyServer", 0, REG_SZ, (const BYTE *)address, (DWORD)((wcslen(address) + 1) * sizeof *address));
    RegDeleteValueW(key, L"ProxyOverride"); /* loopback is bypassed by the library's own rule */
    HANDLE thread = CreateThread(NULL, 0, refusing_proxy, &proxy, 0, NULL);

    DefenderClient *client = new_client();
    char *folder = new_folder();
    char *id = create_action("{\"package_size\": 20000}");
    char *result = NULL;
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, &result), DEFENDER_STATUS_OK);
    CHECK(proxy.connections == 0, "%d connections to the proxy for loopback", proxy.connections);
    defender_string_free(result);
    defender_client_free(client);

    DefenderClient *remote = new_client();
    defender_client_set(remote, "base_url", "https://api.defender.example");
    defender_client_set(remote, "authority_url", "https://login.defender.example");
    defender_client_set(remote, "clock_scale", "1000"); /* retries without the real pauses */
    char *uri = NULL;
    DefenderStatus status = defender_get_package_uri(remote, id, &uri);
    char *message = last_error();
    CHECK(status == DEFENDER_STATUS_NETWORK, "%s: %s", status_name(status), message);
    CHECK(!has_secret(message), "%s", message);
    CHECK(strncmp(proxy.first_request, "CONNECT login.defender.example:443 ", 35) == 0,
          "the proxy was sent '%.60s' (%d connections)", proxy.first_request, proxy.connections);
    free(message);
    defender_client_free(remote);

    InterlockedExchange(&proxy.stop, 1);
    WaitForSingleObject(thread, INFINITE);
    CloseHandle(thread);
    tcp_close(proxy.listener);
    restore_value(key, L"ProxyEnable", &enable);
    restore_value(key, L"ProxyServer", &server);
    restore_value(key, L"ProxyOverride", &override);
    RegCloseKey(key);
    free(id);
    remove_folder(folder);
}

/* The simulator again, over HTTPS (--tls) with a CA it makes at start; its control API is HTTPS
   too, so the actions are the ones it seeds. */
static const char *simulator_binary;
static Simulator tls_sim;
static char tls_actions[3][64];

static int start_tls_simulator(void) {
    if (tls_sim.port) return 0;
    const char *args[] = {"--tls", "--rate-limit", "off", "--seed-actions", "3", "--package-size", "64KiB", NULL};
    if (sim_start(&tls_sim, simulator_binary, args) != 0 || !tls_sim.ca_file[0]) return -1;
    const char *at = strstr(tls_sim.ready_line, "\"seeded_action_ids\":[");
    if (at) at += strlen("\"seeded_action_ids\":[") - 1;
    for (int i = 0; i < 3 && at && (at = strchr(at + 1, '"')); i++) {
        const char *end = strchr(++at, '"');
        if (!end || end - at >= 64) return -1;
        memcpy(tls_actions[i], at, (size_t)(end - at));
        at = end;
    }
    return tls_actions[2][0] ? 0 : -1;
}

static DefenderClient *new_tls_client(void) {
    DefenderClient *client = new_client();
    defender_client_set(client, "base_url", tls_sim.base_url);
    defender_client_set(client, "authority_url", tls_sim.base_url);
    return client;
}

/* Downloads a seeded action over HTTPS; the package is checked by its size, signature and the
   SHA-256 reported. */
static void expect_tls_download(DefenderClient *client, const char *id) {
    char *folder = new_folder(), *result = NULL;
    EXPECT_STATUS(defender_download_package(client, id, folder, NULL, NULL, &result), DEFENDER_STATUS_OK);
    char path[MAX_PATH * 4];
    snprintf(path, sizeof path, "%s\\%s.zip", folder, id);
    size_t len = 0;
    char *data = read_file(path, &len);
    char digest[65] = {0}, *reported = result ? json_string(result, "sha256") : NULL;
    CHECK(data && len == 65536 && memcmp(data, "PK\x03\x04", 4) == 0, "%s: %zu bytes", path, len);
    CHECK(file_sha256(path, digest) == 0 && reported && strcmp(reported, digest) == 0, "sha256 %s, %s on disk",
          reported, digest);
    free(reported);
    free(data);
    defender_string_free(result);
    remove_folder(folder);
}

/* The simulator's CA (PEM) as DER, for the certificate store. */
static BYTE *ca_der(DWORD *len) {
    size_t pem_len = 0;
    char *pem = read_file(tls_sim.ca_file, &pem_len);
    *len = 0;
    if (!pem) return NULL;
    CryptStringToBinaryA(pem, 0, CRYPT_STRING_BASE64HEADER, NULL, len, NULL, NULL);
    BYTE *der = malloc(*len ? *len : 1);
    if (!CryptStringToBinaryA(pem, 0, CRYPT_STRING_BASE64HEADER, der, len, NULL, NULL)) *len = 0;
    free(pem);
    return der;
}

/* Whether this runs under Wine rather than Windows (its ntdll exports wine_get_version). */
static int under_wine(void) {
    return GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "wine_get_version") != NULL;
}

/* CERT_E_REVOCATION_FAILURE as Rust prints an HRESULT ("os error -2146762482"). */
#define REVOCATION_FAILURE "-2146762482"

/* With the simulator's CA in the local machine's root store (and no ca_file), the library
   trusts it as Windows does. Under Wine it stops short: Wine 8's SSL chain policy reports
   CERT_E_REVOCATION_FAILURE for the simulator's certificate (which names no revocation list),
   where Windows honours the verifier's CERT_CHAIN_POLICY_IGNORE_ALL_REV_UNKNOWN_FLAGS; that error,
   instead of "unknown issuer", still shows that the root was found in the store. In a process of
   its own: Wine's chain engine reads the root store once, when a process first builds a chain
   (Windows notices changes), so the CA is added before any. */
static void test_tls_with_the_ca_in_the_windows_store(void) {
    CHECK(start_tls_simulator() == 0, "the simulator did not start with --tls");
    if (!tls_sim.port) return;
    DWORD len = 0;
    BYTE *der = ca_der(&len);
    CHECK(len > 0, "could not read %s", tls_sim.ca_file);
    HCERTSTORE root = CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, 0, CERT_SYSTEM_STORE_LOCAL_MACHINE, L"ROOT");
    PCCERT_CONTEXT added = NULL;
    CHECK(root && CertAddEncodedCertificateToStore(root, X509_ASN_ENCODING, der, len, CERT_STORE_ADD_NEW, &added),
          "adding the CA to LocalMachine\\Root: error %lu", GetLastError());
    /* Windows writes a system store through at once; Wine when asked (or at close). */
    CHECK(root && CertControlStore(root, 0, CERT_STORE_CTRL_COMMIT, NULL), "commit: error %lu", GetLastError());
    DefenderClient *client = new_tls_client();
    if (!under_wine()) {
        expect_tls_download(client, tls_actions[0]);
    } else {
        char *uri = NULL;
        DefenderStatus status = defender_get_package_uri(client, tls_actions[0], &uri);
        char *message = last_error();
        CHECK(status == DEFENDER_STATUS_NETWORK && strstr(message, REVOCATION_FAILURE),
              "under Wine, a CA in the store is found and the revocation check fails: %s: %s", status_name(status),
              message);
        printf("        note: under Wine the CA in LocalMachine\\Root was found (the error is\n"
               "        CERT_E_REVOCATION_FAILURE, not unknown issuer), but Wine's SSL policy does not\n"
               "        ignore an unknown revocation status as Windows does: a download trusting the\n"
               "        Windows store is proven on Windows only\n");
        defender_string_free(uri);
        free(message);
    }
    defender_client_free(client);
    if (added) CHECK(CertDeleteCertificateFromStore(added), "removing the CA: error %lu", GetLastError());
    if (root) CertCloseStore(root, 0);
    free(der);
}

/* ca_file (a PEM path with backslashes and a non-ASCII name) makes the simulator's CA trusted
   for that client alone: WebPKI over ca_file after the system's verifier refused it. A client
   without it is refused: an unknown issuer, not retried. */
static void test_tls_with_ca_file(void) {
    CHECK(start_tls_simulator() == 0, "the simulator did not start with --tls");
    if (!tls_sim.port) return;
    char *folder = new_folder();
    char *pem_path = join(folder, "Autorit\xc3\xa9 de test.pem");
    size_t len = 0;
    char *pem = read_file(tls_sim.ca_file, &len);
    CHECK(pem && file_write(pem_path, pem) == 0, "copying %s", tls_sim.ca_file);
    free(pem);
    DefenderClient *client = new_tls_client();
    EXPECT_STATUS(defender_client_set(client, "ca_file", pem_path), DEFENDER_STATUS_OK);
    expect_tls_download(client, tls_actions[1]);
    /* Another client, without ca_file: the CA is in no store, an unknown issuer. */
    DefenderClient *other = new_tls_client();
    char *uri = NULL;
    DefenderStatus status = defender_get_package_uri(other, tls_actions[1], &uri);
    char *message = last_error();
    CHECK(status == DEFENDER_STATUS_NETWORK && strstr(message, "unknown issuer"), "without ca_file: %s: %s",
          status_name(status), message);
    free(message);
    defender_client_free(other);
    defender_client_free(client);
    free(pem_path);
    remove_folder(folder);
}

static const TestCase tests[] = {
    TEST(test_drive_letter_and_backslashes),
    TEST(test_long_paths),
    TEST(test_non_ascii_names),
    TEST(test_no_replace_rename),
    TEST(test_cancel_from_another_thread),
    TEST(test_one_writer_per_destination),
    TEST(test_resume_after_terminate_process),
    TEST(test_registry_proxy_bypassed_for_loopback),
    TEST(test_tls_with_ca_file),
    TEST_ALONE(test_tls_with_the_ca_in_the_windows_store),
};

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--child-download") == 0) return child_download(argv[2], argv[3], argv[4]);
    GetModuleFileNameA(NULL, this_program, sizeof this_program);
    simulator_binary = argc > 1 ? argv[1] : NULL;
    const char *args[] = {"--rate-limit", "off", NULL};
    int status = run_tests(argc, argv, args, tests, sizeof tests / sizeof tests[0]);
    if (tls_sim.port) sim_stop(&tls_sim);
    return status;
}
