# Sourced by the scripts: system tools that some runs use. Each script asks
# only for what its own run uses; `have_or_install` installs a missing tool
# from Debian's packages when running as root, and otherwise says in one
# line what is skipped and how to get it.

# have_or_install COMMAND PACKAGE WHAT: 0 when COMMAND is there (installed
# now if need be), else 1 after one line naming WHAT is skipped.
have_or_install() {
  local cmd=$1 pkg=$2 what=$3
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "skipping $what: no $cmd (as root: apt-get install -y $pkg)"
    return 1
  fi
  echo "== installing $pkg ($what)"
  if ! apt-get install -y --no-install-recommends "$pkg" >/dev/null 2>&1; then
    # A fresh machine has no package lists yet: update once, then retry.
    if [ -z "${RRM_APT_UPDATED:-}" ]; then
      apt-get update >/dev/null 2>&1 || true
      RRM_APT_UPDATED=1
    fi
    apt-get install -y --no-install-recommends "$pkg" >/dev/null 2>&1 || true
  fi
  if command -v "$cmd" >/dev/null 2>&1; then
    return 0
  fi
  echo "skipping $what: could not install $pkg with apt"
  return 1
}

# path_without TOOL...: a PATH in which the named tools are not found (each
# directory holding one is replaced by a shadow of links to the rest), to
# test the runs of a machine that lacks them. The shadows live under
# $RRM_SHADOW_DIR, which the caller removes.
path_without() {
  local out="" dir name f i=0
  local IFS=:
  for dir in $PATH; do
    [ -d "$dir" ] || continue
    local hit=""
    for name in "$@"; do [ -e "$dir/$name" ] && hit=1; done
    if [ -z "$hit" ]; then
      out="${out:+$out:}$dir"
      continue
    fi
    i=$((i + 1))
    local shadow="$RRM_SHADOW_DIR/$i"
    mkdir -p "$shadow"
    for f in "$dir"/*; do
      local base=${f##*/} skip=""
      for name in "$@"; do [ "$base" = "$name" ] && skip=1; done
      [ -z "$skip" ] && ln -sf "$f" "$shadow/$base"
    done
    out="${out:+$out:}$shadow"
  done
  printf '%s\n' "$out"
}
