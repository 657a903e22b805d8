use super::*;

fn set1(text: &str, key: &str, values: &[&str]) -> String {
    let (section, key) = key.split_once('.').unwrap();
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    set(text, section, key, &values).unwrap()
}

#[test]
fn a_value_is_replaced_in_place_and_nothing_else_moves() {
    let text = "# Written by sandbox build.\n# A rebuild replaces this file.\n\n[Exec]\nBoot=yes\n  ; a note\nPrivateUsers=pick\n\n[Network]\nZone=web\n";
    assert_eq!(
        set1(text, "Exec.PrivateUsers", &["no"]),
        text.replace("PrivateUsers=pick", "PrivateUsers=no")
    );
    // The spelling around `=` is kept.
    assert_eq!(
        set1("[Exec]\n  Boot = yes\n", "Exec.Boot", &["no"]),
        "[Exec]\n  Boot = no\n"
    );
    // The same value changes nothing at all.
    assert_eq!(set1(text, "Network.Zone", &["web"]), text);
}

#[test]
fn new_keys_go_after_the_last_assignment_of_the_last_instance_of_the_section() {
    let text = "[Exec]\nBoot=yes\n\n[Files]\nBind=/a\n\n# later\n[Exec]\nUser=me\n# trailing comment\n\n[Network]\nZone=z\n";
    assert_eq!(
        set1(text, "Exec.Hostname", &["web"]),
        "[Exec]\nBoot=yes\n\n[Files]\nBind=/a\n\n# later\n[Exec]\nUser=me\nHostname=web\n# trailing comment\n\n[Network]\nZone=z\n"
    );
    // A key already in the first instance is edited there.
    assert_eq!(
        set1(text, "Exec.Boot", &["no"]),
        text.replacen("Boot=yes", "Boot=no", 1)
    );
    // A section with only a header gets the key right below it.
    assert_eq!(
        set1("[Files]\n# none yet\n", "Files.ReadOnly", &["yes"]),
        "[Files]\nReadOnly=yes\n# none yet\n"
    );
}

#[test]
fn a_missing_section_is_appended_after_a_blank_line() {
    assert_eq!(
        set1("[Exec]\nBoot=yes\n", "Network.Zone", &["z"]),
        "[Exec]\nBoot=yes\n\n[Network]\nZone=z\n"
    );
    assert_eq!(
        set1("[Exec]\nBoot=yes\n\n", "Network.Zone", &["z"]),
        "[Exec]\nBoot=yes\n\n[Network]\nZone=z\n"
    );
    assert_eq!(
        set1("", "Service.MemoryMax", &["1G"]),
        "[Service]\nMemoryMax=1G\n"
    );
}

#[test]
fn repeated_keys_are_rewritten_position_by_position() {
    let text = "[Files]\nBind=/a\n# keep\nBind=/b\nBindReadOnly=/r\nBind=/c\n";
    // Fewer values: the surplus assignments go, the rest stay where they are.
    assert_eq!(
        set1(text, "Files.Bind", &["/a", "/x"]),
        "[Files]\nBind=/a\n# keep\nBind=/x\nBindReadOnly=/r\n"
    );
    // More values: the new ones follow the last assignment of the key.
    assert_eq!(
        set1(text, "Files.Bind", &["/a", "/b", "/c", "/d"]),
        "[Files]\nBind=/a\n# keep\nBind=/b\nBindReadOnly=/r\nBind=/c\nBind=/d\n"
    );
    // Unset removes every assignment of the key and nothing else.
    assert_eq!(
        set1(text, "Files.Bind", &[]),
        "[Files]\n# keep\nBindReadOnly=/r\n"
    );
    let doc = Document::parse(text);
    assert_eq!(doc.values("Files", "Bind"), ["/a", "/b", "/c"]);
    assert_eq!(doc.values("Files", "Nope"), Vec::<String>::new());
}

#[test]
fn keys_in_a_section_that_appears_twice_are_found_in_both() {
    let text = "[Files]\nBind=/a\n[Exec]\nBoot=yes\n[Files]\nBind=/b\n";
    assert_eq!(Document::parse(text).values("Files", "Bind"), ["/a", "/b"]);
    assert_eq!(
        set1(text, "Files.Bind", &["/a"]),
        "[Files]\nBind=/a\n[Exec]\nBoot=yes\n[Files]\n"
    );
    assert_eq!(
        set1(text, "Files.Bind", &["/a", "/b", "/c"]),
        "[Files]\nBind=/a\n[Exec]\nBoot=yes\n[Files]\nBind=/b\nBind=/c\n"
    );
}

#[test]
fn crlf_files_stay_crlf_and_a_missing_final_newline_stays_missing() {
    let text = "# c\r\n[Exec]\r\nBoot=yes\r\n";
    assert_eq!(
        set1(text, "Exec.Boot", &["no"]),
        "# c\r\n[Exec]\r\nBoot=no\r\n"
    );
    assert_eq!(
        set1(text, "Exec.User", &["me"]),
        "# c\r\n[Exec]\r\nBoot=yes\r\nUser=me\r\n"
    );
    assert_eq!(
        set1(text, "Network.Zone", &["z"]),
        "# c\r\n[Exec]\r\nBoot=yes\r\n\r\n[Network]\r\nZone=z\r\n"
    );
    let bare = "[Exec]\nBoot=yes";
    assert_eq!(set1(bare, "Exec.Boot", &["no"]), "[Exec]\nBoot=no");
    assert_eq!(
        set1(bare, "Exec.User", &["me"]),
        "[Exec]\nBoot=yes\nUser=me"
    );
    assert_eq!(set1(bare, "Exec.Boot", &[]), "[Exec]");
    assert_eq!(
        set1(bare, "Network.Zone", &["z"]),
        "[Exec]\nBoot=yes\n\n[Network]\nZone=z"
    );
}

#[test]
fn continued_lines_are_one_assignment() {
    let text = "[Exec]\nSystemCallFilter=add_key \\\n# skipped\n  keyctl bpf\nBoot=yes\n";
    let doc = Document::parse(text);
    assert_eq!(
        doc.values("Exec", "SystemCallFilter"),
        ["add_key  keyctl bpf"]
    );
    // Rewritten, the continuation becomes one line; the next key is untouched.
    assert_eq!(
        set1(text, "Exec.SystemCallFilter", &["bpf"]),
        "[Exec]\nSystemCallFilter=bpf\nBoot=yes\n"
    );
    assert_eq!(
        set1(text, "Exec.SystemCallFilter", &[]),
        "[Exec]\nBoot=yes\n"
    );
    // Editing another key leaves the continuation byte for byte.
    assert_eq!(
        set1(text, "Exec.Boot", &["no"]),
        text.replace("Boot=yes", "Boot=no")
    );
    // A new key goes after the continuation, not into it.
    assert_eq!(
        set1("[Exec]\nParameters=a \\\n  b\n", "Exec.Boot", &["no"]),
        "[Exec]\nParameters=a \\\n  b\nBoot=no\n"
    );
    // A comment ending in a backslash does not continue.
    let doc = Document::parse("[Exec]\n# note \\\nBoot=yes\n");
    assert_eq!(doc.values("Exec", "Boot"), ["yes"]);
}

#[test]
fn unknown_lines_and_assignments_before_a_section_are_kept() {
    let text = "Stray=1\n[Exec]\nnot an assignment\n[bad section\nBoot=yes\n";
    assert_eq!(
        set1(text, "Exec.Boot", &["no"]),
        "Stray=1\n[Exec]\nnot an assignment\n[bad section\nBoot=no\n"
    );
    let doc = Document::parse(text);
    let kinds: Vec<&Kind> = doc.entries().iter().map(|e| &e.kind).collect();
    assert!(matches!(kinds[0], Kind::Assignment { section: None, .. }));
    assert_eq!(kinds[2], &Kind::Other);
    assert_eq!(kinds[3], &Kind::Other);
}

#[test]
fn values_that_would_not_read_back_are_refused() {
    for (bad, want) in [
        ("a\nb", "one line"),
        ("a \\", "may not end with `\\`"),
        ("a\u{7}", "control characters"),
    ] {
        let err = set("[Exec]\n", "Exec", "User", &[bad.to_string()]).unwrap_err();
        assert!(err.to_string().contains(want), "{bad:?}: {err}");
    }
    assert!(set("", "Ex ec", "Boot", &[]).is_err());
    // Values are trimmed as systemd trims them.
    assert_eq!(
        set1("[Exec]\n", "Exec.User", &["  me "]),
        "[Exec]\nUser=me\n"
    );
}

#[test]
fn an_empty_value_is_an_assignment_too() {
    // `DeviceAllow=` then a value: the reset systemd reads in drop-ins.
    assert_eq!(
        set1("[Service]\n", "Service.DeviceAllow", &["", "/dev/dri rw"]),
        "[Service]\nDeviceAllow=\nDeviceAllow=/dev/dri rw\n"
    );
    assert_eq!(
        Document::parse("[Service]\nDeviceAllow=\n").values("Service", "DeviceAllow"),
        [""]
    );
}

#[test]
fn assignments_can_be_turned_into_comments() {
    let text = "[Exec]\nBoot=yes\n[Files]\nBind=/a \\\n  :/b\nReadOnly=yes\n";
    assert_eq!(
        comment_out(text, |s, k| s == "Files" && k == "Bind", "left out:"),
        "[Exec]\nBoot=yes\n[Files]\n# left out:\n# Bind=/a \\\n#   :/b\nReadOnly=yes\n"
    );
    // As comments, they are gone for systemd.
    let out = comment_out(text, |_, _| true, "x");
    assert!(Document::parse(&out).values("Files", "Bind").is_empty());
    assert!(Document::parse(&out).values("Exec", "Boot").is_empty());
}
