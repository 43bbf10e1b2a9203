#!/usr/bin/env bash
# Every relative link between the repository's markdown pages resolves: the file or folder
# it names exists and, for a #anchor into a markdown page, one of that page's headings makes
# that anchor (GitHub's rule: lower case, punctuation dropped, spaces to hyphens, -1, -2 for
# repeats). Pages move and headings get renamed; this keeps a newcomer's next click working.
# `make check-links`; `make test` runs it too.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# anchors <page>: the anchors the page's headings make, one per line (fenced code skipped).
anchors() {
  awk '/^[[:space:]]*```/ { fence = !fence; next }
       !fence && /^#+ / { sub(/^#+ +/, ""); sub(/[[:space:]]+$/, ""); print }' "$1" |
    tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9 _-]//g; s/ /-/g' |
    awk '{ n = seen[$0]++; print (n ? $0 "-" n : $0) }'
}

failed=0
while IFS= read -r page; do
  dir=$(dirname "$page")
  # every ](target) outside fenced code, minus web and mail links
  while IFS= read -r target; do
    path=${target%%#*}
    anchor=""
    [[ $target == *"#"* ]] && anchor=${target#*#}
    file=$page
    [ -n "$path" ] && file=$dir/$path
    if [ ! -e "$file" ]; then
      echo "$page: link to $target: $file does not exist" >&2; failed=1; continue
    fi
    if [ -n "$anchor" ] && [[ $file == *.md ]] && ! anchors "$file" | grep -qxF -- "$anchor"; then
      echo "$page: link to $target: no heading in $file makes #$anchor" >&2; failed=1
    fi
  done < <(awk '/^[[:space:]]*```/ { fence = !fence; next } !fence' "$page" |
             grep -oE '\]\([^) ]+\)' | sed -E 's/^\]\((.*)\)$/\1/' | grep -vE '^(https?|mailto):')
done < <(git ls-files -co --exclude-standard '*.md')

[ $failed = 0 ] && echo "every link between the markdown pages resolves"
exit $failed
