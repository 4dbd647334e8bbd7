#!/usr/bin/env bash
# Runs PROGRAM ARGS with POOLSHIM_STATS_DIR set to a fresh folder, says whether a stats file was
# written there, and removes it (stats files are 12 MiB each). Exit status: the program's.
dir=$(mktemp -d /tmp/poolshim-stats-run-XXXXXX)
POOLSHIM_STATS_DIR=$dir "$@"
rc=$?
ls "$dir"/*.stats >/dev/null 2>&1 && echo "stats file written"
rm -rf "$dir"
exit $rc
