//! Every rule of `nspawn_rules`, with values systemd takes and values it ignores or refuses,
//! and the boundaries (interface names of 15/16 bytes, zones of 12/13).

use super::super::nspawn::key_kind;
use super::super::nspawn_rules::{RULES, check, rule};
use super::super::plan::{Base, Omission, RenderInputs};
use super::{Set, Template, chain, inputs, tpl};

/// (section, key, values that pass, values that fail with this text in the reason).
type Case = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

const CASES: &[Case] = &[
    (
        "Exec",
        "Boot",
        &[
            "yes", "no", "1", "0", "true", "FALSE", "on", "off", "y", "t",
        ],
        &[
            ("", "is not a boolean"),
            ("maybe", "is not a boolean"),
            ("2", "boolean"),
        ],
    ),
    ("Exec", "ProcessTwo", &["no"], &[("", "boolean")]),
    (
        "Exec",
        "Ephemeral",
        &["", "yes"],
        &[("sometimes", "boolean")],
    ),
    ("Exec", "NotifyReady", &["", "yes"], &[("ready", "boolean")]),
    (
        "Exec",
        "NoNewPrivileges",
        &["", "true"],
        &[("nnp", "boolean")],
    ),
    ("Exec", "SuppressSync", &["", "0"], &[("sync", "boolean")]),
    ("Files", "ReadOnly", &["", "on"], &[("ro", "boolean")]),
    (
        "Files",
        "PrivateUsersChown",
        &["yes"],
        &[("map", "boolean")],
    ),
    (
        "Network",
        "VirtualEthernet",
        &["", "no"],
        &[("veth", "boolean")],
    ),
    ("Network", "Private", &["yes"], &[("private", "boolean")]),
    (
        "Network",
        "Bridge",
        &["", "br0", "a", "fifteen-bytes-x", "br.lan", "vlan@1", "0br"],
        &[
            ("br 1", "' ' is not allowed"),
            ("sixteen-bytes-xx", "16 bytes, at most 15"),
            ("br/0", "'/' is not allowed"),
            ("br:0", "':' is not allowed"),
            (".", "`.` and `..`"),
            ("..", "`.` and `..`"),
            ("123", "all digits"),
            ("brü", "not allowed"),
            ("br\t0", "not allowed"),
        ],
    ),
    (
        "Network",
        "Zone",
        &["sandboxes", "twelve-chars", "a", "lab.1"],
        &[
            (
                "thirteen-char",
                "at most 12 characters (systemd names the interface vz-ZONE)",
            ),
            ("averyveryverylongzonename", "at most 12 characters"),
            ("", "empty"),
            ("a b", "not allowed"),
            ("a/b", "not allowed"),
            ("a:b", "not allowed"),
        ],
    ),
    (
        "Network",
        "Interface",
        &["eth1", "eth1 eth2", "fifteen-bytes-x"],
        &[
            ("eth1 sixteen-bytes-xx", "`sixteen-bytes-xx`: 16 bytes"),
            ("a/b", "`a/b`"),
        ],
    ),
    ("Network", "MACVLAN", &["eno1"], &[("eno:1", "':'")]),
    ("Network", "IPVLAN", &["eno1 eno2"], &[("..", "`..`")]),
    (
        "Network",
        "VirtualEthernetExtra",
        &["vb1-web:host1", "fifteen-bytes-x:fifteen-bytes-x", "veth9"],
        &[
            ("vb1-web:", "container side ``: empty"),
            (":host1", "host side ``: empty"),
            ("sixteen-bytes-xx:host1", "host side"),
            ("a:b:c", "container side `b:c`"),
        ],
    ),
    (
        "Network",
        "Port",
        &["80", "tcp:80", "udp:53:5353", "8080:80", "1", "65535:65535"],
        &[
            ("0", "host port `0`"),
            ("65536", "host port `65536`"),
            ("sctp:80", "host port `sctp`"),
            ("80:0", "container port `0`"),
            ("80:", "container port ``"),
            ("", "host port ``"),
            ("http", "host port `http`"),
            ("tcp:80:81:82", "container port `81:82`"),
        ],
    ),
    (
        "Files",
        "Bind",
        &[
            "/mnt",
            "/mnt:/data",
            "/mnt:/data:norbind",
            "/mnt:/data:rbind,idmap",
            "+/var/x:/y",
            ":/scratch",
            "/a\\:b:/c",
            "/with space",
        ],
        &[
            ("mnt", "source: `mnt` is relative"),
            ("/mnt:data", "destination: `data` is relative"),
            ("/mnt:/data:bogus", "unknown option `bogus`"),
            ("/a:/b:rbind:x", "more than three"),
            ("", "source: empty"),
            ("+rel:/x", "source: `rel` is relative"),
        ],
    ),
    (
        "Files",
        "BindReadOnly",
        &["/sys/module"],
        &[("sys/module", "relative")],
    ),
    (
        "Files",
        "TemporaryFileSystem",
        &["/tmp", "/run/x:mode=0755,size=10M"],
        &[("tmp", "relative"), ("", "empty")],
    ),
    (
        "Files",
        "Inaccessible",
        &["/sys/module/apparmor"],
        &[("sys/module/apparmor", "relative"), ("", "empty")],
    ),
    (
        "Files",
        "Overlay",
        &[
            "/lower:/dest",
            "/a:/b:/dest",
            "+/var::/var",
            "/a:/b:/c:/dest",
        ],
        &[
            ("/dest", "at least two paths"),
            ("/a:dest", "destination: `dest` is relative"),
            ("a:/dest", "source: `a` is relative"),
            (":/dest", "source: empty"),
            ("/a::/b:/dest", "source: empty"),
        ],
    ),
    (
        "Files",
        "OverlayReadOnly",
        &["/a:/b"],
        &[("/a", "two paths")],
    ),
    (
        "Exec",
        "WorkingDirectory",
        &["", "/srv"],
        &[("srv", "`srv` is relative")],
    ),
    (
        "Exec",
        "PivotRoot",
        &["/sysroot", "/a:/b"],
        &[("a", "relative"), ("/a:b", "relative")],
    ),
    (
        "Exec",
        "PrivateUsers",
        &[
            "yes",
            "no",
            "pick",
            "identity",
            "0",
            "65536",
            "65536:65536",
            "524288:65536",
        ],
        &[
            ("random", "`random` is not a UID"),
            ("65536:", "`` is not a count"),
            ("65536:0", "does not fit"),
            ("4294967295", "not a valid UID"),
            ("65535", "not a valid UID"),
            ("4294901760:65536", "does not fit"),
            ("-1", "not a UID"),
        ],
    ),
    (
        "Exec",
        "Hostname",
        &["", "web", "web-1.example.org", "a"],
        &[
            ("web_1", "'_' is not allowed"),
            ("a..b", "empty label"),
            (".a", "empty label"),
            ("a b", "' '"),
        ],
    ),
    (
        "Exec",
        "MachineID",
        &[
            "0123456789abcdef0123456789ABCDEF",
            "01234567-89ab-cdef-0123-456789abcdef",
        ],
        &[
            ("", "32 hexadecimal digits"),
            ("0123456789abcdef", "32 hexadecimal digits"),
            ("00000000000000000000000000000000", "all zero"),
            ("0123456789abcdef0123456789abcdeg", "hexadecimal"),
            ("0123456-789ab-cdef-0123-456789abcdef", "8-4-4-4-12"),
        ],
    ),
    (
        "Exec",
        "LinkJournal",
        &["no", "host", "try-host", "guest", "try-guest", "auto"],
        &[("yes-please", "expected no, host"), ("", "expected")],
    ),
    (
        "Exec",
        "ResolvConf",
        &[
            "off",
            "copy-host",
            "bind-stub",
            "replace-uplink",
            "delete",
            "auto",
            "yes",
            "no",
        ],
        &[("copy", "expected off, copy-host")],
    ),
    (
        "Exec",
        "Timezone",
        &["off", "copy", "bind", "symlink", "delete", "auto", "no"],
        &[("utc", "expected off, copy")],
    ),
    (
        "Files",
        "PrivateUsersOwnership",
        &["off", "chown", "map", "auto", "yes"],
        &[("foreign", "expected off, chown, map, auto or a boolean")],
    ),
    (
        "Files",
        "Volatile",
        &["yes", "no", "state", "overlay"],
        &[("tmpfs", "a boolean, state or overlay")],
    ),
];

#[test]
fn every_rule_takes_and_refuses_what_systemd_does() {
    for (section, key, good, bad) in CASES {
        assert!(rule(section, key).is_some(), "{section}/{key} has no rule");
        for v in *good {
            assert_eq!(check(section, key, v), Ok(()), "{key}={v:?}");
        }
        for (v, want) in *bad {
            let got = check(section, key, v).expect_err(&format!("{key}={v:?} passed"));
            assert!(got.starts_with("is not "), "{key}={v:?}: {got}");
            assert!(got.contains(want), "{key}={v:?}: {got}");
        }
    }
}

#[test]
fn every_rule_is_tested_and_names_a_real_setting() {
    for (section, key, _) in RULES {
        assert!(
            key_kind(section, key).is_some(),
            "{section}/{key} is no setting"
        );
        assert!(
            CASES.iter().any(|(s, k, _, _)| s == section && k == key),
            "{section}/{key} has no test case"
        );
    }
    // Keys without a rule pass as before.
    assert_eq!(check("Exec", "Capability", "anything at all"), Ok(()));
    assert_eq!(check("Exec", "Environment", "A=b c"), Ok(()));
}

#[test]
fn errors_name_the_file_line_and_the_variable() {
    let base = tpl(
        "base",
        &[(
            "template.toml",
            "source = \"images:a/b\"\n[vars]\nzone = \"lab\"\nbridge = \"br0\"\nsrc = \"/srv\"\n",
        )],
    );
    let zone = tpl(
        "zone",
        &[("zone.nspawn", "[Network]\n# the zone\nZone={{zone}}\n")],
    );
    let bridge = tpl(
        "bridge",
        &[("b.nspawn", "[Network]\nBridge={{ bridge }}\n")],
    );
    let bind = tpl("bind", &[("b.nspawn", "[Files]\nBind={{src}}:/mnt\n")]);
    let fails = |base: &Template, t: &Template, sets: &[(&str, &str)]| -> String {
        let set = Set::default().with(base.clone()).with(t.clone());
        chain(set.render(&["base", &t.name], sets).unwrap_err())
    };
    assert_eq!(
        fails(&base, &zone, &[("zone", "averyveryverylongzonename")]),
        "/t/zone/zone.nspawn:3: Zone=averyveryverylongzonename (from --set zone=…) is not a valid \
         zone name: at most 12 characters (systemd names the interface vz-ZONE), this has 25"
    );
    assert_eq!(
        fails(&base, &bridge, &[("bridge", "br 1")]),
        "/t/bridge/b.nspawn:2: Bridge=br 1 (from --set bridge=…) is not a valid network interface \
         name: ' ' is not allowed (no spaces, `/`, `:` or non-ASCII)"
    );
    assert_eq!(
        fails(&base, &bind, &[("src", "srv")]),
        "/t/bind/b.nspawn:2: Bind=srv:/mnt (from --set src=srv) is not a valid \
         SOURCE[:DEST[:OPTIONS]]: source: `srv` is relative; systemd-nspawn wants an absolute path"
    );
    // A default from [vars] is named by its line; a literal value names no variable.
    let base_bad = tpl(
        "base",
        &[(
            "template.toml",
            "source = \"images:a/b\"\n[vars]\nzone = \"thirteen-char\"\n",
        )],
    );
    let e = fails(&base_bad, &zone, &[]);
    assert!(
        e.starts_with(
            "/t/zone/zone.nspawn:3: Zone=thirteen-char (from variable zone, /t/base/template.toml:3) is not"
        ),
        "{e}"
    );
    let literal = tpl("lit", &[("l.nspawn", "[Network]\nPort=http\n")]);
    let e = fails(&base, &literal, &[]);
    assert!(e.starts_with("/t/lit/l.nspawn:2: Port=http is not"), "{e}");
    // Valid values compose as before.
    let set = Set::default().with(base.clone()).with(zone);
    set.render(&["base", "zone"], &[("zone", "twelve-chars")])
        .unwrap();
}

#[test]
fn omitted_values_leave_the_file_with_a_comment() {
    let base = tpl("base", &[("template.toml", "source = \"images:a/b\"\n")]);
    let hide = tpl(
        "hide",
        &[(
            "h.nspawn",
            "[Files]\nBindReadOnly=/sys/module\nInaccessible=/sys/module/apparmor\n",
        )],
    );
    let c = Set::default()
        .with(base)
        .with(hide)
        .compose(&["base", "hide"], &[])
        .unwrap();
    let omit = vec![Omission {
        section: "Files".into(),
        key: "Inaccessible".into(),
        value: "/sys/module/apparmor".into(),
        why: "no AppArmor".into(),
    }];
    let plan = c
        .render(&RenderInputs {
            omit,
            ..inputs("web")
        })
        .unwrap();
    let text = plan
        .text(Base::Host, "etc/systemd/nspawn/web.nspawn")
        .unwrap();
    assert!(
        text.contains("# Left out: Inaccessible=/sys/module/apparmor (no AppArmor)\n"),
        "{text}"
    );
    assert!(
        text.ends_with("[Files]\nBindReadOnly=/sys/module\n"),
        "{text}"
    );
}
