#!/usr/bin/env bash
# Benchmark: the first sandbox of an image (download from the cache's point of view is nil: the
# tarball is a local file, so this is verify + unpack into the store or the machines dir) against
# a second sandbox of the same image, which `--storage auto` makes from the unpacked-image store:
# a btrfs snapshot on a btrfs loop filesystem, an unpack again (`copy`) on ext4. Both targets in one
# run, side by side; also the space the second sandbox takes.
#
# A benchmark, not a test: it prints medians and ratios and fails only when something does not
# run, never because a number missed its goal (btrfs: second <= 5 % of the first and < 1 s, < 1 %
# extra space; ext4: no slower than the first).
#
#   sudo bench/create-cached.sh
#
# Environment:
#   ROUNDS=3                    rounds per target (each: a fresh store, a first and a second pull)
#   TARGETS="btrfs ext4"        btrfs: a loop file system under DISK_BASE; ext4: DISK_BASE itself
#   BENCH_CACHE=/var/tmp/sandboxes-bench   debootstrap tree and rootfs.tar.xz (shared)
#   BENCH_SUITE=bookworm, BENCH_MIRROR=<from apt sources>
#   SANDBOX_BIN=<path>          instead of `cargo build --release --bin sandbox`
#   DISK_BASE=/var/tmp          where work directories and the loop file are made
#   LOOP_MIB=4096               size of the btrfs loop file
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

ROUNDS=${ROUNDS:-3}
TARGETS=${TARGETS:-btrfs ext4}
BENCH_CACHE=${BENCH_CACHE:-/var/tmp/sandboxes-bench}
BENCH_SUITE=${BENCH_SUITE:-bookworm}
DISK_BASE=${DISK_BASE:-/var/tmp}
LOOP_MIB=${LOOP_MIB:-4096}

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bench_die "ROUNDS must be a positive integer, got '$ROUNDS'"
bench_require_root
bench_ensure_tools debootstrap=debootstrap xz=xz-utils /usr/bin/time=time mkfs.btrfs=btrfs-progs

WORK=$(mktemp -d "$DISK_BASE/sandboxes-bench-cached.XXXXXX")
LOOP_MNT="$WORK/btrfs"
cleanup() {
	local status=$?
	if mountpoint -q "$LOOP_MNT" 2>/dev/null; then umount -l "$LOOP_MNT" || true; fi
	rm -rf --one-file-system -- "$WORK"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TARBALL=$(bench_rootfs_tarball "$BENCH_CACHE" "$BENCH_SUITE" "${BENCH_MIRROR:-$(bench_debian_mirror "$BENCH_SUITE")}")
PIN="sha256:$(cut -d' ' -f1 "$BENCH_CACHE/www/SHA256SUMS")"
entries=$(sed -n 's/^entries=//p' "$BENCH_CACHE/rootfs.info")
tree_bytes=$(sed -n 's/^tree_bytes=//p' "$BENCH_CACHE/rootfs.info")
SANDBOX_BIN=$(bench_sandbox_bin "$REPO_DIR")
BTRFS_BIN=$(command -v btrfs)

used_bytes() { df --output=used -B1 "$1" | tail -n 1 | tr -d ' '; }

RAW="$WORK/raw.tsv"
: >"$RAW"
for target in $TARGETS; do
	case $target in
	btrfs)
		truncate -s "${LOOP_MIB}M" "$WORK/btrfs.img"
		mkfs.btrfs -q -f "$WORK/btrfs.img" >/dev/null
		mkdir -p "$LOOP_MNT"
		mount -o loop "$WORK/btrfs.img" "$LOOP_MNT"
		base=$LOOP_MNT
		;;
	ext4) base=$WORK/ext4 ;;
	*) bench_die "unknown target '$target' (known: btrfs ext4)" ;;
	esac
	fstype=$(df --output=fstype "$base" 2>/dev/null | tail -n 1 || true)
	bench_log "target $target ($base, ${fstype:-?}): $ROUNDS rounds of a first and a second sandbox"
	for ((round = 1; round <= ROUNDS; round++)); do
		dir="$base/run-$round"
		mkdir -p "$dir"
		run() { # run WHO: one pull into machine WHO, timed
			local who=$1
			CMD=(env SANDBOX_BTRFS="$BTRFS_BIN" "$SANDBOX_BIN" -q --root "$dir/root" --sandboxes-dir "$dir/sandboxes"
				--machines-dir "$dir/machines" pull --checksum "$PIN" "$TARBALL" "$who")
			bench_measure "$WORK/time-$target-$who-$round" "$WORK/log-$target-$who-$round" "${CMD[@]}"
		}
		sync
		u0=$(used_bytes "$base")
		read -r first_s _ _ first_rss <<<"$(run first)"
		sync
		u1=$(used_bytes "$base")
		read -r second_s _ _ _ <<<"$(run second)"
		sync
		u2=$(used_bytes "$base")
		[[ -f $dir/machines/second/etc/os-release ]] || bench_die "no tree after the second pull"
		n=$(find "$dir/machines/second" | wc -l)
		((n >= entries)) || bench_die "the second sandbox holds $n entries, the archive $entries"
		storage=$(sed -n 's/.*"storage": "\([a-z]*\)".*/\1/p' "$dir/sandboxes/state/second.json")
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$round" "$first_s" "$second_s" \
			$((u1 - u0)) $((u2 - u1)) "$storage" >>"$RAW"
		bench_log "  $target round $round: first ${first_s}s (peak RSS $((first_rss / 1024)) MiB)," \
			"second ${second_s}s ($storage); space: first $(bench_mib $((u1 - u0))) MiB," \
			"second $(bench_mib $((u2 - u1))) MiB"
		# The stored subvolume is read-only: clear that, then rm -rf deletes it and the snapshots
		# (as root, kernel 4.18 and later).
		if [[ $target == btrfs ]]; then
			for sub in "$dir"/sandboxes/store/*/; do
				[[ -d $sub ]] && "$BTRFS_BIN" property set -ts "$sub" ro false
			done
		fi
		# Not --one-file-system: every btrfs subvolume has a device number of its own.
		rm -rf -- "$dir"
		sync
	done
	if [[ $target == btrfs ]]; then umount "$LOOP_MNT"; fi
done

col() { awk -F'\t' -v t="$1" -v f="$2" '$1 == t { print $f }' "$RAW"; }
echo
echo "rootfs: debian $BENCH_SUITE minbase, $entries entries, $(bench_mib "$tree_bytes") MiB tree; $ROUNDS rounds per target"
echo "host: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s  %-8s  %9s  %10s  %7s  %10s  %11s  %7s\n' target storage first_s second_s ratio first_MiB second_MiB space
for target in $TARGETS; do
	mapfile -t f < <(col "$target" 3)
	mapfile -t s < <(col "$target" 4)
	mapfile -t uf < <(col "$target" 5)
	mapfile -t us < <(col "$target" 6)
	storage=$(col "$target" 7 | head -n 1)
	mf=$(bench_median "${f[@]}")
	ms=$(bench_median "${s[@]}")
	muf=$(bench_median "${uf[@]}")
	mus=$(bench_median "${us[@]}")
	printf '%-6s  %-8s  %9s  %10s  %7s  %10s  %11s  %6s%%\n' "$target" "$storage" "$mf" "$ms" \
		"$(awk -v a="$ms" -v b="$mf" 'BEGIN { printf "%.3f", a / b }')" \
		"$(bench_mib "${muf%.*}")" "$(bench_mib "${mus%.*}")" \
		"$(awk -v a="$mus" -v b="$muf" 'BEGIN { printf "%.2f", 100 * a / b }')"
done
echo "ratio = second / first (median); space = the second sandbox's extra space in % of the first's"
