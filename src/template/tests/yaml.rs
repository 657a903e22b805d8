//! The YAML tree's round trip: what `emit` writes must mean to cloud-init's reader (PyYAML, a
//! YAML 1.1 reader, run here as the independent judge) exactly what the input meant.

use std::process::Command;

use crate::template::yaml::{self, Kind, Node, Style};

/// Inputs that exercise every scalar style and the YAML 1.1 / 1.2 differences.
const SAMPLES: &[&str] = &[
    "permissions: 0644\nmode: 0o755\nhex: 0x1F\nsexagesimal: 190:20:30\nfloat: 1.5e3\nneg: -12\n",
    "a: yes\nb: no\nc: on\nd: off\ne: y\nf: n\ng: true\nh: False\ni: ~\nj: null\nk:\nl: ''\n",
    "date: 2001-12-14\nstamp: 2001-12-14t21:59:43.10-05:00\nversion: 1.10\nzip: 01234\n",
    "q1: 'single # not a comment'\nq2: \"double: with colon\"\nq3: 'it''s'\nq4: \"tab\\there\\nnewline\"\n",
    "q5: \"yes\"\nq6: '0644'\nq7: \"\"\nq8: ' leading'\nq9: \"trailing \"\nq10: \"\\u00e9\\x07\"\n",
    "lit: |\n  line one\n  line two\nstrip: |-\n  no newline\nkeep: |+\n  kept\n\n\nafter: x\n",
    "folded: >\n  folded\n  text\n\n  para\nfoldstrip: >-\n  a\n  b\n",
    "indented: |2\n    starts with spaces\n  then not\n",
    "blank_lines: |\n  a\n\n  b\n",
    "spaces_only: \"a\\n   \\nb\\n\"\ntrailing_ws: \"a  \\nb\\n\"\ncr: \"a\\r\\nb\"\n",
    "flow: {a: 1, b: [x, y, {c: d}]}\nempty_map: {}\nempty_seq: []\n",
    "runcmd:\n  - [sh, -c, 'echo hi']\n  - echo plain\n  - - nested\n    - list\n",
    "write_files:\n- path: /etc/x\n  content: |\n    #!/bin/sh\n    echo \"$1\" # c\n  permissions: '0755'\n  owner: root:root\n",
    "anchors:\n  base: &b {x: 1, y: [a]}\n  copy: *b\n  merge:\n    <<: *b\n    z: 2\n",
    "tags:\n  s: !!str 0644\n  i: !!int '12'\n  bin: !!binary aGVsbG8=\n",
    "\"quoted key\": 1\n'key: colon': 2\n? complex\n: value\n\"123\": num key\n",
    "unicode: héllo wörld ✓\nemoji: \"😀\"\nurl: http://example.com/a#frag\ncolon_end: 'a:'\n",
    "multi: this is\n  a folded\n  plain scalar\ndash: -x\nq: ?x\nc: :x\n",
    "top: [1, 2]\nnested:\n  deeper:\n    deepest:\n      - a: 1\n        b: 2\n      - {}\n      - []\n      -\n",
    "ssh_authorized_keys:\n  - ssh-ed25519 AAAAC3Nza user@host\nchpasswd:\n  expire: false\n",
];

/// A node with lines and files dropped, and quoted/block merged into one "string" class.
#[derive(Debug, PartialEq)]
enum Shape {
    Plain(String, Option<String>),
    Str(String, Option<String>),
    Seq(Vec<Shape>, Option<String>),
    Map(Vec<(Shape, Shape)>, Option<String>),
}

fn shape(n: &Node) -> Shape {
    match &n.kind {
        Kind::Scalar(s, Style::Plain) => Shape::Plain(s.clone(), n.tag.clone()),
        Kind::Scalar(s, _) => Shape::Str(s.clone(), n.tag.clone()),
        Kind::Seq(items) => Shape::Seq(items.iter().map(shape).collect(), n.tag.clone()),
        Kind::Map(e) => Shape::Map(
            e.iter().map(|(k, v)| (shape(k), shape(v))).collect(),
            n.tag.clone(),
        ),
    }
}

#[test]
fn emit_then_parse_gives_the_same_tree() {
    for sample in SAMPLES {
        let tree = yaml::parse(sample, "in").unwrap().unwrap();
        let text = yaml::emit(&tree);
        let again = yaml::parse(&text, "out")
            .unwrap_or_else(|e| panic!("{sample:?}\nemitted:\n{text}\n{e}"));
        assert_eq!(
            shape(&tree),
            shape(&again.unwrap()),
            "{sample:?}\nemitted:\n{text}"
        );
    }
}

#[test]
fn pyyaml_reads_the_emitted_text_as_it_read_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = Vec::new();
    for (i, sample) in SAMPLES.iter().enumerate() {
        let tree = yaml::parse(sample, "in").unwrap().unwrap();
        let a = dir.path().join(format!("{i}.in.yaml"));
        let b = dir.path().join(format!("{i}.out.yaml"));
        fs_err::write(&a, sample).unwrap();
        fs_err::write(&b, yaml::emit(&tree)).unwrap();
        args.push(a);
        args.push(b);
    }
    // cloud-init loads user-data with yaml.safe_load; compare what it sees, as JSON.
    let script = "import sys, json, yaml\n\
                  bad = 0\n\
                  for a, b in zip(sys.argv[1::2], sys.argv[2::2]):\n\
                  \x20   x = json.dumps(yaml.safe_load(open(a)), default=repr, sort_keys=True)\n\
                  \x20   y = json.dumps(yaml.safe_load(open(b)), default=repr, sort_keys=True)\n\
                  \x20   if x != y:\n\
                  \x20       bad += 1\n\
                  \x20       print(a, x, '!=', y)\n\
                  print('compared', (len(sys.argv) - 1) // 2)\n\
                  sys.exit(1 if bad else 0)\n";
    // Debian's interpreter, which python3-yaml serves (a pyenv python on PATH may lack PyYAML).
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(&args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "python3 is needed as the YAML 1.1 reference (apt-get install python3-yaml): {e}"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "PyYAML (apt-get install python3-yaml) read something else:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("compared {}", SAMPLES.len())),
        "{stdout}"
    );
}

#[test]
fn literal_blocks_keep_their_chomping() {
    let cases: &[(&str, &str)] = &[
        ("a: |\n  x\n  y\n", "a: |\n  x\n  y\n"),
        ("a: |-\n  x\n  y\n", "a: |-\n  x\n  y\n"),
        ("a: |+\n  x\n  y\n\n\nb: 1\n", "a: |+\n  x\n  y\n\n\nb: 1\n"),
        // A single line has nothing to gain from a block.
        ("a: |\n  x\n", "a: \"x\\n\"\n"),
        // Leading spaces would be taken for indentation: quoted instead.
        ("a: |2\n    x\n  y\n", "a: \"  x\\ny\\n\"\n"),
        ("- |\n  x\n  y\n", "- |\n  x\n  y\n"),
        (
            "k:\n  - a: |\n      x\n      y\n",
            "k:\n  - a: |\n      x\n      y\n",
        ),
    ];
    for (input, want) in cases {
        let tree = yaml::parse(input, "in").unwrap().unwrap();
        assert_eq!(yaml::emit(&tree), *want, "{input:?}");
    }
}

#[test]
fn plain_scalars_come_back_byte_for_byte() {
    let input = "a: 0644\nb: yes\nc: 1.10\nd: 2001-12-14\ne: ~\nf: -1\ng: http://x/#y\n";
    let tree = yaml::parse(input, "in").unwrap().unwrap();
    assert_eq!(yaml::emit(&tree), input);
}

#[test]
fn aliases_expand_within_a_budget() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    let e = yaml::parse(&bomb, "bomb/user-data")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("bomb/user-data:") && e.contains("more than 100000 nodes"),
        "{e}"
    );

    let tree = yaml::parse("a: &x {k: v}\nb: *x\n", "f").unwrap().unwrap();
    assert_eq!(yaml::emit(&tree), "a:\n  k: v\nb:\n  k: v\n");
}

#[test]
fn nodes_remember_file_and_line() {
    let tree = yaml::parse("# comment\na:\n  - x\n  - y\nb: 2\n", "t/user-data")
        .unwrap()
        .unwrap();
    let Kind::Map(entries) = &tree.kind else {
        panic!("not a map")
    };
    assert_eq!(entries[0].0.place(), "t/user-data:2");
    let Kind::Seq(items) = &entries[0].1.kind else {
        panic!("not a list")
    };
    assert_eq!(items[1].place(), "t/user-data:4");
    assert_eq!(entries[1].1.place(), "t/user-data:5");
}

#[test]
fn an_empty_document_is_none() {
    assert_eq!(yaml::parse("", "f").unwrap(), None);
    assert_eq!(yaml::parse("# only a comment\n", "f").unwrap(), None);
}
