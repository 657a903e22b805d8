use super::*;

#[test]
fn legacy_index_from_a_real_server() {
    let entries = parse_legacy_index(LEGACY_INDEX).expect("every real line parses");
    assert_eq!(entries.len(), LEGACY_INDEX.lines().count());
    for (e, line) in entries.iter().zip(LEGACY_INDEX.lines()) {
        let rebuilt = [
            &e.distro, &e.release, &e.arch, &e.variant, &e.build, &e.path,
        ]
        .map(|s| s.as_str())
        .join(";");
        assert_eq!(rebuilt, line, "fields must be kept as published");
    }
    let c = choose_legacy(&entries, &alias("alpine/3.17/cloud"), "armv7l").unwrap();
    assert_eq!(
        c,
        LegacyChoice {
            distro: "alpine".into(),
            release: "3.17".into(),
            variant: "cloud".into(),
            arch: "armhf".into(),
            build: "20240929_13:00".into(),
            rootfs_path: "/images/alpine/3.17/armhf/cloud/20240929_13:00/rootfs.tar.xz".into(),
            meta_path: "/images/alpine/3.17/armhf/cloud/20240929_13:00/meta.tar.xz".into(),
        }
    );
    let c = choose_legacy(&entries, &alias("almalinux/9"), "aarch64").unwrap();
    assert_eq!(
        c.rootfs_path,
        "/images/almalinux/9/arm64/default/20240929_23:08/rootfs.tar.xz"
    );

    let err = choose_legacy(&entries, &alias("alpine/3.18/cloud"), "arm64").unwrap_err();
    assert!(
        matches!(&err, ChooseError::NoBuildForArch { available, .. } if available == &["amd64"]),
        "{err:?}"
    );
    let err = choose_legacy(&entries, &alias("almalinux/10"), "amd64").unwrap_err();
    assert!(
        matches!(&err, ChooseError::NoSuchAlias { suggestions, .. }
            if suggestions[0].starts_with("almalinux/")),
        "{err:?}"
    );

    let listed = list_remote_legacy(&entries, Some("amd64"), Some("alma"));
    let aliases: Vec<&str> = listed.iter().map(|r| r.alias.as_str()).collect();
    assert_eq!(
        aliases,
        [
            "almalinux/8",
            "almalinux/8/cloud",
            "almalinux/9",
            "almalinux/9/cloud"
        ]
    );
    assert!(
        listed
            .iter()
            .all(|r| r.size == 0 && r.newest_version == "20240929_23:08")
    );
    assert_eq!(
        list_remote_legacy(&entries, None, None).len(),
        entries.len(),
        "one build per image in this file"
    );
}

#[test]
fn legacy_newest_and_pinned_builds() {
    let builds = ["20240928_05:24", "20240930_05:24", "20240929_05:24"];
    let text: String = builds
        .iter()
        .map(|b| {
            format!(
                "debian;bookworm;amd64;default;{b};/images/debian/bookworm/amd64/default/{b}/\n"
            )
        })
        .collect();
    let entries = parse_legacy_index(&text).unwrap();
    let c = choose_legacy(&entries, &alias("debian/bookworm"), "amd64").unwrap();
    assert_eq!(c.build, "20240930_05:24");
    assert_eq!(
        c.meta_path,
        "/images/debian/bookworm/amd64/default/20240930_05:24/meta.tar.xz"
    );
    let c = choose_legacy(&entries, &alias("debian/bookworm@20240928_05:24"), "amd64").unwrap();
    assert_eq!(
        c.rootfs_path,
        "/images/debian/bookworm/amd64/default/20240928_05:24/rootfs.tar.xz"
    );
    let err =
        choose_legacy(&entries, &alias("debian/bookworm@20240101_00:00"), "amd64").unwrap_err();
    assert!(
        matches!(&err, ChooseError::VersionNotFound { available, .. }
            if available == &["20240930_05:24", "20240929_05:24", "20240928_05:24"]),
        "{err:?}"
    );
    let listed = list_remote_legacy(&entries, None, None);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].newest_version, "20240930_05:24");
}

#[test]
fn legacy_malformed_lines_are_named() {
    let good = "debian;bookworm;amd64;default;20240930_05:24;\
                /images/debian/bookworm/amd64/default/20240930_05:24/";
    let table = [
        (
            "debian;bookworm;amd64;default;20240930_05:24",
            "expected 6 fields",
        ),
        (
            "debian;bookworm;amd64;default;20240930_05:24;/p/;extra",
            "expected 6 fields",
        ),
        (
            ";bookworm;amd64;default;20240930_05:24;/p/",
            "field distro is empty",
        ),
        (
            "debian;bookworm;amd64;default;yesterday;/p/",
            "not a build date",
        ),
        (
            "debian;bookworm;amd64;default;20240930_05:24;images/x/",
            "does not start with '/'",
        ),
        (
            "debian;bookworm;amd64;default;20240930_05:24;/images/../../x/",
            "'..' component",
        ),
    ];
    for (bad, reason) in table {
        // Line 3: a blank line in between is skipped but still counted.
        let text = format!("{good}\n\n{bad}\n{good}\n");
        let err = parse_legacy_index(&text).unwrap_err();
        assert_eq!(err.line, 3, "{bad}");
        assert!(err.reason.contains(reason), "{bad}: {err}");
        assert!(
            err.to_string().starts_with("legacy image index line 3: "),
            "{err}"
        );
    }
    // A path without its trailing slash still yields file paths inside the build directory.
    let entries = parse_legacy_index("a;b;amd64;default;20240930_05:24;/images/a/b").unwrap();
    assert_eq!(entries[0].path, "/images/a/b/");
}
