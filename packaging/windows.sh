# Sourced by packaging/pack.sh and tests/run-all.sh: the win-x64 build, made on Linux with
# mingw-w64. One cargo invocation builds the library (defender.dll), the command line
# (defender-package.exe) and the simulator the windows suite runs the tests against
# (defender-simulator.exe), in a target folder of its own; pack.sh ships the defender.dll of that
# same build, so the library in the packages is byte for byte the one the suite tested.

windows_target=x86_64-pc-windows-gnu

# windows_toolchain: succeeds when this machine can build for $windows_target: mingw-w64's gcc,
# and either rustup's standard library for the target or Debian's rustc-web with its std source
# (which ../shared/bin/cargo, the offline crate mirror's cargo, compiles std from).
windows_toolchain() {
    command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || return 1
    [ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/$windows_target" ] && return 0
    [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library/vendor ]
}

# windows_build ROOT TARGET_DIR: builds the three of the repository at ROOT into
# TARGET_DIR/$windows_target/release. A target folder of its own: Debian's compiler differs from
# rustup's, and sharing one would rebuild both sides each time.
windows_build() {
    CARGO_TARGET_DIR=$2 cargo build --release --locked --manifest-path "$1/Cargo.toml" --target "$windows_target" \
        -p defender -p defender-cli -p defender-simulator
}

# windows_output TARGET_DIR: the folder the build writes defender.dll and the programs to.
windows_output() {
    echo "$1/$windows_target/release"
}
