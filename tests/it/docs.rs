//! `sandbox completions` and `sandbox man`: generated from the parser's own definitions; the
//! shells and man's formatter take what they print. And `build`'s phases on a terminal.

use std::process::Command;

use crate::harness::env::TestEnv;
use crate::harness::fixture::arg;
use crate::harness::{require_tool, run_tool};

#[test]
fn bash_takes_the_completions_and_they_know_every_command() {
    let env = TestEnv::new();
    let script = env.sandbox(&["completions", "bash"]).success().stdout;
    let file = env.scratch("completions").join("sandbox.bash");
    std::fs::write(&file, &script).unwrap();
    // Sourced by a real bash: the function is defined and bound to `sandbox`.
    let out = run_tool(
        Command::new(require_tool("bash")).arg("-c").arg(format!(
            "source '{}' && complete -p sandbox",
            file.display()
        )),
        None,
    );
    let bound = String::from_utf8(out).unwrap();
    assert!(bound.contains("sandbox"), "{bound}");
    for word in [
        "pull",
        "build",
        "cache",
        "completions",
        "--storage",
        "--verify",
    ] {
        assert!(script.contains(word), "`{word}` is not completed");
    }
    let zsh = env.sandbox(&["completions", "zsh"]).success().stdout;
    assert!(
        zsh.starts_with("#compdef sandbox"),
        "{}",
        &zsh[..zsh.len().min(80)]
    );
    let fish = env.sandbox(&["completions", "fish"]).success().stdout;
    assert!(fish.contains("complete -c sandbox"), "fish");
}

#[test]
fn one_manual_page_per_command() {
    let env = TestEnv::new();
    let dir = env.scratch("man");
    let out = env.sandbox(&["--json", "man", arg(&dir)]).success().json();
    let written = out.as_array().expect("a list of pages");
    for page in [
        "sandbox.1",
        "sandbox-pull.1",
        "sandbox-build.1",
        "sandbox-cache-gc.1",
    ] {
        assert!(
            written.iter().any(|p| p.as_str().unwrap().ends_with(page)),
            "{page} not written: {out}"
        );
    }
    let pull = std::fs::read_to_string(dir.join("sandbox-pull.1")).unwrap();
    assert!(pull.starts_with(".ie") || pull.contains(".TH"), "not roff");
    assert!(
        pull.contains("storage") && pull.contains("verify"),
        "options missing"
    );
    // man's own formatter renders it.
    let text = run_tool(
        Command::new(require_tool("groff"))
            .args(["-man", "-Tutf8", "-P-cbou"])
            .arg(dir.join("sandbox-pull.1")),
        None,
    );
    let text = String::from_utf8_lossy(&text);
    // (groff may render a hyphen as U+2010; the words are what matters.)
    assert!(
        text.contains("storage") && text.contains("SYNOPSIS"),
        "{text}"
    );
}

#[test]
fn help_lists_global_options_apart() {
    let env = TestEnv::new();
    let help = env.sandbox(&["pull", "--help"]).success().stdout;
    let global = help
        .find("Global options:")
        .expect("a Global options heading");
    let own = help.find("--storage").expect("pull's own options");
    let root = help.find("--root").expect("--root listed");
    assert!(own < global && root > global, "{help}");
}

#[test]
fn a_build_on_a_terminal_shows_its_phases_and_nothing_with_q() {
    use crate::build::{BaseImage, recorder, testbase};
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "m\n");
    let (machinectl, _) = recorder(&env, "machinectl", "");
    let on_tty = |extra: &str, name: &str| -> String {
        let cmd = format!(
            "SANDBOX_MACHINECTL='{}' '{}' --root '{}' {extra} build --no-start testbase {name}",
            machinectl.display(),
            env!("CARGO_BIN_EXE_sandbox"),
            env.root().display()
        );
        let out = run_tool(
            Command::new(require_tool("script")).args(["-qec", &cmd, "/dev/null"]),
            None,
        );
        String::from_utf8_lossy(&out).into_owned()
    };
    let shown = on_tty("", "web");
    for phase in [
        "==> Pulling",
        "==> Making the rootfs (copy)",
        "==> Layering",
        "==> Publishing web",
    ] {
        assert!(shown.contains(phase), "`{phase}` not shown:\n{shown}");
    }
    let quiet = on_tty("-q", "web2");
    assert!(!quiet.contains("==>"), "{quiet}");
    // Not a terminal: no phases either.
    let piped = env
        .sandbox_with_env(
            &["build", "--no-start", "testbase", "web3"],
            &[("SANDBOX_MACHINECTL", arg(&machinectl))],
        )
        .success();
    assert!(!piped.stderr.contains("==>"), "{}", piped.stderr);
}

#[test]
fn an_oci_pull_on_a_terminal_shows_each_layer_and_the_unpack() {
    use crate::harness::ocimage::{
        Comp, Entry, ImageSpec, LayerSpec, host_arch, single_image_layout,
    };
    let env = TestEnv::new();
    let layer = |name: &'static str| LayerSpec {
        comp: Comp::None,
        entries: vec![
            Entry::Dir("usr"),
            Entry::File(name, crate::harness::random_bytes(48 << 20), 0o644),
        ],
    };
    let spec = ImageSpec {
        arch: host_arch(),
        layers: vec![layer("usr/a"), layer("usr/b")],
        entrypoint: vec!["/bin/sh"],
        cmd: vec![],
        env: vec![],
        last_layer_size_lie: 0,
    };
    let dir = env.scratch("layout");
    let image = single_image_layout(&dir, &spec, "v1");
    let cmd = format!(
        "'{}' --root '{}' pull 'oci-layout:{}:v1' big",
        env!("CARGO_BIN_EXE_sandbox"),
        env.root().display(),
        dir.display()
    );
    let out = run_tool(
        Command::new(require_tool("script")).args(["-qec", &cmd, "/dev/null"]),
        None,
    );
    let shown = String::from_utf8_lossy(&out);
    for l in &image.layers {
        let label = format!(
            "Copying layer {}",
            &l.digest().trim_start_matches("sha256:")[..12]
        );
        assert!(shown.contains(&label), "`{label}` not shown:\n{shown}");
    }
    assert!(shown.contains("Unpacking"), "{shown}");
    assert!(env.machine("big").join("usr/b").is_file());
    // Not a terminal: no bars (a fresh sandboxes dir, so the layers are copied again).
    let fresh = env.root().join("var/lib/sandboxes-2");
    let piped = env
        .sandbox(&[
            "--sandboxes-dir",
            crate::harness::fixture::arg(&fresh),
            "pull",
            &format!("oci-layout:{}:v1", dir.display()),
            "big2",
        ])
        .success();
    assert!(fresh.join("cache").is_dir());
    assert!(
        !piped.stderr.contains("Copying layer") && !piped.stderr.contains("Unpacking"),
        "{}",
        piped.stderr
    );
}
