//! `extends`, variables, sources, file layout, the content hash.

use super::{Set, base, chain, tpl};
use crate::template::library::{Content, TemplateFile};
use crate::template::plan::{Keyring, ServerDecl};
use crate::verify::mode::VerifyMode;

fn order(set: &Set, names: &[&str]) -> Vec<String> {
    set.compose(names, &[]).unwrap().spec().templates.clone()
}

#[test]
fn extends_apply_first_in_order_and_once() {
    let set = Set::default()
        .with(base())
        .with(tpl("b", &[("template.toml", "extends = [\"base\"]\n")]))
        .with(tpl("c", &[("template.toml", "extends = [\"base\"]\n")]))
        .with(tpl("a", &[("template.toml", "extends = [\"b\", \"c\"]\n")]))
        .with(tpl("x", &[]));
    assert_eq!(order(&set, &["a"]), ["base", "b", "c", "a"]);
    assert_eq!(order(&set, &["c", "b"]), ["base", "c", "b"]);
    assert_eq!(
        order(&set, &["base", "x", "a"]),
        ["base", "x", "b", "c", "a"]
    );
    assert_eq!(order(&set, &["a", "base"]), ["base", "b", "c", "a"]);
    let spec = set.compose(&["base", "x"], &[]).unwrap().spec().clone();
    assert_eq!(spec.name, "base+x");
}

#[test]
fn cycles_are_errors_that_show_the_loop() {
    let set = Set::default()
        .with(base())
        .with(tpl(
            "a",
            &[("template.toml", "extends = [\"base\", \"b\"]\n")],
        ))
        .with(tpl(
            "b",
            &[("template.toml", "description = \"b\"\nextends = [\"c\"]\n")],
        ))
        .with(tpl("c", &[("template.toml", "extends = [\"a\"]\n")]))
        .with(tpl("self", &[("template.toml", "extends = [\"self\"]\n")]));
    let e = chain(set.compose(&["a"], &[]).unwrap_err());
    assert_eq!(
        e,
        "/t/c/template.toml:1: `extends` makes a cycle: a → b → c → a"
    );
    let e = chain(set.compose(&["self"], &[]).unwrap_err());
    assert_eq!(
        e,
        "/t/self/template.toml:1: `extends` makes a cycle: self → self"
    );
}

#[test]
fn an_unknown_parent_names_the_extends_line() {
    let set = Set::default().with(tpl(
        "a",
        &[("template.toml", "\nextends = [\n  \"nope\"]\n")],
    ));
    let e = chain(set.compose(&["a"], &[]).unwrap_err());
    assert_eq!(
        e,
        "/t/a/template.toml:3: extends `nope`: no template named `nope`"
    );
}

#[test]
fn variables_defaults_overrides_and_errors() {
    let set = Set::default()
        .with(tpl(
            "base",
            &[
                (
                    "template.toml",
                    "source = \"images:a/b\"\n[vars]\nbridge = \"br0\"\nzone = \"z\"\n",
                ),
                ("net.nspawn", "[Network]\nBridge={{bridge}}\n"),
            ],
        ))
        .with(tpl(
            "later",
            &[("template.toml", "[vars]\nbridge = \"br7\"\n")],
        ))
        .with(tpl(
            "uses",
            &[("x.nspawn", "[Exec]\n\nHostname={{ zone }}\n")],
        ))
        .with(tpl(
            "broken",
            &[("x.nspawn", "[Network]\n\nZone={{ nozone }}\n")],
        ))
        .with(tpl(
            "broken-ud",
            &[(
                "user-data",
                "#cloud-config\nruncmd:\n  - echo {{missing}}\n",
            )],
        ));
    let bridge = |names: &[&str], sets: &[(&str, &str)]| {
        let plan = set.render(names, sets).unwrap();
        plan.text(
            crate::template::plan::Base::Host,
            "etc/systemd/nspawn/web.nspawn",
        )
        .unwrap()
        .to_string()
    };
    assert!(bridge(&["base"], &[]).contains("Bridge=br0\n"));
    // A later template's default replaces an earlier one; --set replaces both.
    assert!(bridge(&["base", "later"], &[]).contains("Bridge=br7\n"));
    assert!(bridge(&["base", "later"], &[("bridge", "br9")]).contains("Bridge=br9\n"));
    // Variables are shared: a snippet may use one its base declares.
    assert!(bridge(&["base", "uses"], &[("zone", "lab")]).contains("Hostname=lab\n"));
    let spec = set
        .compose(&["base", "later"], &[("zone", "q")])
        .unwrap()
        .spec()
        .clone();
    assert_eq!(spec.vars["bridge"], "br7");
    assert_eq!(spec.vars["zone"], "q");

    let e = chain(set.compose(&["base"], &[("brigde", "x")]).unwrap_err());
    assert_eq!(
        e,
        "--set brigde: no template declares a variable `brigde` (declared: bridge, zone)"
    );
    let e = chain(
        set.compose(&["base"], &[("bridge", "br0\n[Exec]")])
            .unwrap_err(),
    );
    assert!(
        e.starts_with("--set bridge: variable `bridge`: the value may not contain control"),
        "{e}"
    );
    let e = chain(set.compose(&["base", "broken"], &[]).unwrap_err());
    assert!(
        e.starts_with("/t/broken/x.nspawn:3: undefined variable `nozone`"),
        "{e}"
    );
    let e = chain(set.compose(&["base", "broken-ud"], &[]).unwrap_err());
    assert!(
        e.starts_with("/t/broken-ud/user-data:3: undefined variable `missing`"),
        "{e}"
    );
}

#[test]
fn the_last_source_wins_with_its_own_verification() {
    let key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n";
    let set = Set::default()
        .with(tpl(
            "first",
            &[(
                "template.toml",
                "source = \"images:debian/bookworm/cloud\"\nchecksum = \"sha256:1111111111111111111111111111111111111111111111111111111111111111\"\n",
            )],
        ))
        .with(tpl(
            "second",
            &[
                (
                    "template.toml",
                    "source = \"https://example.org/rootfs.tar.xz\"\nverify = \"signature\"\nkeyring = [\"/etc/k.pgp\", \"keys/archive.asc\"]\n",
                ),
                ("keys/archive.asc", key),
            ],
        ))
        .with(tpl("snippet", &[]))
        .with(tpl("missing-key", &[("template.toml", "source = \"images:a/b\"\nkeyring = \"k.asc\"\n")]));
    let s = set
        .compose(&["first", "second", "snippet"], &[])
        .unwrap()
        .spec()
        .source
        .clone();
    assert_eq!(s.raw, "https://example.org/rootfs.tar.xz");
    assert_eq!(s.from_template, "second");
    assert_eq!(s.verify, Some(VerifyMode::Signature));
    assert_eq!(
        s.checksum, None,
        "the first template's checksum belongs to its own source"
    );
    assert_eq!(
        s.keyrings,
        vec![
            Keyring::Host("/etc/k.pgp".into()),
            Keyring::Template {
                label: "second/keys/archive.asc".into(),
                bytes: key.as_bytes().to_vec()
            },
        ]
    );
    let s = set.compose(&["first"], &[]).unwrap().spec().source.clone();
    assert!(s.checksum.is_some());

    let e = chain(set.compose(&["snippet"], &[]).unwrap_err());
    assert!(
        e.starts_with("none of the templates (snippet) sets `source`"),
        "{e}"
    );
    let e = chain(set.compose(&["missing-key"], &[]).unwrap_err());
    assert_eq!(
        e,
        "/t/missing-key/template.toml:2: keyring `k.asc` is not a file of template `missing-key`"
    );
}

#[test]
fn the_last_images_server_wins_with_or_without_a_source() {
    let server = |name: &str, url: &str| {
        tpl(
            name,
            &[(
                "template.toml",
                &format!("extends = [\"base\"]\n\nimages_server = \"{url}\"\n"),
            )],
        )
    };
    let set = Set::default()
        .with(base())
        .with(server("mirror", "https://mirror.example.org/lxc"))
        .with(server("airgap", "http://10.0.0.1:8080/"))
        .with(tpl(
            "own-source",
            &[(
                "template.toml",
                "source = \"images:ubuntu/noble/cloud\"\nimages_server = \"http://own/\"\n",
            )],
        ))
        .with(tpl(
            "tarball",
            &[(
                "template.toml",
                "source = \"https://example.org/rootfs.tar.xz\"\n",
            )],
        ))
        .with(tpl("snippet", &[]));
    let decl = |names: &[&str]| {
        set.compose(names, &[])
            .unwrap()
            .spec()
            .images_server
            .clone()
    };

    assert_eq!(decl(&["base", "snippet"]), None);
    assert_eq!(
        decl(&["mirror", "snippet"]),
        Some(ServerDecl {
            url: "https://mirror.example.org/lxc".into(),
            from_template: "mirror".into(),
            place: "/t/mirror/template.toml:3".into(),
        })
    );
    // Later in composition order wins, as for every setting; the source is base's all along.
    let s = decl(&["mirror", "airgap"]).unwrap();
    assert_eq!(
        (s.url.as_str(), s.from_template.as_str()),
        ("http://10.0.0.1:8080/", "airgap")
    );
    assert_eq!(decl(&["airgap", "mirror"]).unwrap().from_template, "mirror");
    // A later source does not take an earlier server back: the server is not the source's.
    let c = set.compose(&["mirror", "own-source"], &[]).unwrap();
    assert_eq!(c.spec().source.from_template, "own-source");
    assert_eq!(c.spec().images_server.as_ref().unwrap().url, "http://own/");
    // own-source, base (extended by mirror), mirror.
    let c = set.compose(&["own-source", "mirror"], &[]).unwrap();
    assert_eq!(c.spec().source.from_template, "base");
    assert_eq!(
        c.spec().images_server.as_ref().unwrap().from_template,
        "mirror"
    );

    // A server nothing would be fetched from is a mistake, not a setting to ignore.
    let e = chain(set.compose(&["mirror", "tarball"], &[]).unwrap_err());
    assert_eq!(
        e,
        "/t/mirror/template.toml:3: images_server is for images: sources, and the source (`https://example.org/rootfs.tar.xz`, from template `tarball`) is not one"
    );
}

#[test]
fn enable_is_the_last_word() {
    let set = Set::default()
        .with(base())
        .with(tpl("on", &[("template.toml", "enable = true\n")]))
        .with(tpl("off", &[("template.toml", "enable = false\n")]))
        .with(tpl("quiet", &[]));
    let enable = |names: &[&str]| set.compose(names, &[]).unwrap().spec().enable;
    assert!(!enable(&["base"]));
    assert!(enable(&["base", "on", "quiet"]));
    assert!(!enable(&["base", "on", "off"]));
}

#[test]
fn wrong_templates_name_the_file_and_line() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("template.toml", "descripton = \"typo\"\n")],
            "/t/bad/template.toml:1: unknown field `descripton`",
        ),
        (
            &[("user-data", "#cloud-config\npackages: [a\n")],
            "/t/bad/user-data:3:1: invalid YAML",
        ),
        (
            &[("user-data", "#cloud-config\na: 1\n b: 2\n")],
            "/t/bad/user-data:3:",
        ),
        (
            &[("network-config", "- a\n")],
            "/t/bad/network-config:1: network-config must be a map",
        ),
        (
            &[("x.nspawn", "[Files]\nBind /a\n")],
            "/t/bad/x.nspawn:2: expected `Key=Value`",
        ),
        (
            &[("x.nspawn", "[Files]\nBindRO=/a\n")],
            "/t/bad/x.nspawn:2: `BindRO=` is not a setting of [Files]",
        ),
        (
            &[("x.conf", "DeviceAllow=/dev/x rw\n")],
            "/t/bad/x.conf:1: `DeviceAllow=` comes before any [Section]",
        ),
        (
            &[("notes.txt", "hello")],
            "/t/bad/notes.txt: unexpected file in a template",
        ),
        (
            &[("sub/x.nspawn", "[Exec]\n")],
            "/t/bad/sub/x.nspawn: unexpected file in a template",
        ),
        (
            &[("template.toml", "generate = [\"extra-bridges\"]\n")],
            "/t/bad/template.toml:1: generator `extra-bridges` reads the variable",
        ),
    ];
    for (files, want) in cases {
        let set = Set::default().with(base()).with(tpl("bad", files));
        let got = chain(set.compose(&["base", "bad"], &[]).unwrap_err());
        assert!(got.starts_with(want), "{files:?}: {got}");
    }
    let set = Set::default().with(base()).with(tpl("bin", &[]));
    let mut set = set;
    set.0.get_mut("bin").unwrap().files.insert(
        "user-data".into(),
        TemplateFile {
            mode: 0o644,
            content: Content::Bytes(vec![b'#', 0xff, 0xfe]),
        },
    );
    let got = chain(set.compose(&["base", "bin"], &[]).unwrap_err());
    assert!(got.starts_with("/t/bin/user-data: not UTF-8"), "{got}");
}

#[test]
fn readme_and_files_are_not_parsed() {
    let set = Set::default().with(base()).with(tpl(
        "ok",
        &[
            ("README.md", "# {{not a var}} [Exec"),
            ("files/etc/motd", "{{undefined}} stays\n"),
        ],
    ));
    let plan = set.render(&["base", "ok"], &[]).unwrap();
    assert_eq!(
        plan.text(crate::template::plan::Base::Rootfs, "etc/motd"),
        Some("{{undefined}} stays\n")
    );
}

#[test]
fn the_content_hash_is_stable_and_covers_every_input() {
    let make = |edit: &dyn Fn(&mut Set)| {
        let mut set = Set::default().with(base()).with(tpl(
            "t",
            &[
                ("template.toml", "[vars]\nv = \"1\"\n"),
                ("user-data", "#cloud-config\npackages: [a]\n"),
                ("files/etc/x", "x"),
            ],
        ));
        edit(&mut set);
        set.compose(&["base", "t"], &[])
            .unwrap()
            .spec()
            .content_hash
    };
    let h = make(&|_| {});
    assert_eq!(h, make(&|_| {}), "same inputs, same hash");
    let file = |s: &mut Set, p: &str, c: &str| {
        s.0.get_mut("t").unwrap().files.insert(
            p.into(),
            TemplateFile {
                mode: 0o644,
                content: Content::Bytes(c.as_bytes().to_vec()),
            },
        );
    };
    type Edit = Box<dyn Fn(&mut Set)>;
    let variants: Vec<(&str, Edit)> = vec![
        (
            "a byte of user-data",
            Box::new(move |s| file(s, "user-data", "#cloud-config\npackages: [b]\n")),
        ),
        (
            "a file under files/",
            Box::new(move |s| file(s, "files/etc/x", "y")),
        ),
        ("a new file", Box::new(move |s| file(s, "files/etc/y", "x"))),
        (
            "a variable default",
            Box::new(move |s| file(s, "template.toml", "[vars]\nv = \"2\"\n")),
        ),
        (
            "a mode",
            Box::new(|s| {
                s.0.get_mut("t")
                    .unwrap()
                    .files
                    .get_mut("files/etc/x")
                    .unwrap()
                    .mode = 0o755
            }),
        ),
        (
            "the base",
            Box::new(|s| {
                s.0.insert(
                    "base".into(),
                    tpl(
                        "base",
                        &[("template.toml", "source = \"images:debian/trixie/cloud\"\n")],
                    ),
                );
            }),
        ),
    ];
    for (what, edit) in &variants {
        assert_ne!(
            h,
            make(edit.as_ref()),
            "changing {what} must change the hash"
        );
    }
    // A --set is an input too.
    let set = Set::default()
        .with(base())
        .with(tpl("t", &[("template.toml", "[vars]\nv = \"1\"\n")]));
    let a = set
        .compose(&["base", "t"], &[])
        .unwrap()
        .spec()
        .content_hash;
    let b = set
        .compose(&["base", "t"], &[("v", "2")])
        .unwrap()
        .spec()
        .content_hash;
    assert_ne!(a, b);
    // Where a template lives is not.
    let mut moved = set.clone();
    moved.0.get_mut("t").unwrap().origin = crate::template::library::Origin::Embedded;
    assert_eq!(
        a,
        moved
            .compose(&["base", "t"], &[])
            .unwrap()
            .spec()
            .content_hash
    );
}
