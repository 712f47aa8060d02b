#!/usr/bin/env bash
# Builds the release packages of defender-package into dist/:
#
#   dist/DefenderPackage.<version>.nupkg   the PowerShell module as a gallery serves it (made by
#                                           PSResourceGet's Compress-PSResource): manifest,
#                                           DefenderPackage.dll, help, formats, and
#                                           runtimes/<rid>/native/<library> for every runtime
#   dist/Defender.Interop.<version>.nupkg  the C# binding for .NET programs (`dotnet add package
#                                           Defender.Interop`): lib/netstandard2.0/Defender.Interop.dll
#                                           and runtimes/<rid>/native/<library>
#
# <version> is the crate's (Cargo.toml's [workspace.package] version), the same in the module
# manifest, both packages and the library's defender_version().
#
# The library for this machine's runtime (e.g. linux-x64) is built here with
# `cargo build --release -p defender` and always included. So is win-x64's defender.dll when this
# machine has the toolchain for it (mingw-w64 and the target's Rust standard library, see
# packaging/windows.sh) and it is not given: the same build the windows suite of
# tests/run-all.sh tests. Libraries built elsewhere for other runtimes are added with:
#   --native RID=FILE    e.g. --native win-x64=artifacts/defender.dll (repeatable)
#   --natives-dir DIR    every DIR/<rid>/<library>, e.g. DIR/osx-arm64/libdefender.dylib
# Each is checked: a known runtime (win-, osx-, linux-, linux-musl- x64, x86, arm64, arm), the
# library's file name on that OS (defender.dll, libdefender.dylib, libdefender.so), and a shared
# library of that OS and architecture (its PE, Mach-O or ELF header). A runtime given twice is
# refused.
#
# Usage: packaging/pack.sh [--output DIR] [--native RID=FILE]... [--natives-dir DIR]
#   --output DIR  where the packages go (default: dist/ in the repository); other files in it stay
#
# Needs cargo, the .NET SDK (8 or later) and PowerShell 7.4+ (pwsh; installed as a .NET tool
# when missing). Runs on Linux and macOS (the release workflow runs it on Linux). Prints the
# packages' paths on its last two lines.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
stage=$target/packaging
output=$root/dist
given=() # RID=FILE, in the order given

usage_error() {
    echo "pack.sh: $*; see packaging/pack.sh --help" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --output)
            [ $# -ge 2 ] || usage_error "--output needs a folder"
            output=$2
            shift
            ;;
        --native)
            [ $# -ge 2 ] || usage_error "--native needs RID=FILE"
            [[ $2 == ?*=?* ]] || usage_error "--native takes RID=FILE (e.g. win-x64=defender.dll), not '$2'"
            given+=("$2")
            shift
            ;;
        --natives-dir)
            [ $# -ge 2 ] || usage_error "--natives-dir needs a folder"
            [ -d "$2" ] || usage_error "--natives-dir '$2' is not a folder"
            for folder in "$2"/*/; do
                [ -d "$folder" ] || continue
                rid=$(basename "$folder")
                files=("$folder"*)
                [ ${#files[@]} -eq 1 ] && [ -f "${files[0]}" ] ||
                    usage_error "--natives-dir: '$folder' must hold exactly one file, the library for $rid"
                given+=("$rid=${files[0]}")
            done
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) usage_error "unknown argument '$1'" ;;
    esac
    shift
done

# library_name RID: the native library's file name on that runtime's OS.
library_name() {
    case "$1" in
        win-*) echo defender.dll ;;
        osx-*) echo libdefender.dylib ;;
        linux-*) echo libdefender.so ;;
    esac
}

# bytes FILE OFFSET COUNT: those bytes of FILE as lowercase hex, in file order.
bytes() {
    od -An -v -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'
}

# little_endian HEX: a little-endian number's hex digits, most significant first.
little_endian() {
    local hex=$1 swapped=""
    while [ -n "$hex" ]; do
        swapped=${hex:0:2}$swapped
        hex=${hex:2}
    done
    echo "$swapped"
}

# binary_kind FILE: "<os>-<arch>" of a shared library (win, osx, linux; x64, x86, arm64, arm,
# or osx-universal), or a sentence saying what it is instead.
binary_kind() {
    local file=$1 magic machine
    magic=$(bytes "$file" 0 4)
    case "$magic" in
        7f454c46) # ELF: e_type (3: shared object) at 16, e_machine at 18
            [ "$(little_endian "$(bytes "$file" 16 2)")" = 0003 ] || { echo "an ELF file that is not a shared library"; return; }
            machine=$(little_endian "$(bytes "$file" 18 2)")
            case "$machine" in
                003e) echo linux-x64 ;; 00b7) echo linux-arm64 ;; 0003) echo linux-x86 ;; 0028) echo linux-arm ;;
                *) echo "an ELF shared library for machine 0x$machine" ;;
            esac
            ;;
        cffaedfe) # 64-bit Mach-O: cputype at 4, filetype (6: dylib) at 12
            [ "$(little_endian "$(bytes "$file" 12 4)")" = 00000006 ] || { echo "a Mach-O file that is not a dylib"; return; }
            machine=$(little_endian "$(bytes "$file" 4 4)")
            case "$machine" in
                01000007) echo osx-x64 ;; 0100000c) echo osx-arm64 ;;
                *) echo "a Mach-O dylib for CPU type 0x$machine" ;;
            esac
            ;;
        cafebabe) echo osx-universal ;; # a fat Mach-O: one file for several architectures
        4d5a*) # PE: "MZ", the PE header's offset at 0x3c; there "PE\0\0", Machine, ..., Characteristics
            local pe
            pe=$((16#$(little_endian "$(bytes "$file" 60 4)")))
            [ "$(bytes "$file" "$pe" 4)" = 50450000 ] || { echo "an MZ file without a PE header"; return; }
            (((16#$(little_endian "$(bytes "$file" $((pe + 22)) 2)") & 16#2000) != 0)) || { echo "a PE file that is not a DLL"; return; }
            machine=$(little_endian "$(bytes "$file" $((pe + 4)) 2)")
            case "$machine" in
                8664) echo win-x64 ;; aa64) echo win-arm64 ;; 014c) echo win-x86 ;; 01c4) echo win-arm ;;
                *) echo "a DLL for machine 0x$machine" ;;
            esac
            ;;
        *) echo "not a shared library (it starts with 0x$magic)" ;;
    esac
}

# check_native RID FILE: fails, saying why, unless FILE is the library for RID.
check_native() {
    local rid=$1 file=$2 expected kind
    [[ $rid =~ ^(win|osx|linux|linux-musl)-(x64|x86|arm64|arm)$ ]] ||
        usage_error "'$rid' is not a runtime this package supports (win-, osx-, linux- or linux-musl- followed by x64, x86, arm64 or arm)"
    [ -f "$file" ] || usage_error "the library given for $rid, '$file', is not a file"
    expected=$(library_name "$rid")
    [ "$(basename "$file")" = "$expected" ] ||
        usage_error "the library for $rid must be named $expected, not '$(basename "$file")'"
    kind=$(binary_kind "$file")
    [ "$kind" = "${rid/linux-musl-/linux-}" ] && return
    [ "$kind" = osx-universal ] && [[ $rid == osx-* ]] && return
    [[ $kind == *" "* ]] || kind="a library for $kind"
    usage_error "'$file' is $kind, not one for $rid"
}

say() { printf '==> %s\n' "$*" >&2; }

# A path as Windows programs (pwsh.exe, dotnet.exe) read it, under Git Bash; unchanged elsewhere.
for_tool() {
    if command -v cygpath >/dev/null 2>&1; then cygpath -m "$1"; else echo "$1"; fi
}

version=$(cd "$root" && cargo pkgid -p defender | sed 's/.*[#@]//')
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "pack.sh: could not read the crate's version (got '$version')" >&2; exit 1; }

# Check what was given before the long builds.
for entry in "${given[@]+"${given[@]}"}"; do
    check_native "${entry%%=*}" "${entry#*=}"
done

# shellcheck source=packaging/windows.sh
. "$root/packaging/windows.sh"
if [[ " ${given[*]-} " != *" win-x64="* ]] && windows_toolchain; then
    say "building the win-x64 library (packaging/windows.sh)"
    windows_build "$root" "$target/windows" >&2
    given+=("win-x64=$(windows_output "$target/windows")/defender.dll")
fi

say "building the release library and the module (version $version)"
rm -rf "$stage"
mkdir -p "$stage/natives"
module=$("$root/powershell/build.sh" --release --output "$stage/DefenderPackage" | tail -n 1)
# The module holds this machine's library, the one build.sh built: its runtime is the host's.
host=$(cd "$module/runtimes" && ls)
[ "$(echo "$host" | wc -l)" -eq 1 ] || { echo "pack.sh: expected one runtime in $module/runtimes, found: $host" >&2; exit 1; }
entries=("$host=$module/runtimes/$host/native/$(library_name "$host")" "${given[@]+"${given[@]}"}")

manifest_version=$(sed -n "s/^ *ModuleVersion *= *'\([^']*\)'.*/\1/p" "$module/DefenderPackage.psd1")
[ "$manifest_version" = "$version" ] ||
    { echo "pack.sh: the module manifest says version '$manifest_version', the crate $version" >&2; exit 1; }

runtimes=()
for entry in "${entries[@]}"; do
    rid=${entry%%=*} file=${entry#*=}
    check_native "$rid" "$file"
    [[ " ${runtimes[*]-} " != *" $rid "* ]] ||
        usage_error "the library for $rid is given twice$([ "$rid" = "$host" ] && echo " ($rid is this machine's runtime: pack.sh builds it)")"
    runtimes+=("$rid")
    for destination in "$stage/natives/$rid/native" "$module/runtimes/$rid/native"; do
        mkdir -p "$destination"
        [ "$file" -ef "$destination/$(basename "$file")" ] || cp "$file" "$destination/"
    done
done

mkdir -p "$output"
output=$(cd "$output" && pwd)
module_package=$output/DefenderPackage.$version.nupkg
dotnet_package=$output/Defender.Interop.$version.nupkg
rm -f "$module_package" "$dotnet_package"

say "packing the PowerShell module for ${runtimes[*]}"
# shellcheck source=packaging/pwsh.sh
. "$root/packaging/pwsh.sh"
pwsh=$(find_pwsh)
# Compress-PSResource came with PSResourceGet 1.1 (PowerShell 7.5); before it, publishing to a
# repository that is a folder writes the same package.
PACK_MODULE=$(for_tool "$module") PACK_OUTPUT=$(for_tool "$output") "$pwsh" -NoProfile -NonInteractive -Command '
    $ErrorActionPreference = "Stop"
    $module, $output = $env:PACK_MODULE, $env:PACK_OUTPUT
    if (Get-Command Compress-PSResource -ErrorAction Ignore) {
        Compress-PSResource -Path $module -DestinationPath $output
    } else {
        $repository = "DefenderPackagePack$PID"
        Register-PSResourceRepository -Name $repository -Uri $output
        try { Publish-PSResource -Path $module -Repository $repository } finally { Unregister-PSResourceRepository -Name $repository }
    }' >&2

say "packing the .NET package for ${runtimes[*]}"
dotnet pack "$(for_tool "$root/dotnet/Defender.Interop/Defender.Interop.csproj")" --nologo -v quiet -c Release \
    -o "$(for_tool "$output")" -p:Version="$version" -p:DefenderNativesDir="$(for_tool "$stage/natives")/" >&2

for package in "$module_package" "$dotnet_package"; do
    [ -f "$package" ] || { echo "pack.sh: $package was not written" >&2; exit 1; }
done
echo "$module_package"
echo "$dotnet_package"
