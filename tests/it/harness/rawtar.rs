//! Hand-built ustar archives, for entries GNU tar refuses to write (absolute names, `..`,
//! links pointing out of the archive).
//!
//! The format facts used here: 512-byte header blocks; octal numeric fields; the checksum is
//! the byte sum of the header with the checksum field read as eight spaces; the archive ends
//! with two zero blocks. Names longer than the 100-byte field are not needed and refused.

const BLOCK: usize = 512;

#[derive(Default)]
pub struct RawTar {
    bytes: Vec<u8>,
}

/// Entry types by their ustar type flag.
#[derive(Clone, Copy)]
enum Kind {
    File = b'0' as isize,
    Hardlink = b'1' as isize,
    Symlink = b'2' as isize,
    Dir = b'5' as isize,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> RawTar {
        self.header(name, Kind::File, 0o644, data.len() as u64, "");
        self.bytes.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn dir(mut self, name: &str) -> RawTar {
        self.header(name, Kind::Dir, 0o755, 0, "");
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> RawTar {
        self.header(name, Kind::Symlink, 0o777, 0, target);
        self
    }

    pub fn hardlink(mut self, name: &str, target: &str) -> RawTar {
        self.header(name, Kind::Hardlink, 0o644, 0, target);
        self
    }

    /// The archive with its two terminating zero blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend(std::iter::repeat_n(0u8, 2 * BLOCK));
        self.bytes
    }

    fn header(&mut self, name: &str, kind: Kind, mode: u32, size: u64, link: &str) {
        assert!(
            name.len() <= 100,
            "raw tar name {name:?} is longer than 100 bytes"
        );
        assert!(
            link.len() <= 100,
            "raw tar link target {link:?} is longer than 100 bytes"
        );
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 1_700_000_000);
        h[156] = kind as u8;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        self.bytes.extend_from_slice(&h);
    }
}

/// Zero-padded octal with a trailing NUL, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    assert_eq!(
        text.len(),
        digits,
        "value {value} does not fit a {}-byte tar field",
        field.len()
    );
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

/// The entries of an uncompressed tar file, in order, read with the tar crate: (path, data).
pub fn read_entries(file: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(file).expect("reading the tar file");
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut out = Vec::new();
    for e in archive.entries().expect("reading the tar's entries") {
        let mut e = e.expect("reading a tar entry");
        let name = e.path().expect("entry path").display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).expect("reading an entry's data");
        out.push((name, data));
    }
    out
}
