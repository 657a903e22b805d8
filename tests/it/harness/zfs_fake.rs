//! A stateful `zfs` stand-in for hosts without the ZFS module: it keeps datasets, their
//! mountpoints, snapshots and clone origins in a state directory, does to the files what the
//! real commands would (a clone gets a copy of its origin's files; destroy removes them), and
//! refuses what real zfs refuses: destroying a dataset whose snapshot has clones, creating a
//! dataset that exists, cloning a snapshot that does not. Every call is appended to a log.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct FakeZfs {
    pub script: PathBuf,
    log: PathBuf,
    state: PathBuf,
}

impl FakeZfs {
    /// A fake whose pool holds `parent` (the dataset `zfs list PATH` names for any path).
    pub fn new(dir: &Path, parent: &str) -> FakeZfs {
        std::fs::create_dir_all(dir).expect("creating the fake zfs dir");
        let state = dir.join("state");
        std::fs::create_dir_all(&state).expect("creating the fake zfs state");
        std::fs::write(state.join("datasets"), format!("{parent}\tnone\n")).unwrap();
        std::fs::write(state.join("snapshots"), "").unwrap();
        std::fs::write(state.join("origins"), "").unwrap();
        let log = dir.join("zfs.log");
        let script = dir.join("zfs");
        let body = format!(
            r#"#!/bin/bash
set -u
S='{state}'
echo "$*" >> '{log}'
mp_of() {{ awk -F'\t' -v d="$1" '$1==d {{print $2}}' "$S/datasets"; }}
exists() {{ awk -F'\t' -v d="$1" '$1==d {{f=1}} END {{exit !f}}' "$S/datasets"; }}
case "$1" in
list)
  shift; prop=name
  while [ "$1" = -H ] || [ "$1" = -o ]; do
    if [ "$1" = -o ]; then prop=$2; shift; fi; shift
  done
  target=$1
  if [ "$prop" = clones ]; then
    c=$(awk -F'\t' -v s="$target" '$2==s {{print $1}}' "$S/origins" | paste -sd, -)
    echo "${{c:--}}"; exit 0
  fi
  case "$target" in
    /*) echo '{parent}'; exit 0;;
    *) if exists "$target"; then echo "$target"; exit 0; fi
       echo "cannot open '$target': dataset does not exist" >&2; exit 1;;
  esac;;
create)
  shift; mp=""
  while [ "$1" = -o ]; do
    case "$2" in mountpoint=*) mp=${{2#mountpoint=}};; esac; shift 2
  done
  if exists "$1"; then echo "cannot create '$1': dataset already exists" >&2; exit 1; fi
  printf '%s\t%s\n' "$1" "${{mp:-none}}" >> "$S/datasets"
  if [ -n "$mp" ] && [ "$mp" != none ]; then mkdir -p "$mp"; fi;;
snapshot)
  ds=${{2%@*}}
  exists "$ds" || {{ echo "cannot open '$ds': dataset does not exist" >&2; exit 1; }}
  echo "$2" >> "$S/snapshots";;
set) ;;
clone)
  shift; mp=""
  while [ "$1" = -o ]; do
    case "$2" in mountpoint=*) mp=${{2#mountpoint=}};; esac; shift 2
  done
  snap=$1; ds=$2
  grep -qxF "$snap" "$S/snapshots" || {{ echo "cannot open '$snap': dataset does not exist" >&2; exit 1; }}
  if exists "$ds"; then echo "cannot create '$ds': dataset already exists" >&2; exit 1; fi
  origin_mp=$(mp_of "${{snap%@*}}")
  mkdir -p "$mp" && cp -a "$origin_mp/." "$mp/"
  printf '%s\t%s\n' "$ds" "$mp" >> "$S/datasets"
  printf '%s\t%s\n' "$ds" "$snap" >> "$S/origins";;
destroy)
  ds=${{@: -1}}
  exists "$ds" || {{ echo "cannot open '$ds': dataset does not exist" >&2; exit 1; }}
  if awk -F'\t' -v d="$ds" 'index($2, d "@")==1 {{f=1}} END {{exit !f}}' "$S/origins"; then
    echo "cannot destroy '$ds': filesystem has dependent clones" >&2; exit 1
  fi
  mp=$(mp_of "$ds")
  awk -F'\t' -v d="$ds" '$1!=d' "$S/datasets" > "$S/d.new" && mv "$S/d.new" "$S/datasets"
  grep -v "^$ds@" "$S/snapshots" > "$S/s.new"; mv "$S/s.new" "$S/snapshots"
  awk -F'\t' -v d="$ds" '$1!=d' "$S/origins" > "$S/o.new" && mv "$S/o.new" "$S/origins"
  if [ -n "$mp" ] && [ "$mp" != none ]; then rm -rf "$mp"; fi;;
*) echo "fake zfs: $1 is not modelled" >&2; exit 2;;
esac
"#,
            state = state.display(),
            log = log.display(),
        );
        std::fs::write(&script, body).expect("writing the fake zfs");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeZfs { script, log, state }
    }

    /// Every call, one line each, without the program name.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    pub fn clear_log(&self) {
        let _ = std::fs::remove_file(&self.log);
    }

    /// The datasets that exist now.
    pub fn datasets(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("datasets"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split('\t').next().map(str::to_string))
            .collect()
    }
}
