#!/usr/bin/env bash
# cross/build.sh [TARGET...]
#
# Builds static, stripped release binaries of sdwan-agent for router CPUs into
#   $CARGO_TARGET_DIR/cross/<target>/sdwan-agent         the gateway build (default features)
#   $CARGO_TARGET_DIR/cross/<target>/sdwan-agent-worker  the worker build (--features worker),
#                                                        for the worker targets only
# (CARGO_TARGET_DIR defaults to ./target) and writes a size table (stripped and xz -9e) to
# $CARGO_TARGET_DIR/cross/sizes.txt. The size check (issue 15) fails the build when a gateway
# binary is over its limit (see limit_bytes: mips/mipsel 1.0 MiB, armv7 0.75 MiB) or any
# binary is over 1.5 MiB.
#
# Set-up is done here, idempotently: rust-src and llvm-tools from rustup, std built from
# source with the nightly toolchain (-Zbuild-std; RUSTC_BOOTSTRAP=1 on stable without a
# nightly) so that it can drop the panic machinery, and zig + cargo-zigbuild from PyPI in a
# venv (the C compiler and linker for every target). With SDWAN_CROSS_PANIC_MESSAGES=1,
# rustup's prebuilt std is used where there is one (x86_64, aarch64).
#
# Environment:
#   CARGO_TARGET_DIR     cargo target dir (default: <repo>/target); zig caches go inside it
#   SDWAN_CROSS_VENV     venv holding ziglang + cargo-zigbuild (default: <repo>/.venv)
#   SDWAN_CROSS_TOOLCHAIN=stable  build std with stable + RUSTC_BOOTSTRAP=1 even when a nightly
#                        is installed (what a machine without nightly does)
#   SDWAN_CROSS_RUSTFLAGS extra RUSTFLAGS for every target (experiments, e.g. -Zlocation-detail=none)
#   SDWAN_CROSS_FEATURES  more cargo features of sdwan-agent, for every build (e.g. tls12)
#   SDWAN_CROSS_NO_DEFAULT_FEATURES=1  build without the default features (size experiments)
#   SDWAN_CROSS_WORKER_TARGETS  targets that also get the worker build, space-separated
#                        (default: x86_64 and aarch64, the worker nodes' CPUs; empty: none)
#   SDWAN_CROSS_STD_FEATURES  std's cargo features for build-std (default: optimize_for_size)
#   SDWAN_CROSS_TARGET_RUSTFLAGS  replaces the per-target size flags (target_rustflags below)
#   SDWAN_CROSS_PANIC_MESSAGES=1  keep panic messages (by default -Cpanic=immediate-abort and
#                        -Zlocation-detail=none save ~440 KB on mipsel; a panic then aborts
#                        without a message). Binaries may then exceed the 1.5 MiB limit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PACKAGE=sdwan-agent
BIN=sdwan-agent
ALL_TARGETS=(
    x86_64-unknown-linux-musl
    aarch64-unknown-linux-musl
    armv7-unknown-linux-musleabihf
    mips-unknown-linux-musl
    mipsel-unknown-linux-musl
)
HARD_LIMIT=$((3 * 512 * 1024)) # 1.5 MiB: the build fails above this, any binary
DEFAULT_WORKER_TARGETS="x86_64-unknown-linux-musl aarch64-unknown-linux-musl"
# Pinned so that a build today and a build next month link with the same zig.
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1

die() {
    echo "cross/build.sh: ERROR: $*" >&2
    exit 1
}
say() { echo "cross/build.sh: $*" >&2; }

# Issue 15's size goal in bytes for a target's gateway binary (0 = none).
goal_bytes() {
    case "$1" in
    armv7-*) echo $((768 * 1024)) ;;      # 0.75 MiB
    mips-* | mipsel-*) echo $((1024 * 1024)) ;; # 1.0 MiB
    *) echo 0 ;;
    esac
}

# The size check: a gateway binary above this fails the build (0 = only the 1.5 MiB limit).
# It is the goal wherever the goal is met.
limit_bytes() {
    # Every goal is met (mips 960,400 B on 2026-12-03 with the agent's own MQTT client):
    # the goal is the limit, so growth past it fails the build.
    goal_bytes "$1"
}

# std's features when it is built here: optimize_for_size chooses std's smaller algorithms
# (sorting, formatting, ...); the default feature panic-unwind is of no use with panic=abort.
STD_FEATURES=${SDWAN_CROSS_STD_FEATURES-optimize_for_size}

# Code generation flags per target, for size (docs/cross.md has what each saved).
target_rustflags() {
    if [[ -n ${SDWAN_CROSS_TARGET_RUSTFLAGS+set} ]]; then
        echo "$SDWAN_CROSS_TARGET_RUSTFLAGS"
        return
    fi
    case "$1" in
    # The binary is static and not position-independent: no MIPS PIC sequences (a GOT load
    # and a jalr through $t9 for every call).
    mips-* | mipsel-*) echo "-C relocation-model=static" ;;
    # Thumb-2 instead of the ARM instruction set (the same CPUs, ARMv7-A always has it).
    armv7-*) echo "-C target-feature=+thumb-mode" ;;
    *) echo "" ;;
    esac
}

mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }

usage() {
    echo "usage: cross/build.sh [TARGET...]   (default: ${ALL_TARGETS[*]})"
}

targets=()
for arg in "$@"; do
    case "$arg" in
    -h | --help)
        usage
        exit 0
        ;;
    -*) usage >&2; die "unknown option '$arg'" ;;
    *)
        known=0
        for t in "${ALL_TARGETS[@]}"; do [[ "$t" == "$arg" ]] && known=1; done
        [[ $known == 1 ]] || die "unknown target '$arg' (known: ${ALL_TARGETS[*]})"
        targets+=("$arg")
        ;;
    esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")

for cmd in cargo rustup python3 xz readelf awk; do
    command -v "$cmd" >/dev/null || die "'$cmd' is not installed (Debian: rustup via rustup.rs; python3; xz-utils; binutils)"
done

CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
mkdir -p "$CARGO_TARGET_DIR"
CARGO_TARGET_DIR=$(cd "$CARGO_TARGET_DIR" && pwd)
export CARGO_TARGET_DIR
OUT=$CARGO_TARGET_DIR/cross
mkdir -p "$OUT"

LOG_DIR=$(mktemp -d)
trap 'rm -rf "$LOG_DIR"' EXIT

# Runs a set-up command quietly; shows its output only when it fails (and returns its status).
quiet() {
    local log=$LOG_DIR/setup.log rc=0
    "$@" >"$log" 2>&1 || rc=$?
    [[ $rc != 0 ]] || return 0
    sed 's/^/    | /' "$log" | tail -n 15 >&2
    return $rc
}

# ---------------------------------------------------------------- zig + cargo-zigbuild
VENV=${SDWAN_CROSS_VENV:-$REPO/.venv}
if [[ -x "$VENV/bin/cargo-zigbuild" ]] &&
    [[ "$("$VENV/bin/cargo-zigbuild" --version 2>/dev/null)" == "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" ]] &&
    [[ "$("$VENV/bin/python3" -m ziglang version 2>/dev/null)" == "$ZIGLANG_VERSION" ]]; then
    :
else
    say "setting up zig $ZIGLANG_VERSION + cargo-zigbuild $CARGO_ZIGBUILD_VERSION in $VENV (PyPI)"
    [[ -x "$VENV/bin/python3" ]] || quiet python3 -m venv "$VENV" || die "could not create a venv at $VENV (Debian: python3-venv)"
    quiet "$VENV/bin/pip" install --disable-pip-version-check -q \
        "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" ||
        die "pip could not install ziglang/cargo-zigbuild into $VENV"
fi
# cargo finds `cargo zigbuild` on PATH; cargo-zigbuild finds zig as `python3 -m ziglang`.
export PATH="$VENV/bin:$PATH"
# zig and cargo-zigbuild cache under ~/.cache otherwise.
export ZIG_GLOBAL_CACHE_DIR=$OUT/.cache/zig
export XDG_CACHE_HOME=$OUT/.cache
mkdir -p "$ZIG_GLOBAL_CACHE_DIR"

# ---------------------------------------------------------------- rust toolchains
have_nightly=0
if [[ "${SDWAN_CROSS_TOOLCHAIN:-}" != stable ]] && rustup run nightly rustc --version >/dev/null 2>&1; then
    have_nightly=1
fi
rust_src_ready_stable=0
rust_src_ready_nightly=0

# llvm-objcopy from rustup's llvm-tools: removes what the linker's --strip-all keeps but no
# one needs at run time (MIPS .pdr procedure descriptors, ~160 KB on mips; .comment).
SYSROOT=$(rustc +stable --print sysroot)
OBJCOPY=$SYSROOT/lib/rustlib/$(rustc +stable -vV | sed -n 's/^host: //p')/bin/llvm-objcopy
if [[ ! -x $OBJCOPY ]]; then
    say "rustup component add llvm-tools (llvm-objcopy)"
    quiet rustup component add --toolchain stable llvm-tools || die "rustup could not add llvm-tools"
fi
[[ -x $OBJCOPY ]] || die "llvm-objcopy not found at $OBJCOPY after adding llvm-tools"

# Decides how to build a target; sets MODE (prebuilt|build-std) and TOOLCHAIN.
plan_target() {
    local t=$1
    MODE=prebuilt
    TOOLCHAIN=stable
    # The size flags need std compiled here, so by default every target builds std from
    # source; with panic messages kept, rustup's prebuilt std is used where there is one.
    if [[ "${SDWAN_CROSS_PANIC_MESSAGES:-0}" == 1 ]]; then
        if rustup target list --installed 2>/dev/null | grep -qx "$t"; then return 0; fi
        say "$t: rustup target add $t"
        local log=$LOG_DIR/target-add.log
        if RUST_BACKTRACE=0 rustup target add "$t" >"$log" 2>&1; then return 0; fi
        say "$t: no prebuilt std ($(grep -m1 -i error "$log" | cut -c1-120)); building std from source (-Zbuild-std)"
    fi
    MODE=build-std
    if [[ $have_nightly == 1 ]]; then
        TOOLCHAIN=nightly
        if [[ $rust_src_ready_nightly == 0 ]]; then
            quiet rustup component add --toolchain nightly rust-src || die "rustup could not add rust-src to nightly (needed for $t)"
            rust_src_ready_nightly=1
        fi
    else
        # Same flags on stable with RUSTC_BOOTSTRAP=1 (seen to work): needs rust-src.
        TOOLCHAIN=stable
        if [[ $rust_src_ready_stable == 0 ]]; then
            quiet rustup component add rust-src || die "rustup could not add rust-src (needed for $t)"
            rust_src_ready_stable=1
        fi
    fi
}

cargo_args=(--release --locked -p "$PACKAGE" --bin "$BIN")
if [[ "${SDWAN_CROSS_NO_DEFAULT_FEATURES:-0}" == 1 ]]; then cargo_args+=(--no-default-features); fi

# The features of a build: gateway (the package's defaults) or worker.
features_of() {
    local f=${SDWAN_CROSS_FEATURES:-}
    [[ $1 == worker ]] && f="worker${f:+,$f}"
    echo "$f"
}

# Output name of a build's binary.
out_name() {
    if [[ $1 == worker ]]; then echo "$BIN-worker"; else echo "$BIN"; fi
}

# The RUSTFLAGS of target $1 built in mode $MODE (set by plan_target).
rustflags_of() {
    local t=$1 rustflags="-C target-feature=+crt-static"
    if [[ $MODE == build-std ]]; then
        # zig supplies crt1.o and libc; Rust's self-contained musl objects are not there.
        rustflags+=" -C link-self-contained=no"
        # std is compiled here, so it can shed the panic machinery (measured on mipsel:
        # -390 KB for immediate-abort, -51 KB for location-detail; docs/cross.md). A panic
        # then aborts without a message (procd logs the crash and respawns the agent).
        if [[ "${SDWAN_CROSS_PANIC_MESSAGES:-0}" != 1 ]]; then
            rustflags+=" -Zlocation-detail=none -Zunstable-options -Cpanic=immediate-abort"
            # Nothing unwinds: no unwind tables (.eh_frame and its index, -94 KB on mips).
            rustflags+=" -C force-unwind-tables=no"
            # derive(Debug) prints the type or variant name only (-27 KB on mips); hand-written
            # Debug (strings quoted with {:?} in messages, io::Error) is unchanged.
            rustflags+=" -Zfmt-debug=shallow"
        fi
    fi
    echo "$rustflags $(target_rustflags "$t") ${SDWAN_CROSS_RUSTFLAGS:-}"
}

# Strips target $1's freshly built binary into $OUT/$1/NAME (kind $2) and checks it is static.
finish_target() { # TARGET gateway|worker
    local t=$1 kind=$2 name
    local built=$CARGO_TARGET_DIR/$t/release/$BIN
    [[ -f "$built" ]] || die "$t: cargo said ok but $built is missing"
    mkdir -p "$OUT/$t"
    name=$(out_name "$kind")
    "$OBJCOPY" --strip-all --remove-section=.pdr --remove-section=.comment "$built" "$OUT/$t/$name.tmp" ||
        die "$t: llvm-objcopy failed on $built"
    mv "$OUT/$t/$name.tmp" "$OUT/$t/$name"
    local f=$OUT/$t/$name
    # Static: no program interpreter, no shared libraries.
    if readelf -lW "$f" | grep -q 'Requesting program interpreter' ||
        readelf -dW "$f" 2>/dev/null | grep -q '(NEEDED)'; then
        readelf -dW "$f" | grep NEEDED >&2 || true
        die "$t: $f is dynamically linked; the router has no such libc"
    fi
    if readelf -SW "$f" | grep -q ' \.symtab '; then
        die "$t: $f still has a symbol table (strip = true in [profile.release] lost?)"
    fi
}

# Builds one group: targets of the same kind, mode and toolchain, in one cargo invocation so
# that cargo runs their crates side by side (each target's last crate, the binary with its
# whole-program LTO, is one long single-threaded job: one target at a time left a core idle
# most of the build; two mips targets took 174 s together against 249 s one after the other).
# Each target's flags go in CARGO_TARGET_<TRIPLE>_RUSTFLAGS, which RUSTFLAGS would override:
# RUSTFLAGS from the caller's environment is not used (SDWAN_CROSS_RUSTFLAGS is).
build_group() { # KIND MODE TOOLCHAIN TARGET...
    local kind=$1 mode=$2 toolchain=$3
    shift 3
    local features t
    features=$(features_of "$kind")
    local args=("${cargo_args[@]}")
    [[ -z $features ]] || args+=(--features "$features")
    local env_extra=()
    MODE=$mode
    for t in "$@"; do
        args+=(--target "$t")
        local var
        var=CARGO_TARGET_$(echo "$t" | tr 'a-z-' 'A-Z_')_RUSTFLAGS
        env_extra+=("$var=$(rustflags_of "$t")")
    done
    if [[ $mode == build-std ]]; then
        args+=(-Zbuild-std=std,panic_abort)
        [[ -z $STD_FEATURES ]] || args+=("-Zbuild-std-features=$STD_FEATURES")
        [[ $toolchain == stable ]] && env_extra+=(RUSTC_BOOTSTRAP=1)
        # No unwind tables in the C code (ring) either (-3 KB).
        [[ "${SDWAN_CROSS_PANIC_MESSAGES:-0}" == 1 ]] ||
            env_extra+=("TARGET_CFLAGS=-fno-asynchronous-unwind-tables -fno-unwind-tables")
    fi
    say "$kind build of $*: cargo +$toolchain zigbuild ($mode${features:+, features $features})"
    local log=$LOG_DIR/$kind-$mode.log
    if ! env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS "${env_extra[@]}" \
        cargo "+$toolchain" zigbuild "${args[@]}" >"$log" 2>&1; then
        grep -v 'unable to open library directory' "$log" | tail -n 40 >&2
        die "$kind build of $* failed (full log above)"
    fi
    for t in "$@"; do finish_target "$t" "$kind"; done
}

# The builds: (target, kind) pairs, the gateway build of every target first.
worker_targets=${SDWAN_CROSS_WORKER_TARGETS-$DEFAULT_WORKER_TARGETS}
builds=()
for t in "${targets[@]}"; do builds+=("$t gateway"); done
for t in "${targets[@]}"; do
    for w in $worker_targets; do [[ $w == "$t" ]] && builds+=("$t worker"); done
done

# Grouped by kind, mode and toolchain, in the order of `builds`.
declare -A group_targets
groups=()
for b in "${builds[@]}"; do
    read -r t kind <<<"$b"
    plan_target "$t"
    g="$kind $MODE $TOOLCHAIN"
    [[ -n ${group_targets[$g]+set} ]] || groups+=("$g")
    group_targets[$g]+=" $t"
done

declare -A seconds
total_start=$(date +%s)
for g in "${groups[@]}"; do
    read -r kind mode toolchain <<<"$g"
    start=$(date +%s)
    # shellcheck disable=SC2086 # the group's targets, one word each
    build_group "$kind" "$mode" "$toolchain" ${group_targets[$g]}
    took=$(($(date +%s) - start))
    for t in ${group_targets[$g]}; do seconds["$t $kind"]=$took; done
    say "$kind build of${group_targets[$g]} in $took s"
done
total=$(($(date +%s) - total_start))

# ---------------------------------------------------------------- sizes
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git -C "$REPO" diff --quiet HEAD 2>/dev/null; then commit="$commit+dirty"; fi
over=()
{
    echo "# sdwan-agent release binaries, commit $commit, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "# extra features: ${SDWAN_CROSS_FEATURES:-none}${SDWAN_CROSS_NO_DEFAULT_FEATURES:+ (no default features)}; std features: ${STD_FEATURES:-default}; target rustflags: ${SDWAN_CROSS_TARGET_RUSTFLAGS-per target}; rustflags extra: ${SDWAN_CROSS_RUSTFLAGS:-none}; panic messages in build-std targets: $([[ "${SDWAN_CROSS_PANIC_MESSAGES:-0}" == 1 ]] && echo kept || echo 'no (immediate-abort)')"
    echo "| target | build | stripped bytes | stripped MiB | xz -9e bytes | xz MiB | goal MiB | limit bytes | status | build s (with the targets built together) |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"
    for b in "${builds[@]}"; do
        read -r t kind <<<"$b"
        f=$OUT/$t/$(out_name "$kind")
        size=$(stat -c %s "$f")
        xzsize=$(xz -9e -c "$f" | wc -c)
        goal=0
        limit=$HARD_LIMIT
        if [[ $kind == gateway ]]; then
            goal=$(goal_bytes "$t")
            l=$(limit_bytes "$t")
            [[ $l -eq 0 || $l -gt $HARD_LIMIT ]] || limit=$l
        fi
        status=ok
        goal_txt=-
        if [[ $goal -gt 0 ]]; then
            goal_txt=$(mib "$goal")
            [[ $size -le $goal ]] || status="over goal"
        fi
        if [[ $size -gt $limit ]]; then
            status="OVER LIMIT"
            over+=("$t $kind: $size B > $limit B")
        fi
        echo "| $t | $kind | $size | $(mib "$size") | $xzsize | $(mib "$xzsize") | $goal_txt | $limit | $status | ${seconds[$b]} |"
    done
} >"$OUT/sizes.txt"
cat "$OUT/sizes.txt"
say "${#builds[@]} build(s) in $total s; binaries in $OUT/<target>/{$BIN,$BIN-worker}, table in $OUT/sizes.txt"

if [[ ${#over[@]} -gt 0 ]]; then
    echo >&2
    for o in "${over[@]}"; do
        echo "cross/build.sh: ERROR: stripped binary over its size limit: $o" >&2
    done
    echo "cross/build.sh: see docs/cross.md for what each dependency costs and what to cut." >&2
    exit 1
fi
