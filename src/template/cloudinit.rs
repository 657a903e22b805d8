//! cloud-init's NoCloud seed: composing `user-data` and `network-config`, writing `meta-data`.
//!
//! Composition rules (documented in templates/README.md): maps merge key by key, lists append
//! (`packages`, `runcmd`, `write_files`, …), and a later scalar replaces an earlier one. A map
//! meeting a list or a scalar is an error naming both places, since neither "wins" would be
//! what the author meant. cloud-init's own multi-part merging (`merge_how`) is not used: its
//! default replaces lists, and what it does depends on the guest's cloud-init version.

use std::sync::Arc;

use anyhow::{Result, bail};

use super::yaml::{self, Kind, Node, Style};

/// The first line of every cloud-config.
pub const CLOUD_CONFIG_HEADER: &str = "#cloud-config";

/// Parses a template's `user-data`: it must be a cloud-config (first line `#cloud-config`)
/// whose document is a map. `None` when it has no settings.
pub fn parse_user_data(text: &str, file: &str) -> Result<Option<Node>> {
    let first = text.lines().next().unwrap_or_default().trim_end();
    if first != CLOUD_CONFIG_HEADER {
        bail!(
            "{file}:1: user-data must start with `{CLOUD_CONFIG_HEADER}` (scripts and MIME multi-part cannot be composed)"
        );
    }
    parse_map(text, file, "user-data")
}

/// Parses a template's `network-config` (version 1 or 2): a map.
pub fn parse_network_config(text: &str, file: &str) -> Result<Option<Node>> {
    parse_map(text, file, "network-config")
}

fn parse_map(text: &str, file: &str, what: &str) -> Result<Option<Node>> {
    match yaml::parse(text, file)? {
        None => Ok(None),
        Some(n) if matches!(&n.kind, Kind::Scalar(s, Style::Plain) if s.is_empty()) => Ok(None),
        Some(n) if matches!(n.kind, Kind::Map(_)) => Ok(Some(n)),
        Some(n) => bail!(
            "{}: {what} must be a map of settings, not {}",
            n.place(),
            n.kind_name()
        ),
    }
}

/// Merges `add` on top of `base`.
pub fn merge(base: &mut Option<Node>, add: Node) -> Result<()> {
    match base {
        None => *base = Some(add),
        Some(b) => merge_node(b, add, &mut Vec::new())?,
    }
    Ok(())
}

fn merge_node(base: &mut Node, add: Node, path: &mut Vec<String>) -> Result<()> {
    match (&mut base.kind, add.kind) {
        (Kind::Map(entries), Kind::Map(new)) => {
            for (k, v) in new {
                match entries
                    .iter_mut()
                    .find(|(bk, _)| bk.key_text() == k.key_text())
                {
                    Some((_, bv)) => {
                        path.push(k.key_text().to_string());
                        merge_node(bv, v, path)?;
                        path.pop();
                    }
                    None => entries.push((k, v)),
                }
            }
            if add.tag.is_some() {
                base.tag = add.tag;
            }
        }
        (Kind::Seq(items), Kind::Seq(new)) => {
            items.extend(new);
            if add.tag.is_some() {
                base.tag = add.tag;
            }
        }
        (Kind::Scalar(..), kind @ Kind::Scalar(..)) => {
            *base = Node {
                kind,
                tag: add.tag,
                file: add.file,
                line: add.line,
            };
        }
        (_, kind) => {
            let add = Node {
                kind,
                tag: add.tag,
                file: add.file,
                line: add.line,
            };
            let key = if path.is_empty() {
                "(top level)".to_string()
            } else {
                path.join(".")
            };
            bail!(
                "`{key}` is {} in {} but {} in {}: they cannot be merged (maps merge, lists append, scalars replace)",
                base.kind_name(),
                base.place(),
                add.kind_name(),
                add.place()
            );
        }
    }
    Ok(())
}

/// The composed `user-data`: the cloud-config header, then the merged settings.
pub fn render_user_data(merged: Option<&Node>) -> String {
    let mut out = format!("{CLOUD_CONFIG_HEADER}\n");
    if let Some(n) = merged {
        out.push_str(&yaml::emit(n));
    }
    out
}

/// The composed `network-config`.
pub fn render_network_config(merged: &Node) -> String {
    yaml::emit(merged)
}

/// `meta-data`: the instance id (cloud-init runs its once-per-instance modules again when it
/// changes) and the hostname. Both are quoted so no YAML reader retypes them.
pub fn render_meta_data(instance_id: &str, hostname: &str) -> String {
    let file: Arc<str> = Arc::from("meta-data");
    let node = Node::map(
        vec![
            (
                Node::scalar("instance-id", Style::Plain, &file, 1),
                Node::scalar(instance_id, Style::Quoted, &file, 1),
            ),
            (
                Node::scalar("local-hostname", Style::Plain, &file, 2),
                Node::scalar(hostname, Style::Quoted, &file, 2),
            ),
        ],
        &file,
        1,
    );
    yaml::emit(&node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compose(docs: &[&str]) -> Result<String> {
        let mut merged = None;
        for (i, d) in docs.iter().enumerate() {
            if let Some(n) = parse_user_data(d, &format!("t{i}/user-data"))? {
                merge(&mut merged, n)?;
            }
        }
        Ok(render_user_data(merged.as_ref()))
    }

    #[test]
    fn composition_rules() {
        let cases: &[(&[&str], &str)] = &[
            // Lists append, in template order.
            (
                &[
                    "#cloud-config\npackages: [curl]\n",
                    "#cloud-config\npackages:\n  - docker.io\n",
                ],
                "#cloud-config\npackages:\n  - curl\n  - docker.io\n",
            ),
            (
                &[
                    "#cloud-config\nruncmd:\n  - [echo, a]\n",
                    "#cloud-config\nruncmd:\n  - echo b\nwrite_files:\n  - path: /etc/x\n    content: hi\n",
                ],
                "#cloud-config\nruncmd:\n  -\n    - echo\n    - a\n  - echo b\nwrite_files:\n  - path: /etc/x\n    content: hi\n",
            ),
            // Maps merge recursively; later scalars win.
            (
                &[
                    "#cloud-config\napt:\n  preserve_sources_list: true\n  conf: a\n",
                    "#cloud-config\napt:\n  conf: b\n  sources: {}\n",
                ],
                "#cloud-config\napt:\n  preserve_sources_list: true\n  conf: b\n  sources: {}\n",
            ),
            (
                &[
                    "#cloud-config\ntimezone: UTC\n",
                    "#cloud-config\ntimezone: Europe/Amsterdam\n",
                ],
                "#cloud-config\ntimezone: Europe/Amsterdam\n",
            ),
            // A header-only cloud-config contributes nothing.
            (
                &["#cloud-config\n", "#cloud-config\n# just a comment\n"],
                "#cloud-config\n",
            ),
            // Scalars keep their exact text: YAML 1.1 readers still see octal and booleans.
            (
                &[
                    "#cloud-config\nwrite_files:\n  - path: /a\n    permissions: 0644\n",
                    "#cloud-config\nssh_pwauth: yes\n",
                ],
                "#cloud-config\nwrite_files:\n  - path: /a\n    permissions: 0644\nssh_pwauth: yes\n",
            ),
        ];
        for (docs, want) in cases {
            assert_eq!(compose(docs).unwrap(), *want, "{docs:?}");
        }
    }

    #[test]
    fn kind_conflicts_name_both_places() {
        let e = compose(&[
            "#cloud-config\napt:\n  sources:\n    - a\n",
            "#cloud-config\napt:\n  sources: {x: 1}\n",
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "`apt.sources` is a list in t0/user-data:4 but a map in t1/user-data:3: they cannot be merged (maps merge, lists append, scalars replace)"
        );
    }

    #[test]
    fn user_data_must_be_a_cloud_config_map() {
        let cases: &[(&str, &str)] = &[
            (
                "#!/bin/sh\necho hi\n",
                "u/user-data:1: user-data must start with `#cloud-config`",
            ),
            (
                "packages: [a]\n",
                "u/user-data:1: user-data must start with",
            ),
            (
                "#cloud-config\n- a\n- b\n",
                "u/user-data:2: user-data must be a map of settings, not a list",
            ),
            (
                "#cloud-config\npackages: [a\n",
                "u/user-data:3:1: invalid YAML",
            ),
            ("#cloud-config\nruncmd:\n  - a\n b: c\n", "u/user-data:4:"),
            (
                "#cloud-config\na: 1\nb: 2\na: 3\n",
                "u/user-data:4: duplicate key `a` (first at line 2)",
            ),
            (
                "#cloud-config\na: 1\n---\nb: 2\n",
                "u/user-data:3: more than one YAML document",
            ),
        ];
        for (text, want) in cases {
            let got = parse_user_data(text, "u/user-data")
                .unwrap_err()
                .to_string();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn meta_data_quotes_its_values() {
        assert_eq!(
            render_meta_data("0123", "web"),
            "instance-id: \"0123\"\nlocal-hostname: \"web\"\n"
        );
    }
}
