//! `sandbox config` end to end: a sandbox built from a test template with the shipped `docker`
//! snippet (or hand-made, as `sandbox pull` or other tools leave one), its settings shown and
//! edited key by key; every other byte of the files must stay, `--dry-run` must change
//! nothing, the state record must note the edits and `build --force` must keep them.
//! `templates show` prints shipped templates as the binary holds them.

use std::path::{Path, PathBuf};

use crate::build::{BaseImage, build, read, recorder, testbase};
use crate::harness::env::TestEnv;

fn nspawn(env: &TestEnv, name: &str) -> PathBuf {
    env.root().join(format!("etc/systemd/nspawn/{name}.nspawn"))
}

fn dropin_dir(env: &TestEnv, name: &str) -> PathBuf {
    env.root().join(format!(
        "etc/systemd/system/systemd-nspawn@{name}.service.d"
    ))
}

fn record(env: &TestEnv, name: &str) -> serde_json::Value {
    let path = env.sandboxes_dir().join(format!("state/{name}.json"));
    serde_json::from_str(&read(&path)).unwrap()
}

/// `web`, built from `testbase+docker` (machinectl recorded).
fn built(env: &TestEnv) -> PathBuf {
    let image = BaseImage::new(env);
    testbase(env, &image, "motd\n");
    let (machinectl, _) = recorder(env, "machinectl", "");
    build(env, &machinectl, &["--no-start", "testbase+docker", "web"]).success();
    machinectl
}

/// A file a person has been editing by hand: comments, blank lines, CRLF, a section twice,
/// a continued line, odd spacing, a line systemd does not understand, no final newline.
const HAND_MADE: &str = "# my notes\r\n[Exec]\r\nBoot = yes\r\nSystemCallFilter=add_key \\\r\n  keyctl bpf\r\n\r\n; files\r\n[Files]\r\nBindReadOnly=/sys/module\r\nthis line is junk\r\n[Exec]\r\nHostname=web\r\n\r\n[Files]\r\nInaccessible=/sys/module/apparmor";

#[test]
fn edits_change_only_their_keys_byte_for_byte() {
    let env = TestEnv::new();
    built(&env);
    let file = nspawn(&env, "web");
    std::fs::write(&file, HAND_MADE).unwrap();

    // --dry-run: a unified diff, nothing written, nothing noted.
    let before_record = record(&env, "web");
    let out = env
        .sandbox(&[
            "config",
            "web",
            "Exec.Boot=no",
            "Files.Bind+=/srv/data:/data",
            "--dry-run",
        ])
        .success();
    let label = file.display().to_string();
    assert!(
        out.stdout
            .starts_with(&format!("--- {label}\n+++ {label}\n@@ ")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("-Boot = yes\r\n+Boot = no\r\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("+Bind=/srv/data:/data"),
        "{}",
        out.stdout
    );
    assert_eq!(read(&file), HAND_MADE);
    assert_eq!(record(&env, "web"), before_record);

    env.sandbox(&[
        "config",
        "web",
        "Exec.Boot=no",
        "Files.Bind+=/srv/data:/data",
    ])
    .success();
    let want = HAND_MADE.replace("Boot = yes", "Boot = no").replace(
        "Inaccessible=/sys/module/apparmor",
        "Inaccessible=/sys/module/apparmor\r\nBind=/srv/data:/data",
    );
    assert_eq!(read(&file), want);
    // The bytes after the last edit: still no final newline.
    assert!(!read(&file).ends_with('\n'));

    // Unset takes the key's lines out, the continuation whole, and nothing else.
    env.sandbox(&["config", "web", "--unset", "Exec.SystemCallFilter"])
        .success();
    assert_eq!(
        read(&file),
        want.replace("SystemCallFilter=add_key \\\r\n  keyctl bpf\r\n", "")
    );

    // The record notes each key, its values and when.
    let edits = record(&env, "web")["user_edits"].clone();
    let keys: Vec<(&str, &str, serde_json::Value)> = edits
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["at"].as_str().unwrap().ends_with('Z'), "{e}");
            (
                e["file"].as_str().unwrap(),
                e["key"].as_str().unwrap(),
                e["values"].clone(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("nspawn", "Exec.Boot", serde_json::json!(["no"])),
            ("nspawn", "Exec.SystemCallFilter", serde_json::json!([])),
            (
                "nspawn",
                "Files.Bind",
                serde_json::json!(["/srv/data:/data"])
            ),
        ]
    );
}

#[test]
fn service_keys_go_into_the_sandboxs_own_dropin_and_survive_a_rebuild() {
    let env = TestEnv::new();
    let machinectl = built(&env);
    let dir = dropin_dir(&env, "web");
    let build_dropins = [
        read(&dir.join("10-sandbox.conf")),
        read(&dir.join("20-sandbox-templates.conf")),
    ];
    let out = env
        .sandbox(&[
            "--json",
            "config",
            "web",
            "Service.MemoryMax=2G",
            "Service.DeviceAllow=/dev/dri rw",
            "Service.DeviceAllow=char-drm rwm",
            "Network.Zone=lab",
        ])
        .success();
    let report = out.json();
    assert_eq!(report["name"], "web");
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["recorded"], true);
    assert_eq!(report["files"].as_array().unwrap().len(), 2, "{report}");
    assert!(
        report["skipped"][0]
            .as_str()
            .unwrap()
            .starts_with("systemctl daemon-reload: under --root"),
        "{report}"
    );
    assert_eq!(
        read(&dir.join("30-sandbox-config.conf")),
        "[Service]\nMemoryMax=2G\nDeviceAllow=/dev/dri rw\nDeviceAllow=char-drm rwm\n"
    );
    // The build's drop-ins are untouched.
    assert_eq!(read(&dir.join("10-sandbox.conf")), build_dropins[0]);
    assert_eq!(
        read(&dir.join("20-sandbox-templates.conf")),
        build_dropins[1]
    );
    let rendered = read(&nspawn(&env, "web"));
    assert!(rendered.ends_with("\n[Network]\nZone=lab\n"), "{rendered}");

    // The view: each value with its file and origin; the edits with their time.
    let view = env.sandbox(&["--json", "config", "web"]).success().json();
    let find = |key: &str, value: &str| {
        view["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key && s["value"] == value)
            .unwrap_or_else(|| panic!("no {key}={value} in {view}"))
            .clone()
    };
    let zone = find("Zone", "lab");
    assert_eq!(zone["source"], "sandbox-config");
    assert_eq!(zone["section"], "Network");
    assert!(zone["edited_at"].is_string());
    assert_eq!(zone["file"], nspawn(&env, "web").display().to_string());
    let bind = find("BindReadOnly", "/sys/module");
    assert_eq!(bind["source"], "template");
    assert_eq!(bind["template"], "docker");
    assert_eq!(bind["template_file"], "built-in:docker/docker.nspawn:9");
    let pre = find("ExecStartPre", "-/sbin/modprobe -abq br_netfilter overlay");
    assert_eq!(
        (pre["source"].as_str(), pre["template"].as_str()),
        (Some("template"), Some("docker"))
    );
    assert_eq!(find("ExecStart", "")["source"], "build");
    assert_eq!(find("MemoryMax", "2G")["source"], "sandbox-config");
    assert_eq!(view["user_edits"].as_array().unwrap().len(), 3, "{view}");
    assert!(
        view["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["in_effect"] == true)
    );
    let text = env.sandbox(&["config", "web"]).success().stdout;
    assert!(
        text.contains("template docker (built-in:docker/docker.nspawn:9)"),
        "{text}"
    );

    // build --force: the .nspawn is rendered anew and the edit applied again, said by name;
    // the sandbox's own drop-in is kept; the record still notes the edits.
    let out = build(
        &env,
        &machinectl,
        &["--force", "--no-start", "testbase+docker", "web"],
    )
    .success();
    assert!(
        out.stderr.contains(
            "Kept Network.Zone = lab (set with `sandbox config`) over the templates' unset"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(read(&nspawn(&env, "web")), rendered);
    assert!(dir.join("30-sandbox-config.conf").exists());
    assert_eq!(
        record(&env, "web")["user_edits"].as_array().unwrap().len(),
        3
    );
    let out = build(
        &env,
        &machinectl,
        &["--json", "--force", "--no-start", "testbase+docker", "web"],
    )
    .success();
    assert_eq!(
        out.json()["kept_edits"],
        serde_json::json!([{"key": "Network.Zone", "file": "nspawn", "before": [], "after": ["lab"]}])
    );

    // --reset: back to the templates (none set Zone), the note gone; a rebuild follows them.
    env.sandbox(&[
        "config",
        "web",
        "--reset",
        "Network.Zone",
        "--reset",
        "Service.MemoryMax",
    ])
    .success();
    assert!(!read(&nspawn(&env, "web")).contains("Zone="));
    assert!(!read(&dir.join("30-sandbox-config.conf")).contains("MemoryMax"));
    let keys: Vec<String> = record(&env, "web")["user_edits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["Service.DeviceAllow"]);
}

#[test]
fn errors_say_what_and_where() {
    let env = TestEnv::new();
    built(&env);
    let file = nspawn(&env, "web");
    let before = read(&file);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["Exec.Bot=no"],
            &["`Bot=` is not a setting of [Exec] in systemd.nspawn(5); did you mean `Boot=`?"],
        ),
        (
            &["Service.MemoryMaxx=1G"],
            &[
                "`MemoryMaxx=` is not a setting of [Service]",
                "did you mean `MemoryMax=`?",
            ],
        ),
        (
            &["Network.Zone=much-too-long-zone"],
            &["Network.Zone=much-too-long-zone is not a valid zone name: at most 12 characters"],
        ),
        (
            &["Service.MemoryMax=lots"],
            &["Service.MemoryMax=lots is not a size"],
        ),
        (
            &["Network.Bridge=br0", "Network.Zone=z"],
            &["both Bridge=br0 and Zone=z"],
        ),
        (
            &["Files.Bind-=/nope"],
            &["Files.Bind has no value `/nope` to remove"],
        ),
        (&["Exec.Boot"], &["expected Section.Key=VALUE"]),
    ];
    for (args, needles) in cases {
        let mut full = vec!["config", "web"];
        full.extend_from_slice(args);
        env.sandbox(&full).failure().stderr_mentions(needles);
    }
    env.sandbox(&["config", "nosuch", "Exec.Boot=no"])
        .failure()
        .stderr_mentions(&["there is no sandbox named `nosuch`"]);
    env.sandbox(&["config", "nosuch"])
        .failure()
        .stderr_mentions(&["there is no sandbox named `nosuch`"]);
    env.sandbox(&["config", "../x", "Exec.Boot=no"]).failure();
    assert_eq!(read(&file), before);
    assert!(
        !dropin_dir(&env, "web")
            .join("30-sandbox-config.conf")
            .exists()
    );
}

#[test]
fn a_pulled_machines_image_settings_are_copied_without_their_privileges() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.machine("box/etc")).unwrap();
    let image = "[Exec]\nBoot=no\nParameters=/bin/app\n\n[Files]\nBind=/:/host\n";
    std::fs::write(env.machines_dir().join("box.nspawn"), image).unwrap();
    let view = env.sandbox(&["--json", "config", "box"]).success().json();
    let bind = &view["settings"][2];
    assert_eq!(
        (bind["key"].as_str(), bind["source"].as_str()),
        (Some("Bind"), Some("image"))
    );
    assert!(
        bind["ignored"].as_str().unwrap().contains("untrusted"),
        "{view}"
    );
    assert!(
        view["notes"][0]
            .as_str()
            .unwrap()
            .contains("no state record"),
        "{view}"
    );

    env.sandbox(&["config", "box", "Exec.Boot=yes"]).success();
    let made = read(&nspawn(&env, "box"));
    let img = env.machines_dir().join("box.nspawn");
    assert_eq!(
        made,
        format!(
            "# Made by `sandbox config` from {} (systemd-nspawn reads only this file now).\n\
             [Exec]\nBoot=yes\nParameters=/bin/app\n\n[Files]\n\
             # left out: systemd-nspawn ignored it in the untrusted file next to the image\n\
             # Bind=/:/host\n",
            img.display()
        )
    );
    // The image's file is left as it came.
    assert_eq!(read(&img), image);
}

#[test]
fn an_unbound_persisted_copy_is_kept_in_step() {
    let env = TestEnv::new();
    built(&env);
    // As `sandbox host setup` leaves it while the bind is not in place (before the boot's
    // setup ran, after `host undo`): the same files in persist/ and in /etc.
    let persist = env.sandboxes_dir().join("persist");
    let p_nspawn = persist.join("nspawn/web.nspawn");
    let p_dropins = persist.join("dropins/systemd-nspawn@web.service.d");
    std::fs::create_dir_all(p_nspawn.parent().unwrap()).unwrap();
    std::fs::create_dir_all(&p_dropins).unwrap();
    std::fs::copy(nspawn(&env, "web"), &p_nspawn).unwrap();
    let out = env
        .sandbox(&["config", "web", "Exec.Boot=no", "Service.LimitNOFILE=65536"])
        .success();
    assert!(
        out.stderr.contains("and its persisted copy"),
        "{}",
        out.stderr
    );
    assert_eq!(read(&p_nspawn), read(&nspawn(&env, "web")));
    assert!(read(&p_nspawn).contains("Boot=no"));
    assert_eq!(
        read(&p_dropins.join("30-sandbox-config.conf")),
        "[Service]\nLimitNOFILE=65536\n"
    );
    assert_eq!(
        read(&dropin_dir(&env, "web").join("30-sandbox-config.conf")),
        "[Service]\nLimitNOFILE=65536\n"
    );
}

#[test]
fn templates_show_prints_shipped_templates_as_the_binary_holds_them() {
    let env = TestEnv::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/docker");
    let out = env
        .sandbox(&["templates", "show", "docker"])
        .success()
        .stdout;
    assert!(out.starts_with("# template docker (built-in)\n"), "{out}");
    let nspawn = read(&repo.join("docker.nspawn"));
    assert!(
        out.contains(&format!(
            "==> docker/docker.nspawn (mode 0644) <==\n{nspawn}"
        )),
        "{out}"
    );
    let json = env
        .sandbox(&["--json", "templates", "show", "docker"])
        .success()
        .json();
    assert_eq!(json["name"], "docker");
    assert_eq!(json["origin"], "built-in");
    let files = json["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["docker.conf", "docker.nspawn", "template.toml", "user-data"]
    );
    for f in files {
        assert_eq!(f["mode"], "0644");
        let on_disk = read(&repo.join(f["path"].as_str().unwrap()));
        assert_eq!(f["content"].as_str().unwrap(), on_disk);
    }
    env.sandbox(&["templates", "show", "dokcer"])
        .failure()
        .stderr_mentions(&["no template named `dokcer`; did you mean `docker`?"]);
}
