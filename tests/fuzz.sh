#!/usr/bin/env bash
# Runs every cargo-fuzz target of the repository (every */fuzz package) for SECONDS each
# (default 60) and prints a table: target, runs, result. Not part of CI (too long); CI runs
# the regression tests made from what the fuzzers found (docs/fuzzing.md).
#
#   tests/fuzz.sh [SECONDS]          all targets
#   FUZZ_ONLY=plan/ tests/fuzz.sh    only targets whose "package/target" name contains the text
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The seed corpus in
# the repository is read, never written: new inputs go to a scratch corpus under the target
# dir (kept between runs, so later runs start where earlier ones stopped). A crash input is
# left in the package's fuzz/artifacts/TARGET/ (ignored by git): make it a regression test.
# Exit code non-zero when any target crashed or did not build.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
secs=${1:-60}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$top/target}
scratch=$CARGO_TARGET_DIR/fuzz-corpus
logs=$CARGO_TARGET_DIR/fuzz-logs
mkdir -p "$scratch" "$logs"

names=() runs=() results=()
status=0
for manifest in $(git ls-files '*fuzz/Cargo.toml' | sort); do
    dir=$(dirname "$manifest")
    pkg=${dir%/fuzz}
    if ! targets=$(cd "$dir" && cargo +nightly fuzz list 2>/dev/null); then
        names+=("$pkg/*") runs+=(-) results+=("cargo fuzz list failed")
        status=1
        continue
    fi
    for t in $targets; do
        name=$pkg/$t
        if [ -n "${FUZZ_ONLY:-}" ] && [[ $name != *"$FUZZ_ONLY"* ]]; then
            continue
        fi
        work=$scratch/${name//\//_}
        log=$logs/${name//\//_}.log
        mkdir -p "$work"
        echo "=== $name: ${secs}s (log $log)"
        (cd "$dir" && cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- \
            -max_total_time="$secs" -print_final_stats=1) >"$log" 2>&1
        rc=$?
        n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
        if [ $rc -eq 0 ]; then
            result=ok
        elif artifact=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -1) && [ -n "$artifact" ]; then
            result="CRASH: ${artifact#Test unit written to }"
            status=1
        else
            result="FAILED (exit $rc, see log)"
            status=1
        fi
        names+=("$name") runs+=("${n:--}") results+=("$result")
    done
done

echo
printf '%-30s %12s  %s\n' target runs result
for i in "${!names[@]}"; do
    printf '%-30s %12s  %s\n' "${names[$i]}" "${runs[$i]}" "${results[$i]}"
done
exit $status
