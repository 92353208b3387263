#!/bin/bash
# t_readme_files: README.md's "### Files" table names every source file of
# router/, net/, xml/, bench/ and tools/ (each with its one-line role), and
# names no file that is gone. Reads files only: no process, no port.
#   readme_names_every_source_file   each .c/.h/.sh/.py there is in the table
#   readme_names_only_existing_files each `dir/file` in the table exists
#                                    (bench/peers/*.in stands for the templates)
cd "$(dirname "$0")/../.." || exit 1
table=$(awk '/^### Files/ { f = 1; next } /^#/ { f = 0 } f' README.md)
if [ -z "$table" ]; then
	echo "not ok readme_has_a_files_table (no \"### Files\" section in README.md)"
	exit 1
fi
fails=0

missing=()
while read -r f; do
	grep -qF "\`$f\`" <<<"$table" || missing+=("$f")
done < <(find router net xml bench tools -type f \( -name '*.c' -o -name '*.h' -o -name '*.sh' -o -name '*.py' \) | sort)
if [ "${#missing[@]}" -eq 0 ]; then
	echo "ok readme_names_every_source_file"
else
	fails=$((fails + 1))
	echo "not ok readme_names_every_source_file (not in README.md's Files table: ${missing[*]})"
fi

gone=()
# shellcheck disable=SC2016 # the backquotes are literal
while read -r f; do
	case $f in
	*'*'*) compgen -G "$f" >/dev/null || gone+=("$f") ;;
	*) [ -e "$f" ] || gone+=("$f") ;;
	esac
done < <(grep -oE '`(router|net|xml|bench|tools)/[^` ]+`' <<<"$table" | tr -d '`' | sort -u)
if [ "${#gone[@]}" -eq 0 ]; then
	echo "ok readme_names_only_existing_files"
else
	fails=$((fails + 1))
	echo "not ok readme_names_only_existing_files (named in README.md but absent: ${gone[*]})"
fi
[ "$fails" -eq 0 ]
