#!/usr/bin/env bash
# Benchmark: `sandbox pull` of a rootfs tarball against the pipeline machinectl 252 runs for
# `machinectl pull-tar` (systemd-pull downloads and decodes xz with single-threaded liblzma, then pipes
# into `tar --numeric-owner -C DIR -px --xattrs --xattrs-include=*`). Here that pipeline is
# `curl | tar -xJ`: the same single-threaded xz decoding and the same GNU tar extraction, in a
# separate xz process instead of inside systemd-pull.
#
# A benchmark, not a test: it prints medians, ratios (ours / GNU) and peak RSS, and fails only when
# something does not run, never because a number missed its goal.
#
#   sudo bench/pull-tarball.sh
#
# Environment:
#   ROUNDS=5                         measured rounds per target; each round runs both contenders,
#                                    their order alternating from round to round
#   TARGETS="tmpfs disk"             which targets to measure
#   BENCH_CACHE=/var/tmp/sandboxes-bench
#                                    debootstrap tree, rootfs.tar.xz and SHA256SUMS, kept between runs
#   BENCH_SUITE=bookworm             Debian suite for debootstrap
#   BENCH_MIRROR=<from apt sources>  Debian mirror for debootstrap
#   SANDBOX_BIN=<path>               use this binary instead of `cargo build --release --bin sandbox`
#   TMPFS_BASE=/dev/shm, DISK_BASE=/var/tmp
#                                    where the per-target work directories are created
#   KEEP=1                           keep the work directory (logs, raw timings, nginx config)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

ROUNDS=${ROUNDS:-5}
TARGETS=${TARGETS:-tmpfs disk}
BENCH_CACHE=${BENCH_CACHE:-/var/tmp/sandboxes-bench}
BENCH_SUITE=${BENCH_SUITE:-bookworm}
TMPFS_BASE=${TMPFS_BASE:-/dev/shm}
DISK_BASE=${DISK_BASE:-/var/tmp}
KEEP=${KEEP:-0}
GOAL_RATIO=1.0
GOAL_RSS_MIB=64
# The name `sandbox pull` gives the machine; only used inside throw-away directories.
MACHINE=bench

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bench_die "ROUNDS must be a positive integer, got '$ROUNDS'"
for t in $TARGETS; do
	[[ $t == tmpfs || $t == disk ]] || bench_die "unknown target '$t' in TARGETS (known: tmpfs disk)"
done

bench_require_root
bench_ensure_tools debootstrap=debootstrap xz=xz-utils curl=curl nginx=nginx-light \
	/usr/bin/time=time ss=iproute2

WORK=$(mktemp -d /tmp/sandboxes-bench-work.XXXXXX)
RUN_DIRS=()
cleanup() {
	local status=$?
	bench_stop_nginx
	local d
	for d in "${RUN_DIRS[@]}"; do
		# KEEP=1 keeps logs, not unpacked trees: those are gone after every run anyway.
		[[ -n $d && -d $d ]] && rm -rf --one-file-system -- "$d"
	done
	if [[ $KEEP == 1 ]]; then
		bench_log "kept the work directory $WORK"
	else
		rm -rf -- "$WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the rootfs tarball, built once and cached --------------------------------------------------

WWW="$BENCH_CACHE/www"
INFO="$BENCH_CACHE/rootfs.info"
TARBALL=$(bench_rootfs_tarball "$BENCH_CACHE" "$BENCH_SUITE" "${BENCH_MIRROR:-$(bench_debian_mirror "$BENCH_SUITE")}")

# Facts about the archive, for the report: the block count says whether a parallel xz decoder has
# anything to parallelise (xz -T0 writes independent blocks of 3 x dictionary size, 24 MiB at -6).
xz_list=$(xz --robot -lv "$TARBALL")
xz_blocks=$(awk -F'\t' '$1 == "file" { print $3 }' <<<"$xz_list")
xz_compressed=$(awk -F'\t' '$1 == "file" { print $4 }' <<<"$xz_list")
xz_uncompressed=$(awk -F'\t' '$1 == "file" { print $5 }' <<<"$xz_list")
entries=$(sed -n 's/^entries=//p' "$INFO")
tree_bytes=$(sed -n 's/^tree_bytes=//p' "$INFO")
mib() { bench_mib "$@"; }
bench_log "rootfs.tar.xz: $(mib "$xz_compressed") MiB compressed, $(mib "$xz_uncompressed") MiB tar stream," \
	"$(mib "$tree_bytes") MiB tree (du), $entries entries, $xz_blocks xz blocks"

# --- the contenders ---------------------------------------------------------------------------

OURS_AVAILABLE=1
SANDBOX_BIN=$(bench_sandbox_bin "$REPO_DIR")
# A binary without the pull command (the skeleton's empty main exits 0 for anything) must not be
# timed as if it had pulled: ask for the pull help and look for the option the benchmark uses.
if ! "$SANDBOX_BIN" pull --help 2>&1 | grep -q -- '--verify'; then
	bench_log "WARNING: $SANDBOX_BIN has no working 'pull' command: measuring the GNU pipeline only"
	OURS_AVAILABLE=0
fi

bench_start_nginx "$WWW" "$WORK"
URL="http://127.0.0.1:$BENCH_NGINX_PORT/rootfs.tar.xz"
# Both contenders then read the same page-cached file through nginx: no run pays a cold read.
curl -fsS -o /dev/null "$URL"
curl -fsS -o /dev/null "http://127.0.0.1:$BENCH_NGINX_PORT/SHA256SUMS"

# GNU time runs commands, not shell functions: these set CMD to the argument vector of one run.
#
# cmd_ours DIR: one `sandbox pull` with everything it owns (cache, machines dir) inside DIR, which is
# fresh, so the cache is empty and every run downloads, verifies and unpacks. Run directly under
# GNU time, so its peak RSS is the binary's own.
cmd_ours() {
	local dir=$1
	CMD=("$SANDBOX_BIN" --root "$dir/root" --sandboxes-dir "$dir/sandboxes" --machines-dir "$dir/machines"
		pull --verify=checksum "$URL" "$MACHINE")
}

# cmd_gnu DIR: machinectl 252's pipeline into DIR/machines/NAME. `bash -c` so that GNU time waits for
# the whole pipeline (curl, tar and the xz that tar spawns) and reports their largest RSS.
# --xattrs-include='*' as machinectl passes it: without it GNU tar restores only user.* attributes.
cmd_gnu() {
	local dir=$1
	mkdir -p "$dir/machines/$MACHINE"
	# shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments, expanded there.
	CMD=(bash -c 'set -o pipefail; curl -sS --fail "$1" |
		tar -xJ --numeric-owner --xattrs --xattrs-include="*" -C "$2"'
		_ "$URL" "$dir/machines/$MACHINE")
}

# check_tree DIR: both contenders must have produced the whole tree; a fast run that unpacked
# nothing would otherwise look like a win.
check_tree() {
	local root="$1/machines/$MACHINE" n
	[[ -f $root/etc/os-release ]] || bench_die "no $root/etc/os-release after the run"
	# find counts the root itself (tar lists it as ./), so the two numbers compare directly.
	# More is allowed (ours may record provenance in the tree); fewer means something was lost.
	n=$(find "$root" | wc -l)
	((n >= entries)) || bench_die "$root holds $n entries, the archive $entries"
	((n == entries)) || bench_log "  note: $root holds $n entries, the archive $entries"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
contenders=(gnu)
((OURS_AVAILABLE)) && contenders=(ours gnu)
declare -A label=([ours]="sandbox pull" [gnu]="curl | tar -xJ")
# Raw results, one line per run: target contender round elapsed user sys maxrss_kib sync_s.
RAW="$WORK/raw.tsv"
: >"$RAW"

for target in $TARGETS; do
	case $target in
	tmpfs) base=$TMPFS_BASE ;;
	disk) base=$DISK_BASE ;;
	esac
	run_base=$(mktemp -d "$base/sandboxes-bench-run.XXXXXX")
	RUN_DIRS+=("$run_base")
	# df names ext4 as such (`stat -f` only knows the shared ext2/3/4 magic number) and, unlike
	# `findmnt -T`, prints one line when something is mounted over a mount point.
	fstype=$(df --output=fstype "$run_base" | tail -n 1)
	bench_log "target $target: $run_base ($fstype), $ROUNDS rounds of: ${contenders[*]}"
	sync
	for ((round = 1; round <= ROUNDS; round++)); do
		order=("${contenders[@]}")
		# Alternate who goes first, so that neither always inherits the other's leftovers (dirty
		# pages, a warm dentry cache, freed tmpfs pages).
		if ((round % 2 == 0 && ${#order[@]} == 2)); then
			order=("${order[1]}" "${order[0]}")
		fi
		for who in "${order[@]}"; do
			dir="$run_base/$who-$round"
			mkdir -p "$dir"
			"cmd_$who" "$dir"
			# Not `read < <(...)`: a failure inside a process substitution would not stop the script.
			result=$(bench_measure "$WORK/time-$target-$who-$round" "$WORK/log-$target-$who-$round" "${CMD[@]}")
			read -r elapsed user sys rss <<<"$result"
			check_tree "$dir"
			# Writeback of this run's tree must not bill the next run. The sync is timed but not
			# part of the result: GNU tar never syncs, and what ours fsyncs is already in `elapsed`.
			t0=$EPOCHREALTIME
			sync
			t1=$EPOCHREALTIME
			sync_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
			rm -rf --one-file-system -- "$dir"
			sync
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$who" "$round" "$elapsed" "$user" \
				"$sys" "$rss" "$sync_s" >>"$RAW"
			bench_log "  $target round $round ${label[$who]}: ${elapsed}s (user ${user}s, sys ${sys}s)," \
				"peak RSS $(mib $((rss * 1024))) MiB, sync after ${sync_s}s"
		done
	done
	rm -rf --one-file-system -- "$run_base"
done

# --- the report -------------------------------------------------------------------------------

column_of() { # column_of TARGET CONTENDER FIELD -> that field of every matching run
	awk -F'\t' -v t="$1" -v c="$2" -v f="$3" '$1 == t && $2 == c { print $f }' "$RAW"
}

echo
echo "rootfs: debian $BENCH_SUITE minbase, $entries entries, $(mib "$tree_bytes") MiB tree," \
	"$(mib "$xz_uncompressed") MiB tar, $(mib "$xz_compressed") MiB xz in $xz_blocks blocks"
# Other work on the machine inflates both contenders' wall times, but not by the same factor (ours
# may use more cores than the pipeline), so the load is part of the result.
echo "host: $(nproc) CPUs, load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
echo "rounds: $ROUNDS per target; cpu = user + sys of the whole process tree;" \
	"peak RSS = largest single process (for the pipeline: max of curl, tar, xz), max over rounds"
printf '%-6s  %-15s  %8s  %8s  %8s  %8s  %8s  %9s\n' target contender median_s min_s max_s cpu_s sync_s peak_MiB
declare -A median peak
for target in $TARGETS; do
	for who in "${contenders[@]}"; do
		mapfile -t el < <(column_of "$target" "$who" 4)
		mapfile -t us < <(column_of "$target" "$who" 5)
		mapfile -t sy < <(column_of "$target" "$who" 6)
		mapfile -t rs < <(column_of "$target" "$who" 7)
		mapfile -t sn < <(column_of "$target" "$who" 8)
		mapfile -t cpu < <(paste <(printf '%s\n' "${us[@]}") <(printf '%s\n' "${sy[@]}") | awk '{ print $1 + $2 }')
		median[$target/$who]=$(bench_median "${el[@]}")
		peak[$target/$who]=$(mib $(($(bench_max "${rs[@]}") * 1024)))
		printf '%-6s  %-15s  %8s  %8s  %8s  %8s  %8s  %9s\n' "$target" "${label[$who]}" \
			"${median[$target/$who]}" "$(printf '%s\n' "${el[@]}" | sort -g | head -n 1)" \
			"$(bench_max "${el[@]}")" "$(bench_median "${cpu[@]}")" "$(bench_median "${sn[@]}")" \
			"${peak[$target/$who]}"
	done
done
echo
for target in $TARGETS; do
	if ((OURS_AVAILABLE)); then
		ratio=$(awk -v a="${median[$target/ours]}" -v b="${median[$target/gnu]}" 'BEGIN { printf "%.2f", a / b }')
		# The two runs of one round are neighbours in time, so their ratio cancels most of the drift
		# in the machine's load that the ratio of medians keeps; a large gap between the two numbers
		# means the run was too noisy to trust either.
		mapfile -t paired < <(awk -F'\t' -v t="$target" '$1 == t { e[$3, $2] = $4; r[$3] = 1 }
			END { for (i in r) if (e[i, "gnu"] > 0) print e[i, "ours"] / e[i, "gnu"] }' "$RAW")
		printf 'paired %s %.2f (median of per-round ours/GNU; range %.2f .. %.2f)\n' "$target" \
			"$(bench_median "${paired[@]}")" "$(printf '%s\n' "${paired[@]}" | sort -g | head -n 1)" \
			"$(bench_max "${paired[@]}")"
		echo "ratio $target $ratio (goal <= $GOAL_RATIO)"
		echo "rss $target ours ${peak[$target/ours]} MiB, gnu ${peak[$target/gnu]} MiB (goal <= $GOAL_RSS_MIB MiB)"
	else
		echo "ratio $target n/a: sandbox pull not measured (goal <= $GOAL_RATIO)"
	fi
done
if [[ $KEEP == 1 ]]; then
	cp -- "$RAW" "$BENCH_CACHE/last-raw.tsv"
	bench_log "raw timings in $RAW (and $BENCH_CACHE/last-raw.tsv)"
fi
