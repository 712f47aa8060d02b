#!/usr/bin/env bash
# Builds the DefenderPackage PowerShell module and lays it out as an importable module folder:
#
#   <output>/DefenderPackage.psd1               the manifest (ModuleVersion = the crate's version)
#   <output>/DefenderPackage.dll                the cmdlets and the C# binding (powershell/src)
#   <output>/DefenderPackage.Format.ps1xml      table views
#   <output>/en-US/DefenderPackage.dll-Help.xml the cmdlets' help (MAML)
#   <output>/runtimes/<rid>/native/<library>    the native library for this machine, from the cargo target dir
#
# Import it with `Import-Module <output>`, or by name with its parent folder on PSModulePath.
# packaging/pack.sh calls this, then adds other runtimes' libraries under runtimes/.
#
# Usage: powershell/build.sh [--release] [--output DIR] [--no-cargo]
#   --release     the release native library (target/release) and a Release build of the
#                 assembly; default: debug (what the test suites use)
#   --output DIR  where to lay out the module; default: <target>/powershell/DefenderPackage,
#                 <target> being $CARGO_TARGET_DIR or the repository's target/. DIR is replaced.
#   --no-cargo    do not build the native library first (it must be built already)
#
# Needs the .NET SDK (8 or later) and cargo. Prints the module folder's path on its last line.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
profile=debug
output=""
cargo_build=true
while [ $# -gt 0 ]; do
    case "$1" in
        --release) profile=release ;;
        --output)
            [ $# -ge 2 ] || { echo "--output needs a folder" >&2; exit 2; }
            output=$2
            shift
            ;;
        --no-cargo) cargo_build=false ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) echo "unknown argument '$1'; see powershell/build.sh --help" >&2; exit 2 ;;
    esac
    shift
done
output=${output:-$target/powershell/DefenderPackage}

case "$(uname -s)" in
    Linux*) os=linux library=libdefender.so ;;
    Darwin*) os=osx library=libdefender.dylib ;;
    MINGW* | MSYS* | CYGWIN*) os=win library=defender.dll ;;
    *) echo "unsupported operating system $(uname -s)" >&2; exit 1 ;;
esac
case "$(uname -m)" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
rid=$os-$arch

if $cargo_build; then
    if [ "$profile" = release ]; then
        cargo build --release --locked -p defender --manifest-path "$root/Cargo.toml" >&2
    else
        # The whole workspace, as the test suites build it: one feature resolution, no rebuilds.
        cargo build --locked --workspace --manifest-path "$root/Cargo.toml" >&2
    fi
fi
native=$target/$profile/$library
[ -f "$native" ] || { echo "the native library $native is missing: build it with cargo first" >&2; exit 1; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")
[ -n "$version" ] || { echo "no [workspace.package] version in Cargo.toml" >&2; exit 1; }

configuration=Debug
[ "$profile" = release ] && configuration=Release
assembly=$target/powershell/build/$configuration
dotnet build "$root/powershell/src/DefenderPackage.csproj" --nologo -v quiet -c "$configuration" \
    -p:Version="$version" -o "$assembly" >&2

source=$root/powershell/DefenderPackage
rm -rf "$output"
mkdir -p "$output/runtimes/$rid/native"
cp -R "$source/." "$output/"
cp "$assembly/DefenderPackage.dll" "$output/"
cp "$native" "$output/runtimes/$rid/native/"
# One version everywhere: the manifest's is the crate's.
sed -i.bak "s/^\( *ModuleVersion *= *\)'[^']*'/\1'$version'/" "$output/DefenderPackage.psd1"
rm -f "$output/DefenderPackage.psd1.bak"
echo "$output"
