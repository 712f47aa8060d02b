/* What platform_windows.c offers the Windows tests beyond platform.h: text conversions. */
#ifndef DEFENDER_TEST_PLATFORM_WINDOWS_H
#define DEFENDER_TEST_PLATFORM_WINDOWS_H

#include <wchar.h>

/* UTF-8 to UTF-16 and back (malloc'd), as the library converts paths. */
wchar_t *utf8_to_wide(const char *text);
char *wide_to_utf8(const wchar_t *text);
/* A UTF-8 path as the wide functions take it past MAX_PATH: an absolute drive path gets the
   \\?\ prefix (and backslashes), so that a test can create and read what the library wrote
   at any length. Other paths are only converted. */
wchar_t *long_path(const char *path);

#endif
