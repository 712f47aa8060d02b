/*
 * A stand-in for Windows 10's bcryptprimitives.dll, for the windows suite's Wine prefix only
 * (tests/run-all.sh windows builds it and copies it into the prefix's system32; it is never
 * shipped). Rust's standard library imports ProcessPrng from it; Windows 8.1 and later have the
 * real DLL, Wine 8 does not. ProcessPrng fills the buffer from the system's generator and
 * always succeeds, as documented; BCryptGenRandom is that generator.
 */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
