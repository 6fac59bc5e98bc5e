#!/usr/bin/env bash
# Builds the SIP parser fuzz target with clang (libFuzzer + ASan + UBSan) and runs it
# for a bounded time, seeded with the RFC 4475 torture messages.
#
#   src/sip/fuzz/run_fuzz.sh [SECONDS]        (default 60)
#
# Exit status: 0 no crash found; 1 a crash, leak, timeout or invariant violation
# was found (the reproducer is saved as $BUILD/crash-*, and printed); 77 clang or
# libFuzzer is not installed (CTest treats 77 as "skipped").
#
# The binary is built by invoking clang++ directly rather than through a clang
# configure of the whole project: only the sip sources are needed, and Debian 12's
# clang++ 14 cannot compile libstdc++ 12's <expected> (a probe below decides whether
# fuzz/expected_compat.h must be force-included). The TANDEM_FUZZ CMake option builds
# the same target inside a clang build tree for those who prefer that.
#
# Environment: TANDEM_FUZZ_BUILD_DIR (default <repo>/build/sip-fuzz),
# TANDEM_SHARED_DIR (default <repo>/../shared), FUZZ_CXX (default clang++),
# FUZZ_JOBS (parallel compiles, default 2).
set -euo pipefail

seconds="${1:-60}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sip_dir="$(dirname "$here")"
src_dir="$(dirname "$sip_dir")"
repo_dir="$(dirname "$src_dir")"
build="${TANDEM_FUZZ_BUILD_DIR:-$repo_dir/build/sip-fuzz}"
shared="${TANDEM_SHARED_DIR:-$repo_dir/../shared}"
cxx="${FUZZ_CXX:-clang++}"
jobs="${FUZZ_JOBS:-2}"

if ! command -v "$cxx" > /dev/null 2>&1; then
  echo "sip_parser_fuzz: skipped, $cxx is not installed" >&2
  exit 77
fi
mkdir -p "$build/obj" "$build/corpus"

# libFuzzer comes with clang's compiler-rt; without it there is nothing to run.
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' \
  > "$build/probe_fuzzer.cc"
if ! "$cxx" -fsanitize=fuzzer "$build/probe_fuzzer.cc" -o "$build/probe_fuzzer" > /dev/null 2>&1; then
  echo "sip_parser_fuzz: skipped, $cxx cannot link -fsanitize=fuzzer (libclang-rt missing)" >&2
  exit 77
fi

# Does this clang++ handle the standard library's <expected>?
compat=()
printf '#include <expected>\nint main() { std::expected<int, int> e{1}; return *e - 1; }\n' > "$build/probe_expected.cc"
if ! "$cxx" -std=c++2b "$build/probe_expected.cc" -o "$build/probe_expected" > /dev/null 2>&1; then
  compat=(-include "$here/expected_compat.h")
fi

flags=(-std=c++2b -O1 -g -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Wall -Wextra -Werror -I"$src_dir" "${compat[@]}")
sources=("$here/sip_parser_fuzz.cc" "$sip_dir/header_values.cc" "$sip_dir/message.cc"
         "$sip_dir/names.cc" "$sip_dir/parser.cc" "$sip_dir/syntax.cc" "$sip_dir/uri.cc"
         "$src_dir/common/error.cc")
binary="$build/sip_parser_fuzz"

# Rebuild objects whose source or any header changed.
newest_header="$(ls -t "$sip_dir"/*.h "$src_dir"/common/*.h "$here"/*.h | head -1)"
objects=()
pids=()
for source in "${sources[@]}"; do
  object="$build/obj/$(basename "${source%.cc}").o"
  objects+=("$object")
  if [[ ! -f "$object" || "$source" -nt "$object" || "$newest_header" -nt "$object" || "$0" -nt "$object" ]]; then
    "$cxx" "${flags[@]}" -c "$source" -o "$object" &
    pids+=($!)
    if (( ${#pids[@]} >= jobs )); then
      wait "${pids[0]}"
      pids=("${pids[@]:1}")
    fi
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
relink=0
for object in "${objects[@]}"; do
  [[ ! -f "$binary" || "$object" -nt "$binary" ]] && relink=1
done
if (( relink )); then
  "$cxx" "${flags[@]}" "${objects[@]}" -o "$binary"
fi

# Seeds: the RFC 4475 messages and a few of our own (copied once; libFuzzer adds
# what it discovers to the same directory, so runs build on each other).
if [[ -d "$shared/testdata/rfc4475" ]]; then
  cp -n "$shared"/testdata/rfc4475/*.dat "$build/corpus/" 2> /dev/null || true
fi
cp -n "$here"/seeds/* "$build/corpus/" 2> /dev/null || true

echo "sip_parser_fuzz: running for ${seconds}s (corpus $build/corpus)" >&2
set +e
(cd "$build" && "$binary" "$build/corpus" \
    -max_total_time="$seconds" -dict="$here/sip.dict" -max_len=8192 \
    -timeout=10 -rss_limit_mb=2048 -error_exitcode=1 -timeout_exitcode=1 \
    -artifact_prefix="$build/" -print_final_stats=1 2> "$build/fuzz.log")
status=$?
set -e
tail -n 20 "$build/fuzz.log" >&2
if (( status != 0 )); then
  echo "sip_parser_fuzz: FAILED (exit $status); reproducers:" >&2
  ls -1 "$build"/crash-* "$build"/leak-* "$build"/timeout-* "$build"/oom-* >&2 2> /dev/null || true
  echo "reproduce with: $binary <file>" >&2
  exit 1
fi
echo "sip_parser_fuzz: no crash in ${seconds}s" >&2
exit 0
