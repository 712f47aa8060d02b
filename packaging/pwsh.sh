# Sourced by packaging/pack.sh and tests/run-all.sh: find_pwsh prints the PowerShell 7 to run,
# the one on PATH or PowerShell 7.6.9 installed as a .NET tool outside the work tree (installing
# it there when missing; needs the .NET SDK). PSResourceGet, which packs and installs the
# module, ships with PowerShell 7.4 and later.

find_pwsh() {
    local tools=${XDG_CACHE_HOME:-$HOME/.cache}/defender-package/tools
    local pwsh
    if pwsh=$(command -v pwsh); then
        echo "$pwsh"
        return 0
    fi
    pwsh=$tools/pwsh/pwsh
    if [ ! -x "$pwsh" ]; then
        command -v dotnet >/dev/null 2>&1 ||
            { echo "pwsh and dotnet are missing: install the .NET SDK 10 (https://dot.net) and run again" >&2; return 1; }
        echo "pwsh is missing; installing PowerShell 7.6.9 as a .NET tool into $tools/pwsh" >&2
        dotnet tool install PowerShell --version 7.6.9 --tool-path "$tools/pwsh" >/dev/null || return 1
    fi
    echo "$pwsh"
}
