#!/usr/bin/env bash
# Runs every test suite of the project, in order, and prints a summary:
#   lint    cargo fmt --check and cargo clippy -D warnings over the whole workspace, every target,
#           and over the command line built without its simulator
#   rust    cargo test for the library and the simulator (through the C ABI, over loopback HTTP),
#           and the command line's tests built without its simulator (--no-default-features)
#   header  include/defender.h is what the build generates, and compiles as C and as C++
#   c       tests/c against the built library, under AddressSanitizer and UBSan
#   valgrind the same C tests under valgrind's memcheck (invalid accesses, definite leaks)
#   csharp  the C# binding (dotnet/Defender.Interop) and the module's assembly (powershell/src)
#           build for netstandard2.0 with the .NET SDK, and the binding's xunit tests
#           (tests/dotnet) pass against the library and the simulator
#   powershell  the Pester suites (tests/pester) of the DefenderPackage module, built by
#           powershell/build.sh, in pwsh 7
#   install packaging/pack.sh writes both packages; installed as users install them
#           (Install-PSResource from dist/ in a throwaway HOME, `dotnet add package` in a new
#           console program, `cargo install --path cli`), each downloads a package from the
#           simulator with the right SHA-256 (tests/install)
#   windows on Linux, the win-x64 build (packaging/windows.sh: defender.dll, defender-package.exe,
#           the simulator) checked (the DLL's exports against the header, its imports against
#           Windows' system DLLs, the workspace's lints for Windows) and run under Wine: the C tests
#           and tests/c/windows_test.c, a C# program published for win-x64 from the packed
#           Defender.Interop, and PowerShell 7.6.9 for win-x64 installing the packed module and
#           running the Pester tests that can run there (tests/windows); installs mingw-w64 and
#           Wine (and Debian's Rust for Windows when rustup lacks the target) when missing
#   soak    tests/soak.rs: 400 packages through the simulator's chaos mode in one process (all
#           intact; resident memory, heap and descriptors flat), then a batch of 40 packages in a
#           child process killed (SIGKILL) at 5 random instants, each rerun going on from what the
#           killed one left: nothing lost, no part left, no byte that was on disk fetched again
#           (about a minute; DEFENDER_SOAK_PACKAGES, DEFENDER_SOAK_KILLS, DEFENDER_SOAK_BATCH and
#           DEFENDER_SOAK_SEED for a longer run; Linux: it reads /proc and glibc's heap figures)
#   fuzz    every cargo-fuzz target (fuzz/: the parsers of what the service sends) for a few
#           seconds each from its committed corpus (DEFENDER_FUZZ_SECONDS, default 10); needs
#           the nightly toolchain, installs cargo-fuzz when missing
#
# The suites that run live response against the simulator (rust, c, valgrind, csharp, powershell,
# windows) need Azurite, the Azure Storage emulator: installed with npm when missing (npm itself
# must be there: the script says so when it is not), started on a free loopback port in memory,
# stopped at the end (ensure_azurite).
#
# On macOS and Windows (CI, .github/workflows/ci.yml) the suites that need Linux-only tools say
# so and pass without running: valgrind (Linux only), windows (Wine, on Linux only), c (gcc's
# sanitizers) and fuzz (cargo-fuzz) not on Windows.
#
# Usage: tests/run-all.sh [suite...]   (default: all of them)
# Installs what a suite needs when it is missing. Exits non-zero when any suite fails.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
build="$root/target/test-build"
mkdir -p "$build"

all_suites=(lint rust header c valgrind csharp powershell install windows soak fuzz)
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=("${all_suites[@]}")

say() { printf '\n==> %s\n' "$*"; }

# shellcheck source=packaging/pwsh.sh
. "$root/packaging/pwsh.sh"
os=$(uname -s)

# Every suite builds the whole workspace: one feature resolution, so no suite rebuilds another's
# dependencies.

suite_lint() {
    cargo fmt --all --check || { echo "run 'cargo fmt --all' and commit the result"; return 1; }
    cargo clippy --workspace --all-targets --locked -- -D warnings &&
        cargo clippy -p defender-cli --no-default-features --all-targets --locked -- -D warnings
}

suite_rust() {
    ensure_azurite || return 1
    # The build without the simulator first: the workspace build then leaves the default
    # target/debug/defender-package in place.
    cargo test -p defender-cli --no-default-features --locked &&
        cargo build --workspace --locked && cargo test --workspace --locked
}

suite_header() {
    cargo build --workspace --locked || return 1
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1 &&
        ! git -C "$root" diff --quiet -- include/defender.h; then
        echo "include/defender.h differs from what the build generates; commit the regenerated header:"
        git -C "$root" --no-pager diff --stat -- include/defender.h
        return 1
    fi
    gcc -std=c99 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c include/defender.h &&
        g++ -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c++ include/defender.h
}

# The C API tests (tests/c): these sources and the platform's (platform_posix.c or, in the
# windows suite, platform_windows.c).
c_tests=(tests/c/defender_test.c tests/c/harness.c tests/c/simulator.c)

suite_c() {
    case "$os" in MINGW* | MSYS* | CYGWIN*) echo "skipped: built with gcc's AddressSanitizer, which MinGW lacks (the windows suite runs these tests built for Windows, under Wine on Linux)"; return 0 ;; esac
    ensure_azurite || return 1
    cargo build --workspace --locked || return 1
    gcc -std=c11 -g -O1 -Wall -Wextra -Werror -fsanitize=address,undefined -fno-omit-frame-pointer \
        -Iinclude "${c_tests[@]}" tests/c/platform_posix.c \
        -L"$target/debug" -Wl,-rpath,"$target/debug" -ldefender -lpthread \
        -o "$build/defender_test" || return 1
    DYLD_LIBRARY_PATH="$target/debug" ASAN_OPTIONS=abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$build/defender_test" "$target/debug/defender-simulator"
}

suite_valgrind() {
    [ "$os" = Linux ] || { echo "skipped: valgrind runs on Linux only"; return 0; }
    need valgrind valgrind || return 1
    ensure_azurite || return 1
    cargo build --workspace --locked || return 1
    gcc -std=c11 -g -O1 -Wall -Wextra -Werror -Iinclude "${c_tests[@]}" tests/c/platform_posix.c \
        -L"$target/debug" -Wl,-rpath,"$target/debug" -ldefender -lpthread -o "$build/defender_test_plain" || return 1
    # The runtime's worker threads live until exit ("possibly lost"); only definite leaks fail.
    RUST_LOG=warn valgrind -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite "$build/defender_test_plain" "$target/debug/defender-simulator"
}

# Tools the csharp and powershell suites install when missing, outside the work tree.
tools=${XDG_CACHE_HOME:-$HOME/.cache}/defender-package/tools
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}

suite_csharp() {
    need_dotnet && ensure_azurite || return 1
    cargo build --workspace --locked || return 1
    # What the NuGet package ships, and the module's one assembly that compiles the binding in:
    # both netstandard2.0 (Windows PowerShell 5.1 on .NET Framework 4.7.2+, PowerShell 7, .NET 8+).
    dotnet build dotnet/Defender.Interop --nologo -v quiet || return 1
    dotnet build powershell/src --nologo -v quiet || return 1
    dotnet test tests/dotnet/Defender.Interop.Tests --nologo
}

suite_powershell() {
    need_pwsh_and_pester && ensure_azurite || return 1
    cargo build --workspace --locked || return 1
    powershell/build.sh --no-cargo >/dev/null || return 1
    PSModulePath="$tools/Modules" NO_COLOR=1 "$pwsh" -NoProfile -NonInteractive -File tests/pester/Invoke-Tests.ps1
}

suite_install() {
    need_pwsh_and_pester || return 1
    cargo build --workspace --locked || return 1 # the simulator the tests start
    local work="$build/install"
    rm -rf "$work" && mkdir -p "$work/home" || return 1
    write_foreign_natives "$work/natives" || return 1
    check_pack_refuses "$work/natives" || return 1
    local version
    version=$(cargo pkgid -p defender | sed 's/.*[#@]//')
    packaging/pack.sh --output "$work/dist" --natives-dir "$work/natives" || return 1
    check_cargo_install "$work" || return 1
    # A throwaway HOME: empty user module path, no PSResourceGet repository but the gallery's.
    local user_home=$HOME
    HOME="$work/home" DEFENDER_USER_HOME="$user_home" DEFENDER_DIST="$work/dist" DEFENDER_VERSION="$version" \
        DEFENDER_EXTRA_NATIVES="$work/natives" DEFENDER_PWSH="$pwsh" \
        DEFENDER_MODULE_FOLDER="$target/packaging/DefenderPackage" PSModulePath="$tools/Modules" NO_COLOR=1 \
        "$pwsh" -NoProfile -NonInteractive -File tests/pester/Invoke-Tests.ps1 -Path tests/install
}

# write_foreign_natives DIR: stand-ins for libraries of two other runtimes, DIR/<rid>/<library>:
# the headers of a Windows DLL and a macOS dylib, which is what pack.sh reads of them (this
# machine builds neither); the packages must carry them byte for byte. Never this machine's
# runtime, which pack.sh builds itself.
write_foreign_natives() {
    local win=win-arm64 win_machine='\x64\xaa' osx=osx-x64 osx_cpu='\x07'
    case "$os-$(uname -m)" in
        MINGW*-aarch64 | MINGW*-arm64 | MSYS*-aarch64 | MSYS*-arm64) win=win-x64 win_machine='\x64\x86' ;;
        Darwin-x86_64) osx=osx-arm64 osx_cpu='\x0c' ;;
    esac
    mkdir -p "$1/$win" "$1/$osx" || return 1
    # MZ, the PE header at 0x40: "PE\0\0", Machine, ..., Characteristics DLL|executable.
    { printf 'MZ' && head -c 58 /dev/zero && printf "\\x40\\0\\0\\0PE\\0\\0$win_machine" && head -c 16 /dev/zero &&
        printf '\x22\x20'; } >"$1/$win/defender.dll" || return 1
    # A 64-bit Mach-O: magic, CPU type, CPU subtype, file type dylib.
    printf "\\xcf\\xfa\\xed\\xfe$osx_cpu\\0\\0\\x01\\0\\0\\0\\0\\x06\\0\\0\\0" >"$1/$osx/libdefender.dylib"
}

# check_pack_refuses NATIVES: pack.sh refuses, before building anything, a library that is not
# the one of the runtime it is given for, saying why.
check_pack_refuses() {
    local natives=$1 refused=0 message
    refuses() { # REASON ARGUMENTS...
        local reason=$1
        shift
        if message=$(packaging/pack.sh --output "$build/install/refused" "$@" 2>&1); then
            echo "FAILED: pack.sh $* was accepted; it must refuse it ($reason)"
            refused=1
        elif [[ $message != *"$reason"* ]]; then
            echo "FAILED: pack.sh $* was refused with '$message', not for '$reason'"
            refused=1
        else
            echo "pack.sh refuses $*: $reason"
        fi
    }
    local dll dylib
    dll=$(ls "$natives"/win-*/defender.dll) dylib=$(ls "$natives"/osx-*/libdefender.dylib)
    refuses "must be named defender.dll" --native "win-x64=$dylib"
    refuses "must be named libdefender.so" --native "linux-arm64=$dll"
    refuses "is a library for $(basename "$(dirname "$dll")"), not one for win-x86" --native "win-x86=$dll"
    refuses "is a library for $(basename "$(dirname "$dylib")"), not one for osx-arm" --native "osx-arm=$dylib"
    refuses "not a runtime this package supports" --native "windows-x64=$dll"
    [ $refused -eq 0 ]
}

# check_cargo_install WORK: `cargo install --path cli` (as the README says) gives a
# defender-package that runs the whole job against its own simulator; the file it saved has the
# SHA-256 it printed.
check_cargo_install() {
    local work=$1 output path sha256
    # --debug and the workspace's target folder: the install reuses what the test build
    # compiled (the release build is the same code, and takes minutes more on 2 cores).
    CARGO_TARGET_DIR="$target" cargo install --locked --quiet --debug --path cli --root "$work/cargo" || return 1
    mkdir -p "$work/cases" || return 1
    output=$("$work/cargo/bin/defender-package" --output "$work/cases") || { echo "$output"; return 1; }
    echo "$output"
    path=$(sed -n 's/^path: *//p' <<<"$output")
    sha256=$(sed -n 's/^sha256: *//p' <<<"$output")
    [ -n "$sha256" ] && [ -f "$path" ] && [ "$(file_sha256 "$path")" = "$sha256" ] ||
        { echo "FAILED: the installed defender-package did not save a package with the SHA-256 it printed"; return 1; }
    echo "cargo install --path cli: defender-package $("$work/cargo/bin/defender-package" --version) saved a package with the SHA-256 it printed"
}

file_sha256() {
    { command -v sha256sum >/dev/null && sha256sum "$1" || shasum -a 256 "$1"; } | cut -d' ' -f1
}

# pwsh 7 (installed as a .NET tool when missing) and Pester 5.7.1 on a module path of its own.
need_pwsh_and_pester() {
    need_dotnet && restore_test_tools || return 1
    pwsh=$(find_pwsh) || return 1
    local pester="$tools/Modules/Pester/5.7.1"
    if [ ! -e "$pester/Pester.psd1" ]; then
        mkdir -p "$pester" && cp -R "$packages/pester/5.7.1/tools/." "$pester/" || return 1
    fi
}

suite_soak() {
    case "$os" in Linux) ;; *) echo "skipped: the soak reads /proc and glibc's heap figures (Linux only)"; return 0 ;; esac
    # Its tests are ignored by the rust suite's plain cargo test: they take a minute or two. Each
    # runs in a process of its own, so that the memory one measures is its own.
    local test
    for test in packages_through_chaos_all_arrive_intact_with_memory_and_descriptors_flat \
        a_batch_killed_again_and_again_finishes_with_nothing_lost_and_nothing_fetched_twice; do
        cargo test --locked --test soak -- --ignored --nocapture --exact "$test" 2>&1 |
            grep -E '^(SOAK|thread|assertion|  left|  right)|panicked|FAILED|test result' || return 1
    done
}

suite_fuzz() {
    case "$os" in MINGW* | MSYS* | CYGWIN*) echo "skipped: cargo-fuzz (libFuzzer, sanitizers) runs on Linux and macOS"; return 0 ;; esac
    need_cargo_fuzz || return 1
    local seconds=${DEFENDER_FUZZ_SECONDS:-10} target
    # Built with optimisations, debug assertions and overflow checks (cargo-fuzz's default), so an
    # overflow is a finding too. New inputs go to a scratch corpus (listed first, so libFuzzer
    # writes there), never into the committed one; a crash leaves its input in
    # fuzz/artifacts/<target>/ and fails the suite.
    cargo +nightly fuzz build || return 1
    for target in $(cargo +nightly fuzz list); do
        mkdir -p "$build/fuzz-corpus/$target"
        echo "fuzzing $target for ${seconds}s"
        if ! cargo +nightly fuzz run "$target" "$build/fuzz-corpus/$target" "fuzz/corpus/$target" -- \
            -max_total_time="$seconds" -max_len=65536 >"$build/fuzz-$target.log" 2>&1; then
            tail -n 40 "$build/fuzz-$target.log"
            echo "fuzz target $target failed; its input is in fuzz/artifacts/$target/"
            return 1
        fi
        grep -E '^Done' "$build/fuzz-$target.log"
    done
}

# cargo-fuzz and the nightly toolchain it runs on.
need_cargo_fuzz() {
    if ! cargo +nightly --version >/dev/null 2>&1; then
        echo "the nightly toolchain is missing; installing it with rustup"
        rustup toolchain install nightly --profile minimal >/dev/null || return 1
    fi
    command -v cargo-fuzz >/dev/null 2>&1 && return 0
    export PATH="$tools/cargo-fuzz/bin:$PATH"
    command -v cargo-fuzz >/dev/null 2>&1 && return 0
    echo "cargo-fuzz is missing; installing it into $tools/cargo-fuzz"
    cargo install cargo-fuzz --locked --root "$tools/cargo-fuzz" >/dev/null 2>&1 || cargo install cargo-fuzz --root "$tools/cargo-fuzz"
}

# Azurite, the Azure Storage emulator (npm package azurite, this version) where the simulator
# keeps live response results: installed with npm into $tools/azurite when missing, started once
# per run on a free loopback port with in-memory persistence, and stopped when the run ends. The
# tests find it through DEFENDER_AZURITE_BLOB_ENDPOINT (the simulator's --blob-endpoint).
azurite_version=3.37.0
azurite_pid=""

ensure_azurite() {
    [ -n "${DEFENDER_AZURITE_BLOB_ENDPOINT:-}" ] && return 0
    local home="$tools/azurite" installed=""
    local bin="$home/node_modules/.bin/azurite-blob"
    [ -f "$home/node_modules/azurite/package.json" ] &&
        installed=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$home/node_modules/azurite/package.json" | head -n 1)
    if [ ! -e "$bin" ] || [ "$installed" != "$azurite_version" ]; then
        if ! command -v npm >/dev/null 2>&1; then
            echo "npm is missing: the live response tests need Azurite $azurite_version (the Azure Storage emulator, npm package azurite), which this script installs with npm. Install Node.js 18+ and npm (Debian: apt-get install nodejs npm) and run again." >&2
            return 1
        fi
        echo "installing Azurite $azurite_version (npm package azurite) into $home"
        npm install --prefix "$home" --no-audit --no-fund --loglevel=error "azurite@$azurite_version" >/dev/null ||
            { echo "could not install Azurite with npm" >&2; return 1; }
    fi
    local log="$build/azurite.log" url="" waited=0
    "$bin" --blobHost 127.0.0.1 --blobPort 0 --inMemoryPersistence --extentMemoryLimit 2048 \
        --disableTelemetry --silent --skipApiVersionCheck >"$log" 2>&1 &
    azurite_pid=$!
    trap stop_azurite EXIT
    while [ -z "$url" ] && [ $waited -lt 600 ]; do
        kill -0 "$azurite_pid" 2>/dev/null || break
        url=$(sed -n 's/.*listens on \(http:[^ ]*\).*/\1/p' "$log" | head -n 1)
        [ -n "$url" ] || { sleep 0.1; waited=$((waited + 1)); }
    done
    [ -n "$url" ] || { echo "Azurite did not start:" >&2; cat "$log" >&2; stop_azurite; return 1; }
    export DEFENDER_AZURITE_BLOB_ENDPOINT="$url/devstoreaccount1"
    echo "Azurite $azurite_version listens on $url (in memory)"
}

stop_azurite() {
    [ -n "$azurite_pid" ] || return 0
    kill "$azurite_pid" 2>/dev/null
    wait "$azurite_pid" 2>/dev/null
    azurite_pid=""
    unset DEFENDER_AZURITE_BLOB_ENDPOINT
}

need_dotnet() {
    command -v dotnet >/dev/null 2>&1 && return 0
    echo "dotnet is missing: install the .NET SDK 10 (https://dot.net) and run again" >&2
    return 1
}

# Pester, into the NuGet package folder.
restore_test_tools() {
    [ -d "$packages/pester/5.7.1/tools" ] && return 0
    dotnet restore tests/dotnet/Tools/Tools.csproj --nologo
}

# need COMMAND PACKAGE: installs Debian's PACKAGE when COMMAND is missing (as root, or with sudo).
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "$1 is missing"
    install_package "$2"
}

install_package() {
    echo "installing the Debian package $1"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq "$1"; } >/dev/null ||
        { echo "could not install $1; install it and run again" >&2; return 1; }
}

# shellcheck source=packaging/windows.sh
. "$root/packaging/windows.sh"
# shellcheck source=tests/windows/suite.sh
. "$root/tests/windows/suite.sh"

failed=()
declare -A took
for suite in "${suites[@]}"; do
    if ! declare -F "suite_$suite" >/dev/null; then
        echo "unknown suite '$suite'; the suites are: ${all_suites[*]}" >&2
        exit 2
    fi
    say "$suite"
    started=$SECONDS
    "suite_$suite" || failed+=("$suite")
    took[$suite]=$((SECONDS - started))
done

say "summary"
for suite in "${suites[@]}"; do
    result=passed
    [[ " ${failed[*]} " == *" $suite "* ]] && result=FAILED
    printf '  %-8s %-7s %4ss\n' "$suite" "$result" "${took[$suite]}"
done
[ ${#failed[@]} -eq 0 ]
