//! The templates shipped in the binary, and the user directory that overrides them.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::{chain, inputs};
use crate::template::compose::Composition;
use crate::template::generate::parse_nvidia_list;
use crate::template::library::{Content, Library, Origin, Root};
use crate::template::plan::{Base, BuildPlan, RenderInputs};

const SHIPPED: &[&str] = &[
    "autostart",
    "bridge",
    "debian",
    "docker",
    "intel-gpu",
    "mnt-ro",
    "nvidia",
    "podman",
    "ubuntu",
    "zone",
];

fn shipped() -> Library {
    Library::new(vec![Root::Embedded])
}

fn render(lib: &Library, names: &[&str], sets: &[(&str, &str)]) -> anyhow::Result<BuildPlan> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let sets: Vec<(String, String)> = sets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let c = Composition::load(lib, &names, &sets)?;
    let nvidia = parse_nvidia_list(
        "/dev/nvidiactl\n/dev/nvidia-uvm\n/dev/nvidia0\n/usr/bin/nvidia-smi\n\
         /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.14\n/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14\n",
    )?;
    c.render(&RenderInputs {
        nvidia: Some(nvidia),
        ..inputs("box1")
    })
}

fn nspawn(plan: &BuildPlan) -> &str {
    plan.text(Base::Host, "etc/systemd/nspawn/box1.nspawn")
        .unwrap()
}

fn user_data(plan: &BuildPlan) -> &str {
    plan.text(Base::Rootfs, "var/lib/cloud/seed/nocloud/user-data")
        .unwrap()
}

#[test]
fn every_shipped_template_is_listed_with_a_description() {
    let list = shipped().list().unwrap();
    let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, SHIPPED);
    for t in &list {
        assert!(!t.description.is_empty(), "{} has no description", t.name);
        assert_eq!(t.problem, None, "{}", t.name);
        assert_eq!(t.origin, "built-in");
        assert!(!t.overrides_builtin);
    }
}

#[test]
fn every_shipped_template_composes_on_both_bases() {
    let lib = shipped();
    for base in ["debian", "ubuntu"] {
        for snippet in SHIPPED.iter().filter(|s| !["debian", "ubuntu"].contains(s)) {
            let plan = render(&lib, &[base, snippet], &[])
                .unwrap_or_else(|e| panic!("{base}+{snippet}: {e:#}"));
            assert!(
                user_data(&plan).starts_with("#cloud-config\n"),
                "{base}+{snippet}"
            );
            assert_eq!(
                plan.spec.source.from_template, *base,
                "{base}+{snippet}: a snippet must not set a source"
            );
        }
    }
}

#[test]
fn the_bases_name_their_images() {
    let lib = shipped();
    let d = render(&lib, &["debian"], &[]).unwrap();
    assert_eq!(d.spec.source.raw, "images:debian/bookworm/cloud");
    assert_eq!(d.spec.source.verify.map(|v| v.as_str()), Some("signature"));
    let u = render(&lib, &["ubuntu"], &[]).unwrap();
    assert_eq!(u.spec.source.raw, "images:ubuntu/noble/cloud");
}

#[test]
fn a_full_stack_renders() {
    let lib = shipped();
    let plan = render(
        &lib,
        &[
            "debian",
            "docker",
            "nvidia",
            "bridge",
            "mnt-ro",
            "autostart",
        ],
        &[("bridge", "br1")],
    )
    .unwrap();
    assert!(plan.spec.enable);
    assert_eq!(
        plan.spec.templates,
        [
            "debian",
            "docker",
            "nvidia",
            "bridge",
            "mnt-ro",
            "autostart"
        ]
    );
    let n = nspawn(&plan);
    for line in [
        "SystemCallFilter=add_key keyctl bpf\n",
        "Inaccessible=/sys/module/apparmor\n",
        "Bind=/dev/nvidia0\n",
        "BindReadOnly=/usr/bin/nvidia-smi\n",
        "BindReadOnly=/mnt\n",
        "Bridge=br1\n",
    ] {
        assert!(n.contains(line), "missing {line:?} in\n{n}");
    }
    let u = user_data(&plan);
    assert!(u.contains("packages:\n  - docker.io\n"), "{u}");
    assert!(u.contains("bootcmd:\n  - ldconfig\n"), "{u}");
    let net = plan
        .text(Base::Rootfs, "var/lib/cloud/seed/nocloud/network-config")
        .unwrap();
    assert_eq!(net, "version: 2\nethernets:\n  host0:\n    dhcp4: true\n");
    let dropins = plan
        .text(
            Base::Host,
            "etc/systemd/system/systemd-nspawn@box1.service.d/20-sandbox-templates.conf",
        )
        .unwrap();
    assert!(
        dropins.contains("ExecStartPre=-/sbin/modprobe -abq br_netfilter overlay\n"),
        "{dropins}"
    );
    assert!(
        dropins.contains("DeviceAllow=/dev/nvidia-uvm rw\n"),
        "{dropins}"
    );

    let gpu = render(&lib, &["ubuntu", "intel-gpu", "zone"], &[("zone", "lab")]).unwrap();
    assert!(nspawn(&gpu).contains("[Files]\nBind=/dev/dri\n"));
    assert!(nspawn(&gpu).contains("[Network]\nZone=lab\n"));
    let dropins = gpu
        .text(
            Base::Host,
            "etc/systemd/system/systemd-nspawn@box1.service.d/20-sandbox-templates.conf",
        )
        .unwrap();
    assert!(dropins.contains("DeviceAllow=char-drm rw\n"));
}

#[test]
fn bridge_and_zone_exclude_each_other() {
    let e = chain(render(&shipped(), &["debian", "bridge", "zone"], &[]).unwrap_err());
    assert!(e.contains("set both Bridge=br0 and Zone=sandboxes"), "{e}");
}

#[test]
fn shipped_bridge_takes_extra_bridges() {
    let plan = render(
        &shipped(),
        &["debian", "bridge"],
        &[("extra_bridges", "br2 br3")],
    )
    .unwrap();
    let n = nspawn(&plan);
    assert!(
        n.contains(
            "Bridge=br0\nVirtualEthernetExtra=vb1-box1:host1\nVirtualEthernetExtra=vb2-box1:host2\n"
        ),
        "{n}"
    );
}

fn write(path: &Path, text: &str) {
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, text).unwrap();
}

#[test]
fn a_user_template_overrides_a_shipped_one_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("templates");
    write(
        &user.join("debian/template.toml"),
        "description = \"my debian\"\nsource = \"images:debian/trixie/cloud\"\n",
    );
    write(
        &user.join("mine/template.toml"),
        "description = \"mine\"\nextends = [\"debian\", \"docker\"]\n",
    );
    write(&user.join("broken/template.toml"), "sorce = 1\n");
    let lib = Library::standard(dir.path());

    let t = lib.load("debian").unwrap();
    assert_eq!(t.origin, Origin::Dir(user.join("debian")));
    let plan = render(&lib, &["mine"], &[]).unwrap();
    assert_eq!(plan.spec.source.raw, "images:debian/trixie/cloud");
    assert_eq!(plan.spec.templates, ["debian", "docker", "mine"]);
    // docker still comes from the binary.
    assert!(nspawn(&plan).contains("SystemCallFilter=add_key keyctl bpf"));

    let list = lib.list().unwrap();
    let debian = list.iter().find(|t| t.name == "debian").unwrap();
    assert!(debian.overrides_builtin);
    assert_eq!(debian.description, "my debian");
    assert_eq!(debian.origin, user.join("debian").display().to_string());
    let broken = list.iter().find(|t| t.name == "broken").unwrap();
    assert!(
        broken
            .problem
            .as_deref()
            .unwrap()
            .contains("template.toml:1: unknown field `sorce`"),
        "{broken:?}"
    );
    assert!(
        list.iter()
            .any(|t| t.name == "ubuntu" && t.origin == "built-in")
    );

    let e = chain(lib.load("nosuch").unwrap_err());
    assert!(e.starts_with("no template named `nosuch`"), "{e}");
    assert!(
        e.contains("known: autostart, bridge, broken, debian"),
        "{e}"
    );
    assert!(lib.load("../etc").is_err());
}

#[test]
fn a_user_directory_is_read_with_modes_and_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("templates/tools");
    write(&t.join("template.toml"), "description = \"tools\"\n");
    write(
        &t.join("files/usr/local/bin/hello"),
        "#!/bin/sh\necho hello\n",
    );
    fs_err::set_permissions(
        t.join("files/usr/local/bin/hello"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    symlink("hello", t.join("files/usr/local/bin/hi")).unwrap();
    write(&t.join(".hidden.swp"), "editor litter");
    let lib = Library::standard(dir.path());

    let plan = render(&lib, &["debian", "tools"], &[]).unwrap();
    let hello = plan.get(Base::Rootfs, "usr/local/bin/hello").unwrap();
    assert_eq!(hello.mode, 0o755, "setuid is dropped");
    assert_eq!(
        plan.get(Base::Rootfs, "usr/local/bin/hi").unwrap().content,
        Content::Symlink("hello".into())
    );

    symlink("/etc/passwd", t.join("user-data")).unwrap();
    let e = chain(lib.load("tools").unwrap_err());
    assert!(
        e.contains("user-data: symlinks are allowed only under files/"),
        "{e}"
    );
}

#[test]
fn a_template_dir_without_template_toml_is_not_a_template() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("templates/loose/user-data"),
        "#cloud-config\n",
    );
    let lib = Library::standard(dir.path());
    assert!(!lib.names().unwrap().contains("loose"));
    assert!(lib.load("loose").is_err());
}
