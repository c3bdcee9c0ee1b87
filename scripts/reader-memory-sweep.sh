#!/bin/bash
# Opens every file under the given folders with `nanofind inspect`, one process per file, under
# an address-space limit (default 1 GiB, as a facility's batch slot might set), and reports each
# run's peak resident memory (GNU time). Any exit status other than 0 (read) or 2 (refused with one
# error line) is a crash or a kill and is named. Exits 1 on a crash, a message of more than one
# line, or a peak of 300 MiB or more.
#   scripts/reader-memory-sweep.sh [--limit-mib N] DIR...      (e.g. .build/fuzz-corpus/*)
set -u
limit=1024
if [ "${1:-}" = "--limit-mib" ]; then limit=$2; shift 2; fi
[ $# -gt 0 ] || { echo "usage: $0 [--limit-mib N] DIR..." >&2; exit 2; }
bin="$(cd "$(dirname "$0")/.." && pwd)/.build/release/nanofind"
[ -x "$bin" ] || { echo "$0: build first (make build)" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
files=0; read=0; refused=0; bad=0; worst=0; worstFile=""; multiline=0
while IFS= read -r -d '' f; do
    files=$((files + 1))
    ( ulimit -v $((limit * 1024)); exec /usr/bin/time -f '%M' -o "$tmp/rss" "$bin" inspect "$f" ) > /dev/null 2> "$tmp/err"
    status=$?
    rss=$(tail -1 "$tmp/rss" 2>/dev/null | tr -dc '0-9'); rss=${rss:-0}
    if [ "$rss" -gt "$worst" ]; then worst=$rss; worstFile=$f; fi
    case $status in
        0) read=$((read + 1)) ;;
        2) refused=$((refused + 1))
           if [ "$(grep -c '' "$tmp/err")" -ne 1 ]; then multiline=$((multiline + 1)); echo "more than one line: $f"; fi ;;
        *) bad=$((bad + 1)); echo "exit $status: $f: $(head -c 300 "$tmp/err" | tr '\n' ' ')" ;;
    esac
done < <(find "$@" -type f -print0)
echo "files $files: read $read, refused $refused, crashed or killed $bad, multi-line errors $multiline;" \
     "peak RSS worst $((worst / 1024)) MiB ($worstFile), address space limited to $limit MiB"
[ $bad -eq 0 ] && [ $multiline -eq 0 ] && [ $worst -lt $((300 * 1024)) ]
