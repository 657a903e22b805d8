//! `sandbox build --output tar:DIR`: the same pull, unpack and layering as a build (shared
//! with `execute`), then the finished rootfs goes into a reproducible tarball instead of the
//! machines dir. Nothing on the host changes: no machines dir, no host files, no state
//! record, no machinectl. The staging tree lives in `<sandboxes_dir>/tmp/` and is removed.
//!
//! DIR receives `NAME.tar.xz` (or `.tar.zst`), `NAME.nspawn`, `SHA256SUMS` over both and,
//! with a signing key, `SHA256SUMS.gpg` (binary) and `SHA256SUMS.asc` (armored) detached
//! signatures. Each file is written to a temporary name in DIR and renamed, so DIR never
//! holds a half-written output. A previous export's signatures are removed when this one is
//! not signed (they would no longer match).
//!
//! Reproducibility: the same template, base image and SOURCE_DATE_EPOCH give byte-identical
//! tarball, `.nspawn` and SHA256SUMS (the tar rules are in `tarball`). Without
//! SOURCE_DATE_EPOCH mtimes are kept as they are, so the files the build writes carry the
//! time of the build and two builds differ. Signatures are never reproducible: OpenPGP
//! signatures carry their creation time and sequoia adds a random salt.
//!
//! Compression settings are fixed, since the output must not depend on the machine:
//! xz preset 6 in independent blocks of 24 MiB of tar (what `xz -6 -T0` cuts), encoded by
//! liblzma's multi-threaded encoder on as many threads as the host has (up to 8): with a
//! fixed block size its output is the same whatever the thread count, and a multi-block file
//! also decodes block-parallel (`sandbox pull`'s xz reader); zstd level 19 single-threaded.

use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::assemble::execute::{self, BuildRequest, Pulled};
use crate::assemble::fixups::FixupReport;
use crate::digest::Digest;
use crate::digest::HashingWriter;
use crate::export::tar_writer;
use crate::paths::HostPaths;
use crate::progress::ProgressMode;
use crate::template::compose::Composition;
use crate::template::library::Content;
use crate::template::plan::Base;
// The OpenPGP signing helpers live with the rest of the OpenPGP code (simple signing of OCI
// images uses them too); re-exported here for the callers of the export.
pub use crate::verify::openpgp::{SigningKey, load_signing_key, sign_detached};

/// The tarball's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportCompression {
    #[default]
    Xz,
    Zstd,
}

impl ExportCompression {
    pub fn parse(s: &str) -> Result<ExportCompression> {
        match s {
            "xz" => Ok(ExportCompression::Xz),
            "zstd" | "zst" => Ok(ExportCompression::Zstd),
            other => bail!("unknown compression `{other}` (use xz or zstd)"),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportCompression::Xz => "tar.xz",
            ExportCompression::Zstd => "tar.zst",
        }
    }
}

pub const XZ_PRESET: u32 = 6;
/// Bytes of tar per xz block: 3 × preset 6's 8 MiB dictionary, liblzma's own choice for it.
pub const XZ_BLOCK_SIZE: u64 = 24 << 20;
/// Most encoder threads (each holds about 3 blocks: ~75 MiB at 24 MiB blocks).
const XZ_MAX_THREADS: u32 = 8;
pub const ZSTD_LEVEL: i32 = 19;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub dir: PathBuf,
    pub compression: ExportCompression,
    /// An unencrypted OpenPGP secret key (armored or binary) to sign SHA256SUMS with.
    pub sign_key: Option<PathBuf>,
    /// SOURCE_DATE_EPOCH: later mtimes are clamped to it.
    pub source_date_epoch: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The base image's digest.
    pub image: Digest,
    pub tarball: PathBuf,
    pub tarball_sha256: Digest,
    pub nspawn: PathBuf,
    pub sums: PathBuf,
    /// The detached signatures (binary, armored), when signed.
    pub signatures: Vec<PathBuf>,
    /// The signing key's fingerprint, when signed.
    pub signer: Option<String>,
    pub fixups: FixupReport,
}

/// Builds `comp` as `req.name` and writes it to `opts.dir`, as the module documentation says.
pub fn export(
    paths: &HostPaths,
    progress: ProgressMode,
    comp: &Composition,
    req: &BuildRequest,
    opts: &ExportOptions,
) -> Result<ExportReport> {
    crate::machine::name::validate(&req.name)?;
    // A key that cannot sign fails before anything is pulled.
    let signer = opts.sign_key.as_deref().map(load_signing_key).transpose()?;
    // The cache stays open (as in a build) until the image is unpacked.
    let Pulled {
        cache,
        fetched,
        plan,
        ..
    } = execute::pull_and_render(paths, progress, comp, req, false)?;
    let nspawn_bytes = planned_nspawn(&plan, &req.name)?;
    let tmp = staging_parent(paths)?;
    let (staging, fixups) =
        execute::unpack_and_layer(progress, &cache, &fetched, &plan, &tmp, &req.name)?;

    let dir = &opts.dir;
    fs_err::create_dir_all(dir)?;
    let tar_name = format!("{}.{}", req.name, opts.compression.extension());
    let tarball = dir.join(&tar_name);
    let tarball_sha256 = crate::atomic::write_with(&tarball, 0o644, |file| {
        let hashing = HashingWriter::new(BufWriter::new(file));
        let hashing = compress_tree(staging.path(), hashing, opts)?;
        let (buf, digest, _) = hashing.finish();
        buf.into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", tarball.display()))?;
        Ok(digest)
    })?;
    drop(staging);

    let nspawn_name = format!("{}.nspawn", req.name);
    let nspawn_path = dir.join(&nspawn_name);
    crate::atomic::write_file(&nspawn_path, nspawn_bytes)?;
    let sums_text = crate::verify::checksums::render(&[
        (tarball_sha256, tar_name.as_str()),
        (Digest::of(nspawn_bytes), nspawn_name.as_str()),
    ]);
    let sums = dir.join("SHA256SUMS");
    crate::atomic::write_file(&sums, sums_text.as_bytes())?;

    let gpg = dir.join("SHA256SUMS.gpg");
    let asc = dir.join("SHA256SUMS.asc");
    let (signatures, fingerprint) = match &signer {
        Some(key) => {
            crate::atomic::write_file(&gpg, &sign_detached(key, sums_text.as_bytes(), false)?)?;
            crate::atomic::write_file(&asc, &sign_detached(key, sums_text.as_bytes(), true)?)?;
            (vec![gpg, asc], Some(key.fingerprint.clone()))
        }
        None => {
            for stale in [&gpg, &asc] {
                match fs_err::remove_file(stale) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("removing the stale signature {}", stale.display())
                        });
                    }
                }
            }
            (Vec::new(), None)
        }
    };
    Ok(ExportReport {
        image: fetched.image.digest,
        tarball,
        tarball_sha256,
        nspawn: nspawn_path,
        sums,
        signatures,
        signer: fingerprint,
        fixups,
    })
}

/// The `.nspawn` a build of `name` installs on the host, as planned.
pub(crate) fn planned_nspawn<'a>(
    plan: &'a crate::template::BuildPlan,
    name: &str,
) -> Result<&'a [u8]> {
    let rel = format!("etc/systemd/nspawn/{name}.nspawn");
    let Some(nspawn) = plan.get(Base::Host, &rel) else {
        bail!("internal: the plan has no /{rel}");
    };
    let Content::Bytes(bytes) = &nspawn.content else {
        bail!("internal: /{rel} is planned as a symlink");
    };
    Ok(bytes)
}

/// Where an output build stages its tree: `<sandboxes_dir>/tmp/` (not the cache's tmp:
/// `cache gc` expects only partial downloads, files, there).
pub(crate) fn staging_parent(paths: &HostPaths) -> Result<PathBuf> {
    let tmp = paths.sandboxes_dir.join("tmp");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    Ok(tmp)
}

fn compress_tree<W: Write>(root: &Path, out: W, opts: &ExportOptions) -> Result<W> {
    let what = || format!("compressing the tarball of {}", root.display());
    match opts.compression {
        ExportCompression::Xz => {
            let threads = std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(1))
                .unwrap_or(1)
                .min(XZ_MAX_THREADS);
            let stream = xz_encoder(threads, XZ_BLOCK_SIZE).with_context(what)?;
            let enc = liblzma::write::XzEncoder::new_stream(out, stream);
            let enc = tar_writer::write_tree(root, enc, opts.source_date_epoch)?;
            enc.finish().with_context(what)
        }
        ExportCompression::Zstd => {
            let enc = zstd::Encoder::new(out, ZSTD_LEVEL).with_context(what)?;
            let enc = tar_writer::write_tree(root, enc, opts.source_date_epoch)?;
            enc.finish().with_context(what)
        }
    }
}

/// The xz encoder of exports: preset 6, CRC64, blocks of `block_size` bytes, `threads`
/// workers. The bytes depend on the block size only.
pub fn xz_encoder(threads: u32, block_size: u64) -> Result<liblzma::stream::Stream> {
    liblzma::stream::MtStreamBuilder::new()
        .threads(threads.max(1))
        .block_size(block_size)
        .preset(XZ_PRESET)
        .check(liblzma::stream::Check::Crc64)
        .encoder()
        .context("setting up the xz encoder")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xz_output_is_the_same_on_any_number_of_threads_and_reads_back() {
        use std::io::Read as _;
        // Five blocks of 256 KiB; data that compresses, but not to nothing.
        let data: Vec<u8> = (0..1_300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 27) as u8)
            .collect();
        let encode = |threads| {
            let stream = xz_encoder(threads, 256 << 10).unwrap();
            let mut enc = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        let one = encode(1);
        assert_eq!(encode(3), one);
        assert_eq!(encode(8), one);
        let mut back = Vec::new();
        liblzma::read::XzDecoder::new_multi_decoder(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // More than one block: a parallel decoder has work to share.
        let blocks = crate::unpack::xz_index::locate_blocks(one.len() as u64, |at, buf| {
            let at = at as usize;
            buf.copy_from_slice(&one[at..at + buf.len()]);
            Ok(())
        })
        .unwrap();
        assert_eq!(blocks.len(), 5);
    }

    #[test]
    fn compressions_parse() {
        assert_eq!(
            ExportCompression::parse("zstd").unwrap().extension(),
            "tar.zst"
        );
        assert_eq!(
            ExportCompression::parse("xz").unwrap().extension(),
            "tar.xz"
        );
        assert!(ExportCompression::parse("gzip").is_err());
    }
}
