//! CPU architecture names, always in Debian's spelling (amd64, arm64, armhf, i386, ppc64el,
//! s390x, riscv64).
//!
//! Image servers, the kernel and Rust each name architectures their own way:
//! images.linuxcontainers.org and the legacy LXC index use Debian names, `uname -m` and
//! `std::env::consts::ARCH` use kernel/LLVM names, and some simplestreams generations publish
//! `x86_64`/`aarch64`. Everything in this crate compares the Debian form, so every name from
//! outside goes through [`normalise_arch`] before it is compared.

/// The host's architecture in Debian's spelling, from the architecture this binary was built for.
///
/// A 32-bit binary on a 64-bit kernel reports the binary's architecture, which is what we want:
/// nspawn runs the image's binaries, and a compat kernel runs them as the build target would.
pub fn host_debian_arch() -> &'static str {
    debian_arch_of_rust(std::env::consts::ARCH, cfg!(target_endian = "little"))
}

/// Maps a Rust `std::env::consts::ARCH` value to Debian's name; unknown values pass through so
/// that an exotic host still gets a name it can match exactly.
fn debian_arch_of_rust(arch: &'static str, little_endian: bool) -> &'static str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        // Rust's "arm" target family we ship for is armv7 hard-float (the only 32-bit ARM
        // Debian port with images on the LXC servers).
        "arm" => "armhf",
        "x86" => "i386",
        "powerpc64" if little_endian => "ppc64el",
        "powerpc64" => "ppc64",
        other => other,
    }
}

/// Accepts a Debian or kernel architecture name (any case) and returns Debian's name.
/// Names it does not know come back lower-cased, unchanged otherwise, so that comparing two
/// normalised names is still exact for architectures this table has never heard of.
pub fn normalise_arch(s: &str) -> String {
    let lower = s.trim().to_ascii_lowercase();
    let debian = match lower.as_str() {
        "amd64" | "x86_64" | "x86-64" | "x64" => "amd64",
        "arm64" | "aarch64" | "armv8" | "armv8l" => "arm64",
        "armhf" | "armv7" | "armv7l" | "armv7hl" | "arm" => "armhf",
        "armel" | "armv5" | "armv5tel" | "armv6l" => "armel",
        "i386" | "i486" | "i586" | "i686" | "x86" => "i386",
        "ppc64el" | "ppc64le" | "powerpc64le" => "ppc64el",
        "ppc64" | "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loong64" | "loongarch64" => "loong64",
        _ => return lower,
    };
    debian.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_arch_names_map_to_debian() {
        let table = [
            ("x86_64", true, "amd64"),
            ("aarch64", true, "arm64"),
            ("arm", true, "armhf"),
            ("x86", true, "i386"),
            ("powerpc64", true, "ppc64el"),
            ("powerpc64", false, "ppc64"),
            ("s390x", false, "s390x"),
            ("riscv64", true, "riscv64"),
            ("mips64", true, "mips64"),
        ];
        for (rust, little, debian) in table {
            assert_eq!(
                debian_arch_of_rust(rust, little),
                debian,
                "{rust} (little endian: {little})"
            );
        }
    }

    #[test]
    fn host_arch_is_a_normal_form() {
        // Whatever the host is, its name must already be Debian's: normalising is a no-op.
        let host = host_debian_arch();
        assert_eq!(normalise_arch(host), host);
        assert!(!["x86_64", "aarch64", "x86", "powerpc64"].contains(&host));
    }

    #[test]
    fn normalises_kernel_and_debian_names() {
        let table = [
            ("amd64", "amd64"),
            ("x86_64", "amd64"),
            ("X86_64", "amd64"),
            ("arm64", "arm64"),
            ("aarch64", "arm64"),
            ("armhf", "armhf"),
            ("armv7l", "armhf"),
            ("i386", "i386"),
            ("i686", "i386"),
            ("ppc64el", "ppc64el"),
            ("ppc64le", "ppc64el"),
            ("s390x", "s390x"),
            ("riscv64", "riscv64"),
            (" amd64\n", "amd64"),
            ("Sparc64", "sparc64"),
        ];
        for (input, want) in table {
            assert_eq!(normalise_arch(input), want, "normalise_arch({input:?})");
        }
    }
}
