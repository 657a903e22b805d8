//! `[build] run`: composition order, the content hash, the plan and `--dry-run`.

use super::{Set, base, chain, inputs, tpl};

fn set() -> Set {
    Set::default()
        .with(tpl(
            "os",
            &[(
                "template.toml",
                "source = \"images:debian/bookworm/cloud\"\n[build]\nrun = [\"echo os-1\", \"echo os-2\"]\n",
            )],
        ))
        .with(tpl(
            "tools",
            &[(
                "template.toml",
                "extends = [\"os\"]\n\n[build]\nrun = [\"echo tools\"]\n",
            )],
        ))
        .with(tpl(
            "web",
            &[(
                "template.toml",
                "extends = [\"tools\"]\n[build]\nrun = [\"echo {{not-substituted}}\"]\n",
            )],
        ))
}

#[test]
fn steps_run_in_composition_order_with_their_origin() {
    let comp = set().compose(&["web"], &[]).unwrap();
    let steps: Vec<(String, String, String)> = comp
        .bake_steps()
        .into_iter()
        .map(|s| (s.command, s.template, s.place))
        .collect();
    let want = [
        ("echo os-1", "os", "/t/os/template.toml:3"),
        ("echo os-2", "os", "/t/os/template.toml:3"),
        ("echo tools", "tools", "/t/tools/template.toml:4"),
        ("echo {{not-substituted}}", "web", "/t/web/template.toml:3"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(steps, want);
    let plan = comp.render(&inputs("web")).unwrap();
    assert_eq!(plan.bake, comp.bake_steps());

    // Templates named together: the first one's steps first.
    let set = set().with(tpl(
        "extra",
        &[("template.toml", "[build]\nrun = [\"echo extra\"]\n")],
    ));
    let order: Vec<String> = set
        .compose(&["extra", "web"], &[])
        .unwrap()
        .bake_steps()
        .into_iter()
        .map(|s| s.command)
        .collect();
    assert_eq!(order[0], "echo extra");
    assert_eq!(order[4], "echo {{not-substituted}}");
}

#[test]
fn steps_are_part_of_the_content_hash() {
    let hash = |web: &str| {
        set()
            .with(tpl("web", &[("template.toml", web)]))
            .compose(&["web"], &[])
            .unwrap()
            .spec()
            .content_hash
    };
    let a = hash("extends = [\"tools\"]\n[build]\nrun = [\"echo a\"]\n");
    assert_eq!(
        a,
        hash("extends = [\"tools\"]\n[build]\nrun = [\"echo a\"]\n")
    );
    assert_ne!(
        a,
        hash("extends = [\"tools\"]\n[build]\nrun = [\"echo b\"]\n")
    );
    assert_ne!(
        a,
        hash("extends = [\"tools\"]\n[build]\nrun = [\"echo a\", \"echo a\"]\n")
    );
    assert_ne!(a, hash("extends = [\"tools\"]\n"));
}

#[test]
fn a_bad_step_names_its_file_and_line() {
    let set = Set::default().with(base()).with(tpl(
        "t",
        &[("template.toml", "[build]\nrun = [\n  \"ok\",\n  \"\"]\n")],
    ));
    assert_eq!(
        chain(set.compose(&["base", "t"], &[]).unwrap_err()),
        "/t/t/template.toml:4: [build] run: an empty command"
    );
    let set = Set::default().with(base()).with(tpl(
        "t",
        &[("template.toml", "[build]\nrun = [\"ok\"]\nrun_as = \"x\"\n")],
    ));
    let e = chain(set.compose(&["base", "t"], &[]).unwrap_err());
    assert!(
        e.starts_with("/t/t/template.toml:3: unknown field `run_as`"),
        "{e}"
    );
}

#[test]
fn the_dry_run_lists_every_step() {
    let plan = set().render(&["web"], &[]).unwrap();
    let text = plan.dry_run_text();
    let first = text
        .find("== bake 1/4 (/t/os/template.toml:3, template os)\necho os-1\n")
        .expect(&text);
    let last = text
        .find("== bake 4/4 (/t/web/template.toml:3, template web)\necho {{not-substituted}}\n")
        .expect(&text);
    assert!(first < last);
    // Without steps, nothing about baking.
    let plain = Set::default().with(base()).render(&["base"], &[]).unwrap();
    assert!(plain.bake.is_empty());
    assert!(!plain.dry_run_text().contains("== bake"));
}
