#!/usr/bin/env bash
# Benchmark: `sandbox pull docker://…` against the two-step way the containers tools do it on
# Debian 12: `skopeo copy docker://… oci:DIR:TAG` (download into an OCI layout, verifying digests),
# then `umoci raw unpack --image DIR:TAG ROOTFS` (gunzip and extract every layer). The image is a
# one-layer OCI image of the same debootstrap minbase tree bench/pull-tarball.sh uses, pushed into
# Debian's `docker-registry` on 127.0.0.1 (plain http), so that both contenders fetch the same blobs
# from the same local registry.
#
# A benchmark, not a test: it prints medians, ratios (ours / skopeo+umoci) and peak RSS, and fails
# only when something does not run, never because a number missed its goal.
#
#   sudo bench/pull-oci.sh
#
# Environment:
#   ROUNDS=5                         measured rounds per target; each round runs both contenders,
#                                    their order alternating from round to round
#   TARGETS="tmpfs disk"             which targets to measure
#   BENCH_CACHE=/var/tmp/sandboxes-bench
#                                    debootstrap tree (shared with pull-tarball.sh) and the OCI
#                                    layout built from it (oci/), kept between runs
#   BENCH_SUITE=bookworm             Debian suite for debootstrap
#   BENCH_MIRROR=<from apt sources>  Debian mirror for debootstrap
#   SANDBOX_BIN=<path>               use this binary instead of `cargo build --release --bin sandbox`
#   TMPFS_BASE=/dev/shm, DISK_BASE=/var/tmp
#                                    where the per-target work directories are created
#   KEEP=1                           keep the work directory (logs, raw timings, registry config)
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
declare -A GOAL_RATIO=([tmpfs]=0.5 [disk]=1.0)
GOAL_RSS_MIB=64
# The machine name and the image's repository and tag; only used inside throw-away directories and
# the private registry.
MACHINE=bench
TAG=bench

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bench_die "ROUNDS must be a positive integer, got '$ROUNDS'"
for t in $TARGETS; do
	[[ $t == tmpfs || $t == disk ]] || bench_die "unknown target '$t' in TARGETS (known: tmpfs disk)"
done

bench_require_root
bench_ensure_tools debootstrap=debootstrap gzip=gzip curl=curl skopeo=skopeo umoci=umoci \
	docker-registry=docker-registry sha256sum=coreutils /usr/bin/time=time ss=iproute2

WORK=$(mktemp -d /tmp/sandboxes-bench-oci.XXXXXX)
RUN_DIRS=()
REGISTRY_PID=
stop_registry() {
	if [[ -n $REGISTRY_PID ]]; then
		kill "$REGISTRY_PID" 2>/dev/null || true
		wait "$REGISTRY_PID" 2>/dev/null || true
		REGISTRY_PID=
	fi
}
cleanup() {
	local status=$?
	stop_registry
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

mib() { bench_mib "$@"; }

# --- the OCI layout, built once and cached ----------------------------------------------------

LAYOUT="$BENCH_CACHE/oci"
INFO="$BENCH_CACHE/oci.info"

# blob_put FILE: moves FILE into the layout under its sha256 and prints "DIGEST_HEX SIZE".
blob_put() {
	local file=$1 hex size
	hex=$(sha256sum "$file" | cut -d' ' -f1)
	size=$(stat -c %s "$file")
	mv -- "$file" "$LAYOUT.tmp/blobs/sha256/$hex"
	printf '%s %s\n' "$hex" "$size"
}

# Written by hand rather than with `umoci init/new/insert`: umoci insert would re-tar the tree with
# its own rules (and `umoci repack` needs an unpacked bundle with mtree metadata first), whereas this
# way the layer is exactly GNU tar's archive of the tree, the same member list pull-tarball.sh serves,
# and gzip's default level is what `docker build` and buildah write.
build_layout() {
	local mirror=${BENCH_MIRROR:-$(bench_debian_mirror "$BENCH_SUITE")}
	local tree
	tree=$(bench_debootstrap_tree "$BENCH_CACHE" "$BENCH_SUITE" "$mirror")
	rm -rf -- "$LAYOUT.tmp"
	mkdir -p "$LAYOUT.tmp/blobs/sha256"
	bench_log "archiving $tree with tar | gzip into an OCI layout"
	# The uncompressed tar goes to a file first: its sha256 is the layer's diff_id, which the config
	# must name and which both contenders check after gunzip.
	local tarfile="$LAYOUT.tmp/layer.tar"
	tar --numeric-owner --xattrs --xattrs-include='*' --sort=name -C "$tree" -cf "$tarfile" .
	local diff_id tar_bytes entries
	diff_id=$(sha256sum "$tarfile" | cut -d' ' -f1)
	tar_bytes=$(stat -c %s "$tarfile")
	entries=$(tar -tf "$tarfile" | wc -l)
	gzip -n -6 -c "$tarfile" >"$LAYOUT.tmp/layer.tar.gz"
	rm -f -- "$tarfile"
	local layer layer_hex layer_size config config_hex config_size manifest manifest_hex manifest_size
	layer=$(blob_put "$LAYOUT.tmp/layer.tar.gz")
	read -r layer_hex layer_size <<<"$layer"
	local arch created
	arch=$(dpkg --print-architecture)
	created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	printf '{"architecture":"%s","os":"linux","created":"%s","config":{"Cmd":["/bin/bash"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"debootstrap --variant=minbase %s"}]}' \
		"$arch" "$created" "$diff_id" "$created" "$BENCH_SUITE" >"$LAYOUT.tmp/config.json"
	config=$(blob_put "$LAYOUT.tmp/config.json")
	read -r config_hex config_size <<<"$config"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
		"$config_hex" "$config_size" "$layer_hex" "$layer_size" >"$LAYOUT.tmp/manifest.json"
	manifest=$(blob_put "$LAYOUT.tmp/manifest.json")
	read -r manifest_hex manifest_size <<<"$manifest"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
		"$manifest_hex" "$manifest_size" "$arch" "$TAG" >"$LAYOUT.tmp/index.json"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT.tmp/oci-layout"
	# skopeo reads the layout back and checks every digest: a malformed layout fails here, before
	# any timing, instead of as a confusing pull error later.
	skopeo inspect --raw "oci:$LAYOUT.tmp:$TAG" >/dev/null ||
		bench_die "skopeo cannot read the OCI layout just written in $LAYOUT.tmp"
	rm -rf -- "$LAYOUT"
	mv -- "$LAYOUT.tmp" "$LAYOUT"
	{
		echo "suite=$BENCH_SUITE"
		echo "built=$created"
		echo "layer=sha256:$layer_hex"
		echo "layer_bytes=$layer_size"
		echo "diff_id=sha256:$diff_id"
		echo "tar_bytes=$tar_bytes"
		echo "entries=$entries"
		echo "tree_bytes=$(du -sb "$tree" | cut -f1)"
	} >"$INFO"
}

# The cache is good when every blob still matches its name (a half-written or damaged layer would
# otherwise be pushed, and then fail both contenders' digest checks).
layout_ok() {
	[[ -f $INFO && -f $LAYOUT/index.json ]] || return 1
	local b
	for b in "$LAYOUT"/blobs/sha256/*; do
		[[ -f $b ]] || return 1
		[[ $(sha256sum "$b" | cut -d' ' -f1) == "$(basename "$b")" ]] || return 1
	done
}

if layout_ok; then
	bench_log "using cached $LAYOUT"
else
	build_layout
fi
info() { sed -n "s/^$1=//p" "$INFO"; }
entries=$(info entries)
layer_bytes=$(info layer_bytes)
tar_bytes=$(info tar_bytes)
tree_bytes=$(info tree_bytes)
bench_log "layer: $(mib "$layer_bytes") MiB gzip, $(mib "$tar_bytes") MiB tar, $(mib "$tree_bytes") MiB tree (du)," \
	"$entries entries"

# --- the contenders ---------------------------------------------------------------------------

SANDBOX_BIN=$(bench_sandbox_bin "$REPO_DIR")
# A binary from before OCI support would fail every round with an unhelpful "unknown source":
# refuse it up front.
"$SANDBOX_BIN" pull --help 2>&1 | grep -q -- '--tls-verify' ||
	bench_die "$SANDBOX_BIN has no OCI pull (no --tls-verify in 'sandbox pull --help'): rebuild it"

# --- the registry -----------------------------------------------------------------------------

# start_registry DIR: Debian's docker-registry with filesystem storage under DIR, on a free port.
# Sets REGISTRY_PID and REGISTRY. Retries with another port, as the free one may be taken first.
start_registry() {
	local dir=$1 attempt port _
	mkdir -p "$dir/storage"
	for attempt in 1 2 3 4 5; do
		port=$(bench_free_port)
		cat >"$dir/config.yml" <<-EOF
			version: 0.1
			log:
			  level: warn
			storage:
			  filesystem:
			    rootdirectory: $dir/storage
			http:
			  addr: 127.0.0.1:$port
		EOF
		docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 &
		REGISTRY_PID=$!
		for _ in $(seq 100); do
			# The API version header is the registry's own: a neighbour on the port has none.
			if curl -fsS -D - -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null |
				grep -qi '^docker-distribution-api-version'; then
				REGISTRY=127.0.0.1:$port
				bench_log "docker-registry (pid $REGISTRY_PID) on http://$REGISTRY/"
				return 0
			fi
			kill -0 "$REGISTRY_PID" 2>/dev/null || break
			sleep 0.1
		done
		stop_registry
		bench_log "docker-registry did not come up on port $port (attempt $attempt), retrying"
	done
	bench_die "docker-registry failed to start; see $dir/registry.log"
}

# In WORK, not in a target: the registry's storage is the source both contenders read, the same for
# every target, as nginx's docroot is for pull-tarball.sh.
start_registry "$WORK/registry"
IMAGE="docker://$REGISTRY/$TAG:latest"
bench_log "pushing oci:$LAYOUT:$TAG to $IMAGE"
skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:$TAG" "$IMAGE" >&2 ||
	bench_die "skopeo copy into the local registry failed"
# Both contenders then read the layer from the page cache: no run pays a cold read.
curl -fsS -o /dev/null "http://$REGISTRY/v2/$TAG/blobs/$(info layer)"

# GNU time runs commands, not shell functions: these set CMD to the argument vector of one run.
#
# cmd_ours DIR: one `sandbox pull` with everything it owns (cache, machines dir) inside DIR, which is
# fresh, so the cache is empty and every run downloads, verifies and unpacks. --verify=no: there is
# no signature for a private registry; the digests (manifest, config, layer, diff_id) are still
# checked, as skopeo and umoci check them. Run directly under GNU time: its peak RSS is the binary's.
cmd_ours() {
	local dir=$1
	CMD=("$SANDBOX_BIN" --root "$dir/root" --sandboxes-dir "$dir/sandboxes" --machines-dir "$dir/machines"
		pull --verify=no --tls-verify=false "$IMAGE" "$MACHINE")
}

# cmd_gnu DIR: skopeo into a fresh layout DIR/oci, then umoci into DIR/machines/NAME. `bash -c` so
# that GNU time waits for both and reports the larger RSS; the shell prints its own timestamps
# between the two steps, so that the report can split the wall time into copy and unpack.
cmd_gnu() {
	local dir=$1
	mkdir -p "$dir/machines"
	# shellcheck disable=SC2016 # $1.. are the inner shell's arguments, expanded there.
	CMD=(bash -c 'set -e; t0=$EPOCHREALTIME
		skopeo copy --quiet --src-tls-verify=false "$1" "oci:$2:$3"
		t1=$EPOCHREALTIME
		umoci --log error raw unpack --image "$2:$3" "$4"
		t2=$EPOCHREALTIME
		echo "phases $t0 $t1 $t2"'
		_ "$IMAGE" "$dir/oci" "$TAG" "$dir/machines/$MACHINE")
}

# check_tree DIR: both contenders must have produced the whole tree; a fast run that unpacked
# nothing would otherwise look like a win.
check_tree() {
	local root="$1/machines/$MACHINE" n
	[[ -f $root/etc/os-release ]] || bench_die "no $root/etc/os-release after the run"
	# find counts the root itself (tar lists it as ./), so the two numbers compare directly.
	n=$(find "$root" | wc -l)
	((n >= entries)) || bench_die "$root holds $n entries, the layer $entries"
	((n == entries)) || bench_log "  note: $root holds $n entries, the layer $entries"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
contenders=(ours gnu)
declare -A label=([ours]="sandbox pull" [gnu]="skopeo+umoci")
# Raw results, one line per run: target contender round elapsed user sys maxrss_kib sync_s copy_s
# unpack_s (the last two only for skopeo+umoci).
RAW="$WORK/raw.tsv"
: >"$RAW"

for target in $TARGETS; do
	case $target in
	tmpfs) base=$TMPFS_BASE ;;
	disk) base=$DISK_BASE ;;
	esac
	run_base=$(mktemp -d "$base/sandboxes-bench-oci.XXXXXX")
	RUN_DIRS+=("$run_base")
	fstype=$(df --output=fstype "$run_base" | tail -n 1)
	bench_log "target $target: $run_base ($fstype), $ROUNDS rounds of: ${contenders[*]}"
	sync
	for ((round = 1; round <= ROUNDS; round++)); do
		order=("${contenders[@]}")
		# Alternate who goes first, so that neither always inherits the other's leftovers (dirty
		# pages, a warm dentry cache, freed tmpfs pages).
		((round % 2 == 0)) && order=("${order[1]}" "${order[0]}")
		for who in "${order[@]}"; do
			dir="$run_base/$who-$round"
			mkdir -p "$dir"
			"cmd_$who" "$dir"
			log="$WORK/log-$target-$who-$round"
			result=$(bench_measure "$WORK/time-$target-$who-$round" "$log" "${CMD[@]}")
			read -r elapsed user sys rss <<<"$result"
			check_tree "$dir"
			copy_s=- unpack_s=-
			if [[ $who == gnu ]]; then
				read -r copy_s unpack_s < <(awk '$1 == "phases" { printf "%.2f %.2f\n", $3 - $2, $4 - $3 }' "$log")
			fi
			# Writeback of this run's tree must not bill the next run. The sync is timed but not
			# part of the result: neither umoci nor GNU tar syncs; what ours fsyncs is in `elapsed`.
			t0=$EPOCHREALTIME
			sync
			t1=$EPOCHREALTIME
			sync_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
			rm -rf --one-file-system -- "$dir"
			sync
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$who" "$round" "$elapsed" "$user" \
				"$sys" "$rss" "$sync_s" "$copy_s" "$unpack_s" >>"$RAW"
			phases=""
			[[ $who == gnu ]] && phases=" (copy ${copy_s}s + unpack ${unpack_s}s)"
			bench_log "  $target round $round ${label[$who]}: ${elapsed}s$phases (user ${user}s, sys ${sys}s)," \
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
echo "image: debian $BENCH_SUITE minbase, one layer: $(mib "$layer_bytes") MiB gzip, $(mib "$tar_bytes") MiB tar," \
	"$(mib "$tree_bytes") MiB tree, $entries entries"
echo "host: $(nproc) CPUs, load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
echo "tools: $(skopeo --version), $(umoci --version), docker-registry $(dpkg-query -W -f '${Version}' docker-registry)"
echo "rounds: $ROUNDS per target; cpu = user + sys of the whole process tree;" \
	"peak RSS = largest single process (skopeo or umoci), max over rounds"
printf '%-6s  %-13s  %8s  %8s  %8s  %8s  %8s  %9s  %8s  %8s\n' target contender median_s min_s max_s cpu_s sync_s \
	peak_MiB copy_s unpack_s
declare -A median peak
for target in $TARGETS; do
	for who in "${contenders[@]}"; do
		mapfile -t el < <(column_of "$target" "$who" 4)
		mapfile -t us < <(column_of "$target" "$who" 5)
		mapfile -t sy < <(column_of "$target" "$who" 6)
		mapfile -t rs < <(column_of "$target" "$who" 7)
		mapfile -t sn < <(column_of "$target" "$who" 8)
		mapfile -t cpu < <(paste <(printf '%s\n' "${us[@]}") <(printf '%s\n' "${sy[@]}") | awk '{ print $1 + $2 }')
		copy=- unpack=-
		if [[ $who == gnu ]]; then
			mapfile -t cp_s < <(column_of "$target" "$who" 9)
			mapfile -t up_s < <(column_of "$target" "$who" 10)
			copy=$(bench_median "${cp_s[@]}")
			unpack=$(bench_median "${up_s[@]}")
		fi
		median[$target/$who]=$(bench_median "${el[@]}")
		peak[$target/$who]=$(mib $(($(bench_max "${rs[@]}") * 1024)))
		printf '%-6s  %-13s  %8s  %8s  %8s  %8s  %8s  %9s  %8s  %8s\n' "$target" "${label[$who]}" \
			"${median[$target/$who]}" "$(printf '%s\n' "${el[@]}" | sort -g | head -n 1)" \
			"$(bench_max "${el[@]}")" "$(bench_median "${cpu[@]}")" "$(bench_median "${sn[@]}")" \
			"${peak[$target/$who]}" "$copy" "$unpack"
	done
done
echo
for target in $TARGETS; do
	ratio=$(awk -v a="${median[$target/ours]}" -v b="${median[$target/gnu]}" 'BEGIN { printf "%.2f", a / b }')
	# The two runs of one round are neighbours in time, so their ratio cancels most of the drift in
	# the machine's load that the ratio of medians keeps; a large gap between the two numbers means
	# the run was too noisy to trust either.
	mapfile -t paired < <(awk -F'\t' -v t="$target" '$1 == t { e[$3, $2] = $4; r[$3] = 1 }
		END { for (i in r) if (e[i, "gnu"] > 0) print e[i, "ours"] / e[i, "gnu"] }' "$RAW")
	printf 'paired %s %.2f (median of per-round ours/skopeo+umoci; range %.2f .. %.2f)\n' "$target" \
		"$(bench_median "${paired[@]}")" "$(printf '%s\n' "${paired[@]}" | sort -g | head -n 1)" \
		"$(bench_max "${paired[@]}")"
	echo "ratio $target $ratio (goal <= ${GOAL_RATIO[$target]})"
	echo "rss $target ours ${peak[$target/ours]} MiB, skopeo+umoci ${peak[$target/gnu]} MiB (goal <= $GOAL_RSS_MIB MiB)"
done
if [[ $KEEP == 1 ]]; then
	cp -- "$RAW" "$BENCH_CACHE/last-oci-raw.tsv"
	bench_log "raw timings in $RAW (and $BENCH_CACHE/last-oci-raw.tsv)"
fi
