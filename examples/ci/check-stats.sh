#!/usr/bin/env sh
# Plain-shell gate for any CI system (GitLab, Jenkins, Buildkite, a Makefile):
#   exit 0 statistics within tolerance, 1 drift, 2 usage or input error (unreadable image, bad config).
set -eu
CONFIG="${1:-normalization.json}"
status=0
chanstats check --against "$CONFIG" --tolerance "${CHANSTATS_TOLERANCE:-0.01}" || status=$?
case "$status" in
  0) echo "dataset statistics unchanged" ;;
  1) echo "dataset statistics drifted: recompute with 'chanstats compute ... -o $CONFIG' and review" >&2 ;;
  *) echo "chanstats could not check the dataset (exit $status)" >&2 ;;
esac
exit "$status"
