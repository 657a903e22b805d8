//! Which template a composed `.nspawn` value comes from, for `sandbox config NAME`. Pure.
//!
//! The answer follows composition's own rules (`nspawn::Settings::apply`): a scalar key's
//! value comes from the last template that set it, a list value from the first template that
//! added it since the last empty assignment (`Bind=`) took the list back. Values generators add
//! (NVIDIA files, extra bridges) depend on the host and the machine, and are not attributed.

use super::compose::Composition;
use super::nspawn::{KeyKind, key_kind};

/// One composed value and the template that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NspawnOrigin {
    pub section: String,
    pub key: String,
    pub value: String,
    pub template: String,
    /// `file:line` of the assignment, e.g. `built-in:zone/zone.nspawn:3`.
    pub place: String,
}

impl Composition {
    /// Every `.nspawn` value the templates' files compose to, with its template.
    pub fn nspawn_origins(&self) -> Vec<NspawnOrigin> {
        let mut out: Vec<NspawnOrigin> = Vec::new();
        for part in &self.parts {
            for file in &part.nspawn {
                for a in &file.assignments {
                    let same_key = |o: &NspawnOrigin| o.section == a.section && o.key == a.key;
                    let origin = NspawnOrigin {
                        section: a.section.clone(),
                        key: a.key.clone(),
                        value: a.value.clone(),
                        template: part.name.clone(),
                        place: format!("{}:{}", file.shown, a.line),
                    };
                    match key_kind(&a.section, &a.key).unwrap_or(KeyKind::Scalar) {
                        KeyKind::List if a.value.is_empty() => out.retain(|o| !same_key(o)),
                        KeyKind::List => {
                            if !out.iter().any(|o| same_key(o) && o.value == a.value)
                                || a.key == "Parameters"
                            {
                                out.push(origin);
                            }
                        }
                        KeyKind::Scalar => {
                            out.retain(|o| !same_key(o));
                            out.push(origin);
                        }
                    }
                }
            }
        }
        out
    }
}
