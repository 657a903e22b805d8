//! What an edit does to the two files it may touch, computed from their texts. Pure.
//!
//! Changes of one key are taken in the order given: `=` values given one after another form
//! the key's new list, `+=` adds a value the key lacks, `-=` removes one it has (an error when
//! it has not), `--unset` removes every value. The key's final values are checked (one value
//! for a .nspawn scalar key, each by its rules), then written with `ini_edit::set`, so the rest
//! of the file stays as it was. `reapply` does the same for the edits a state record notes, on
//! a freshly rendered `.nspawn` (`build --force`).

use anyhow::{Result, bail};
use serde::Serialize;

use super::ini_edit::{self, Document};
use super::keys::{Change, KeyName, Op, check_values, is_list};
use crate::machine::state::{EditedFile, UserEdit};

/// One key's values before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyEdit {
    pub key: String,
    pub file: EditedFile,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

/// The texts of the `.nspawn` file and the sandbox's drop-in, before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EditPlan {
    pub nspawn: (String, String),
    pub dropin: (String, String),
    pub keys: Vec<KeyEdit>,
}

/// Applies `changes` to the current texts.
pub(crate) fn plan(
    nspawn: &str,
    dropin: &str,
    changes: &[(Change, EditedFile)],
) -> Result<EditPlan> {
    let mut texts = [nspawn.to_string(), dropin.to_string()];
    let mut order: Vec<(&KeyName, EditedFile)> = Vec::new();
    for (c, file) in changes {
        if !order.iter().any(|(k, _)| *k == &c.key) {
            order.push((&c.key, *file));
        }
    }
    let mut keys = Vec::new();
    for (key, file) in order {
        let slot = match file {
            EditedFile::Nspawn => 0,
            EditedFile::Dropin => 1,
        };
        let before = Document::parse(&texts[slot]).values(&key.section, &key.key);
        let mut after = before.clone();
        let mut setting = false;
        for (c, _) in changes.iter().filter(|(c, _)| &c.key == key) {
            match &c.op {
                Op::Set(v) if setting => after.push(v.clone()),
                Op::Set(v) => {
                    after = vec![v.clone()];
                    setting = true;
                }
                Op::Add(v) => {
                    if !is_list(key, file) {
                        bail!(
                            "{key} takes one value: set it with {key}={v}, `+=` is for list settings"
                        );
                    }
                    if !after.contains(v) {
                        after.push(v.clone());
                    }
                    setting = false;
                }
                Op::Remove(v) => {
                    if !after.contains(v) {
                        bail!(
                            "{key} has no value `{v}` to remove (it has: {})",
                            if after.is_empty() {
                                "none".to_string()
                            } else {
                                after.join(", ")
                            }
                        );
                    }
                    after.retain(|x| x != v);
                    setting = false;
                }
                Op::Unset => {
                    after.clear();
                    setting = false;
                }
            }
        }
        check_values(key, file, &after)?;
        texts[slot] = ini_edit::set(&texts[slot], &key.section, &key.key, &after)?;
        keys.push(KeyEdit {
            key: key.to_string(),
            file,
            before,
            after,
        });
    }
    check_bridge_and_zone(&texts[0])?;
    let [n, d] = texts;
    Ok(EditPlan {
        nspawn: (nspawn.to_string(), n),
        dropin: (dropin.to_string(), d),
        keys,
    })
}

/// systemd-nspawn refuses `Bridge=` and `Zone=` together at every start.
fn check_bridge_and_zone(nspawn: &str) -> Result<()> {
    let doc = Document::parse(nspawn);
    let last = |k: &str| doc.values("Network", k).pop().filter(|v| !v.is_empty());
    if let (Some(b), Some(z)) = (last("Bridge"), last("Zone")) {
        bail!(
            "the .nspawn file would set both Bridge={b} and Zone={z}; systemd-nspawn takes one \
             (unset the other with --unset Network.Bridge or --unset Network.Zone)"
        );
    }
    Ok(())
}

/// The edits of the `.nspawn` file a record notes, applied to a newly rendered one: the text,
/// and for each edit the values the templates gave the key (which the edit replaces).
pub(crate) fn reapply(rendered: &str, edits: &[UserEdit]) -> Result<(String, Vec<KeyEdit>)> {
    let mut text = rendered.to_string();
    let mut kept = Vec::new();
    for e in edits.iter().filter(|e| e.file == EditedFile::Nspawn) {
        let Some((section, key)) = e.key.split_once('.') else {
            continue;
        };
        let before = Document::parse(&text).values(section, key);
        text = ini_edit::set(&text, section, key, &e.values)?;
        kept.push(KeyEdit {
            key: e.key.clone(),
            file: e.file,
            before,
            after: e.values.clone(),
        });
    }
    Ok((text, kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::parse_change;

    fn changes(args: &[&str]) -> Vec<(Change, EditedFile)> {
        args.iter().map(|a| parse_change(a).unwrap()).collect()
    }

    fn unset(key: &str) -> (Change, EditedFile) {
        let (name, file) = crate::config::keys::parse_key(key).unwrap();
        (
            Change {
                key: name,
                op: Op::Unset,
            },
            file,
        )
    }

    const NSPAWN: &str = "# header\n[Exec]\nBoot=yes\n\n[Files]\nBind=/a\nBind=/b\n";

    #[test]
    fn each_key_goes_to_its_file() {
        let p = plan(
            NSPAWN,
            "",
            &changes(&["Exec.Boot=no", "Service.MemoryMax=2G", "Files.Bind+=/c"]),
        )
        .unwrap();
        assert_eq!(
            p.nspawn.1,
            "# header\n[Exec]\nBoot=no\n\n[Files]\nBind=/a\nBind=/b\nBind=/c\n"
        );
        assert_eq!(p.dropin.1, "[Service]\nMemoryMax=2G\n");
        let shown: Vec<String> = p
            .keys
            .iter()
            .map(|k| format!("{} {:?} {:?}", k.key, k.before, k.after))
            .collect();
        assert_eq!(
            shown,
            [
                r#"Exec.Boot ["yes"] ["no"]"#,
                r#"Service.MemoryMax [] ["2G"]"#,
                r#"Files.Bind ["/a", "/b"] ["/a", "/b", "/c"]"#,
            ]
        );
    }

    #[test]
    fn repeated_sets_make_a_list_and_removals_take_values_out() {
        let p = plan(NSPAWN, "", &changes(&["Files.Bind=/x", "Files.Bind=/y"])).unwrap();
        assert_eq!(
            p.nspawn.1,
            "# header\n[Exec]\nBoot=yes\n\n[Files]\nBind=/x\nBind=/y\n"
        );
        let p = plan(NSPAWN, "", &changes(&["Files.Bind-=/a"])).unwrap();
        assert_eq!(
            p.nspawn.1,
            "# header\n[Exec]\nBoot=yes\n\n[Files]\nBind=/b\n"
        );
        let p = plan(NSPAWN, "", &[unset("Files.Bind")]).unwrap();
        assert_eq!(p.nspawn.1, "# header\n[Exec]\nBoot=yes\n\n[Files]\n");
        let e = plan(NSPAWN, "", &changes(&["Files.Bind-=/nope"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("has no value `/nope` to remove (it has: /a, /b)"),
            "{e}"
        );
        let e = plan(NSPAWN, "", &changes(&["Exec.Boot+=no"])).unwrap_err();
        assert!(e.to_string().contains("takes one value"), "{e}");
        let e = plan(NSPAWN, "", &changes(&["Exec.Boot=no", "Exec.Boot=yes"])).unwrap_err();
        assert!(e.to_string().contains("takes one value"), "{e}");
    }

    #[test]
    fn bridge_and_zone_together_are_refused() {
        let e = plan("[Network]\nZone=z\n", "", &changes(&["Network.Bridge=br0"])).unwrap_err();
        assert!(e.to_string().contains("both Bridge=br0 and Zone=z"), "{e}");
        let mut c = changes(&["Network.Bridge=br0"]);
        c.push(unset("Network.Zone"));
        assert_eq!(
            plan("[Network]\nZone=z\n", "", &c).unwrap().nspawn.1,
            "[Network]\nBridge=br0\n"
        );
    }

    #[test]
    fn recorded_edits_apply_again_to_a_new_rendering() {
        let edits = [
            UserEdit {
                file: EditedFile::Nspawn,
                key: "Exec.Boot".into(),
                values: vec!["no".into()],
                at: "t".into(),
            },
            UserEdit {
                file: EditedFile::Nspawn,
                key: "Files.Bind".into(),
                values: vec![],
                at: "t".into(),
            },
            UserEdit {
                file: EditedFile::Dropin,
                key: "Service.MemoryMax".into(),
                values: vec!["1G".into()],
                at: "t".into(),
            },
        ];
        let (text, kept) = reapply(NSPAWN, &edits).unwrap();
        assert_eq!(text, "# header\n[Exec]\nBoot=no\n\n[Files]\n");
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[1].before, ["/a", "/b"]);
    }
}
