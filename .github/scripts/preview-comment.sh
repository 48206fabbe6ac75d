#!/usr/bin/env bash
# Keep one comment per pull request for its preview: create it the first time, then edit
# it in place, so a busy pull request does not fill up with bot comments.
#   usage: preview-comment.sh PR_NUMBER BODY_FILE
# Needs GH_TOKEN (pull-requests: write) and GH_REPO (owner/name).
set -euo pipefail

pr="${1:?usage: preview-comment.sh PR_NUMBER BODY_FILE}"
body_file="${2:?usage: preview-comment.sh PR_NUMBER BODY_FILE}"
: "${GH_REPO:?set GH_REPO to owner/name}"
[[ "$pr" =~ ^[0-9]+$ ]] || { echo "not a pull request number: $pr" >&2; exit 2; }

# Hidden first line that identifies our comment among everyone else's.
marker='<!-- order-service-preview -->'
body="$(printf '%s\n%s\n' "$marker" "$(cat "$body_file")")"

existing=$(gh api --paginate "repos/$GH_REPO/issues/$pr/comments" \
  --jq ".[] | select(.user.type == \"Bot\" and (.body | startswith(\"$marker\"))) | .id" | head -n 1)

if [ -n "$existing" ]; then
  gh api --method PATCH "repos/$GH_REPO/issues/comments/$existing" -f body="$body" >/dev/null
  echo "updated comment $existing on #$pr"
else
  gh api --method POST "repos/$GH_REPO/issues/$pr/comments" -f body="$body" >/dev/null
  echo "created preview comment on #$pr"
fi
