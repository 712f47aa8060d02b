#!/usr/bin/env bash
# Runs every test suite of the project, in order, and prints a summary:
#   rust    cargo test for the library and the simulator (through the C ABI, over loopback HTTP)
#   header  include/defender.h is what the build generates, and compiles as C and as C++
#   c       tests/c against the built library, under AddressSanitizer and UBSan
#   valgrind the same C tests under valgrind's memcheck (invalid accesses, definite leaks)
#   csharp  the C# binding (dotnet/Defender.Interop) and the module's assembly (powershell/src)
#           build for netstandard2.0 with the .NET SDK, and the binding's xunit tests
#           (tests/dotnet) pass against the library and the simulator
#   powershell  the Pester suites (tests/pester) of the DefenderPackage module, built by
#           powershell/build.sh, in pwsh 7
#
# Usage: tests/run-all.sh [suite...]   (default: all of them)
# Installs what a suite needs when it is missing. Exits non-zero when any suite fails.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
build="$root/target/test-build"
mkdir -p "$build"

all_suites=(rust header c valgrind csharp powershell)
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=("${all_suites[@]}")

say() { printf '\n==> %s\n' "$*"; }

# Every suite builds the whole workspace: one feature resolution, so no suite rebuilds another's
# dependencies.

suite_rust() {
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

suite_c() {
    cargo build --workspace --locked || return 1
    gcc -std=c11 -g -O1 -Wall -Wextra -Werror -fsanitize=address,undefined -fno-omit-frame-pointer \
        -Iinclude tests/c/defender_test.c tests/c/simulator.c \
        -L"$target/debug" -Wl,-rpath,"$target/debug" -ldefender -lpthread \
        -o "$build/defender_test" || return 1
    ASAN_OPTIONS=abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$build/defender_test" "$target/debug/defender-simulator"
}

suite_valgrind() {
    need valgrind valgrind || return 1
    cargo build --workspace --locked || return 1
    gcc -std=c11 -g -O1 -Wall -Wextra -Werror -Iinclude tests/c/defender_test.c tests/c/simulator.c \
        -L"$target/debug" -Wl,-rpath,"$target/debug" -ldefender -lpthread -o "$build/defender_test_plain" || return 1
    # The runtime's worker threads live until exit ("possibly lost"); only definite leaks fail.
    RUST_LOG=warn valgrind -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite "$build/defender_test_plain" "$target/debug/defender-simulator"
}

# Tools the csharp and powershell suites install when missing, outside the work tree.
tools=${XDG_CACHE_HOME:-$HOME/.cache}/defender-package/tools
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}

suite_csharp() {
    need_dotnet || return 1
    cargo build --workspace --locked || return 1
    # What the NuGet package ships, and the module's one assembly that compiles the binding in:
    # both netstandard2.0 (Windows PowerShell 5.1 on .NET Framework 4.7.2+, PowerShell 7, .NET 8+).
    dotnet build dotnet/Defender.Interop --nologo -v quiet || return 1
    dotnet build powershell/src --nologo -v quiet || return 1
    dotnet test tests/dotnet/Defender.Interop.Tests --nologo
}

suite_powershell() {
    need_dotnet && restore_test_tools || return 1
    cargo build --workspace --locked || return 1
    powershell/build.sh --no-cargo >/dev/null || return 1
    local pwsh
    pwsh=$(command -v pwsh) || pwsh="$tools/pwsh/pwsh"
    if [ ! -x "$pwsh" ]; then
        echo "pwsh is missing; installing PowerShell 7.6.9 as a .NET tool into $tools/pwsh"
        dotnet tool install PowerShell --version 7.6.9 --tool-path "$tools/pwsh" >/dev/null || return 1
    fi
    local pester="$tools/Modules/Pester/5.7.1"
    if [ ! -e "$pester/Pester.psd1" ]; then
        mkdir -p "$pester" && cp -R "$packages/pester/5.7.1/tools/." "$pester/" || return 1
    fi
    PSModulePath="$tools/Modules" NO_COLOR=1 "$pwsh" -NoProfile -NonInteractive -File tests/pester/Invoke-Tests.ps1
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
