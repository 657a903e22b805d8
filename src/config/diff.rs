//! A unified diff of two texts (`diff -u` / `git diff` format), for `sandbox config --dry-run`.
//! Pure. Configuration files are short, so the longest common subsequence is found with the
//! plain quadratic table; three lines of context, hunks merged when their contexts touch, and
//! `\ No newline at end of file` where a side lacks its final newline, as GNU diff writes it.

/// One line of either side, with whether it ended in a newline.
type Line<'a> = (&'a str, bool);

fn lines(text: &str) -> Vec<Line<'_>> {
    text.split_inclusive('\n')
        .map(|l| match l.strip_suffix('\n') {
            Some(body) => (body, true),
            None => (l, false),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Del(usize),
    Add(usize),
}

/// The edit script from `a` to `b`: deletions before insertions at each change.
fn script(a: &[Line<'_>], b: &[Line<'_>]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(i, j));
            i += 1;
            j += 1;
        } else if j == m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(Op::Del(i));
            i += 1;
        } else {
            ops.push(Op::Add(j));
            j += 1;
        }
    }
    ops
}

const CONTEXT: usize = 3;

/// `--- a_label` / `+++ b_label` and the hunks; empty when the texts are equal.
pub(crate) fn unified(a_label: &str, b_label: &str, a: &str, b: &str) -> String {
    if a == b {
        return String::new();
    }
    let (la, lb) = (lines(a), lines(b));
    let ops = script(&la, &lb);
    // Runs of ops to show: each change with CONTEXT lines around it, overlapping ones joined.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &c in &changed {
        let start = c.saturating_sub(CONTEXT);
        let end = (c + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some((_, e)) if start <= *e => *e = end.max(*e),
            _ => hunks.push((start, end)),
        }
    }
    let mut out = format!("--- {a_label}\n+++ {b_label}\n");
    for (start, end) in hunks {
        let slice = &ops[start..end];
        // The first line of each side in the hunk (1-based), and how many lines it has.
        let (mut a_start, mut b_start) = (None, None);
        let (mut a_count, mut b_count) = (0, 0);
        for op in slice {
            match *op {
                Op::Same(i, j) => {
                    a_start.get_or_insert(i);
                    b_start.get_or_insert(j);
                    a_count += 1;
                    b_count += 1;
                }
                Op::Del(i) => {
                    a_start.get_or_insert(i);
                    a_count += 1;
                }
                Op::Add(j) => {
                    b_start.get_or_insert(j);
                    b_count += 1;
                }
            }
        }
        // An empty side is shown as the line before it (GNU diff's `-0,0`, `+3,0`).
        let before = |ops: &[Op], side_a: bool| -> usize {
            ops.iter()
                .rev()
                .find_map(|op| match (*op, side_a) {
                    (Op::Same(i, _), true) | (Op::Del(i), true) => Some(i + 1),
                    (Op::Same(_, j), false) | (Op::Add(j), false) => Some(j + 1),
                    _ => None,
                })
                .unwrap_or(0)
        };
        let a_first = a_start.map_or_else(|| before(&ops[..start], true), |i| i + 1);
        let b_first = b_start.map_or_else(|| before(&ops[..start], false), |j| j + 1);
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(a_first, a_count),
            range(b_first, b_count)
        ));
        for op in slice {
            let (mark, (text, newline)) = match *op {
                Op::Same(i, _) => (' ', la[i]),
                Op::Del(i) => ('-', la[i]),
                Op::Add(j) => ('+', lb[j]),
            };
            out.push(mark);
            out.push_str(text);
            out.push('\n');
            if !newline {
                out.push_str("\\ No newline at end of file\n");
            }
        }
    }
    out
}

fn range(first: usize, count: usize) -> String {
    if count == 1 {
        first.to_string()
    } else {
        format!("{first},{count}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a", "b", "x\n", "x\n"), "");
    }

    #[test]
    fn one_changed_line_with_context() {
        let a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let b = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        assert_eq!(
            unified("a/f", "b/f", a, b),
            "--- a/f\n+++ b/f\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn distant_changes_make_two_hunks_and_near_ones_one() {
        let a: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let b = a.replace("2\n", "two\n").replace("18\n", "eighteen\n");
        let d = unified("a", "b", &a, &b);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(d.contains("@@ -1,5 +1,5 @@\n 1\n-2\n+two\n"), "{d}");
        let c = a.replace("2\n", "two\n").replace("6\n", "six\n");
        assert_eq!(unified("a", "b", &a, &c).matches("@@ -").count(), 1);
    }

    #[test]
    fn additions_deletions_and_empty_sides() {
        assert_eq!(
            unified("a", "b", "", "[Exec]\nBoot=no\n"),
            "--- a\n+++ b\n@@ -0,0 +1,2 @@\n+[Exec]\n+Boot=no\n"
        );
        assert_eq!(
            unified("a", "b", "x\ny\n", "x\n"),
            "--- a\n+++ b\n@@ -1,2 +1 @@\n x\n-y\n"
        );
    }

    #[test]
    fn a_missing_final_newline_is_marked() {
        assert_eq!(
            unified("a", "b", "x\ny", "x\nz"),
            "--- a\n+++ b\n@@ -1,2 +1,2 @@\n x\n-y\n\\ No newline at end of file\n+z\n\\ No newline at end of file\n"
        );
    }
}
