# Sourced by the scripts: one cargo target dir outside the clone (so every
# clone and every CI run on a machine reuses the same build), unless the
# caller chose one.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/raft-rm/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
