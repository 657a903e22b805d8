//! An OCI layer download cut off mid-layer resumes on the next pull: the real binary against
//! Debian's docker-registry behind a loopback proxy ([`CutProxy`]) that cuts the first GET of the
//! big layer after [`CUT`] body bytes and counts the bytes it passes on each request.

use crate::harness::cutproxy::{Cut, CutProxy, Served};
use crate::harness::env::{Outcome, TestEnv};
use crate::harness::fixture::arg;
use crate::harness::ocimage::{Comp, Entry, ImageSpec, LayerSpec, host_arch, single_image_layout};
use crate::harness::random_bytes;
use crate::harness::registry::Registry;

/// Body bytes of the big layer the first GET gets before the proxy hangs up.
const CUT: u64 = 256 * 1024;

/// A registry holding a two-layer image (one big incompressible layer) behind a cutting proxy.
struct Setup {
    env: TestEnv,
    _registry: Registry,
    proxy: CutProxy,
    reference: String,
    /// The big layer: `sha256:HEX`, its size, and its path on the registry.
    hex: String,
    size: u64,
    path: String,
    payload: Vec<u8>,
}

fn setup(hide_range: bool) -> Setup {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.sandboxes_dir()).unwrap();
    std::fs::write(
        env.sandboxes_dir().join("policy.json"),
        crate::oci::ALLOW_ALL,
    )
    .unwrap();
    let payload = random_bytes(768 * 1024);
    let spec = ImageSpec {
        arch: host_arch(),
        layers: vec![
            LayerSpec {
                comp: Comp::Gzip,
                entries: vec![
                    Entry::Dir("data"),
                    Entry::File("data/big.bin", payload.clone(), 0o644),
                ],
            },
            LayerSpec {
                comp: Comp::Gzip,
                entries: vec![Entry::File("data/small.txt", b"small".to_vec(), 0o644)],
            },
        ],
        entrypoint: vec!["/data/big.bin"],
        cmd: vec![],
        env: vec![],
        last_layer_size_lie: 0,
    };
    let layout = env.scratch("layout");
    single_image_layout(&layout, &spec, "t");
    let registry = Registry::start(&env.scratch("registry"), None);
    registry.push(&layout, "t", "big:1");
    // The layer as the registry serves it (skopeo may rewrite a manifest on push).
    let (_, manifest) = registry.manifest("big", "1");
    let big = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap();
    let digest = big["digest"].as_str().unwrap().to_string();
    let size = big["size"].as_u64().unwrap();
    assert!(size > 2 * CUT, "the layer must be cut in its middle");
    let path = format!("/v2/big/blobs/{digest}");
    let proxy = CutProxy::start(
        registry.port(),
        Cut {
            path: path.clone(),
            after: CUT,
            hide_range,
        },
    );
    let reference = format!("docker://{}/big:1", proxy.host());
    Setup {
        env,
        _registry: registry,
        proxy,
        reference,
        hex: digest.trim_start_matches("sha256:").to_string(),
        size,
        path,
        payload,
    }
}

impl Setup {
    /// `sandbox pull` through the proxy, with no credentials from the host's auth files.
    fn pull(&self) -> Outcome {
        let home = self.env.scratch("home");
        let runtime = self.env.scratch("xdg-runtime");
        self.env.sandbox_with_env(
            &["pull", "--tls-verify=false", &self.reference, "box"],
            &[("HOME", arg(&home)), ("XDG_RUNTIME_DIR", arg(&runtime))],
        )
    }

    fn partial(&self) -> std::path::PathBuf {
        self.env
            .cache_tmp_dir()
            .join(format!("partial-{}.part", self.hex))
    }

    /// The first pull, cut mid-layer: it fails, and the partial layer stays in the cache.
    fn interrupted_pull(&self) -> u64 {
        self.pull()
            .failure()
            .stderr_mentions(&[&self.hex, "resume"]);
        self.env.assert_machines(&[]);
        assert!(!self.env.blobs().contains(&self.hex));
        let served = self.served();
        assert_eq!(served.len(), 1, "{}", self.proxy.log_text());
        assert!(served[0].cut && served[0].range.is_none(), "{served:?}");
        assert_eq!(served[0].body_bytes, CUT, "{served:?}");
        let kept = std::fs::metadata(self.partial())
            .unwrap_or_else(|e| panic!("no partial layer {}: {e}", self.partial().display()))
            .len();
        assert!(
            kept > 0 && kept <= CUT,
            "partial of {kept} bytes, {CUT} were sent"
        );
        kept
    }

    fn served(&self) -> Vec<Served> {
        self.proxy.served_for(&self.path)
    }

    fn assert_tree(&self) {
        let root = self.env.machine("box");
        assert!(
            std::fs::read(root.join("data/big.bin")).unwrap() == self.payload,
            "the big file is intact"
        );
        assert_eq!(
            std::fs::read(root.join("data/small.txt")).unwrap(),
            b"small"
        );
        assert!(self.env.blobs().contains(&self.hex));
        assert!(!self.partial().exists(), "the published partial is gone");
    }
}

/// The start of a `Range: bytes=N-` header.
fn range_start(served: &Served) -> u64 {
    let range = served.range.as_deref().expect("a Range header");
    range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected Range {range:?}"))
}

#[test]
fn an_interrupted_layer_download_resumes_with_range() {
    let s = setup(false);
    let kept = s.interrupted_pull();

    s.pull().success();
    s.assert_tree();
    let served = s.served();
    assert_eq!(served.len(), 2, "{}", s.proxy.log_text());
    let resumed = &served[1];
    let start = range_start(resumed);
    assert_eq!(start, kept, "the Range starts where the partial file ends");
    assert!(start > 0);
    assert_eq!(resumed.status, 206, "{resumed:?}");
    assert_eq!(resumed.body_bytes, s.size - start, "only the rest is sent");
    let total: u64 = served.iter().map(|r| r.body_bytes).sum();
    // What crossed the wire for the layer: the cut part once, then the rest.
    assert_eq!(total, CUT + s.size - start, "{}", s.proxy.log_text());
    assert!(
        total < s.size + s.size / 2,
        "{total} bytes for a {} byte layer",
        s.size
    );
}

#[test]
fn a_registry_that_ignores_range_restarts_the_layer_from_zero() {
    let s = setup(true);
    let kept = s.interrupted_pull();

    s.pull().success();
    s.assert_tree();
    let served = s.served();
    assert_eq!(served.len(), 2, "{}", s.proxy.log_text());
    assert_eq!(range_start(&served[1]), kept, "the client asked to resume");
    assert_eq!(served[1].status, 200, "the server saw no Range");
    assert_eq!(served[1].body_bytes, s.size, "the whole layer again");
}

#[test]
fn a_partial_layer_that_does_not_hash_is_discarded() {
    let s = setup(false);
    s.interrupted_pull();
    // Damage the kept bytes: the resumed download's digest cannot match.
    let mut bytes = std::fs::read(s.partial()).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(s.partial(), bytes).unwrap();

    s.pull()
        .failure()
        .stderr_mentions(&[&s.hex, "digest mismatch", "nothing was stored"]);
    assert!(!s.partial().exists(), "a mismatching partial is discarded");
    assert!(!s.env.blobs().contains(&s.hex));
    s.env.assert_machines(&[]);

    s.pull().success();
    s.assert_tree();
    let served = s.served();
    assert_eq!(served.len(), 3, "{}", s.proxy.log_text());
    assert_eq!(served[1].status, 206);
    assert!(served[2].range.is_none(), "the third pull starts afresh");
    assert_eq!((served[2].status, served[2].body_bytes), (200, s.size));
}
