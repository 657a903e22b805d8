use super::*;

fn file(path: &str, text: &str) -> FileText {
    FileText {
        path: path.into(),
        text: text.into(),
    }
}

fn dropin(scope: Scope, path: &str, text: &str) -> DropinText {
    DropinText {
        scope,
        file: file(path, text),
    }
}

fn origin(section: &str, key: &str, value: &str, template: &str) -> NspawnOrigin {
    NspawnOrigin {
        section: section.into(),
        key: key.into(),
        value: value.into(),
        template: template.into(),
        place: format!("built-in:{template}/{template}.nspawn:2"),
    }
}

#[test]
fn each_value_says_where_it_came_from() {
    let origins = [origin("Network", "Zone", "z", "zone")];
    let edits = [UserEdit {
        file: EditedFile::Nspawn,
        key: "Exec.Boot".into(),
        values: vec!["no".into()],
        at: "2026-12-01T00:00:00Z".into(),
    }];
    let d = "/etc/systemd/system/systemd-nspawn@web.service.d";
    let inputs = ViewInputs {
        name: "web".into(),
        nspawn: Some(file(
            "/etc/systemd/nspawn/web.nspawn",
            "# h\n[Exec]\nBoot=no\nHostname=x\n[Network]\nZone=z\n",
        )),
        image_nspawn: Some(file("/var/lib/machines/web.nspawn", "[Exec]\nBoot=yes\n")),
        dropins: vec![
            dropin(
                Scope::Sandbox,
                &format!("{d}/30-sandbox-config.conf"),
                "[Service]\nMemoryMax=1G\n",
            ),
            dropin(
                Scope::Sandbox,
                &format!("{d}/10-sandbox.conf"),
                "[Service]\nExecStart=\n",
            ),
            dropin(
                Scope::Sandbox,
                &format!("{d}/20-sandbox-templates.conf"),
                "# h\n\n# from docker/docker.conf\n[Service]\n# why\nExecStartPre=-modprobe overlay\n",
            ),
            dropin(
                Scope::AllSandboxes,
                "/etc/systemd/system/systemd-nspawn@.service.d/10-sandbox.conf",
                "[Service]\nLimitNOFILE=1\n",
            ),
            dropin(
                Scope::AllSandboxes,
                "/etc/systemd/system/systemd-nspawn@.service.d/50-all.conf",
                "[Service]\nCPUQuota=50%\n",
            ),
        ],
        origins: Some(&origins),
        edits: &edits,
        notes: vec![],
    };
    let v = view(&inputs);
    let rows: Vec<String> = v
        .settings
        .iter()
        .map(|s| {
            format!(
                "{}:{} {}.{}={} {} {}",
                s.file.file_name().unwrap().to_string_lossy(),
                s.line,
                s.section,
                s.key,
                s.value,
                s.source,
                s.template.as_deref().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "web.nspawn:3 Exec.Boot=no sandbox-config -",
            "web.nspawn:4 Exec.Hostname=x other -",
            "web.nspawn:6 Network.Zone=z template zone",
            "10-sandbox.conf:2 Service.ExecStart= build -",
            "20-sandbox-templates.conf:6 Service.ExecStartPre=-modprobe overlay template docker",
            "30-sandbox-config.conf:2 Service.MemoryMax=1G sandbox-config -",
            "50-all.conf:2 Service.CPUQuota=50% other -",
        ]
    );
    // The image's file and the hidden template-wide 10-sandbox.conf are listed, not read.
    let files: Vec<(String, bool)> = v
        .files
        .iter()
        .map(|f| (f.path.display().to_string(), f.in_effect))
        .collect();
    assert!(
        files.contains(&("/var/lib/machines/web.nspawn".into(), false)),
        "{files:?}"
    );
    assert!(files.contains(&(
        "/etc/systemd/system/systemd-nspawn@.service.d/10-sandbox.conf".into(),
        false
    )));
    let text = v.text();
    assert!(
        text.contains("Exec.Boot=no     sandbox config, 2026-12-01T00:00:00Z\n"),
        "{text}"
    );
    assert!(
        text.contains("Network.Zone=z   template zone (built-in:zone/zone.nspawn:2)\n"),
        "{text}"
    );
    assert!(text.contains("(every sandbox)"), "{text}");
}

#[test]
fn an_image_nspawn_alone_is_in_effect_without_its_privileged_settings() {
    let inputs = ViewInputs {
        name: "pulled".into(),
        image_nspawn: Some(file(
            "/var/lib/machines/pulled.nspawn",
            "[Exec]\nBoot=no\n[Files]\nBind=/srv\n",
        )),
        ..Default::default()
    };
    let v = view(&inputs);
    assert!(v.files[0].in_effect);
    assert_eq!(v.settings[0].ignored, None);
    assert_eq!(v.settings[0].source, "image");
    assert!(
        v.settings[1]
            .ignored
            .as_deref()
            .unwrap()
            .contains("untrusted")
    );
    assert!(
        v.text()
            .contains("Files.Bind=/srv  image; ignored: a privileged setting"),
        "{}",
        v.text()
    );
}
