# shellcheck shell=bash
# Helpers shared by the benchmark scripts in bench/. Sourced, not executed.
#
# Everything here either prints to stderr (progress) or returns values on stdout, so that callers can
# capture results with $(...) without mixing in log lines.

bench_log() {
	printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2
}

bench_die() {
	printf '[bench] error: %s\n' "$*" >&2
	exit 1
}

bench_require_root() {
	# debootstrap, `tar --numeric-owner` restoring owners and device nodes, and apt-get all need root;
	# running as a user would produce a benchmark of a different (and failing) workload.
	[[ $EUID -eq 0 ]] || bench_die "run as root (debootstrap, apt-get and restoring owners need it)"
}

# bench_ensure_tools CMD=PACKAGE...
# Installs the Debian packages whose command is missing. A path as CMD (/usr/bin/time) is checked as a
# file, because `time` alone is the bash keyword and would always be "found".
bench_ensure_tools() {
	local pair cmd pkg missing=()
	for pair in "$@"; do
		cmd=${pair%%=*}
		pkg=${pair#*=}
		if [[ $cmd == /* ]]; then
			[[ -x $cmd ]] || missing+=("$pkg")
		else
			command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
		fi
	done
	((${#missing[@]} == 0)) && return 0
	bench_log "installing missing packages: ${missing[*]}"
	# Try without `apt-get update` first: the package lists are usually fresh enough, and updating
	# needs the network for every source, including ones unrelated to what we install.
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
		DEBIAN_FRONTEND=noninteractive apt-get update >&2 ||
			bench_die "apt-get update failed while installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
			bench_die "apt-get install ${missing[*]} failed"
	fi
}

# bench_debian_mirror SUITE [SOURCES_FILES...]
# Prints the Debian mirror that apt on this machine uses for SUITE (first match in
# /etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources}, or in the files given), or
# nothing when none matches: debootstrap then uses its own default. Security archives are skipped:
# debootstrap needs the main archive.
bench_debian_mirror() {
	local suite=$1 files=() f
	shift
	if (($# > 0)); then
		files=("$@")
	else
		[[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
		for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
			[[ -f $f ]] && files+=("$f")
		done
	fi
	local found=""
	if ((${#files[@]} > 0)); then
		found=$(awk -v suite="$suite" '
			function emit(uri) {
				if (uri ~ /security/ || done) return
				sub(/\/+$/, "", uri); print uri; done = 1
			}
			function flush(   n, i, u) {
				if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no" && (" " suites " ") ~ (" " suite " ")) {
					n = split(uris, u, /[ \t]+/)
					for (i = 1; i <= n; i++) if (u[i] != "") emit(u[i])
				}
				types = ""; uris = ""; suites = ""; enabled = ""
			}
			FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
			/^[ \t]*#/ { next }
			!deb822 && $1 == "deb" {
				# One-line format: deb [options] URI SUITE COMPONENTS...
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($(i + 1) == suite) emit($i)
				next
			}
			deb822 && /^[ \t]*$/ { flush(); next }
			deb822 && tolower($1) == "types:" { $1 = ""; types = $0 }
			deb822 && tolower($1) == "uris:" { $1 = ""; uris = $0 }
			deb822 && tolower($1) == "suites:" { $1 = ""; gsub(/[ \t]+/, " ", $0); suites = $0 }
			deb822 && tolower($1) == "enabled:" { enabled = tolower($2) }
			END { flush() }
		' "${files[@]}")
	fi
	printf '%s\n' "$found"
}

# bench_free_port
# Prints a TCP port on 127.0.0.1 nobody listens on right now. Racy by nature (another process can take
# it before we bind), which is why bench_start_nginx retries with a new port when nginx fails to start.
bench_free_port() {
	local port tries=0
	while ((tries++ < 100)); do
		port=$((20000 + RANDOM % 40000))
		if ! ss -Hltn "sport = :$port" | grep -q .; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	bench_die "no free TCP port found on 127.0.0.1 after 100 tries"
}

# shellcheck disable=SC2034 # BENCH_NGINX_PORT is this function's output, read by the caller.
# bench_start_nginx DOCROOT WORKDIR
# Serves DOCROOT read-only on 127.0.0.1 with a generated config under WORKDIR, in the foreground
# (`daemon off`) as a background job. Sets BENCH_NGINX_PID and BENCH_NGINX_PORT; the caller's EXIT trap
# must call bench_stop_nginx.
bench_start_nginx() {
	local docroot=$1 workdir=$2 attempt port
	mkdir -p "$workdir/nginx"
	for attempt in 1 2 3 4 5; do
		port=$(bench_free_port)
		# `user root`: the workers must read DOCROOT whatever its modes; this server only answers GETs
		# on loopback for the duration of the run. Temp paths go to WORKDIR so that a system nginx (or
		# its missing /var/lib/nginx) does not interfere.
		cat >"$workdir/nginx/nginx.conf" <<-EOF
			daemon off;
			user root;
			worker_processes 1;
			pid $workdir/nginx/nginx.pid;
			error_log $workdir/nginx/error.log warn;
			events { worker_connections 64; }
			http {
			    access_log off;
			    sendfile on;
			    tcp_nopush on;
			    default_type application/octet-stream;
			    client_body_temp_path $workdir/nginx/body;
			    proxy_temp_path $workdir/nginx/proxy;
			    fastcgi_temp_path $workdir/nginx/fastcgi;
			    uwsgi_temp_path $workdir/nginx/uwsgi;
			    scgi_temp_path $workdir/nginx/scgi;
			    server {
			        listen 127.0.0.1:$port;
			        root $docroot;
			        autoindex on;
			    }
			}
		EOF
		nginx -p "$workdir/nginx" -c "$workdir/nginx/nginx.conf" 2>>"$workdir/nginx/error.log" &
		BENCH_NGINX_PID=$!
		local _
		for _ in $(seq 50); do
			if curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then
				BENCH_NGINX_PORT=$port
				bench_log "nginx (pid $BENCH_NGINX_PID) serves $docroot on http://127.0.0.1:$port/"
				return 0
			fi
			kill -0 "$BENCH_NGINX_PID" 2>/dev/null || break
			sleep 0.1
		done
		bench_stop_nginx
		bench_log "nginx did not come up on port $port (attempt $attempt), retrying"
	done
	bench_die "nginx failed to start; see $workdir/nginx/error.log"
}

bench_stop_nginx() {
	if [[ -n ${BENCH_NGINX_PID:-} ]]; then
		# The master forwards TERM to its worker and waits for it, so killing the one pid we started
		# leaves no stray worker behind.
		kill "$BENCH_NGINX_PID" 2>/dev/null || true
		wait "$BENCH_NGINX_PID" 2>/dev/null || true
		BENCH_NGINX_PID=
	fi
}

# bench_measure OUTFILE LOGFILE CMD...
# Runs CMD under GNU time and prints "elapsed_s user_s sys_s maxrss_kib". %M is the ru_maxrss that
# wait4() reports for CMD, which the kernel defines as the largest RSS of any single process in CMD's
# tree of waited-for children, not their sum: for a pipeline that is max(bash, curl, tar, xz).
bench_measure() {
	local out=$1 log=$2
	shift 2
	if ! /usr/bin/time -f '%e %U %S %M' -o "$out" -- "$@" >"$log" 2>&1; then
		tail -n 20 "$log" >&2 || true
		bench_die "command failed: $* (full output in $log)"
	fi
	# GNU time puts its own line last; earlier lines (if any) are its notes about the command.
	tail -n 1 "$out"
}

# bench_median NUMBERS...   -> the median (mean of the two middle values for an even count)
bench_median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]
		else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
	}'
}

# bench_max NUMBERS...
bench_max() {
	printf '%s\n' "$@" | sort -g | tail -n 1
}

# bench_debootstrap_tree CACHE SUITE MIRROR
# Makes sure CACHE/rootfs holds a complete `debootstrap --variant=minbase SUITE` tree (marker
# CACHE/rootfs.complete, next to the tree so that it never ends up in an archive of it) and prints
# its path. Shared by every benchmark that packs the same Debian tree into its own image format.
bench_debootstrap_tree() {
	local cache=$1 suite=$2 mirror=$3
	local tree="$cache/rootfs"
	mkdir -p "$cache"
	if [[ ! -f $cache/rootfs.complete ]]; then
		# debootstrap ignores apt's proxy setting; hand it over so that it reaches the mirror apt uses.
		local proxy=""
		eval "$(apt-config shell proxy Acquire::http::Proxy)"
		if [[ -n $proxy && -z ${http_proxy:-} ]]; then
			export http_proxy=$proxy
		fi
		# A half-finished tree (interrupted run) cannot be resumed reliably by debootstrap: restart.
		# Its /proc and /sys may still be mounted if debootstrap was killed, so unmount before
		# removing, and never cross into another filesystem while removing.
		if [[ -d $tree ]]; then
			findmnt -rn -o TARGET | grep -F "$tree/" | sort -r | xargs -r -d '\n' umount -l || true
			rm -rf --one-file-system -- "$tree"
		fi
		bench_log "debootstrap --variant=minbase $suite from ${mirror:-the default mirror of debootstrap} into $tree (a few minutes)"
		# No mirror argument when apt names none: debootstrap's own default.
		if ! debootstrap --variant=minbase "$suite" "$tree" ${mirror:+"$mirror"} >"$cache/debootstrap.log" 2>&1; then
			tail -n 30 "$cache/debootstrap.log" >&2
			bench_die "debootstrap failed; full log in $cache/debootstrap.log"
		fi
		touch "$cache/rootfs.complete"
	fi
	printf '%s\n' "$tree"
}

# bench_mib BYTES -> BYTES in MiB with one decimal
bench_mib() {
	awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'
}

# bench_rootfs_tarball CACHE SUITE MIRROR
# Makes sure CACHE/www/rootfs.tar.xz is the debootstrap tree of bench_debootstrap_tree packed with
# `tar --numeric-owner --xattrs --sort=name | xz -T0 -6`, with CACHE/www/SHA256SUMS next to it and
# facts about it in CACHE/rootfs.info (entries, tree_bytes); rebuilt when a file is missing or the
# sum no longer matches. Prints the tarball's path. Shared by the benchmarks that start from the
# same rootfs tarball (pull-tarball.sh serves it, export-tarball.sh builds from it).
bench_rootfs_tarball() {
	local cache=$1 suite=$2 mirror=$3
	local www="$cache/www"
	local tarball="$www/rootfs.tar.xz" info="$cache/rootfs.info"
	if [[ -f $tarball && -f $www/SHA256SUMS && -f $info ]] && (cd "$www" && sha256sum --quiet -c SHA256SUMS); then
		bench_log "using cached $tarball"
	else
		local tree
		tree=$(bench_debootstrap_tree "$cache" "$suite" "$mirror")
		mkdir -p "$www"
		bench_log "archiving $tree with tar | xz -T0 -6"
		# --sort=name: a reproducible member order, as image builders (debuerreotype, mkosi) produce.
		tar --numeric-owner --xattrs --xattrs-include='*' --sort=name -C "$tree" -cf - . |
			xz -T0 -6 >"$tarball.tmp"
		mv -- "$tarball.tmp" "$tarball"
		(cd "$www" && sha256sum rootfs.tar.xz >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
		{
			echo "suite=$suite"
			echo "mirror=$mirror"
			echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
			echo "debootstrap=$(dpkg-query -W -f '${Version}' debootstrap)"
			echo "entries=$(tar -tJf "$tarball" | wc -l)"
			echo "tree_bytes=$(du -sb "$tree" | cut -f1)"
		} >"$info"
	fi
	printf '%s\n' "$tarball"
}

# bench_sandbox_bin REPO_DIR
# Prints the `sandbox` binary to measure: $SANDBOX_BIN when set, else the one
# `cargo build --release --bin sandbox` builds in REPO_DIR (honouring CARGO_TARGET_DIR).
bench_sandbox_bin() {
	local repo=$1
	if [[ -n ${SANDBOX_BIN:-} ]]; then
		[[ -x $SANDBOX_BIN ]] || bench_die "SANDBOX_BIN=$SANDBOX_BIN is not an executable file"
		printf '%s\n' "$SANDBOX_BIN"
		return 0
	fi
	command -v cargo >/dev/null 2>&1 || bench_die "cargo not found; install Rust or set SANDBOX_BIN"
	bench_log "cargo build --release --bin sandbox (target dir ${CARGO_TARGET_DIR:-default})"
	(cd "$repo" && cargo build --release --bin sandbox) >&2 ||
		bench_die "cargo build --release --bin sandbox failed"
	# Ask cargo where it put the binary: CARGO_TARGET_DIR may be relative, or set in .cargo/config.
	local target_dir
	target_dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
		sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
	[[ -x $target_dir/release/sandbox ]] || bench_die "cargo reported success but $target_dir/release/sandbox is missing"
	printf '%s\n' "$target_dir/release/sandbox"
}
