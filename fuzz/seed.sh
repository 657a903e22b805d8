#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the project's fixtures and from real tools (GNU tar in each
# of its formats, xz, gzip, zstd, bzip2). Run once; the seeds are committed, and the fuzzer adds
# what it finds interesting. Files are named by their sha256, as libFuzzer names them.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=fuzz/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

seed() { # target file [selector-byte]
    local target=$1 file=$2 sel=${3:-}
    mkdir -p "$corpus/$target"
    local tmp="$work/seed"
    if [ -n "$sel" ]; then { printf "\\x$sel"; cat "$file"; } >"$tmp"; else cp "$file" "$tmp"; fi
    cp "$tmp" "$corpus/$target/$(sha256sum "$tmp" | cut -c1-40)"
}

# A small tree with every kind of entry: long names, a symlink, a hardlink, a sparse file,
# a fifo, an xattr.
tree=$work/tree
mkdir -p "$tree/etc" "$tree/usr/bin" "$tree/$(printf 'd%.0s' {1..120})/$(printf 'n%.0s' {1..120})"
echo hello >"$tree/etc/hostname"
ln -s ../etc/hostname "$tree/usr/bin/link"
ln "$tree/etc/hostname" "$tree/usr/bin/hard"
truncate -s 1M "$tree/sparse" && printf 'x' | dd of="$tree/sparse" bs=1 seek=4096 conv=notrunc status=none
mkfifo "$tree/fifo"
setfattr -n user.seed -v 1 "$tree/etc/hostname" 2>/dev/null || true
for fmt in gnu oldgnu pax posix ustar v7; do
    tar --format=$fmt --sparse -C "$tree" -cf "$work/$fmt.tar" . 2>/dev/null || continue
    seed tar "$work/$fmt.tar"
done
for v in 0.0 0.1 1.0; do
    tar --format=pax --sparse --sparse-version=$v -C "$tree" -cf "$work/sparse-$v.tar" sparse
    seed tar "$work/sparse-$v.tar"
done
tar --format=pax --xattrs -C "$tree" -cf "$work/xattrs.tar" etc && seed tar "$work/xattrs.tar"
: >"$work/empty" && seed tar "$work/empty"

# Compressed forms of one small tar; xz with several blocks and several streams for the index.
small=$work/gnu.tar
gzip -9c "$small" >"$work/s.gz" && seed decompress "$work/s.gz"
xz -c "$small" >"$work/s.xz" && seed decompress "$work/s.xz" && seed xz_index "$work/s.xz"
xz -T2 --block-size=4096 -c "$small" >"$work/blocks.xz" && seed xz_index "$work/blocks.xz" && seed decompress "$work/blocks.xz"
cat "$work/s.xz" "$work/s.xz" >"$work/two.xz" && printf '\0\0\0\0' >>"$work/two.xz" && seed xz_index "$work/two.xz"
zstd -q -c "$small" >"$work/s.zst" && seed decompress "$work/s.zst"
bzip2 -c "$small" >"$work/s.bz2" && seed decompress "$work/s.bz2"
seed decompress "$small"

# simplestreams (selector 00: stream index, 01: products, 02: legacy index, 03: alias).
fx=tests/fixtures/simplestreams
printf '{"format":"index:1.0","index":{"images":{"datatype":"image-downloads","path":"streams/v1/images.json","format":"products:1.0","products":["debian:bookworm:amd64:default"]}}}' >"$work/index.json"
seed simplestreams "$work/index.json" 00
seed simplestreams "$fx/linuxcontainers-images-2023-04.json" 01
seed simplestreams "$fx/ubuntu-minimal-2023.json" 01
seed simplestreams "$fx/lxc-index-system-2024-09.txt" 02
printf 'debian/bookworm/cloud' >"$work/alias" && seed simplestreams "$work/alias" 03

# OCI (00: reference, 01: manifest, 02: index declared, 03: config, 04: platform), written by
# skopeo/umoci-shaped documents from the image-spec.
for r in docker.io/library/debian:12 'localhost:5000/a/b@sha256:4d1b6c0f2a0d2c0a3c0f2d7b3b1c4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d' 'oci:/srv/layout:tag' ghcr.io/org/img; do
    printf '%s' "$r" >"$work/ref" && seed oci "$work/ref" 00
done
cat >"$work/manifest.json" <<'J'
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}],"annotations":{"org.opencontainers.image.ref.name":"1"}}
J
seed oci "$work/manifest.json" 01
cat >"$work/index.json" <<'J'
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"platform":{"architecture":"arm","os":"linux","variant":"v7"}}]}
J
seed oci "$work/index.json" 02
seed oci "$work/index.json" 01
cat >"$work/config.json" <<'J'
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin"],"Entrypoint":["/bin/sh"],"Cmd":["-c","true"],"WorkingDir":"/","User":"0:0"},"rootfs":{"type":"layers","diff_ids":["sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"]},"history":[{"created_by":"seed"}]}
J
seed oci "$work/config.json" 03
printf 'linux/arm64/v8' >"$work/plat" && seed oci "$work/plat" 04

# containers policy.json (00) and registries.d (01).
cat >"$work/policy.json" <<'J'
{"default":[{"type":"reject"}],"transports":{"docker":{"docker.io/library":[{"type":"insecureAcceptAnything"}],"localhost:5000/team":[{"type":"sigstoreSigned","keyPath":"/etc/k.pub","signedIdentity":{"type":"matchRepository"}}],"quay.io":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/etc/k.gpg"}]},"docker-daemon":{"":[{"type":"insecureAcceptAnything"}]}}}
J
seed containers_policy "$work/policy.json" 00
printf 'default-docker:\n  lookaside: file:///var/lib/sigs\ndocker:\n  docker.io/library:\n    lookaside: https://sigs.example/\n    use-sigstore-attachments: true\n' >"$work/reg.yaml"
seed containers_policy "$work/reg.yaml" 01

# template.toml, YAML (00 plain, 01 user-data, 02 network-config), .nspawn and drop-ins.
for f in templates/*/template.toml; do seed template_toml "$f"; done
for f in templates/*/user-data; do seed yaml "$f" 01; seed yaml "$f" 00; done
for f in templates/*/network-config; do seed yaml "$f" 02; done
for f in templates/*/*.nspawn templates/*/*.conf; do seed nspawn_ini "$f"; done
printf '[Exec]\nBoot=yes\nEnvironment=A=1 \\\n  B=2\n# c\n[Files]\r\nBind=/a:/b\n' >"$work/cont.nspawn" && seed nspawn_ini "$work/cont.nspawn"

# SHA256SUMS: a real one (Ubuntu), and the BSD and binary-mode forms.
seed sha256sums tests/fixtures/openpgp/ubuntu-noble-SHA256SUMS
printf 'SHA256 (rootfs.tar.xz) = %064d\n' 0 >"$work/bsd" && seed sha256sums "$work/bsd"
printf '%064d *rootfs.tar.xz\n' 1 >"$work/bin" && seed sha256sums "$work/bin"
echo "seeded: $(find "$corpus" -type f | wc -l) files"
