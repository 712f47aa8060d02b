# Sourced by tests/run-all.sh: the windows suite. On Linux, it builds for Windows with mingw-w64
# and runs under Wine (a prefix of its own, target/wine):
#   - the win-x64 build of packaging/windows.sh (defender.dll, defender-package.exe and
#     defender-simulator.exe, release, one cargo invocation); the DLL exports exactly the
#     header's functions and imports only Windows system DLLs; the workspace checks for Windows,
#     every target, without a warning
#   - the C API tests (tests/c/defender_test.c, the same as the c suite's) and the Windows cases
#     (tests/c/windows_test.c), built with mingw-w64, against the simulator for Windows
#   - packaging/pack.sh, whose packages then carry this build's defender.dll as win-x64
#   - a C# program published for win-x64 from the Defender.Interop package (tests/windows/
#     InteropConsole), downloading a package with no path to the native library set
#   - PowerShell 7.6.9 for win-x64 (tests/windows/PwshHost) installing DefenderPackage from the
#     package and running the module's Pester tests that can run there
# What Wine cannot prove is said in the output and in the README.

wine_prefix="$root/target/wine"
windows_work="$build/windows"
# The system DLLs defender.dll may import: Windows 10's own (the API sets are parts of them).
windows_system_dlls="advapi32.dll bcrypt.dll bcryptprimitives.dll crypt32.dll kernel32.dll ktmw32.dll msvcrt.dll
    ntdll.dll oleaut32.dll userenv.dll ws2_32.dll api-ms-win-core-synch-l1-2-0.dll api-ms-win-core-winrt-error-l1-1-0.dll"
# The Pester suites run under Wine; the suite prints why the others are not.
windows_pester=(Module.Tests.ps1 Commands.Tests.ps1 Fleet.Tests.ps1 Hostile.Tests.ps1 ConstrainedLanguage.Tests.ps1
    Pipeline.Tests.ps1 Connections.Tests.ps1 Selection.Tests.ps1 Views.Tests.ps1 Runbook.Tests.ps1)
windows_pester_not_run="Connect.Tests.ps1, and the tests tagged CngCertificates (Connections.Tests.ps1's -Certificate): they \
make RSA keys and certificates with .NET, whose CNG calls Wine 8's bcrypt refuses (CryptographicException 0xc1000002)"

suite_windows() {
    [ "$os" = Linux ] || {
        echo "skipped: the windows suite runs Windows builds under Wine on Linux; on Windows the other suites run natively"
        return 0
    }
    need_windows_tools && need_pwsh_and_pester || return 1
    local step=$SECONDS output version
    windows_build "$root" "$target/windows" || return 1
    output=$(windows_output "$target/windows")
    windows_step "built defender.dll, defender-package.exe and defender-simulator.exe for win-x64" || return 1
    check_windows_dll "$output/defender.dll" || return 1
    check_windows_lints || return 1
    windows_step "checked for Windows" || return 1
    build_windows_tests "$output" || return 1
    version=$(cargo pkgid -p defender | sed 's/.*[#@]//')
    # pack.sh's win-x64 build is this one, already done: it ships the DLL tested here.
    rm -rf "$windows_work/dist" && packaging/pack.sh --output "$windows_work/dist" >"$windows_work/pack.log" 2>&1 ||
        { tail -n 40 "$windows_work/pack.log"; return 1; }
    check_packed_windows_dll "$output/defender.dll" || return 1
    publish_windows_programs "$version" || return 1
    windows_step "built the tests, packed and published" || return 1
    # The live response C tests need Azurite: the Windows simulator under Wine reaches it on
    # loopback. Without it (no npm), they say so and skip under Wine.
    ensure_azurite || echo "windows: no Azurite; the live response C tests skip under Wine"
    # Wine's server outlives the programs: stopped at the end, whatever happens.
    (
        trap stop_wine EXIT
        start_wine || exit 1
        windows_step "Wine prefix ready" || exit 1
        run_c_tests_under_wine && run_pester_under_wine "$version"
    )
}

# windows_step WHAT: says WHAT and the seconds since the last step.
windows_step() {
    echo "windows: $1 ($((SECONDS - step)) s)"
    step=$SECONDS
}

# What the suite needs, installed from Debian's packages when missing: mingw-w64, Wine, and when
# rustup has no Windows standard library, Debian's Rust with its std source.
need_windows_tools() {
    need x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64 || return 1
    wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
    [ -x "$wine" ] || { install_package wine64 || return 1; wine=$(command -v wine64 || echo /usr/lib/wine/wine64); }
    wineserver=$(command -v wineserver || echo /usr/lib/wine/wineserver)
    need script bsdutils && need unzip unzip || return 1
    windows_toolchain && return 0
    rustup target add "$windows_target" >/dev/null 2>&1 && windows_toolchain && return 0
    local package
    for package in rustc-web cargo-web rust-web-src; do install_package "$package" || return 1; done
    windows_toolchain
}

# check_windows_dll DLL: it exports exactly the functions the header declares, and imports only
# the system DLLs above.
check_windows_dll() {
    local dll=$1 dump exported declared imported unexpected
    dump=$(x86_64-w64-mingw32-objdump -p "$dll") || return 1
    exported=$(sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/s/^\s*\[ *[0-9]*\] //p' <<<"$dump" | sort)
    declared=$(grep -vE '^\s*(\*|/\*)' include/defender.h | grep -oE '\bdefender_[a-z0-9_]+\(' | tr -d '(' | sort -u)
    if [ "$exported" != "$declared" ]; then
        echo "FAILED: defender.dll's exports differ from include/defender.h's functions:"
        diff <(echo "$declared") <(echo "$exported") | sed -n 's/^</  declared, not exported:/p; s/^>/  exported, not declared:/p'
        return 1
    fi
    imported=$(sed -n 's/^\s*DLL Name: //p' <<<"$dump" | tr 'A-Z' 'a-z' | sort -u)
    unexpected=$(comm -23 <(echo "$imported") <(tr -s ' \n' '\n' <<<"$windows_system_dlls" | sed '/^$/d' | sort -u))
    if [ -n "$unexpected" ]; then
        echo "FAILED: defender.dll imports DLLs that are not Windows system DLLs: $unexpected"
        return 1
    fi
    echo "defender.dll exports the header's $(wc -l <<<"$declared") functions and imports only system DLLs: $(echo $imported)"
}

# check_windows_lints: rustc's lints for Windows over every target of the workspace (there is no
# clippy for Debian's toolchain): code that only Windows compiles (cfg(windows)) warns nowhere
# else. Any warning fails.
check_windows_lints() {
    local log="$windows_work/check.log"
    mkdir -p "$windows_work"
    CARGO_TARGET_DIR="$target/windows" cargo check --workspace --all-targets --locked --target "$windows_target" \
        --message-format short >"$log" 2>&1 || { cat "$log"; return 1; }
    # Short messages: "file:line:column: warning: ...", and cargo's own "warning: ..." lines.
    if grep -E '(^|: )(warning|error)(\[[A-Za-z0-9_]+\])?:' "$log"; then
        echo "FAILED: the workspace has warnings for Windows (above; the whole output in $log)"
        return 1
    fi
    echo "cargo check --workspace --all-targets --target $windows_target: no warning"
}

# build_windows_tests OUTPUT: the C test programs, the stand-in bcryptprimitives.dll, and beside
# them the DLL and the simulator of the build in OUTPUT.
build_windows_tests() {
    local output=$1 program
    mkdir -p "$windows_work" && cp "$output/defender.dll" "$output/defender-simulator.exe" "$windows_work/" || return 1
    for program in defender_test windows_test; do
        x86_64-w64-mingw32-gcc -std=c11 -O1 -Wall -Wextra -Werror -Iinclude "tests/c/$program.c" tests/c/harness.c \
            tests/c/simulator.c tests/c/platform_windows.c "$output/defender.dll" -lws2_32 -lbcrypt -lcrypt32 \
            -static -lpthread -o "$windows_work/$program.exe" || return 1
    done
    x86_64-w64-mingw32-gcc -O2 -Wall -Wextra -Werror -shared tests/windows/bcryptprimitives.c -lbcrypt \
        -o "$windows_work/bcryptprimitives.dll"
}

# check_packed_windows_dll DLL: both packages carry DLL, byte for byte, as win-x64.
check_packed_windows_dll() {
    local dll=$1 package entry
    for package in "$windows_work"/dist/*.nupkg; do
        entry=$(unzip -p "$package" runtimes/win-x64/native/defender.dll | sha256sum | cut -d' ' -f1)
        [ "$entry" = "$(file_sha256 "$dll")" ] ||
            { echo "FAILED: $(basename "$package") does not carry the defender.dll built and tested here as win-x64"; return 1; }
    done
    echo "both packages carry this defender.dll as runtimes/win-x64/native/defender.dll"
}

# publish_windows_programs VERSION: the C# program from the packed Defender.Interop, and
# PowerShell 7.6.9 for win-x64 with PowerShell's own modules (PSResourceGet among them) from the
# win folder of the PowerShell .NET tool package, as an installed pwsh.exe has them.
publish_windows_programs() {
    local version=$1 tool
    # The package folder may hold an older Defender.Interop of the same version.
    rm -rf "$packages/defender.interop/$version"
    dotnet publish tests/windows/InteropConsole --nologo -v quiet -c Release -o "$windows_work/csharp" \
        -p:DefenderDist="$windows_work/dist" -p:DefenderVersion="$version" >"$windows_work/csharp-publish.log" 2>&1 ||
        { cat "$windows_work/csharp-publish.log"; return 1; }
    dotnet publish tests/windows/PwshHost --nologo -v quiet -c Release -o "$windows_work/pwsh" \
        >"$windows_work/pwsh-publish.log" 2>&1 || { cat "$windows_work/pwsh-publish.log"; return 1; }
    pwsh=$(find_pwsh) || return 1
    tool=$(find "$(dirname "$pwsh")/.store/powershell" -path '*/tools/*/any/win' -type d | head -n 1)
    [ -d "$tool/Modules" ] || { echo "PowerShell's Windows modules were not found beside $pwsh"; return 1; }
    rm -rf "$windows_work/pwsh/Modules" && cp -R "$tool/Modules" "$windows_work/pwsh/Modules"
}

# wine_run NAME PROGRAM [ARGUMENT...]: runs a Windows program under Wine, its output to
# $windows_work/NAME.out and .err (never a pipe: Wine's server would hold it open), then shows it.
wine_run() {
    local name=$1 status
    shift
    env -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY -u NO_PROXY -u http_proxy -u https_proxy -u all_proxy -u no_proxy \
        WINEPREFIX="$wine_prefix" WINEDEBUG=-all RUST_LOG=warn "$wine" "$@" \
        >"$windows_work/$name.out" 2>"$windows_work/$name.err"
    status=$?
    cat "$windows_work/$name.out"
    [ $status -eq 0 ] || { echo "--- its messages ($windows_work/$name.err):"; tail -n 40 "$windows_work/$name.err"; }
    return $status
}

# start_wine: the prefix (made once, Windows 10), with the stand-in bcryptprimitives.dll.
start_wine() {
    if [ ! -f "$wine_prefix/system.reg" ]; then
        echo "creating the Wine prefix $wine_prefix"
        wine_run wineboot wineboot -i && wine_run winecfg winecfg -v win10 || return 1
    fi
    # What earlier runs left in the prefix's temporary folder (the tests' folders and packages).
    rm -rf "$wine_prefix"/drive_c/users/*/Temp/defender-*
    # Windows 10 has bcryptprimitives.dll (ProcessPrng, which Rust's std imports); Wine 8 does
    # not. The stand-in is for this prefix only, never shipped.
    cp "$windows_work/bcryptprimitives.dll" "$wine_prefix/drive_c/windows/system32/"
}

stop_wine() {
    WINEPREFIX="$wine_prefix" "$wineserver" -k 2>/dev/null
    return 0
}

run_c_tests_under_wine() {
    echo "C API tests (tests/c/defender_test.c) under Wine:"
    wine_run defender_test "$windows_work/defender_test.exe" "$windows_work/defender-simulator.exe" || return 1
    windows_step "C API tests under Wine" || return 1
    echo "Windows cases (tests/c/windows_test.c) under Wine:"
    wine_run windows_test "$windows_work/windows_test.exe" "$windows_work/defender-simulator.exe" || return 1
    windows_step "Windows cases under Wine"
}

# run_pester_under_wine VERSION: PowerShell for win-x64 installs the module from the package
# and runs the Pester tests that can run under Wine, with the C# program's (Interop.Tests.ps1).
# The console host needs a terminal under Wine: script(1) gives it one, its output to a file.
run_pester_under_wine() {
    local version=$1 command path paths=()
    echo "PowerShell 7.6.9 for win-x64 under $("$wine" --version 2>/dev/null): Pester ${windows_pester[*]} and tests/windows/Interop.Tests.ps1"
    echo "not run under Wine: $windows_pester_not_run"
    for path in "${windows_pester[@]}"; do paths+=("Z:$root/tests/pester/$path"); done
    paths+=("Z:$root/tests/windows/Interop.Tests.ps1")
    # .NET's W^X double mapping of JIT code crashes the runtime under Wine 8 (Internal CLR error
    # 0x80131506 in a finalizer): off, as DOTNET_EnableWriteXorExecute=0 allows.
    printf -v command '%q ' env WINEPREFIX="$wine_prefix" WINEDEBUG=-all RUST_LOG=warn NO_COLOR=1 DOTNET_EnableWriteXorExecute=0 \
        PSModulePath="Z:$tools/Modules" DEFENDER_TEST_CSHARP="Z:$windows_work/csharp/InteropConsole.exe" \
        "$wine" "$windows_work/pwsh/pwsh.exe" -NoProfile -NonInteractive -ExecutionPolicy Bypass \
        -File "Z:$root/tests/windows/Pester.ps1" -Dist "Z:$windows_work/dist" -Version "$version" \
        -Simulator "Z:$windows_work/defender-simulator.exe" -TestPath "$(IFS=,; echo "${paths[*]}")"
    script -qec "stty cols 200 2>/dev/null; $command" /dev/null >"$windows_work/pester.out" 2>&1
    local status=$?
    tr -d '\r' <"$windows_work/pester.out" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1b\][^\x07]*\x07//g'
    windows_step "PowerShell under Wine"
    return $status
}
