//! Rendering: which files a plan holds, and how fragments from several templates combine.

use super::{Set, base, chain, inputs, tpl};
use crate::template::generate::parse_nvidia_list;
use crate::template::plan::{Base, RenderInputs};

const NSPAWN: &str = "etc/systemd/nspawn/web.nspawn";
const DROPINS: &str = "etc/systemd/system/systemd-nspawn@web.service.d";
const SEED: &str = "var/lib/cloud/seed/nocloud";

#[test]
fn a_plan_holds_every_file_with_its_mode() {
    let set = Set::default().with(base());
    let plan = set.render(&["base"], &[]).unwrap();
    let listed: Vec<(Base, &str, u32)> = plan
        .files
        .iter()
        .map(|f| (f.base, f.path.as_str(), f.mode))
        .collect();
    assert_eq!(
        listed,
        vec![
            (Base::Host, NSPAWN, 0o644),
            (
                Base::Host,
                "etc/systemd/system/systemd-nspawn@web.service.d/10-sandbox.conf",
                0o644
            ),
            (Base::Rootfs, "var/lib/cloud/seed/nocloud/meta-data", 0o600),
            (Base::Rootfs, "var/lib/cloud/seed/nocloud/user-data", 0o600),
        ]
    );
    assert_eq!(
        plan.text(Base::Rootfs, &format!("{SEED}/user-data")),
        Some("#cloud-config\n")
    );
    assert_eq!(plan.remove, ["etc/cloud/cloud-init.disabled"]);
    assert_eq!(
        plan.text(Base::Rootfs, &format!("{SEED}/meta-data")),
        Some("instance-id: \"iid-1\"\nlocal-hostname: \"web\"\n")
    );
    let default = plan
        .text(Base::Host, &format!("{DROPINS}/10-sandbox.conf"))
        .unwrap();
    assert!(
        default.contains(
            "\n[Service]\nExecStart=\nExecStart=systemd-nspawn --quiet --keep-unit --boot"
        ),
        "{default}"
    );
    // Every generated config file says where it came from.
    let nspawn = plan.text(Base::Host, NSPAWN).unwrap();
    assert!(
        nspawn.starts_with("# Written by sandbox build from templates base (sha256:"),
        "{nspawn}"
    );
    assert!(
        plan.dry_run_text().contains(
            "== rootfs:/var/lib/cloud/seed/nocloud/user-data (mode 0600)\n#cloud-config\n"
        )
    );
}

#[test]
fn the_machine_name_and_instance_id_are_checked() {
    let c = Set::default().with(base()).compose(&["base"], &[]).unwrap();
    let e = chain(c.render(&inputs("../etc")).unwrap_err());
    assert!(e.contains("not a valid machine name"), "{e}");
    let bad = RenderInputs {
        instance_id: "a\nb".into(),
        ..inputs("web")
    };
    assert!(c.render(&bad).is_err());
    let empty = RenderInputs {
        instance_id: String::new(),
        ..inputs("web")
    };
    assert!(c.render(&empty).is_err());
}

#[test]
fn nspawn_fragments_merge_across_templates() {
    let set = Set::default()
        .with(tpl(
            "base",
            &[
                ("template.toml", "source = \"images:a/b\"\n"),
                ("a.nspawn", "[Network]\nBridge=br0\n[Files]\nBind=/srv\n"),
                ("b.nspawn", "[Exec]\nSystemCallFilter=add_key\n"),
            ],
        ))
        .with(tpl(
            "more",
            &[(
                "m.nspawn",
                "[Files]\nBind=/data\nReadOnly=no\n[Exec]\nSystemCallFilter=bpf\n",
            )],
        ))
        .with(tpl(
            "last",
            &[("z.nspawn", "[Network]\nBridge=br1\n[Files]\nReadOnly=yes\n")],
        ));
    let plan = set.render(&["base", "more", "last"], &[]).unwrap();
    let text = plan.text(Base::Host, NSPAWN).unwrap();
    let body = &text[text.find('[').unwrap()..];
    assert_eq!(
        body,
        "[Network]\nBridge=br1\n\n[Files]\nBind=/srv\nBind=/data\nReadOnly=yes\n\n[Exec]\nSystemCallFilter=add_key\nSystemCallFilter=bpf\n"
    );
}

#[test]
fn drop_ins_concatenate_in_composition_order() {
    let set = Set::default()
        .with(tpl(
            "base",
            &[
                ("template.toml", "source = \"images:a/b\"\n"),
                ("z-late.conf", "[Service]\nTasksMax=100\n"),
                ("a-early.conf", "[Service]\nTasksMax=50\n"),
            ],
        ))
        .with(tpl(
            "snip",
            &[("gpu.conf", "[Service]\nDeviceAllow=char-drm rw\n")],
        ));
    let plan = set.render(&["base", "snip"], &[]).unwrap();
    let text = plan
        .text(Base::Host, &format!("{DROPINS}/20-sandbox-templates.conf"))
        .unwrap();
    let a = text
        .find("# from base/a-early.conf\n[Service]\nTasksMax=50\n")
        .unwrap();
    let z = text
        .find("# from base/z-late.conf\n[Service]\nTasksMax=100\n")
        .unwrap();
    let s = text
        .find("# from snip/gpu.conf\n[Service]\nDeviceAllow=char-drm rw\n")
        .unwrap();
    assert!(a < z && z < s, "{text}");
}

#[test]
fn cloud_configs_merge_across_templates() {
    let set = Set::default()
        .with(tpl(
            "base",
            &[
                ("template.toml", "source = \"images:a/b\"\n"),
                (
                    "user-data",
                    "#cloud-config\npackages: [curl]\ntimezone: UTC\n",
                ),
                (
                    "network-config",
                    "version: 2\nethernets:\n  host0:\n    dhcp4: true\n",
                ),
            ],
        ))
        .with(tpl(
            "snip",
            &[
                (
                    "user-data",
                    "#cloud-config\npackages: [jq]\ntimezone: Europe/Amsterdam\n",
                ),
                ("network-config", "ethernets:\n  host0:\n    dhcp6: true\n"),
            ],
        ));
    let plan = set.render(&["base", "snip"], &[]).unwrap();
    assert_eq!(
        plan.text(Base::Rootfs, &format!("{SEED}/user-data")),
        Some("#cloud-config\npackages:\n  - curl\n  - jq\ntimezone: Europe/Amsterdam\n")
    );
    assert_eq!(
        plan.text(Base::Rootfs, &format!("{SEED}/network-config")),
        Some("version: 2\nethernets:\n  host0:\n    dhcp4: true\n    dhcp6: true\n")
    );
    // A kind clash surfaces at composition, before anything is pulled.
    let set = set.with(tpl(
        "clash",
        &[("user-data", "#cloud-config\npackages: {a: b}\n")],
    ));
    let e = chain(set.compose(&["base", "clash"], &[]).unwrap_err());
    assert!(
        e.starts_with(
            "`packages` is a list in /t/base/user-data:2 but a map in /t/clash/user-data:2"
        ),
        "{e}"
    );
}

#[test]
fn files_overlay_later_wins() {
    let set = Set::default()
        .with(tpl(
            "base",
            &[
                ("template.toml", "source = \"images:a/b\"\n"),
                ("files/etc/motd", "base\n"),
                ("files/etc/keep", "kept\n"),
            ],
        ))
        .with(tpl(
            "snip",
            &[
                ("files/etc/motd", "snip\n"),
                ("files/opt/x/run.sh", "#!/bin/sh\n"),
            ],
        ));
    let mut set = set;
    set.0
        .get_mut("snip")
        .unwrap()
        .files
        .get_mut("files/opt/x/run.sh")
        .unwrap()
        .mode = 0o755;
    let plan = set.render(&["base", "snip"], &[]).unwrap();
    assert_eq!(plan.text(Base::Rootfs, "etc/motd"), Some("snip\n"));
    assert_eq!(plan.text(Base::Rootfs, "etc/keep"), Some("kept\n"));
    assert_eq!(plan.get(Base::Rootfs, "opt/x/run.sh").unwrap().mode, 0o755);
    // Order decides: the other way round, base wins.
    let set2 = set.clone().with(tpl(
        "top",
        &[("template.toml", "extends = [\"snip\", \"base\"]\n")],
    ));
    let plan = set2.render(&["top"], &[]).unwrap();
    assert_eq!(plan.text(Base::Rootfs, "etc/motd"), Some("base\n"));
}

#[test]
fn files_overlay_refuses_file_directory_clashes() {
    let set = Set::default()
        .with(base())
        .with(tpl("file", &[("files/etc/app", "a file\n")]))
        .with(tpl("dir", &[("files/etc/app/conf", "in a dir\n")]))
        .with(tpl(
            "seed",
            &[(
                "files/var/lib/cloud/seed/nocloud/user-data",
                "#cloud-config\n",
            )],
        ));
    let e = chain(set.compose(&["base", "file", "dir"], &[]).unwrap_err());
    assert_eq!(
        e,
        "/t/dir/files/etc/app/conf: /t/file/files/etc/app makes /etc/app a file, this template puts a directory there"
    );
    let e = chain(set.compose(&["base", "dir", "file"], &[]).unwrap_err());
    assert_eq!(
        e,
        "/t/file/files/etc/app: /t/dir/files/etc/app/conf puts /etc/app/conf below it, so /etc/app must stay a directory"
    );
    let e = chain(set.render(&["base", "seed"], &[]).unwrap_err());
    assert!(e.starts_with("/t/seed/files/var/lib/cloud/seed/nocloud/user-data: /var/lib/cloud/seed/nocloud/user-data collides"), "{e}");
}

#[test]
fn generators_run_at_their_templates_position() {
    let set = Set::default()
        .with(base())
        .with(tpl(
            "gpu",
            &[("template.toml", "generate = [\"nvidia\"]\n")],
        ))
        .with(tpl("nobind", &[("x.nspawn", "[Files]\nBindReadOnly=\n")]))
        .with(tpl(
            "br",
            &[(
                "template.toml",
                "generate = [\"extra-bridges\"]\n[vars]\nextra_bridges = \"br1 br2\"\n",
            )],
        ));
    let c = set.compose(&["base", "gpu"], &[]).unwrap();
    assert!(c.needs_nvidia());
    let e = chain(c.render(&inputs("web")).unwrap_err());
    assert!(
        e.starts_with(
            "/t/gpu/template.toml:1: template `gpu` needs the host's NVIDIA driver files"
        ),
        "{e}"
    );

    let list =
        parse_nvidia_list("/dev/nvidia0\n/dev/nvidiactl\n/usr/lib/x86_64-linux-gnu/libcuda.so.1\n")
            .unwrap();
    let with = RenderInputs {
        nvidia: Some(list.clone()),
        ..inputs("web")
    };
    let plan = c.render(&with).unwrap();
    let nspawn = plan.text(Base::Host, NSPAWN).unwrap();
    assert!(nspawn.contains("[Files]\nBind=/dev/nvidia0\nBind=/dev/nvidiactl\nBindReadOnly=/usr/lib/x86_64-linux-gnu/libcuda.so.1\n"), "{nspawn}");
    let dropin = plan
        .text(Base::Host, &format!("{DROPINS}/20-sandbox-templates.conf"))
        .unwrap();
    assert!(dropin.contains("# from gpu (generated: nvidia)\n[Service]\nDeviceAllow=/dev/nvidia0 rw\nDeviceAllow=/dev/nvidiactl rw\n"), "{dropin}");
    assert!(
        plan.text(Base::Rootfs, "etc/ld.so.conf.d/sandbox-nvidia.conf")
            .unwrap()
            .contains("\n/usr/lib/x86_64-linux-gnu\n")
    );

    // A later template can take back what a generator bound; an earlier one cannot.
    let later = set
        .compose(&["base", "gpu", "nobind"], &[])
        .unwrap()
        .render(&with)
        .unwrap();
    assert!(
        !later
            .text(Base::Host, NSPAWN)
            .unwrap()
            .contains("BindReadOnly=")
    );
    let earlier = set
        .compose(&["base", "nobind", "gpu"], &[])
        .unwrap()
        .render(&with)
        .unwrap();
    assert!(
        earlier
            .text(Base::Host, NSPAWN)
            .unwrap()
            .contains("BindReadOnly=/usr/lib")
    );

    let plan = set.render(&["base", "br"], &[]).unwrap();
    assert!(
        plan.text(Base::Host, NSPAWN)
            .unwrap()
            .contains("VirtualEthernetExtra=vb1-web:host1\nVirtualEthernetExtra=vb2-web:host2\n")
    );
    let dropin = plan
        .text(Base::Host, &format!("{DROPINS}/20-sandbox-templates.conf"))
        .unwrap();
    assert!(
        dropin.contains("ExecStartPost=ip link set dev vb2-web master br2 up\n"),
        "{dropin}"
    );
    assert!(
        plan.text(Base::Rootfs, &format!("{SEED}/network-config"))
            .unwrap()
            .contains("  host2:\n    dhcp4: true\n")
    );
    let e = chain(
        set.render(&["base", "br"], &[("extra_bridges", "ok not/ok")])
            .unwrap_err(),
    );
    assert!(
        e.starts_with("variable `extra_bridges`: `not/ok` is not a valid network interface name"),
        "{e}"
    );
}

#[test]
fn every_composed_nspawn_value_names_its_template() {
    let set = Set::default()
        .with(base())
        .with(tpl(
            "a",
            &[(
                "a.nspawn",
                "[Exec]\nBoot=no\n[Files]\nBind=/x\nBind=/y\n[Network]\nZone=a\n",
            )],
        ))
        .with(tpl(
            "b",
            &[(
                "b.nspawn",
                "[Exec]\nBoot=yes\n[Files]\nBind=\nBind=/y\nBind=/z\n",
            )],
        ));
    let c = set.compose(&["base", "a", "b"], &[]).unwrap();
    let got: Vec<String> = c
        .nspawn_origins()
        .iter()
        .map(|o| {
            format!(
                "{}.{}={} {} {}",
                o.section, o.key, o.value, o.template, o.place
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "Network.Zone=a a /t/a/a.nspawn:7",
            "Exec.Boot=yes b /t/b/b.nspawn:2",
            "Files.Bind=/y b /t/b/b.nspawn:5",
            "Files.Bind=/z b /t/b/b.nspawn:6",
        ]
    );
}
