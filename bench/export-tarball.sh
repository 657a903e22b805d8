#!/usr/bin/env bash
# Benchmark: `sandbox build --output tar:DIR` (pre-baking an image in CI, issue #6) against the shell
# pipeline a CI job would write by hand for the same result: unpack the base rootfs with GNU tar,
# apply the same small fix-ups, re-pack it reproducibly with GNU tar (--sort=name, --mtime clamped
# to SOURCE_DATE_EPOCH, no atime/ctime) through `xz -6 -T0`, and write SHA256SUMS.
#
# A benchmark, not a test: it prints medians, ratios (ours / GNU) and peak RSS, and fails only when
# something does not run, never because a number missed its goal.
#
#   sudo bench/export-tarball.sh
#
# Environment:
#   ROUNDS=3                         measured rounds; each round runs both contenders, their order
#                                    alternating from round to round
#   BENCH_CACHE=/var/tmp/sandboxes-bench
#                                    debootstrap tree, rootfs.tar.xz and SHA256SUMS, kept between runs
#   BENCH_SUITE=bookworm             Debian suite for debootstrap
#   BENCH_MIRROR=<from apt sources>  Debian mirror for debootstrap
#   SANDBOX_BIN=<path>               use this binary instead of `cargo build --release --bin sandbox`
#   DISK_BASE=/var/tmp               where the work directory (root, trees, outputs) is created
#   SOURCE_DATE_EPOCH=1700000000     the clamp time both contenders use
#   KEEP=1                           keep logs and raw timings (not the outputs)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

ROUNDS=${ROUNDS:-3}
BENCH_CACHE=${BENCH_CACHE:-/var/tmp/sandboxes-bench}
BENCH_SUITE=${BENCH_SUITE:-bookworm}
DISK_BASE=${DISK_BASE:-/var/tmp}
EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
KEEP=${KEEP:-0}
TEMPLATE=benchbase
# The sandbox name: both contenders write it to /etc/hostname and name their tarball after it.
NAME=bench
MOTD="built by the export benchmark"

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bench_die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $EPOCH =~ ^[0-9]+$ ]] || bench_die "SOURCE_DATE_EPOCH must be a number of seconds, got '$EPOCH'"

bench_require_root
bench_ensure_tools debootstrap=debootstrap xz=xz-utils /usr/bin/time=time

WORK=$(mktemp -d /tmp/sandboxes-bench-work.XXXXXX)
RUN_BASE=""
cleanup() {
	local status=$?
	# KEEP=1 keeps logs, not trees and tarballs: those are gone after every round anyway.
	[[ -n $RUN_BASE && -d $RUN_BASE ]] && rm -rf --one-file-system -- "$RUN_BASE"
	if [[ $KEEP == 1 ]]; then
		bench_log "kept the work directory $WORK"
	else
		rm -rf -- "$WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the base rootfs tarball, built once and cached ---------------------------------------------

TARBALL=$(bench_rootfs_tarball "$BENCH_CACHE" "$BENCH_SUITE" "${BENCH_MIRROR:-$(bench_debian_mirror "$BENCH_SUITE")}")
TARBALL_SHA=$(sha256sum "$TARBALL" | cut -d' ' -f1)
xz_list=$(xz --robot -lv "$TARBALL")
xz_compressed=$(awk -F'\t' '$1 == "file" { print $4 }' <<<"$xz_list")
xz_uncompressed=$(awk -F'\t' '$1 == "file" { print $5 }' <<<"$xz_list")
entries=$(sed -n 's/^entries=//p' "$BENCH_CACHE/rootfs.info")
tree_bytes=$(sed -n 's/^tree_bytes=//p' "$BENCH_CACHE/rootfs.info")
bench_log "base rootfs.tar.xz: $(bench_mib "$xz_compressed") MiB xz, $(bench_mib "$xz_uncompressed") MiB tar," \
	"$(bench_mib "$tree_bytes") MiB tree, $entries entries"

SANDBOX_BIN=$(bench_sandbox_bin "$REPO_DIR")
"$SANDBOX_BIN" build --help 2>&1 | grep -q -- '--output' ||
	bench_die "$SANDBOX_BIN has no 'build --output' (no --output in 'sandbox build --help'): rebuild it"

# --- the work directory: one private root for ours, trees and outputs, all on one disk ----------

RUN_BASE=$(mktemp -d "$DISK_BASE/sandboxes-bench-export.XXXXXX")
fstype=$(df --output=fstype "$RUN_BASE" | tail -n 1)
# `--root ROOT` moves every host path of the binary (machines dir, sandboxes dir with its cache
# and templates, /etc) under ROOT, so nothing touches the real /var/lib. Its staging tree goes to
# ROOT/var/lib/sandboxes/tmp, on the same disk as the GNU pipeline's tree.
ROOT="$RUN_BASE/root"
SANDBOXES="$ROOT/var/lib/sandboxes"
# Named explicitly as well: without --sandboxes-dir the binary would take $SANDBOXES_DIR or the
# boot pool's ZFS property before ROOT/var/lib/sandboxes.
ROOT_ARGS=(--root "$ROOT" --sandboxes-dir "$SANDBOXES" --machines-dir "$ROOT/var/lib/machines")
mkdir -p "$ROOT/var/lib/machines" "$SANDBOXES/templates/$TEMPLATE/files/etc"
cat >"$SANDBOXES/templates/$TEMPLATE/template.toml" <<-EOF
	description = "export benchmark: debian $BENCH_SUITE minbase"
	source = "file://$TARBALL"
	checksum = "sha256:$TARBALL_SHA"
EOF
# One overlay file, so that both contenders write a file of their own into the tree.
printf '%s\n' "$MOTD" >"$SANDBOXES/templates/$TEMPLATE/files/etc/motd"

# GNU time runs commands, not shell functions: these set CMD to the argument vector of one run.
#
# cmd_ours OUT: the export, run directly under GNU time so its peak RSS is the binary's own.
cmd_ours() {
	CMD=(env SOURCE_DATE_EPOCH="$EPOCH" "$SANDBOX_BIN" "${ROOT_ARGS[@]}" build --output "tar:$1" "$TEMPLATE" "$NAME")
}

# cmd_gnu OUT TREE: the hand-written CI job, in one `bash -c` so that GNU time waits for all of it
# and reports the largest RSS of any process in it (bash, tar, xz). Its fix-ups are the ones ours
# applies to this image: an empty read-only machine-id (each sandbox gets its own at boot), the
# sandbox name as hostname, the overlay's motd, and a cloud-init NoCloud seed (meta-data with the
# instance id and hostname, an empty #cloud-config user-data) as ours writes for every build. The tree is removed inside the timing, as ours removes its
# staging tree. `tar -xJ` decodes with a single-threaded `xz -d`, as a CI job would run it.
# shellcheck disable=SC2016 # $1.. are the inner shell's arguments, expanded there.
GNU_SCRIPT='set -euo pipefail
src=$1 out=$2 tree=$3 name=$4 epoch=$5 motd=$6
mkdir -p "$tree" "$out"
tar --numeric-owner --xattrs --xattrs-include="*" -xJf "$src" -C "$tree"
install -m 0444 /dev/null "$tree/etc/machine-id"
printf "%s\n" "$name" >"$tree/etc/hostname" && chmod 0644 "$tree/etc/hostname"
cp -- "$motd" "$tree/etc/motd"
seed=$tree/var/lib/cloud/seed/nocloud
mkdir -p "$seed"
printf "instance-id: %s\nlocal-hostname: %s\n" "$name" "$name" | install -m 0600 /dev/stdin "$seed/meta-data"
printf "#cloud-config\n" | install -m 0600 /dev/stdin "$seed/user-data"
tar --sort=name --numeric-owner --mtime="@$epoch" --clamp-mtime \
	--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	--xattrs --xattrs-include="*" -C "$tree" -cf - . | xz -6 -T0 >"$out/$name.tar.xz"
printf "[Exec]\nBoot=yes\n" >"$out/$name.nspawn"
(cd "$out" && sha256sum --binary "$name.tar.xz" "$name.nspawn" >SHA256SUMS)
rm -rf --one-file-system -- "$tree"'
cmd_gnu() {
	CMD=(bash -c "$GNU_SCRIPT" _ "$TARBALL" "$1" "$2" "$NAME" "$EPOCH" "$SANDBOXES/templates/$TEMPLATE/files/etc/motd")
}

# check_output OUT: a run must have written the tarball and sums that match it; a fast run that
# wrote nothing would otherwise look like a win.
check_output() {
	local out=$1
	[[ -s $out/$NAME.tar.xz ]] || bench_die "no $out/$NAME.tar.xz after the run"
	(cd "$out" && sha256sum --quiet -c SHA256SUMS) || bench_die "$out/SHA256SUMS does not match the outputs"
}

# tar_names TARBALL: the member names, normalised so that both producers compare: GNU tar lists
# `./etc/` where ours writes `etc/`, and ours writes the top directory as `./`.
tar_names() {
	tar -tJf "$1" | sed -e 's|^\./||' -e 's|/$||' -e 's|^$|.|' | LC_ALL=C sort
}

# tar_meta TARBALL: name, mode, owner and size of every member (no mtimes: GNU tar keeps
# sub-second mtimes below the clamp, ours whole seconds), for the informational comparison.
tar_meta() {
	tar --numeric-owner -tvJf "$1" |
		awk '{ name = $6; for (i = 7; i <= NF; i++) name = name " " $i
			sub(/^\.\//, "", name); sub(/\/$/, "", name); if (name == "") name = "."
			print name "\t" $1 "\t" $2 "\t" $3 }' | LC_ALL=C sort
}

# --- warm-up: ours pulls the base into its cache once ---------------------------------------------

# The timed rounds must measure unpack + layering + reproducible tar + xz + SHA256SUMS, not the
# pull; the warm-up also puts rootfs.tar.xz in the page cache for both contenders.
cat -- "$TARBALL" >/dev/null
bench_log "warm-up: sandbox build --output (pulls $TARBALL into the cache under $ROOT)"
warm=$(bench_measure "$WORK/time-warmup" "$WORK/log-warmup" env SOURCE_DATE_EPOCH="$EPOCH" \
	"$SANDBOX_BIN" "${ROOT_ARGS[@]}" build --output "tar:$RUN_BASE/warmup" "$TEMPLATE" "$NAME")
read -r warm_elapsed _ <<<"$warm"
check_output "$RUN_BASE/warmup"
rm -rf --one-file-system -- "$RUN_BASE/warmup"
bench_log "  warm-up: ${warm_elapsed}s (includes the pull into the cache)"

# --- the rounds -----------------------------------------------------------------------------------

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
contenders=(ours gnu)
declare -A label=([ours]="sandbox build" [gnu]="tar|xz pipeline")
# Raw results, one line per run: contender round elapsed user sys maxrss_kib sync_s bytes sha256.
RAW="$WORK/raw.tsv"
: >"$RAW"
bench_log "work directory $RUN_BASE ($fstype), $ROUNDS rounds of: ${contenders[*]}"
sync
for ((round = 1; round <= ROUNDS; round++)); do
	order=("${contenders[@]}")
	# Alternate who goes first, so that neither always inherits the other's leftovers (dirty pages
	# being written back, a warm dentry cache).
	if ((round % 2 == 0)); then
		order=("${order[1]}" "${order[0]}")
	fi
	for who in "${order[@]}"; do
		out="$RUN_BASE/out-$who-$round"
		"cmd_$who" "$out" "$RUN_BASE/tree-$who-$round"
		# Not `read < <(...)`: a failure inside a process substitution would not stop the script.
		result=$(bench_measure "$WORK/time-$who-$round" "$WORK/log-$who-$round" "${CMD[@]}")
		read -r elapsed user sys rss <<<"$result"
		check_output "$out"
		# Writeback of this run's files must not bill the next run; timed, not part of the result.
		t0=$EPOCHREALTIME
		sync
		t1=$EPOCHREALTIME
		sync_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
		bytes=$(stat -c %s "$out/$NAME.tar.xz")
		sha=$(sha256sum "$out/$NAME.tar.xz" | cut -d' ' -f1)
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$who" "$round" "$elapsed" "$user" "$sys" "$rss" \
			"$sync_s" "$bytes" "$sha" >>"$RAW"
		bench_log "  round $round ${label[$who]}: ${elapsed}s (user ${user}s, sys ${sys}s)," \
			"peak RSS $(bench_mib $((rss * 1024))) MiB, $(bench_mib "$bytes") MiB tar.xz, sync after ${sync_s}s"
	done
	if ((round == 1)); then
		# Like for like: both tarballs must hold the same members. Checked once, outside the timing.
		bench_log "  comparing the member lists of both tarballs"
		tar_names "$RUN_BASE/out-ours-1/$NAME.tar.xz" >"$WORK/names-ours"
		tar_names "$RUN_BASE/out-gnu-1/$NAME.tar.xz" >"$WORK/names-gnu"
		tar_meta "$RUN_BASE/out-ours-1/$NAME.tar.xz" >"$WORK/meta-ours"
		tar_meta "$RUN_BASE/out-gnu-1/$NAME.tar.xz" >"$WORK/meta-gnu"
		xz_blocks_ours=$(xz --robot -lv "$RUN_BASE/out-ours-1/$NAME.tar.xz" | awk -F'\t' '$1 == "file" { print $3 }')
		xz_blocks_gnu=$(xz --robot -lv "$RUN_BASE/out-gnu-1/$NAME.tar.xz" | awk -F'\t' '$1 == "file" { print $3 }')
		tar_ours=$(xz --robot -lv "$RUN_BASE/out-ours-1/$NAME.tar.xz" | awk -F'\t' '$1 == "file" { print $5 }')
		tar_gnu=$(xz --robot -lv "$RUN_BASE/out-gnu-1/$NAME.tar.xz" | awk -F'\t' '$1 == "file" { print $5 }')
	fi
	rm -rf --one-file-system -- "$RUN_BASE/out-ours-$round" "$RUN_BASE/out-gnu-$round"
	sync
done

# --- the report -----------------------------------------------------------------------------------

column_of() { # column_of CONTENDER FIELD -> that field of every run of CONTENDER
	awk -F'\t' -v c="$1" -v f="$2" '$1 == c { print $f }' "$RAW"
}

echo
echo "base: debian $BENCH_SUITE minbase rootfs.tar.xz, $entries entries, $(bench_mib "$tree_bytes") MiB tree," \
	"$(bench_mib "$xz_uncompressed") MiB tar, $(bench_mib "$xz_compressed") MiB xz"
echo "host: $(nproc) CPUs, load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after;" \
	"work dir $RUN_BASE ($fstype)"
echo "warm-up (ours, with the pull into the cache): ${warm_elapsed}s"
echo "rounds: $ROUNDS; cpu = user + sys of the whole process tree;" \
	"peak RSS = largest single process (for the pipeline: max of bash, tar, xz), max over rounds"
printf '%-16s  %8s  %8s  %8s  %8s  %8s  %9s  %9s  %9s\n' contender median_s min_s max_s cpu_s sync_s peak_MiB xz_MiB tar_MiB
declare -A median peak
for who in "${contenders[@]}"; do
	mapfile -t el < <(column_of "$who" 3)
	mapfile -t cpu < <(awk -F'\t' -v c="$who" '$1 == c { print $4 + $5 }' "$RAW")
	mapfile -t rs < <(column_of "$who" 6)
	mapfile -t sn < <(column_of "$who" 7)
	mapfile -t by < <(column_of "$who" 8)
	median[$who]=$(bench_median "${el[@]}")
	peak[$who]=$(bench_mib $(($(bench_max "${rs[@]}") * 1024)))
	if [[ $who == ours ]]; then tar_bytes=$tar_ours; else tar_bytes=$tar_gnu; fi
	printf '%-16s  %8s  %8s  %8s  %8s  %8s  %9s  %9s  %9s\n' "${label[$who]}" "${median[$who]}" \
		"$(printf '%s\n' "${el[@]}" | sort -g | head -n 1)" "$(bench_max "${el[@]}")" \
		"$(bench_median "${cpu[@]}")" "$(bench_median "${sn[@]}")" "${peak[$who]}" \
		"$(bench_mib "${by[0]}")" "$(bench_mib "$tar_bytes")"
done
echo
for who in "${contenders[@]}"; do
	n=$(column_of "$who" 9 | sort -u | wc -l)
	if ((n == 1)); then
		echo "reproducible $who: yes (the same tarball in all $ROUNDS rounds)"
	else
		echo "reproducible $who: NO ($n different tarballs in $ROUNDS rounds)"
	fi
done
echo "xz blocks: ours $xz_blocks_ours, gnu $xz_blocks_gnu"
if cmp -s "$WORK/names-ours" "$WORK/names-gnu"; then
	echo "members: the same $(wc -l <"$WORK/names-ours") names in both tarballs"
else
	echo "members: DIFFERENT (ours $(wc -l <"$WORK/names-ours"), gnu $(wc -l <"$WORK/names-gnu")):"
	# diff exits 1 when the lists differ, which is the case here: not a failure of the script.
	{ diff "$WORK/names-ours" "$WORK/names-gnu" || true; } | grep '^[<>]' | head -n 20 | sed 's/^/  /'
fi
meta_diff=$({ diff "$WORK/meta-ours" "$WORK/meta-gnu" || true; } | grep -c '^<' || true)
echo "members whose type/mode, owner or size differ: $meta_diff"
if ((meta_diff > 0)); then
	{ diff "$WORK/meta-ours" "$WORK/meta-gnu" || true; } | grep '^[<>]' | head -n 10 | sed 's/^/  /'
fi
mapfile -t paired < <(awk -F'\t' '{ e[$2, $1] = $3; r[$2] = 1 }
	END { for (i in r) if (e[i, "gnu"] > 0) print e[i, "ours"] / e[i, "gnu"] }' "$RAW")
printf 'paired %.2f (median of per-round ours/GNU; range %.2f .. %.2f)\n' "$(bench_median "${paired[@]}")" \
	"$(printf '%s\n' "${paired[@]}" | sort -g | head -n 1)" "$(bench_max "${paired[@]}")"
echo "ratio $(awk -v a="${median[ours]}" -v b="${median[gnu]}" 'BEGIN { printf "%.2f", a / b }') (median ours / median GNU)"
echo "rss ours ${peak[ours]} MiB, gnu ${peak[gnu]} MiB"
if [[ $KEEP == 1 ]]; then
	cp -- "$RAW" "$BENCH_CACHE/last-export-raw.tsv"
	bench_log "raw timings in $RAW (and $BENCH_CACHE/last-export-raw.tsv)"
fi
