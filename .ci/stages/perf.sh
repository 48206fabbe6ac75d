#!/usr/bin/env bash
# Instruction budget: instructions per in-process `GET /orders/{id}` (also as a browser sends
# it, accepting gzip and br) and `POST /orders` (order_service::router with production
# settings, memory store; bench/callgrind), counted by valgrind's callgrind and compared with
# bench/instructions.budget; beside them, a minimal axum router answering the same bytes, and
# the ratio. Fails when any grows by more than 10 %. Instruction counts do not depend on how
# busy the machine is; they do depend on the compiler, the dependencies and valgrind, so
# refresh the budget when one of those changes on purpose, as after an intended change of the
# code:
#
#   .ci/stages/perf.sh            check against the budget
#   .ci/stages/perf.sh --update   write the counts measured now as the budget
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"

budget_file=bench/instructions.budget
requests=1000
tolerance_percent=10
update=false
[ "${1:-}" = --update ] && update=true

ensure_build_stage

work=$(mktemp -d)
trap 'as_root rm -rf "$work"' EXIT

# The release profile (bench-callgrind keeps its symbol table: callgrind finds the measured
# function by name). Built where the image's build stage builds (.ci/image_test.py
# --in-build-stage: the Dockerfile's paths and cache mounts, offline), together with the
# image's own binary, so the two long thin-LTO links run side by side and the image stage then
# finds everything compiled in target/image: one release build for both stages.
log "release build of the bench and of the image's binary, in the image's build environment"
bench=$(as_root "$VENV/bin/python" .ci/image_test.py "$ROOT" "$work/build" --in-build-stage \
  cargo build --locked --quiet --release -p bench-callgrind -p order-service --message-format=json |
  python3 -c '
import json, sys
root = sys.argv[1]
for line in sys.stdin:
    try:
        message = json.loads(line)
    except ValueError:
        print(line, file=sys.stderr, end="")
        continue
    if message.get("reason") == "compiler-message":
        print(message["message"]["rendered"], file=sys.stderr, end="")
    elif message.get("reason") == "compiler-artifact" and message["target"]["name"] == "bench-callgrind":
        # A path inside the build stage: <workdir>/target/...; here, target/image/...
        print(root + "/target/image/" + message["executable"].split("/target/", 1)[1])
' "$ROOT")
[ -x "$bench" ] || { echo "no bench executable built" >&2; exit 1; }

# The Dockerfile's own build command must now find everything compiled. If it would compile
# anything, the two builds have drifted apart (bench-callgrind asking for a feature the service
# does not use, say), and the image stage would quietly compile the release tree a second time.
image_build="cargo build --release --locked -p order-service"
grep -qF "$image_build" Dockerfile || { echo "the Dockerfile no longer runs \`$image_build\`: update this check" >&2; exit 1; }
# shellcheck disable=SC2086 # the command's words
stale=$(as_root "$VENV/bin/python" .ci/image_test.py "$ROOT" "$work/build" --in-build-stage \
  $image_build --quiet --message-format=json |
  python3 -c '
import json, sys
for line in sys.stdin:
    if line.startswith("{"):
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and not message["fresh"]:
            print(message["package_id"])
')
if [ -n "$stale" ]; then
  echo "the image's build would compile again what this build compiled: $stale" >&2
  exit 1
fi

ensure_apt valgrind valgrind

# count KIND: instructions per request, only those executed inside `measured` (one request
# through the router, body read), averaged over $requests requests after a warm-up.
count() {
  local kind="$1"
  if ! valgrind --tool=callgrind --callgrind-out-file="$work/$kind.out" \
    --collect-atstart=no --toggle-collect='*measured*' \
    "$bench" "$kind" "$requests" >/dev/null 2>"$work/$kind.log"; then
    cat "$work/$kind.log" >&2
    echo "the $kind bench failed under valgrind" >&2
    return 1
  fi
  awk -v n="$requests" '/^totals:/ { printf "%d\n", $2 / n; found = 1 } END { exit !found }' \
    "$work/$kind.out"
}

log "callgrind: $requests requests each, counted inside the router only"
declare -A measured
for kind in get get-browser post axum-get axum-post; do
  measured[$kind]=$(count "$kind") || exit 1
  [ "${measured[$kind]}" -gt 0 ] || { echo "no instructions counted for $kind" >&2; exit 1; }
done

# The refusal at the concurrency limit (a GET answered 503 by admission control), held to its
# own budget like the others: that ceiling fails the stage. Beside it, its ratio to a served GET
# counted in the same run, against the goal of 1/16 (at 4x offered load, 0.8x of capacity
# served leaves a refusal at most s + (4 - s) r <= 1 of an answer's CPU), and the refusal's
# answer alone (`refusal-alone`: the same 503 from a bare tower service, no admission decision).
# The goal is printed, not enforced: the answer alone (taking in a request, an answer with its
# two headers and body, dropping both) already costs more than 1/16 of a GET (19 600
# instructions on 5 December), so no admission decision can meet it. bench/README.md,
# "Instruction budget".
measured[refused]=$(count refused) || exit 1
measured[alone]=$(count refusal-alone) || exit 1
for kind in refused alone; do
  [ "${measured[$kind]}" -gt 0 ] || { echo "no instructions counted for $kind" >&2; exit 1; }
done
# 1/N of the GET, for a count.
of_get() { awk -v m="$1" -v g="${measured[get]}" 'BEGIN { printf "1/%.1f of the GET", g / m }'; }

name() { case "$1" in get) echo "GET /orders/{id}" ;; get-browser) echo "  + gzip, br" ;; post) echo "POST /orders" ;; esac; }
# The bare router a kind is compared with: a browser's GET gets the same answer as a GET.
bare() { case "$1" in get-browser) echo axum-get ;; *) echo "axum-$1" ;; esac; }

if $update; then
  {
    echo "# Instructions per in-process request, counted by callgrind (.ci/stages/perf.sh)."
    echo "# The check fails above budget + ${tolerance_percent} %. Refresh: .ci/stages/perf.sh --update"
    echo "# $(rustc --version), $(valgrind --version)"
    for kind in get get-browser post; do echo "$kind ${measured[$kind]}"; done
    echo "refused ${measured[refused]}"
  } >"$budget_file"
  for kind in get get-browser post; do
    echo "$(name "$kind"): ${measured[$kind]}; a bare axum router, same answer: ${measured[$(bare "$kind")]}"
  done
  echo "503 at the limit: ${measured[refused]}, $(of_get "${measured[refused]}") (goal 1/16); its answer alone: ${measured[alone]}, $(of_get "${measured[alone]}")"
  echo "budget written to $budget_file:"
  grep -v '^#' "$budget_file"
  exit 0
fi

[ -f "$budget_file" ] || { echo "missing $budget_file: run .ci/stages/perf.sh --update" >&2; exit 1; }
status=0
# Beside each count, a minimal axum router (one route, no layer) answering the same request
# with the same bytes, counted in the same run: what the service's own work costs on top of
# the framework, on any machine.
printf '%-18s %12s %12s %9s %12s %8s\n' "request" "budget" "measured" "change" "bare axum" "ratio"
for kind in get get-browser post; do
  budget=$(awk -v k="$kind" '$1 == k { print $2 }' "$budget_file")
  [ -n "$budget" ] || { echo "no budget for $kind in $budget_file" >&2; exit 1; }
  change=$(awk -v m="${measured[$kind]}" -v b="$budget" 'BEGIN { printf "%+.1f %%", (m - b) * 100 / b }')
  verdict=$(awk -v m="${measured[$kind]}" -v b="$budget" -v t="$tolerance_percent" \
    'BEGIN { if (m > b * (1 + t / 100)) print "OVER BUDGET"; else if (m < b * (1 - t / 100)) print "cheaper: refresh the budget to keep the gain"; else print "ok" }')
  ratio=$(awk -v m="${measured[$kind]}" -v a="${measured[$(bare "$kind")]}" 'BEGIN { printf "%.1fx", m / a }')
  printf '%-18s %12s %12s %9s %12s %8s  %s\n' "$(name "$kind")" "$budget" "${measured[$kind]}" "$change" \
    "${measured[$(bare "$kind")]}" "$ratio" "$verdict"
  [ "$verdict" = "OVER BUDGET" ] && status=1
done
refused_budget=$(awk '$1 == "refused" { print $2 }' "$budget_file")
[ -n "$refused_budget" ] || { echo "no budget for refused in $budget_file" >&2; exit 1; }
refused_verdict=$(awk -v m="${measured[refused]}" -v b="$refused_budget" -v g="${measured[get]}" -v t="$tolerance_percent" \
  'BEGIN { printf "%s (1/%.1f of the GET measured; goal 1/16: %s)", (m > b * (1 + t / 100)) ? "OVER BUDGET" : "ok", g / m, (m * 16 > g) ? "missed" : "met" }')
printf '%-18s %12s %12s %9s  %s\n' "503 at the limit" "$refused_budget" "${measured[refused]}" \
  "$(awk -v m="${measured[refused]}" -v b="$refused_budget" 'BEGIN { printf "%+.1f %%", (m - b) * 100 / b }')" "$refused_verdict"
echo "  the refusal's answer alone, no admission decision: ${measured[alone]}, $(of_get "${measured[alone]}")"
case "$refused_verdict" in
  "OVER BUDGET"*) status=1 ;;
esac
if [ "$status" != 0 ]; then
  echo "more than ${tolerance_percent} % over $budget_file. Find where: valgrind --tool=callgrind" \
    "--toggle-collect='*measured*' $bench get, then callgrind_annotate --inclusive=yes." \
    "If the growth is intended, refresh with .ci/stages/perf.sh --update" >&2
fi
exit "$status"
