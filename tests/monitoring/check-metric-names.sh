#!/bin/sh
# Keeps the monitoring files in step with the metrics contract:
#  1. the metric families of sample-metrics.txt are exactly the ones
#     docs/metrics.md lists;
#  2. every gatehouse_* and process_* name the alert rules and the
#     dashboard query is one of those families (or a histogram's
#     _bucket/_sum/_count series).
# process_* are the standard process metrics, served for every gateway
# process (docs/metrics.md, "Process metrics").
# Usage: check-metric-names.sh <repository root>
set -eu
root=${1:?usage: check-metric-names.sh <repository root>}
doc="$root/docs/metrics.md"
sample="$root/tests/monitoring/sample-metrics.txt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

grep -oE '`(gatehouse|process)_[a-z0-9_]+`' "$doc" | tr -d '`' | sort -u >"$tmp/doc"
sed -n 's/^# TYPE \([^ ]*\) .*/\1/p' "$sample" | sort -u >"$tmp/sample"
sed -n 's/^# TYPE \([^ ]*\) histogram$/\1/p' "$sample" | sort -u >"$tmp/histograms"

status=0
if ! diff -u "$tmp/doc" "$tmp/sample" >"$tmp/diff"; then
  echo "sample-metrics.txt families differ from docs/metrics.md (- doc, + sample):"
  cat "$tmp/diff"
  status=1
fi

for f in "$root/examples/monitoring/gatehouse-alerts.yml" \
         "$root/examples/monitoring/gatehouse-dashboard.json"; do
  for name in $(grep -oE '\b(gatehouse|process)_[a-z0-9_]+' "$f" | sort -u); do
    grep -qx "$name" "$tmp/sample" && continue
    base=$(echo "$name" | sed -E 's/_(bucket|sum|count)$//')
    grep -qx "$base" "$tmp/histograms" && continue
    echo "$(basename "$f"): $name is not a metric of docs/metrics.md"
    status=1
  done
done

[ "$status" -eq 0 ] && echo "metric names: $(wc -l <"$tmp/sample") families, docs, sample, alerts and dashboard agree"
exit "$status"
