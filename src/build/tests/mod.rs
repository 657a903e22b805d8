//! Composition tests over whole templates: in-memory ones built here, user directories in temp
//! dirs, and every shipped template.
mod yaml;
